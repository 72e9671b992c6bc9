"""Stage report: PNG plots (they render offline, unlike `dvc plots show`'s CDN-loaded vega) and a
Markdown report with one table of every variant and runtime."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline import cli, cost, dataset, files, params, paths, variants  # noqa: E402

OUT = Path(paths.REPORT_DIR)


def save(fig, name: str) -> None:
    with files.atomic_path(OUT / name) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def plot_accuracy_vs_size(table: pd.DataFrame) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.scatter(table["size_mb"], table["accuracy"] * 100)
    for _, row in table.iterrows():
        ax.annotate(
            row["runtime"],
            (row["size_mb"], row["accuracy"] * 100),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    ax.set(xlabel="model file (MiB)", ylabel="test accuracy (%)", title="Accuracy vs size")
    save(fig, "accuracy_vs_size.png")


def plot_latency(table: pd.DataFrame, threads: int) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    y = np.arange(len(table))
    ax.barh(y, table["p50_ms"], label="p50")
    ax.errorbar(table["p99_ms"], y, fmt="|", color="k", label="p99")
    ax.set_yticks(y, table["runtime"])
    ax.set(xlabel="ms per image (batch 1)", title=f"Warm latency, {threads} threads")
    ax.legend()
    save(fig, "latency.png")


def plot_cold_start(table: pd.DataFrame) -> None:
    fig, ax = plt.subplots(figsize=(7, 4))
    left = np.zeros(len(table))
    for part in ("import_s", "load_s", "first_prediction_s"):
        ax.barh(table["runtime"], table[part], left=left, label=part.removesuffix("_s").replace("_", " "))
        left += table[part].to_numpy()
    ax.set(xlabel="seconds in a fresh process", title="Cold start")
    ax.legend()
    save(fig, "cold_start.png")


def plot_confusion(predictions: pd.DataFrame, variant: str, labels: list) -> pd.DataFrame:
    """labels: the model's, in its output order (rows and columns of the matrix)."""
    rows = predictions[predictions["model"] == variant]
    matrix = pd.crosstab(pd.Categorical(rows["label"], labels), pd.Categorical(rows["predicted"], labels), dropna=False)
    fig, ax = plt.subplots(figsize=(max(4, 0.6 * len(labels)), max(3.5, 0.5 * len(labels))))
    ax.imshow(matrix.to_numpy(), cmap="Blues")
    for (i, j), n in np.ndenumerate(matrix.to_numpy()):
        ax.text(j, i, n, ha="center", va="center", fontsize=7)
    ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right")
    ax.set_yticks(range(len(labels)), labels)
    ax.set(xlabel="predicted", ylabel="actual", title=f"Confusion matrix, {variant} (test split)")
    save(fig, "confusion.png")
    return rows[["label", "predicted"]].rename(columns={"label": "actual"})


def plot_training(history: pd.DataFrame) -> None:
    fig, ax = plt.subplots(figsize=(6, 4))
    if not history.empty:
        ax.plot(history["epoch"], history["accuracy"], label="train (augmented)")
        ax.plot(history["epoch"], history["val_accuracy"], label="validation")
        if "size" in history and history["size"].nunique() > 1:  # progressive resizing: mark each size
            for _, first in history.drop_duplicates("size").iterrows():
                ax.axvline(first["epoch"] - 0.5, color="grey", linewidth=0.5)
                ax.text(first["epoch"] - 0.4, 0.05, f"{first['size']} px", fontsize=7, color="grey")
        ax.legend()
    ax.set(xlabel="epoch", ylabel="accuracy", title="Training curves" if not history.empty else "Loaded model")
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
    side = side.rename(columns=names)
    at = costs[costs["memory_mb"] == d.memory_mb].drop(columns=["photo", "memory_mb"])
    measured = (costs["source"] == "make tune").any()
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
        costs[costs["architecture"] == d.architecture].drop(columns=["photo"]).to_markdown(index=False, floatfmt="g"),
    ]
    return lines


def door_lines(costs: pd.DataFrame, choice: dict, d: params.Deploy) -> list:
    """What each front door costs per million for the recommended variant, at the deploy's memory and
    architecture: the sentence a reader looks for first."""
    runtime = variants.bench_row(choice["variant"])
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


