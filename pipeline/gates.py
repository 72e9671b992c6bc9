"""The one rule for "is this variant good enough": verify fails the stage on it (or excludes the
variant: verify.on_gate_failure) with its own thresholds, recommend ships only variants that pass it
with stricter ones.

Accuracy is judged on the photos where the variant and Keras differ (docs/gates.md): a variant fails
only when its accuracy difference's interval lies wholly below -max_accuracy_drop, never because a
point estimate of a few photos crosses it. Agreement stays a plain threshold."""

import functools
import math

from pipeline import params
from pipeline.cli import UserError


def failures(verify: dict, variant: str, max_accuracy_drop: float, min_agreement: float, section: str) -> list[str]:
    """Why variant fails the rule against Keras (verify.json's numbers); empty if it passes."""
    m, keras_accuracy = verify[variant], verify["keras"]["accuracy"]
    reasons = []
    if m["agreement"] < min_agreement:
        reasons.append(f"{variant}: top-1 agreement {m['agreement']} < {section}.min_agreement {min_agreement}")
    low, high = m["accuracy_diff_low"], m["accuracy_diff_high"]
    if high < -max_accuracy_drop:
        reasons.append(
            f"{variant}: accuracy {m['accuracy']} is {accuracy_drop(verify, variant)} below Keras ({keras_accuracy}) "
            f"and its {verify['confidence']:.0%} interval on the difference [{low:+.4f}, {high:+.4f}] "
            f"({m['keras_only']} photos only Keras gets right, {m['variant_only']} only the variant) lies wholly "
            f"below -{section}.max_accuracy_drop {max_accuracy_drop}"
        )
    return reasons


def accuracy_drop(verify: dict, variant: str) -> float:
    return round(verify["keras"]["accuracy"] - verify[variant]["accuracy"], 4)


def paired(keras_right, variant_right, photos: int, confidence: float) -> dict:
    """The paired comparison of a variant with Keras on the same photos (boolean arrays: right or not).
    Only discordant photos carry information on the difference; see accuracy_interval."""
    keras_only = int((keras_right & ~variant_right).sum())
    variant_only = int((~keras_right & variant_right).sum())
    low, high = accuracy_interval(keras_only, variant_only, photos, confidence)
    return {
        "keras_only": keras_only,
        "variant_only": variant_only,
        "accuracy_diff": round((variant_only - keras_only) / photos, 4),
        "accuracy_diff_low": low,  # the interval's ends (verify.confidence), scalars for dvc metrics
        "accuracy_diff_high": high,
    }


@functools.cache
def accuracy_interval(keras_only: int, variant_only: int, photos: int, confidence: float) -> tuple[float, float]:
    """Interval on (variant accuracy - Keras accuracy), exact binomial on the discordant photos: of
    the n = keras_only + variant_only photos where exactly one of the two is right, the variant's
    share p has the Clopper-Pearson interval [p_lo, p_hi], and the difference is n * (2p - 1) / photos.
    Conditional on n (the observed discordance rate), as in the exact McNemar test."""
    n = keras_only + variant_only
    p_lo, p_hi = clopper_pearson(variant_only, n, confidence)
    return round(n * (2 * p_lo - 1) / photos, 4) + 0.0, round(n * (2 * p_hi - 1) / photos, 4) + 0.0  # no -0.0


def clopper_pearson(k: int, n: int, confidence: float) -> tuple[float, float]:
    """The exact two-sided interval for a binomial proportion, k successes of n: each end is where the
    tail beyond k holds (1 - confidence) / 2."""
    if n == 0:
        return 0.0, 1.0
    tail = (1 - confidence) / 2
    low = 0.0 if k == 0 else _solve(lambda p: _at_least(k, n, p) - tail)  # rises with p
    high = 1.0 if k == n else _solve(lambda p: _at_least(k + 1, n, p) - (1 - tail))  # P(X <= k) = tail
    return low, high


def _at_least(k: int, n: int, p: float) -> float:
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k, n + 1))


def _solve(rising) -> float:
    """The root in [0, 1] of a function rising with p (bisection: 60 halvings is below 1e-15)."""
    low, high = 0.0, 1.0
    for _ in range(60):
        middle = (low + high) / 2
        low, high = (middle, high) if rising(middle) < 0 else (low, middle)
    return (low + high) / 2


def not_excluded(variants: list, verify: dict) -> list:
    """The variants verify did not exclude (verify.on_gate_failure: exclude): the ones bench measures,
    recommend chooses from and deploy may ship."""
    return [v for v in variants if v not in verify.get("excluded", {})]


def verify_failures(metrics: dict, names: list, v: params.Verify) -> list[str]:
    return [
        reason for name in names for reason in failures(metrics, name, v.max_accuracy_drop, v.min_agreement, "verify")
    ]


def excluded(metrics: dict, names: list, v: params.Verify) -> dict:
    """on_gate_failure exclude: each failing variant with why (verify.json's "excluded", written only
    when there are any, so a run where all pass keeps its metrics' keys); stop: none."""
    if v.on_gate_failure != "exclude":
        return {}
    return {name: "; ".join(reasons) for name in names if (reasons := verify_failures(metrics, [name], v))}


def check(metrics: dict, names: list, v: params.Verify) -> None:
    """stop: any failure fails the verify stage; exclude: only when no variant is left to go on with."""
    reasons = verify_failures(metrics, names, v)
    if reasons and (v.on_gate_failure == "stop" or not not_excluded(names, metrics)):
        why = "" if not_excluded(names, metrics) else " (no variant passes: verify.on_gate_failure exclude leaves none)"
        raise UserError(f"verification failed{why}:\n  " + "\n  ".join(reasons))
