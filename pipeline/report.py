"""Stage report: PNG plots (they render offline, unlike `dvc plots show`'s CDN-loaded vega) and a
Markdown report with one table of every variant and runtime."""

import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline import cli, dataset, files, params, paths, variants  # noqa: E402

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


def summary(table: pd.DataFrame, choice: dict, verify: dict) -> str:
    """The few numbers a person compares between runs, narrow enough for a terminal (make all ends with it)."""
    shown = table[list(SUMMARY_COLUMNS)].rename(columns=SUMMARY_COLUMNS)
    return "\n".join([shown.to_string(index=False), *excluded_lines(verify), f"recommended: {choice['variant']}", ""])


def markdown(
    table: pd.DataFrame, bench: dict, info: dict, choice: dict, cost: pd.DataFrame, mb_per_vcpu: int, verify: dict
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
        "## Lambda cost estimate",
        "",
        "An **estimate**, not a measurement on Lambda: latency from this machine's one-thread and "
        "multi-thread p50, scaled by the CPU share Lambda gives at each memory size (one vCPU at "
        f"{mb_per_vcpu:,} MB, `cost.mb_per_vcpu`), billed per 1 ms at the list prices in params.yaml (`cost`).",
        "",
        cost.to_markdown(index=False),
        "",
        "Plots: accuracy_vs_size.png, latency.png, cold_start.png, confusion.png, training.png.",
    ]
    return "\n".join(lines) + "\n"


def main() -> None:
    p = params.load()
    for path in (paths.BENCH_TABLE, paths.VERIFY_METRICS, paths.RECOMMENDATION):
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
    predictions = pd.read_csv(paths.PREDICTIONS, dtype={"label": str, "predicted": str})
    confusion = plot_confusion(predictions, choice["variant"], dataset.model_labels())
    with files.atomic_path(OUT / "confusion.csv") as tmp:
        confusion.to_csv(tmp, index=False)
    history = pd.read_csv(paths.HISTORY)
    plot_training(history)
    report = markdown(table, bench, info, choice, pd.read_csv(paths.COST), p.cost.mb_per_vcpu, verify)
    files.write_text(OUT / "report.md", report)
    files.write_text(OUT / "summary.txt", summary(table, choice, verify))
    print(report)


if __name__ == "__main__":
    cli.run(main)
