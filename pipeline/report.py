"""Stage report: PNG plots (they render offline, unlike `dvc plots show`'s CDN-loaded vega), a Markdown
report that embeds them (report.md: one table of every variant and runtime, per-class scores, the
recommended variant's most confident mistakes, why each other variant was not chosen, what Lambda
bills) and the same page as one self-contained HTML file (report.html, images inlined)."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline import cli, cost, dataset, files, params, paths, per_class, report_html  # noqa: E402

OUT = Path(paths.REPORT_DIR)
MARK = "★"  # the recommended variant, in every table and plot
PICKED = "C3"  # its colour in the plots; the others keep matplotlib's first colour
GALLERY = 12  # misclassified photos shown
# Why a cell of the main table is empty, by column: the report says so instead of printing nan.
NOT_APPLICABLE = {
    "handler_cold_start_s": "the function never serves Keras, so there is no handler to start",
    "ops_outside_delegate": "XNNPACK is LiteRT's delegate: Keras and ONNX Runtime have none to fall outside of",
    "accuracy_vs_keras": "Keras is what the others are compared with",
}


def marked(name: str, recommended: str) -> str:
    """A table's or plot's name for a row, with MARK on the recommended variant's."""
    return f"{name} {MARK}" if name == recommended else name


def save(fig, name: str) -> None:
    with files.atomic_path(OUT / name) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def accuracy_axis(values) -> tuple[float, float]:
    """The accuracy axis' ends (fractions): from 5 points below the lowest value, down to a multiple of 5
    points, to 2 points above the highest, up to one (at most 100%). A gap of a few test photos then looks
    like a few photos, not like the cliff an axis fitted to the points draws."""
    low = np.floor((min(values) - 0.05) * 20 + 1e-9) / 20
    high = np.ceil((max(values) + 0.02) * 20 - 1e-9) / 20
    return max(0.0, float(low)), min(1.0, float(high))


def label_groups(xs, ys, x_span: float, y_span: float, near: tuple = (0.1, 0.08)) -> list[list[int]]:
    """Indices of points close enough on the plot (within near, as shares of each axis' span) to share one
    label: one label per group, listing each point, instead of labels drawn over each other."""
    groups: list[list[int]] = []
    for i in sorted(range(len(xs)), key=lambda i: (xs[i], ys[i])):
        close = (g for g in groups if any(abs(xs[i] - xs[j]) <= near[0] * x_span
                                          and abs(ys[i] - ys[j]) <= near[1] * y_span for j in g))  # fmt: skip
        group = next(close, None)
        if group is None:
            groups.append([i])
        else:
            group.append(i)
    return groups


def difference_interval(verify: dict, variant: str) -> "tuple[float, float] | None":
    """The variant's paired accuracy difference from Keras, as an interval (verify's accuracy_diff_low and
    _high, at verify.json's confidence); None where verify wrote none (Keras itself, an older verify)."""
    m = verify.get(variant, {})
    if variant == "keras" or "accuracy_diff_low" not in m:
        return None
    return m["accuracy_diff_low"], m["accuracy_diff_high"]


