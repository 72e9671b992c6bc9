"""Stage recommend: which variant deploy ships, and what Lambda would charge for each - seconds of
arithmetic on the verify and bench results, so a new price or rule never re-runs a measurement."""

import json
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline import cli, cost, files, gates, params, paths, release
from pipeline.variants import model_path as variant_path
from pipeline.variants import requirements
from pipeline.variants import runtime as runtime_of

PREFER = {"warm_p50": "p50_ms", "cold_start": "process_s", "size": "size_mb", "cost": "usd_per_million"}


def model_path(variant: str) -> str:
    return variant_path(variant).as_posix()


def on_target(targets: dict, architecture: str) -> dict:
    """The targets stage's outcome for the deploy's architecture (targets.json), its name added; a target
    it left out (targets.architectures) is unchecked, not failed."""
    left_out = {"checked": False, "unchecked": "targets.architectures leaves it out", "excluded": {}}
    return {"architecture": architecture, **targets.get(architecture, left_out)}


def recommend(
    results: pd.DataFrame, verify: dict, variants: list, r: params.Recommend, target: "dict | None" = None
) -> dict:
    """The variant with the lowest `prefer` measure among those that pass the gate, across runtimes
    (LiteRT and ONNX Runtime rows of one bench run); ties go to the earlier variant in convert.variants.
    target (on_target): a variant whose answers change on the deploy's architecture's CPU is rejected."""
    target = target or {}
    passing, rejected = judge(verify, variants, r, target)
    if not passing:
        raise cli.UserError(
            "no variant passes recommend.max_accuracy_drop and recommend.min_agreement: "
            + "; ".join(reason for _, reasons in rejected for reason in reasons)
        )
    key = PREFER[r.prefer]
    variant = fastest(results, [v for v, _ in passing], key)
    value, m = results.loc[variant, key], verify[variant]
    reason = (
        f"{variant} has the lowest {key} ({value:g}) among the variants not shown to lose more than "
        f"{r.max_accuracy_drop} accuracy against Keras and with at least {r.min_agreement} top-1 agreement "
        f"(its difference: {m['accuracy_diff']:+g} [{m['accuracy_diff_low']:+g}, {m['accuracy_diff_high']:+g}], "
        f"agreement: {m['agreement']})" + (f"; rejected: {', '.join(v for v, _ in rejected)}" if rejected else "")
    )
    if target.get("checked"):
        reason += f"; answers the same on {target['architecture']} ({target['cpu']}, targets stage)"
    elif target:
        reason += f"; unchecked on {target['architecture']}: {target['unchecked']}"
    why_not = {v: "; ".join(r.removeprefix(f"{v}: ") for r in reasons) for v, reasons in rejected}
    why_not |= {v: lost_to(results, v, variant, key) for v, _ in passing if v != variant}
    return {
        "variant": variant,
        "model": model_path(variant),
        "runtime": runtime_of(variant),
        "requirements": requirements(variant),
        "reason": reason,
        "not_chosen": {v: why_not[v] for v in variants if v in why_not},  # the report's "why not the others"
    }


def lost_to(results: pd.DataFrame, variant: str, chosen: str, key: str) -> str:
    """Why a variant that passes the gate was not chosen: its prefer measure beside the choice's (and its
    size, where size is not what decided)."""
    mine, theirs = results.loc[variant, key], results.loc[chosen, key]
    if mine == theirs:
        why = f"passes the gate; its {key} ties {chosen}'s ({mine:g}): the tie goes to the earlier in convert.variants"
    else:
        why = f"passes the gate, but its {key} is {mine:g} against {chosen}'s {theirs:g} ({mine / theirs:.2f}x)"
    if key != "size_mb" and "size_mb" in results:
        size, chosen_size = results.loc[variant, "size_mb"], results.loc[chosen, "size_mb"]
        why += f"; {size:g} MiB against {chosen_size:g}"
    return why


def judge(verify: dict, variants: list, r: params.Recommend, target: dict) -> tuple[list, list]:
    """(passing, rejected): each variant with the reasons it may not ship (none for the passing ones)."""
    passing, rejected = [], []
    for variant in variants:
        excluded = verify.get("excluded", {}).get(variant)
        reasons = [f"excluded at verify: {excluded}"] if excluded else []
        if not reasons and variant in target.get("excluded", {}):
            where = f"{target['architecture']} ({target['cpu']})"
            reasons = [f"{variant}: excluded on {where} by the targets stage: {target['excluded'][variant]}"]
        reasons = reasons or gates.failures(verify, variant, r.max_accuracy_drop, r.min_agreement, "recommend")
        (rejected if reasons else passing).append((variant, reasons))
    return passing, rejected


