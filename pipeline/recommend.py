"""Stage recommend: which variant deploy ships, and what Lambda would charge for each - seconds of
arithmetic on the verify and bench results, so a new price or rule never re-runs a measurement."""

import json
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import cli, files, gates, params, paths
from pipeline.variants import bench_row, requirements
from pipeline.variants import model_path as variant_path
from pipeline.variants import runtime as runtime_of

PREFER = {"warm_p50": "p50_ms", "cold_start": "process_s", "size": "size_mb"}


def model_path(variant: str) -> str:
    return variant_path(variant).as_posix()


def recommend(results: pd.DataFrame, verify: dict, variants: list, r: params.Recommend) -> dict:
    """The variant with the lowest `prefer` measure among those that pass the gate, across runtimes
    (LiteRT and ONNX Runtime rows of one bench run); ties go to the earlier variant in convert.variants."""
    passing, rejected = [], []
    for variant in variants:
        excluded = verify.get("excluded", {}).get(variant)
        reasons = [f"excluded at verify: {excluded}"] if excluded else []
        reasons = reasons or gates.failures(verify, variant, r.max_accuracy_drop, r.min_agreement, "recommend")
        (rejected if reasons else passing).append((variant, reasons))
    if not passing:
        raise cli.UserError(
            "no variant passes recommend.max_accuracy_drop and recommend.min_agreement: "
            + "; ".join(reason for _, reasons in rejected for reason in reasons)
        )
    key = PREFER[r.prefer]
    variant = min((v for v, _ in passing), key=lambda v: results.loc[bench_row(v), key])
    value = results.loc[bench_row(variant), key]
    reason = (
        f"{variant} has the lowest {key} ({value:g}) among the variants within {r.max_accuracy_drop} accuracy of "
        f"Keras and at least {r.min_agreement} top-1 agreement (its drop: {gates.accuracy_drop(verify, variant)}, "
        f"agreement: {verify[variant]['agreement']})"
        + (f"; rejected: {', '.join(v for v, _ in rejected)}" if rejected else "")
    )
    return {
        "variant": variant,
        "model": model_path(variant),
        "runtime": runtime_of(variant),
        "requirements": requirements(variant),
        "reason": reason,
    }


def lambda_ms(one_thread_ms: float, many_threads_ms: float, memory_mb: int, mb_per_vcpu: int) -> float:
    """Latency at a Lambda memory size: CPU comes in proportion to memory (one vCPU at mb_per_vcpu).
    Below one vCPU the one-thread latency stretches by the missing share; from two vCPUs on, the
    measured multi-thread latency applies; between them, a straight line."""
    vcpus = memory_mb / mb_per_vcpu
    if vcpus < 1:
        return one_thread_ms / vcpus
    if vcpus >= 2:
        return many_threads_ms
    return one_thread_ms + (many_threads_ms - one_thread_ms) * (vcpus - 1)


def cost_table(results: pd.DataFrame, c: params.Cost) -> pd.DataFrame:
    """Estimated p50 and cost per million predictions at each memory size; billed per 1 ms."""
    rows = []
    for runtime, m in results.dropna(subset=["p50_1_thread_ms"]).iterrows():
        for memory in c.memory_mb:
            ms = lambda_ms(m["p50_1_thread_ms"], m["p50_ms"], memory, c.mb_per_vcpu)
            gb_seconds = memory / 1024 * np.ceil(ms) / 1000
            per_million = 1e6 * gb_seconds * c.price_per_gb_second + c.price_per_million_requests
            rows.append(
                {
                    "runtime": runtime,
                    "memory_mb": memory,
                    "est_p50_ms": round(ms, 1),
                    "est_usd_per_million": round(per_million, 2),
                }
            )
    return pd.DataFrame(rows)


def main() -> None:
    p = params.load()
    for path in (paths.VERIFY_METRICS, paths.BENCH_TABLE):
        if not Path(path).exists():
            raise cli.UserError(f"{path} not found: run the verify and bench stages first (dvc repro bench)")
    verify = json.loads(Path(paths.VERIFY_METRICS).read_text())
    results = pd.read_csv(paths.BENCH_TABLE).set_index("runtime")
    choice = recommend(results, verify, p.convert.variants, p.recommend)
    files.write_json(paths.RECOMMENDATION, choice)
    with files.atomic_path(paths.COST) as tmp:
        cost_table(results, p.cost).to_csv(tmp, index=False)
    print(f"recommended: {choice['variant']} - {choice['reason']}")


if __name__ == "__main__":
    cli.run(main)