def plot_accuracy_vs_size(table: pd.DataFrame, verify: dict, recommended: str) -> None:
    """Each runtime's test accuracy against its model file's size, the recommended one starred; error
    bars: the interval on its difference from Keras (paired, from verify) where verify has one."""
    keras = verify["keras"]["accuracy"]
    names = list(table["runtime"])
    xs, ys = list(table["size_mb"]), list(table["accuracy"])
    bars = [difference_interval(verify, name) for name in names]
    ends = [keras + end for bar in bars if bar for end in bar]
    low, high = accuracy_axis(ys + ends)
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for x, y, name, bar in zip(xs, ys, names, bars, strict=True):
        picked = name == recommended
        if bar:  # the interval is around the difference, so around Keras + it; rounding may put y a hair outside
            below, above = max(0.0, y - keras - bar[0]), max(0.0, keras + bar[1] - y)
            ax.errorbar(x, y * 100, yerr=[[below * 100], [above * 100]],
                        color=PICKED if picked else "C0", capsize=3, linewidth=1, alpha=0.6)  # fmt: skip
        ax.scatter(x, y * 100, marker="*" if picked else "o", s=180 if picked else 30,
                   color=PICKED if picked else "C0", zorder=3)  # fmt: skip
    x_max = max(xs) * 1.25
    groups = sorted(label_groups(xs, ys, x_max, high - low), key=lambda g: min(xs[i] for i in g))
    for k, group in enumerate(groups):
        above = k % 2 == 0  # neighbours along x alternate above and below their points: wide labels never meet
        reach = [ys[i] if not bars[i] else keras + bars[i][1 if above else 0] for i in group]  # past the bars
        x, y = np.mean([xs[i] for i in group]), (max if above else min)([*reach, *(ys[i] for i in group)])
        text = "\n".join(f"{marked(names[i], recommended)}  {ys[i]:.2%}" for i in sorted(group, key=lambda i: -ys[i]))
        ax.annotate(text, (x, y * 100), fontsize=8, xytext=(0, 12 if above else -12), textcoords="offset points",
                    ha="center", va="bottom" if above else "top",
                    bbox={"boxstyle": "round", "facecolor": "white", "edgecolor": "none", "alpha": 0.8})  # fmt: skip
    photos = verify.get("test_images")
    one = f"; 1 photo = {100 / photos:.2f} pt" if photos else ""
    ax.set(xlim=(0, x_max), ylim=(low * 100, high * 100), xlabel="model file (MiB)",
           ylabel=f"test accuracy (%{', ' + str(photos) + ' photos' if photos else ''}{one})",
           title=f"Accuracy vs size ({MARK} recommended)")  # fmt: skip
    confidence = verify.get("confidence")
    note = (f"bars: {confidence:.0%} interval of the accuracy difference from Keras (paired, verify)"
            if any(bars) else "no intervals: verify.json has no accuracy_diff_low/high")  # fmt: skip
    ax.text(0.01, 0.02, note, transform=ax.transAxes, fontsize=7, color="grey")
    ax.grid(alpha=0.3)
    save(fig, "accuracy_vs_size.png")


def mark_ticks(ax, names: list, recommended: str) -> None:
    """The y axis' runtime names, the recommended one starred, bold and in its colour."""
    ax.set_yticks(range(len(names)), [marked(n, recommended) for n in names])
    for tick, name in zip(ax.get_yticklabels(), names, strict=True):
        if name == recommended:
            tick.set_fontweight("bold")
            tick.set_color(PICKED)


def plot_latency(table: pd.DataFrame, threads: int, recommended: str = "") -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    y = np.arange(len(table))
    colours = [PICKED if name == recommended else "C0" for name in table["runtime"]]
    ax.barh(y, table["p50_ms"], color=colours, label="p50")
    ax.errorbar(table["p99_ms"], y, fmt="|", color="k", label="p99")
    mark_ticks(ax, list(table["runtime"]), recommended)
    ax.set(xlabel="ms per image (batch 1)", title=f"Warm latency, {threads} threads ({MARK} recommended)")
    ax.legend()
    save(fig, "latency.png")


def plot_cold_start(table: pd.DataFrame, recommended: str = "") -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    left = np.zeros(len(table))
    y = np.arange(len(table))
    for part in ("import_s", "load_s", "first_prediction_s"):
        ax.barh(y, table[part], left=left, label=part.removesuffix("_s").replace("_", " "))
        left += table[part].to_numpy()
    mark_ticks(ax, list(table["runtime"]), recommended)
    ax.set(xlabel="seconds in a fresh process", title=f"Cold start ({MARK} recommended)")
    ax.legend()
    save(fig, "cold_start.png")