def fastest(results: pd.DataFrame, passing: list, key: str) -> str:
    """The lowest key among the passing variants; a tie goes to the earlier one (min keeps the first)."""
    return min(passing, key=lambda v: results.loc[v, key])


def photo_answers(predictions: pd.DataFrame) -> tuple[dict, dict]:
    """From verify's predictions.csv: per model, which test photos it gets right, and per variant, on
    which it answers as Keras does (boolean arrays, one order of photos)."""
    predicted = predictions.pivot(index="path", columns="model", values="predicted")
    label = predictions.drop_duplicates("path").set_index("path")["label"].loc[predicted.index]
    right = {m: (predicted[m] == label).to_numpy() for m in predicted.columns}
    agrees = {m: (predicted[m] == predicted["keras"]).to_numpy() for m in predicted.columns}
    return right, agrees


def resampled(verify: dict, right: dict, agrees: dict, photos, variants: list) -> dict:
    """verify.json's gate numbers recomputed on a resample of the photos (an index array, repeats
    allowed); verify's exclusions stay as they were."""
    n, confidence = len(photos), verify["confidence"]
    keras_right = right["keras"][photos]
    again = {"keras": {"accuracy": round(float(keras_right.mean()), 4)}, "confidence": confidence}
    for variant in variants:
        mine = right[variant][photos]
        again[variant] = {
            "accuracy": round(float(mine.mean()), 4),
            "agreement": round(float(agrees[variant][photos].mean()), 4),
            **gates.paired(keras_right, mine, n, confidence),
        }
    return again | ({"excluded": verify["excluded"]} if "excluded" in verify else {})


def stability(
    results: pd.DataFrame, verify: dict, predictions: pd.DataFrame, variants: list, r: params.Recommend, target: dict
) -> dict:
    """How often the same rule on the same predictions picks each variant when the test photos are
    resampled with replacement (recommend.bootstrap_resamples, bootstrap_seed); "none" where no variant
    passes. Bench's measures stay as measured: only the photos are resampled."""
    right, agrees = photo_answers(predictions)
    count = len(right["keras"])
    rng = np.random.default_rng(r.bootstrap_seed)
    picks = Counter()
    for _ in range(r.bootstrap_resamples):
        passing, _ = judge(
            resampled(verify, right, agrees, rng.integers(0, count, count), variants), variants, r, target
        )
        picks[fastest(results, [v for v, _ in passing], PREFER[r.prefer]) if passing else "none"] += 1
    return {"resamples": r.bootstrap_resamples, "seed": r.bootstrap_seed, "picks": dict(picks.most_common())}


def stability_note(variant: str, stable: dict, r: params.Recommend) -> str:
    """The reason's last words: stable, or within noise and what then decided."""
    share = stable["picks"].get(variant, 0) / stable["resamples"]
    said = (
        f"the same rule picks {variant} in {share:.1%} of {stable['resamples']} bootstrap resamples of the test photos"
    )
    if share >= r.stable_share:
        return f"; stable: {said}"
    others = ", ".join(f"{v} {n / stable['resamples']:.1%}" for v, n in stable["picks"].items() if v != variant)
    return (
        f"; within noise: {said} (others: {others}), under recommend.stable_share {r.stable_share}; "
        f"decided by recommend.prefer {r.prefer} ({PREFER[r.prefer]}), a tie by the earlier in convert.variants"
    )