def plot_cost(costs: pd.DataFrame, d: params.Deploy) -> None:
    """Where each dollar goes at the deploy's memory size and architecture, per runtime, behind each
    front door side by side (one bar each)."""
    at = costs[(costs["memory_mb"] == d.memory_mb) & (costs["architecture"] == d.architecture)]
    if "door" in at:
        at = at.sort_values(["runtime", "door"], kind="stable")
        labels = at["runtime"] + " · " + at["door"].str.replace("_", " ")
    else:
        labels = at["runtime"]
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(at) + 1.5))
    left = np.zeros(len(at))
    for part in cost.PARTS:
        ax.barh(labels, at[part], left=left, label=part.removeprefix("usd_"))
        left += at[part].to_numpy()
    ax.set(xlabel="USD per million requests", title=f"What Lambda bills, {d.memory_mb} MB {d.architecture}")
    ax.legend()
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


def targets_section(targets: pd.DataFrame, reduce_range: bool) -> list:
    """Each variant on each of Lambda's CPUs (the targets stage): its answers against the build machine's."""
    lines = ["## Lambda's CPUs (the targets stage, docs/targets.md)", ""]
    if targets.empty:
        return [*lines, "No target CPU checked (targets.architectures is empty).", ""]
    shown = targets.assign(
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
    shown = table[list(SUMMARY_COLUMNS)].rename(columns=SUMMARY_COLUMNS)
    return "\n".join([shown.to_string(index=False), *excluded_lines(verify), f"recommended: {choice['variant']}", ""])


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
) -> str:
    machine = bench["machine"]
    columns = {
        "runtime": "runtime / variant",
        "size_mb": "size MiB",
        "accuracy": "test acc",
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
    shown = table[[c for c in columns if c in table]].rename(columns=columns)
    lines = [
        "# clothes-serverless report",
        "",
        f"Model: Xception at {bench['model']['input_size']} px, {bench['model']['gmacs']} G multiply-adds, "
        f"weights: **{info['weights']}** ({info['source']}), validation accuracy {info['val_accuracy']}.",
        f"Classes ({len(info['labels'])}, in the model's output order): {', '.join(info['labels'])}.",
        f"Machine: {machine['cpu']}, {machine['cores']} cores, {machine['threads']} threads per runtime, "
        f"Python {machine['python']}; float32 matrix product peak {machine['matmul_gflops']} GFLOP/s.",
        "",
        shown.to_markdown(index=False, floatfmt="g"),
        "",
        f"**Recommended: {choice['variant']}** - {choice['reason']}.",
        "",
        *(f"- {line}" for line in excluded_lines(verify)),
        *([""] if excluded_lines(verify) else []),
        f"Runtime environment size: LiteRT + numpy + Pillow {bench['environment_mb']['litert']} MiB, "
        f"ONNX Runtime + numpy + Pillow {bench['environment_mb']['onnxruntime']} MiB, "
        f"TensorFlow {bench['environment_mb']['tensorflow']} MiB. The function carries only its variant's runtime.",
        "",
        *targets,
        *cost_section(costs, handler, choice, c, d),
        "",
        "Plots: accuracy_vs_size.png, latency.png, cold_start.png, confusion.png, training.png, cost.png.",
    ]
    return "\n".join(lines) + "\n"


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
        v = verify["keras" if runtime == "keras" else variants.variant_of_row(runtime)]
        rows.append({**measured, "accuracy": v["accuracy"], "agreement": v.get("agreement", 1.0)})
    table = pd.DataFrame(rows)
    plot_accuracy_vs_size(table)
    plot_latency(table, bench["machine"]["threads"])
    plot_cold_start(table)
    predictions = dataset.read_labelled(paths.PREDICTIONS)
    confusion = plot_confusion(predictions, choice["variant"], dataset.model_labels())
    with files.atomic_path(OUT / "confusion.csv") as tmp:
        confusion.to_csv(tmp, index=False)
    history = pd.read_csv(paths.HISTORY)
    plot_training(history)
    # make tune's sweep, where one ran (git holds the table's header alone until then)
    tune = pd.read_csv(paths.TUNE_TABLE) if Path(paths.TUNE_TABLE).exists() else pd.DataFrame()
    costs = measured_costs(pd.read_csv(paths.COST), tune)
    plot_cost(costs, p.deploy)
    handler = pd.read_csv(paths.BENCH_HANDLER)
    on_targets = targets_section(pd.read_csv(paths.TARGETS_TABLE), p.convert.onnx_reduce_range)
    report = markdown(table, bench, info, choice, costs, handler, p.cost, p.deploy, verify, on_targets)
    files.write_text(OUT / "report.md", report)
    files.write_text(OUT / "summary.txt", summary(table, choice, verify))
    print(report)


if __name__ == "__main__":
    cli.run(main)