def plot_confusion(predictions: pd.DataFrame, variant: str, labels: list, recommended: bool = True) -> pd.DataFrame:
    """labels: the model's, in its output order (rows and columns of the matrix)."""
    rows = predictions[predictions["model"] == variant]
    matrix = per_class.confusion_matrix(rows, labels)
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(labels)), max(3.5, 0.5 * len(labels))))
    ax.imshow(matrix.to_numpy(), cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix.to_numpy()):
        ax.text(j, i, n, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    name = f"{MARK} {variant} (recommended)" if recommended else variant
    ax.set(xlabel="predicted", ylabel="actual", title=f"Confusion matrix, {name}, test split")
    save(fig, "confusion.png")
    return rows[["label", "predicted"]].rename(columns={"label": "actual"})


def plot_per_class(keras: pd.DataFrame, chosen: pd.DataFrame, variant: str) -> None:
    """F1 per class, Keras beside the recommended variant (per_class.scores tables); a class without an
    F1 (never predicted) draws no bar and says n/a."""
    fig, ax = plt.subplots(figsize=(7, 0.45 * len(keras) + 1.5))
    y = np.arange(len(keras))
    pairs = ((-0.2, keras, "keras", "C0"), (0.2, chosen, f"{MARK} {variant}", PICKED))  # Keras above
    for offset, scores, name, colour in pairs:
        ax.barh(y + offset, scores["f1"].fillna(0), height=0.4, color=colour, label=name)
        for yi, f1 in zip(y + offset, scores["f1"], strict=True):
            ax.text(0.01 if np.isnan(f1) else f1 + 0.01, yi, "n/a" if np.isnan(f1) else f"{f1:.2f}",
                    va="center", fontsize=7)  # fmt: skip
    ax.set_yticks(y, [f"{c} ({n})" for c, n in zip(keras.index, keras["support"], strict=True)])
    ax.invert_yaxis()
    ax.set(xlim=(0, 1.1), xlabel="F1 on the test split", ylabel="class (test photos)",
           title=f"Per-class F1: Keras and {MARK} {variant} (recommended)")  # fmt: skip
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize=8)  # beside the bars, never over them
    save(fig, "per_class.png")


def plot_training(history: pd.DataFrame) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    if not history.empty:
        ax.plot(history["epoch"], history["accuracy"], label="train (augmented)")
        ax.plot(history["epoch"], history["val_accuracy"], label="validation")
        if "size" in history and history["size"].nunique() > 1:  # progressive resizing: mark each size
            for _, first in history.drop_duplicates("size").iterrows():
                ax.axvline(first["epoch"] - 0.5, color="grey", linewidth=0.5)
                ax.text(
                    first["epoch"] - 0.4,
                    0.03,
                    f"{first['size']:g} px",
                    fontsize=7,
                    color="grey",
                    transform=ax.get_xaxis_transform(),
                )  # x in epochs, y in the axes: inside, whatever the range
        ax.legend()
    title = "Training curves: the Keras model every variant is converted from"
    ax.set(xlabel="epoch", ylabel="accuracy", title=title if not history.empty else "Loaded model (no training)")
    save(fig, "training.png")


def measured_costs(estimate: pd.DataFrame, tune: pd.DataFrame) -> pd.DataFrame:
    """The estimate, with make tune's measurements in place of the rows it measured (the deployed
    variant, at its architecture and the memory sizes it swept); a `source` column says which is which."""
    table = estimate.assign(source="estimate")
    for _, m in tune.iterrows():
        at = (table["runtime"] == m["runtime"]) & (table["architecture"] == m["architecture"])
        at &= table["memory_mb"] == m["memory_mb"]
        if "door" in m and "door" in table:  # tune priced the door it swept behind
            at &= table["door"] == m["door"]
        measured = {"est_ms": m["duration_p50_ms"], "billed_ms": m["billed_p50_ms"], "init_ms": m["init_ms"],
                    "latency": "measured in Lambda", "source": "make tune",
                    **{k: m[k] for k in (*cost.PARTS, "usd_per_million")}}  # fmt: skip
        if at.any():
            table.loc[at, list(measured)] = list(measured.values())
        else:
            keys = [k for k in ("runtime", "architecture", "memory_mb", "door") if k in m and k in table]
            table.loc[len(table)] = {**table.iloc[0].to_dict(), **{k: m[k] for k in keys}, **measured}
    return table


def usd(price: float) -> str:
    return f"{price:.10f}".rstrip("0")  # 0.0000166667, not 1.66667e-05