def cost_table(
    handler: pd.DataFrame, results: pd.DataFrame, c: params.Cost, deploy_memory_mb: int, snapstart: bool = False
) -> pd.DataFrame:
    """USD per million requests for each runtime, architecture and memory size (cost.memory_mb and the
    deploy's), by part. The duration is the handler's end-to-end p50 on cost.photo (bench's handler
    table: event in, JSON out), one-thread and multi-thread, scaled to the CPU share of each memory
    size; init is the handler's cold start (a fresh process to its first answer) at that share. Each
    row once per front door (cost.DOORS): the HTTP API bills the photo's base64 body in 512 KB steps, a
    function URL nothing; both pay the log bytes bench measured per request (and Lambda's own lines)."""
    rows = []
    photos = handler[handler["photo"] == c.photo]
    if "log_bytes" not in photos:
        raise cli.UserError(f"{paths.BENCH_HANDLER} has no log_bytes (an older bench): run the bench stage again")
    for runtime, timed in photos.groupby("runtime", sort=False):
        by_threads = timed.set_index("threads")
        one, many = by_threads["p50_ms"].loc[by_threads.index.min()], by_threads["p50_ms"].loc[by_threads.index.max()]
        cold_ms = results.loc[runtime, "handler_cold_start_s"] * 1000
        body = cost.base64_bytes(int(timed["bytes"].iloc[0]))  # the photo as client.py sends it
        logged = int(by_threads["log_bytes"].max())
        for architecture in cost.ARCHITECTURES:
            for memory in sorted({*c.memory_mb, deploy_memory_mb}):
                ms = cost.lambda_ms(one, many, memory, c.mb_per_vcpu)
                init_ms = cost.lambda_ms(cold_ms, cold_ms, memory, c.mb_per_vcpu)
                for door in cost.DOORS:
                    rows.append(
                        {
                            "runtime": runtime,
                            "architecture": architecture,
                            "memory_mb": memory,
                            "door": door,
                            "photo": c.photo,
                            "body_bytes": body,
                            "log_bytes": cost.log_bytes(logged),
                            "latency": "measured" if architecture == "x86_64" else "x86's, unmeasured",
                            "est_ms": round(ms, 2),
                            "billed_ms": cost.billed_ms(ms),
                            "init_ms": round(init_ms, 1),
                            **cost.per_million(ms, init_ms, memory, architecture, c, door, body, logged, snapstart),
                        }
                    )
    return pd.DataFrame(rows)


def deploy_costs(table: pd.DataFrame, d: params.Deploy) -> pd.Series:
    """USD per million per runtime row at the deploy's memory size, architecture and front door: what
    prefer: cost ranks."""
    at = table[(table["memory_mb"] == d.memory_mb) & (table["architecture"] == d.architecture)]
    at = at[at["door"] == d.endpoint]
    return at.set_index("runtime")["usd_per_million"]


def headline(variant: str, verify: dict, results: pd.DataFrame) -> dict:
    """The numbers `dvc metrics show` prints and `dvc metrics diff` compares between runs: the shipped
    variant's, one row a terminal's width (every other number is in the stages' JSON and CSV files)."""
    row = results.loc[variant]
    return {
        "variant": variant,
        "accuracy": round(float(verify[variant]["accuracy"]), 4),  # on the test photos; Keras' is in verify.json
        "agreement": round(float(verify[variant]["agreement"]), 4),  # top-1 agreement with Keras
        "p50_ms": round(float(row["p50_ms"]), 2),
        "cold_start_s": round(float(row["cold_start_s"]), 3),
        "size_mb": round(float(row["size_mb"]), 2),
        "usd_million": round(float(row["usd_per_million"]), 3),  # at deploy.memory_mb and architecture
    }


def main() -> None:
    p = params.load()
    for path in (paths.VERIFY_METRICS, paths.PREDICTIONS, paths.BENCH_TABLE, paths.BENCH_HANDLER, paths.TARGETS):
        if not Path(path).exists():
            raise cli.UserError(f"{path} not found: run the verify, targets and bench stages first (dvc repro bench)")
    verify = json.loads(Path(paths.VERIFY_METRICS).read_text())
    results = pd.read_csv(paths.BENCH_TABLE).set_index("runtime")
    costs = cost_table(pd.read_csv(paths.BENCH_HANDLER), results, p.cost, p.deploy.memory_mb, p.deploy.snapstart)
    results["usd_per_million"] = deploy_costs(costs, p.deploy)  # Keras has no handler row: NaN, never shipped
    target = on_target(json.loads(Path(paths.TARGETS).read_text()), p.deploy.architecture)
    choice = recommend(results, verify, p.convert.variants, p.recommend, target)
    predictions = pd.read_csv(paths.PREDICTIONS, keep_default_na=False)  # a class named NA stays a name
    choice["stability"] = stability(results, verify, predictions, p.convert.variants, p.recommend, target)
    choice["reason"] += stability_note(choice["variant"], choice["stability"], p.recommend)
    files.write_json(paths.RECOMMENDATION, choice)
    targets = json.loads(Path(paths.TARGETS).read_text())
    release.write(release.describe(choice["variant"], p.convert.variants, verify, targets, release.read_predictions()))
    files.write_json(paths.HEADLINE, headline(choice["variant"], verify, results))
    with files.atomic_path(paths.COST) as tmp:
        costs.to_csv(tmp, index=False)
    print(f"recommended: {choice['variant']} - {choice['reason']}")


if __name__ == "__main__":
    cli.run(main)
