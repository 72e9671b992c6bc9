"""The one rule for "is this variant good enough": verify fails the stage on it (or excludes the
variant: verify.on_gate_failure) with its own thresholds, recommend ships only variants that pass it
with stricter ones."""

from pipeline import params
from pipeline.cli import UserError


def failures(verify: dict, variant: str, max_accuracy_drop: float, min_agreement: float, section: str) -> list[str]:
    """Why variant fails the rule against Keras (verify.json's numbers); empty if it passes."""
    m, keras_accuracy = verify[variant], verify["keras"]["accuracy"]
    reasons = []
    if m["agreement"] < min_agreement:
        reasons.append(f"{variant}: top-1 agreement {m['agreement']} < {section}.min_agreement {min_agreement}")
    drop = accuracy_drop(verify, variant)
    if drop > max_accuracy_drop:
        reasons.append(
            f"{variant}: accuracy {m['accuracy']} is {drop} below Keras ({keras_accuracy}), "
            f"more than {section}.max_accuracy_drop {max_accuracy_drop}"
        )
    return reasons


def accuracy_drop(verify: dict, variant: str) -> float:
    return round(verify["keras"]["accuracy"] - verify[variant]["accuracy"], 4)


def kept(variants: list, verify: dict) -> list:
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
    if reasons and (v.on_gate_failure == "stop" or not kept(names, metrics)):
        why = "" if kept(names, metrics) else " (no variant passes: verify.on_gate_failure exclude leaves none)"
        raise UserError(f"verification failed{why}:\n  " + "\n  ".join(reasons))