def cost_section(costs: pd.DataFrame, handler: pd.DataFrame, choice: dict, c: params.Cost, d: params.Deploy) -> list:
    """What Lambda bills, and how: the handler end to end beside the model alone, then the dollars by part."""
    shot = handler[handler["photo"] == c.photo].iloc[0]
    threads = handler["threads"].max()
    many = handler[handler["threads"] == threads].pivot(index="runtime", columns="photo", values="p50_ms")
    side = many.rename(columns=lambda photo: f"handler p50 ms, {photo} photo").reset_index()
    phone = handler[(handler["threads"] == threads) & (handler["photo"] == c.photo)].set_index("runtime")
    side = side.join(phone[["model_ms", "decode_share", "model_share", "rest_share"]], on="runtime")
    names = {"model_ms": f"model p50 ms ({c.photo})", "decode_share": f"decode/resize share ({c.photo})",
             "model_share": "model share", "rest_share": "rest share"}  # fmt: skip
    recommended = choice["variant"]
    side = marked_rows(side.rename(columns=names), recommended)
    shown = marked_rows(costs, recommended)  # door_lines reads costs by runtime name: unmarked
    measured = (costs["source"] == "make tune").any()
    shown = shown.drop(columns=hidden_cost_columns(costs))
    at = shown[shown["memory_mb"] == d.memory_mb].drop(columns=["memory_mb"])
    shot_body = cost.base64_bytes(int(shot["bytes"]))
    steps = cost.api_steps(shot_body, c.api_request_step_kb)
    lines = [
        "## What Lambda bills",
        "",
        *door_lines(costs, choice, d),
        f"The handler end to end (event in, JSON out; the photo in the event), {threads} threads, beside the "
        f"model alone (timed on its own in the same process); the shares split the {c.photo} photo's time into "
        "its stages, each timed on its own (`artifacts/bench/handler.csv` has 1 thread too, and p90s):",
        "",
        side.to_markdown(index=False, floatfmt="g"),
        "",
        f"Priced per million requests: the handler's p50 on the {c.photo} photo ({shot['width']}x{shot['height']}, "
        f"{shot['bytes'] / 1e6:.2f} MB; `cost.photo`), one-thread and {threads}-thread, scaled to the CPU share "
        f"of each memory size (one vCPU at {c.mb_per_vcpu:,} MB, `cost.mb_per_vcpu`), rounded up to the ms, x GB x "
        f"the GB-second price (x86_64 ${usd(c.x86_64_price_per_gb_second)}, "
        f"arm64 ${usd(c.arm64_price_per_gb_second)}); "
        f"init: the handler's cold start at the same CPU share, billed for {c.cold_start_share:.1%} of requests "
        f"(`cost.cold_start_share`); Lambda's ${c.price_per_million_requests:.2f} per million requests; the front "
        f"door (`door`, docs/endpoints.md): a function URL nothing, an HTTP API "
        f"${c.api_price_per_million:.2f} per million ({c.api_price_per_million_past_tier:.2f} past "
        f"{c.api_tier_millions:g} M a month; priced at {c.requests_per_month_millions:g} M) for each started "
        f"{c.api_request_step_kb} KB of the body (the {c.photo} photo in base64: {shot_body:,} bytes, "
        f"{steps} request{'s' if steps > 1 else ''}); CloudWatch Logs ${c.logs_price_per_gb:.2f} per GB ingested "
        f"(`log_bytes`: Lambda's START/END/REPORT lines, {cost.PLATFORM_LOG_BYTES} bytes, and the handler's, "
        f"measured by bench). List prices, {c.prices_region}, {c.prices_date}. arm64 rows take x86's latency: "
        "not measured on Graviton."
        + (" Rows marked `make tune` were measured on the deployed function instead." if measured else ""),
        "",
        f"### At the deploy's memory size ({d.memory_mb:,} MB): where each dollar goes",
        "",
        at.to_markdown(index=False, floatfmt="g"),
        "",
        f"### Every memory size ({d.architecture})",
        "",
        shown[shown["architecture"] == d.architecture].to_markdown(index=False, floatfmt="g"),
        "",
        "Every column, for every runtime, size and door, is in `artifacts/recommend/cost.csv`.",
    ]
    return lines


def hidden_cost_columns(costs: pd.DataFrame) -> list:
    """What the report's cost tables leave to cost.csv, so they fit a page: the inputs the text above them
    states (the photo, its body and log bytes), the estimate before rounding, and SnapStart's column where
    no row bills it. `source` stays: estimate or make tune is what a reader weighs a figure by."""
    hidden = ["photo", "body_bytes", "log_bytes", "est_ms"]
    if not (costs["usd_snapstart"] != 0).any():
        hidden.append("usd_snapstart")
    return [c for c in hidden if c in costs]


def marked_rows(table: pd.DataFrame, recommended: str) -> pd.DataFrame:
    """The table with MARK on the recommended runtime's rows (its runtime column), for display only."""
    return table.assign(runtime=[marked(name, recommended) for name in table["runtime"]])


