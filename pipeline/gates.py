"""The one rule for "is this variant good enough": verify fails the stage on it with its own
thresholds, recommend ships only variants that pass it with stricter ones."""


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