def door_lines(costs: pd.DataFrame, choice: dict, d: params.Deploy) -> list:
    """What each front door costs per million for the recommended variant, at the deploy's memory and
    architecture: the sentence a reader looks for first."""
    runtime = choice["variant"]
    at = costs[(costs["runtime"] == runtime) & (costs["memory_mb"] == d.memory_mb)]
    at = at[at["architecture"] == d.architecture].set_index("door")
    if not {"function_url", "http_api"} <= set(at.index):
        return []
    url, api = at.loc["function_url"], at.loc["http_api"]
    return [
        f"**{choice['variant']} at {d.memory_mb:,} MB {d.architecture}: ${url['usd_per_million']:.2f} per million "
        f"requests behind a function URL, ${api['usd_per_million']:.2f} behind an HTTP API** (of which the API "
        f"${api['usd_door']:.2f}, the logs ${url['usd_logs']:.2f} either way); deploy.endpoint is "
        f"`{d.endpoint}` (docs/endpoints.md).",
        "",
    ]


def plot_cost(costs: pd.DataFrame, d: params.Deploy, recommended: str = "") -> None:
    """Where each dollar goes at the deploy's memory size and architecture, per runtime, behind each
    front door side by side (one bar each)."""
    at = costs[(costs["memory_mb"] == d.memory_mb) & (costs["architecture"] == d.architecture)]
    if "door" in at:
        at = at.sort_values(["runtime", "door"], kind="stable")
        labels = at["runtime"].map(lambda r: marked(r, recommended)) + " · " + at["door"].str.replace("_", " ")
    else:
        labels = at["runtime"].map(lambda r: marked(r, recommended))
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(at) + 1.5))
    left = np.zeros(len(at))
    for part in cost.PARTS:
        ax.barh(labels, at[part], left=left, label=part.removeprefix("usd_"))
        left += at[part].to_numpy()
    for tick in ax.get_yticklabels():
        if MARK in tick.get_text():
            tick.set_fontweight("bold")
            tick.set_color(PICKED)
    title = f"What Lambda bills, {d.memory_mb} MB {d.architecture} ({MARK} recommended)"
    # Room past the longest bar: autoscaling stopped the axis at its end, and it read as cut off.
    ax.set(xlabel="USD per million requests", title=title, xlim=(0, 1.05 * left.max()))
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0))  # beside the bars, never over them
    save(fig, "cost.png")


SUMMARY_COLUMNS = {
    "runtime": "runtime / variant",
    "size_mb": "MiB",
    "accuracy": "test acc",
    "agreement": "agreement",
    "p50_ms": "p50 ms",
    "cold_start_s": "cold start s",
    "peak_rss_mb": "RSS MiB",
}


def excluded_lines(verify: dict) -> list[str]:
    """The variants verify left out (verify.on_gate_failure: exclude), each with why."""
    return [f"excluded at verify: {reasons}" for reasons in verify.get("excluded", {}).values()]


def verdict(row: pd.Series, reduce_range: bool) -> str:
    """holds / fixed / excluded / unchecked: onnx_int8 holding with convert.onnx_reduce_range is the fix for
    x86 without VNNI (without it the AVX2 kernel saturates: docs/targets.md has the before and after)."""
    if row["verdict"] == "holds" and row["variant"] == "onnx_int8" and reduce_range:
        return "fixed (convert.onnx_reduce_range)"
    return row["verdict"]


def targets_section(targets: pd.DataFrame, reduce_range: bool, recommended: str = "") -> list:
    """Each variant on each of Lambda's CPUs (the targets stage): its answers against the build machine's."""
    lines = ["## Lambda's CPUs (the targets stage, docs/targets.md)", ""]
    if targets.empty:
        return [*lines, "No target CPU checked (targets.architectures is empty).", ""]
    shown = targets.assign(
        variant=[marked(v, recommended) for v in targets["variant"]],
        target=targets["architecture"] + " (" + targets["cpu"] + ")",
        verdict=[verdict(row, reduce_range) for _, row in targets.iterrows()],
    )
    columns = {"variant": "variant", "target": "target", "runtime": "runtime", "photos": "photos",
               "agreement_build": "agr. build machine", "max_prob_diff": "max prob diff",
               "agreement_keras": "agr. Keras", "build_agreement_keras": "build agr. Keras", "accuracy": "acc",
               "verdict": "verdict"}  # fmt: skip
    shown = shown[list(columns)].astype(object)
    shown = shown.where(shown.notna(), None)  # an unchecked target's numbers: blank, not nan
    lines += [
        "The function's runtime on emulated CPUs (qemu: x86_64 as Haswell, AVX2 without AVX-512 or VNNI; arm64 as "
        "Neoverse N1, Graviton2), on test photos spread over the split, against the same runtime on the build "
        "machine and against Keras. Arithmetic, not speed.",
        "",
        shown.rename(columns=columns).to_markdown(index=False, floatfmt="g", missingval=""),
        "",
    ]
    why = targets[targets["verdict"] != "holds"].drop_duplicates(["architecture", "reason"])  # unchecked: once a target
    lines += [f"- {r['variant']} on {r['architecture']}: {r['verdict']}: {r['reason']}" for _, r in why.iterrows()]
    return [*lines, ""]


def summary(table: pd.DataFrame, choice: dict, verify: dict) -> str:
    """The few numbers a person compares between runs, narrow enough for a terminal (make all ends with it)."""
    shown = marked_rows(table[list(SUMMARY_COLUMNS)], choice["variant"])
    shown = shown.rename(columns=SUMMARY_COLUMNS)
    return "\n".join([shown.to_string(index=False), *excluded_lines(verify), f"recommended: {choice['variant']}", ""])


def difference_cell(verify: dict, variant: str) -> "str | None":
    """A variant's accuracy difference from Keras in points with its interval, e.g. -0.27 [-1.08, +0.54]."""
    bar = difference_interval(verify, variant)
    if bar is None:
        return None
    low, diff, high = (round(x * 100, 2) + 0.0 for x in (bar[0], verify[variant]["accuracy_diff"], bar[1]))  # no -0.00
    return f"{diff:+.2f} [{low:+.2f}, {high:+.2f}]"


def main_table(table: pd.DataFrame, columns: dict, recommended: str) -> list:
    """The runtimes' table, the recommended row starred; an empty cell says n/a, and a line under the
    table says why (NOT_APPLICABLE), never nan."""
    shown = table[[c for c in columns if c in table and table[c].notna().any()]].astype(object)
    shown["runtime"] = [marked(name, recommended) for name in shown["runtime"]]
    empty = [c for c in shown if shown[c].isna().any()]
    why = [f"- n/a in *{columns[c]}*: {NOT_APPLICABLE.get(c, 'not measured for this runtime')}." for c in empty]
    shown = shown.where(shown.notna(), None)
    return [shown.rename(columns=columns).to_markdown(index=False, floatfmt="g", missingval="n/a"), "", *why]


def scores_cell(value: float, what: str) -> str:
    return f"{value:.2f}" if not np.isnan(value) else f"n/a ({what})"


def per_class_section(keras: pd.DataFrame, chosen: pd.DataFrame, variant: str) -> list:
    """Precision, recall and F1 per class for Keras and the recommended variant, and their macro means."""
    rows = []
    for name in keras.index:
        row = {"class": name, "test photos": int(keras.loc[name, "support"])}
        for label, scores in (("Keras", keras), (f"{MARK} {variant}", chosen)):
            m = scores.loc[name]
            row[f"{label} precision"] = scores_cell(m["precision"], "never predicted")
            row[f"{label} recall"] = scores_cell(m["recall"], "no test photo")
            row[f"{label} F1"] = scores_cell(m["f1"], "no precision" if np.isnan(m["precision"]) else "no recall")
        rows.append(row)
    mean = {"class": "**macro mean**", "test photos": int(keras["support"].sum())}
    for label, scores in (("Keras", keras), (f"{MARK} {variant}", chosen)):
        for column, title in (("precision", "precision"), ("recall", "recall"), ("f1", "F1")):
            mean[f"{label} {title}"] = f"{scores[column].mean():.2f}"  # over the classes that have one
    table = pd.DataFrame([*rows, mean])
    return [
        "## Per class (test split)",
        "",
        "Precision: of the photos a model called this class, the share that are; recall: of this class' photos, "
        "the share it found; F1 their harmonic mean; the macro mean is over the classes that have the number. "
        f"Keras beside {MARK} {variant} (recommended); every variant's recall is in "
        "`artifacts/verify/per_class.csv`, these numbers in `per_class.csv` here.",
        "",
        table.to_markdown(index=False, disable_numparse=True, colalign=["left"] + ["right"] * (table.shape[1] - 1)),
        "",
        "![Per-class F1, Keras and the recommended variant](per_class.png)",
        "",
        "![Confusion matrix of the recommended variant](confusion.png)",
        "",
    ]


def gallery_section(mistakes: pd.DataFrame, thumbnails: list, variant: str, columns: int = 4) -> list:
    """The misclassified photos as a grid of thumbnails, each with its true and predicted class."""
    lines = [f"## {MARK} {variant}'s most confident mistakes (test split)", ""]
    if mistakes.empty:
        return [*lines, f"None: {variant} classifies every test photo right.", ""]
    cells = []
    for i, (row, name) in enumerate(zip(mistakes.itertuples(), thumbnails, strict=True), start=1):
        caption = (f"{i}. true **{row.label}** → predicted **{row.predicted}** ({row.probability:.0%}; "
                   f"{row.label} {row.p_true:.0%})")  # fmt: skip
        picture = f"![{row.label} taken for {row.predicted}](misclassified/{name})" if name else (
            f"n/a (photo not found: `{row.path}`)")  # fmt: skip
        cells.append(f"{picture}<br>{caption}")
    while len(cells) % columns:
        cells.append("")
    grid = [cells[i : i + columns] for i in range(0, len(cells), columns)]
    header = "| " + " | ".join(" " for _ in range(columns)) + " |"
    lines += [
        f"The {len(mistakes)} test photos {variant} got wrong with the highest probability (at most two of each "
        "true class), with the probability it gave its answer and the one it gave the true class. Paths in "
        "`misclassified.csv`.",
        "",
        header,
        "|" + ":---:|" * columns,
        *("| " + " | ".join(row) + " |" for row in grid),
        "",
    ]
    return lines


def not_chosen_lines(choice: dict) -> list:
    """Why each other variant was not chosen (recommend's not_chosen), one line each."""
    if "not_chosen" not in choice:
        return ["Why the others were not chosen: n/a (recommendation.json has no not_chosen: an older recommend "
                "stage; dvc repro recommend writes it).", ""]  # fmt: skip
    if not choice["not_chosen"]:
        return ["No other variant to choose from (convert.variants names one).", ""]
    return ["Not chosen:", "", *(f"- **{v}**: {why}" for v, why in choice["not_chosen"].items()), ""]


def markdown(
    table,
    bench: dict,
    info: dict,
    choice: dict,
    costs,
    handler,
    c: params.Cost,
    d: params.Deploy,
    verify: dict,
    targets: list = (),
    sections: list = (),
) -> str:
    """The report; sections: the per-class and gallery parts (per_class_section, gallery_section)."""
    machine = bench["machine"]
    recommended = choice["variant"]
    columns = {
        "runtime": "runtime / variant",
        "size_mb": "size MiB",
        "accuracy": "test acc",
        "accuracy_vs_keras": f"vs Keras, pt [{verify.get('confidence', 0.95):.0%}]",
        "agreement": "top-1 agr",
        "p50_ms": "p50 ms",
        "p99_ms": "p99 ms",
        "throughput_img_s": "img/s",
        "cold_start_s": "cold s",
        "import_s": "import s",
        "load_s": "load s",
        "first_prediction_s": "1st pred s",
        "handler_cold_start_s": "handler cold s",
        "peak_rss_mb": "RSS MiB",
        "ops_outside_delegate": "ops off XNNPACK",
    }
    lines = [
        "# clothes-serverless report",
        "",
        f"Model: Xception at {bench['model']['input_size']} px, {bench['model']['gmacs']} G multiply-adds, "
        f"weights: **{info['weights']}** ({info['source']}), validation accuracy {info['val_accuracy']}.",
        f"Classes ({len(info['labels'])}, in the model's output order): {', '.join(info['labels'])}.",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads per runtime, "
        f"Python {machine['python']}; float32 matrix product peak {machine['matmul_gflops']} GFLOP/s.",
        "",
        f"{MARK} marks the recommended variant in every table and plot.",
        "",
        *main_table(table, columns, recommended),
        "",
        f"**Recommended: {MARK} {choice['variant']}** - {choice['reason']}.",
        "",
        *not_chosen_lines(choice),
        *(f"- {line}" for line in excluded_lines(verify)),
        *([""] if excluded_lines(verify) else []),
        "![Accuracy vs size](accuracy_vs_size.png)",
        "",
        "![Warm latency](latency.png)",
        "",
        "![Cold start](cold_start.png)",
        "",
        f"Runtime environment size: LiteRT + numpy + Pillow {bench['environment_mb']['litert']} MiB, "
        f"ONNX Runtime + numpy + Pillow {bench['environment_mb']['onnxruntime']} MiB, "
        f"TensorFlow {bench['environment_mb']['tensorflow']} MiB. The function carries only its variant's runtime.",
        "",
        *sections,
        "## Training",
        "",
        "![Training curves](training.png)",
        "",
        *targets,
        *cost_section(costs, handler, choice, c, d),
        "",
        "![What Lambda bills](cost.png)",
    ]
    return "\n".join(lines) + "\n"


def class_sections(predictions: pd.DataFrame, labels: list, variant: str) -> list:
    """The per-class scores (table, plot, per_class.csv for dvc plots) and the gallery of the recommended
    variant's mistakes (thumbnails in misclassified/, their paths in misclassified.csv)."""
    keras = per_class.model_scores(predictions, "keras", labels)
    chosen = per_class.model_scores(predictions, variant, labels)
    plot_per_class(keras, chosen, variant)
    long = pd.concat([keras.assign(model="keras"), chosen.assign(model=f"{variant} {MARK}")]).reset_index()
    long["bar"] = long["class"] + " · " + long["model"]  # dvc plots' bar_horizontal: one bar per class and model
    with files.atomic_path(OUT / "per_class.csv") as tmp:
        long[["bar", "class", "model", "precision", "recall", "f1", "support"]].round(4).to_csv(tmp, index=False)
    mistakes = per_class.misclassified(predictions, variant, GALLERY)
    thumbnails = per_class.write_thumbnails(mistakes, OUT / "misclassified")
    with files.atomic_path(OUT / "misclassified.csv") as tmp:
        mistakes.assign(thumbnail=thumbnails).to_csv(tmp, index=False)
    return [*per_class_section(keras, chosen, variant), *gallery_section(mistakes, thumbnails, variant)]


def main() -> None:
    p = params.load()
    for path in (paths.BENCH_TABLE, paths.BENCH_HANDLER, paths.VERIFY_METRICS, paths.RECOMMENDATION):
        if not Path(path).exists():
            raise cli.UserError(f"{path} not found: run the recommend stage first (dvc repro recommend)")
    bench = json.loads(Path(paths.BENCH_ENVIRONMENT).read_text())
    verify = json.loads(Path(paths.VERIFY_METRICS).read_text())
    info = json.loads(Path(paths.MODEL_INFO).read_text())
    choice = json.loads(Path(paths.RECOMMENDATION).read_text())
    rows = []
    for _, m in pd.read_csv(paths.BENCH_TABLE).iterrows():
        runtime, measured = m["runtime"], m.dropna().to_dict()
        v = verify[runtime]
        rows.append({**measured, "accuracy": v["accuracy"], "agreement": v.get("agreement", 1.0),
                     "accuracy_vs_keras": difference_cell(verify, runtime)})  # fmt: skip
    table = pd.DataFrame(rows)
    recommended = choice["variant"]
    plot_accuracy_vs_size(table, verify, recommended)
    plot_latency(table, bench["machine"]["threads"], recommended)
    plot_cold_start(table, recommended)
    predictions = dataset.read_labelled(paths.PREDICTIONS)
    labels = dataset.model_labels()
    confusion = plot_confusion(predictions, choice["variant"], labels)
    with files.atomic_path(OUT / "confusion.csv") as tmp:
        confusion.to_csv(tmp, index=False)
    sections = class_sections(predictions, labels, choice["variant"])
    history = pd.read_csv(paths.HISTORY)
    plot_training(history)
    # make tune's sweep, where one ran (git holds the table's header alone until then)
    tune = pd.read_csv(paths.TUNE_TABLE) if Path(paths.TUNE_TABLE).exists() else pd.DataFrame()
    costs = measured_costs(pd.read_csv(paths.COST), tune)
    plot_cost(costs, p.deploy, recommended)
    handler = pd.read_csv(paths.BENCH_HANDLER)
    on_targets = targets_section(pd.read_csv(paths.TARGETS_TABLE), p.convert.onnx_reduce_range, choice["variant"])
    report = markdown(table, bench, info, choice, costs, handler, p.cost, p.deploy, verify, on_targets, sections)
    files.write_text(OUT / "report.md", report)
    files.write_text(OUT / "report.html", report_html.page(report, OUT, title="clothes-serverless report"))
    files.write_text(OUT / "summary.txt", summary(table, choice, verify))
    print(report)


if __name__ == "__main__":
    cli.run(main)
