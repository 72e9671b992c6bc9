"""The accuracy gates on the paired difference (docs/gates.md), on hand-made prediction tables of 372
photos (the full run's test split), and the bootstrap of the recommendation. Expectations come from
closed forms and direct binomial sums written here, not from pipeline/gates.py."""

import math

import numpy as np
import pandas as pd
import pytest

from pipeline import gates, recommend, verify
from pipeline.params import Recommend

PHOTOS, CLASSES = 372, 10


@pytest.fixture(autouse=True)
def fresh_intervals():
    """accuracy_interval keeps its answers for the process: mutmut forks each mutant's run from a process
    that already ran these tests, so a kept interval would hide any change to clopper_pearson and the
    functions under it (docs/mutation.md). Each test computes its intervals afresh."""
    gates.accuracy_interval.cache_clear()


def table(keras_only: int, variant_only: int, both_wrong_apart: int = 0):
    """(labels, Keras' probabilities, the variant's): Keras right on 300 photos; the variant differs on
    keras_only photos Keras gets right, variant_only photos it gets wrong, and both_wrong_apart photos
    both get wrong with different answers (a disagreement that changes no accuracy)."""
    labels = np.arange(PHOTOS) % CLASSES
    keras_answer = labels.copy()
    keras_answer[300:] = (labels[300:] + 1) % CLASSES  # Keras wrong on the last 72
    answer = keras_answer.copy()
    answer[:keras_only] = (labels[:keras_only] + 1) % CLASSES
    answer[300 : 300 + variant_only] = labels[300 : 300 + variant_only]
    apart = slice(300 + variant_only, 300 + variant_only + both_wrong_apart)
    answer[apart] = (labels[apart] + 2) % CLASSES
    return labels, np.eye(CLASSES)[keras_answer], np.eye(CLASSES)[answer]


def compared(keras_only: int, variant_only: int, both_wrong_apart: int = 0) -> dict:
    labels, keras_probs, probs = table(keras_only, variant_only, both_wrong_apart)
    m = verify.compare(keras_probs, probs, labels, 0.95)
    return {"keras": {"accuracy": round(300 / PHOTOS, 4)}, "v": m, "confidence": 0.95, "test_images": PHOTOS}


def at_most(k: int, n: int, p: float) -> float:
    """P(X <= k) for X ~ Binomial(n, p), summed term by term."""
    return sum(math.comb(n, i) * p**i * (1 - p) ** (n - i) for i in range(k + 1))


def test_three_photos_net_of_372_with_four_disagreements_passes():
    """The full run of 2026-12-07's full int8: -0.81 pt (3 photos only Keras gets right, none the other
    way, one more photo both get wrong differently: agreement 368/372), over the 0.5 pt tolerance as a
    point estimate, but nothing says the loss is real."""
    metrics = compared(3, 0, both_wrong_apart=1)
    m = metrics["v"]
    assert (m["keras_only"], m["variant_only"], m["agreement"]) == (3, 0, round(368 / 372, 4))
    assert m["accuracy_diff"] == round(-3 / 372, 4) == -0.0081
    # All 3 discordant photos went Keras' way: the variant's share p has the exact interval [0, 1 - 0.025^(1/3)].
    p_high = 1 - 0.025 ** (1 / 3)
    assert at_most(0, 3, p_high) == pytest.approx(0.025)
    assert m["accuracy_diff_low"] == round(-3 / 372, 4)
    assert m["accuracy_diff_high"] == round(3 * (2 * p_high - 1) / 372, 4) == 0.0033
    assert gates.failures(metrics, "v", 0.005, 0.97, "recommend") == []
    assert gates.failures(metrics, "v", 0.02, 0.95, "verify") == []


def test_eleven_photos_net_of_372_with_fifteen_discordant_fails_recommend_not_verify():
    metrics = compared(13, 2)
    m = metrics["v"]
    assert (m["keras_only"], m["variant_only"], m["accuracy_diff"]) == (13, 2, round(-11 / 372, 4))
    low, high = m["accuracy_diff_low"], m["accuracy_diff_high"]
    # Back from the difference to the variant's share of the 15 discordant photos: each end leaves 2.5% in
    # its tail, by a direct binomial sum (P(X >= 2) at the low end, P(X <= 2) at the high end).
    p_low, p_high = (low * 372 / 15 + 1) / 2, (high * 372 / 15 + 1) / 2
    assert 1 - at_most(1, 15, p_low) == pytest.approx(0.025, abs=0.0015)  # the ends are rounded to 4 decimals
    assert at_most(2, 15, p_high) == pytest.approx(0.025, abs=0.0015)
    assert (low, high) == (-0.039, -0.0077)
    [reason] = gates.failures(metrics, "v", 0.005, 0.95, "recommend")  # agreement 357/372 = 0.9597
    assert reason == (
        "v: accuracy 0.7769 is 0.0296 below Keras (0.8065) and its 95% interval on the difference "
        "[-0.0390, -0.0077] (13 photos only Keras gets right, 2 only the variant) lies wholly below "
        "-recommend.max_accuracy_drop 0.005"
    )
    assert gates.failures(metrics, "v", 0.02, 0.95, "verify") == []  # verify's 2 pt: not shown


def test_a_variant_better_than_keras_passes():
    metrics = compared(0, 5)
    m = metrics["v"]
    assert (m["keras_only"], m["variant_only"], m["accuracy_diff"]) == (0, 5, round(5 / 372, 4))
    p_low = 0.025 ** (1 / 5)  # all 5 its way: P(X >= 5) = p^5 = 0.025
    assert (m["accuracy_diff_low"], m["accuracy_diff_high"]) == (round(5 * (2 * p_low - 1) / 372, 4), round(5 / 372, 4))
    assert gates.failures(metrics, "v", 0.0, 1.0, "recommend") == [
        "v: top-1 agreement 0.9866 < recommend.min_agreement 1.0"
    ]


def test_agreement_stays_a_plain_threshold_and_no_discordant_photo_is_no_difference():
    metrics = compared(0, 0, both_wrong_apart=12)
    m = metrics["v"]
    assert (m["accuracy_diff"], m["accuracy_diff_low"], m["accuracy_diff_high"]) == (0.0, 0.0, 0.0)
    assert gates.failures(metrics, "v", 0.005, 0.97, "recommend") == [
        f"v: top-1 agreement {round(360 / 372, 4)} < recommend.min_agreement 0.97"
    ]


def test_one_discordant_photo_has_an_exact_interval_of_its_own():
    """n = 1: the variant's share p of one discordant photo. Keras' way (k = 0): P(X = 0) = 1 - p leaves
    2.5% at p = 0.975, so the difference runs from -1/372 to (2 x 0.975 - 1)/372 = 0.95/372. The
    variant's way (k = 1): P(X = 1) = p = 0.025, from -0.95/372 to 1/372. Kills clopper_pearson 2 (the
    no-photo answer [0, 1] given for n == 1 too: [-1/372, 1/372] both ways)."""
    assert (
        gates.accuracy_interval(1, 0, PHOTOS, 0.95) == (round(-1 / 372, 4), round(0.95 / 372, 4)) == (-0.0027, 0.0026)
    )
    assert (
        gates.accuracy_interval(0, 1, PHOTOS, 0.95) == (round(-0.95 / 372, 4), round(1 / 372, 4)) == (-0.0026, 0.0027)
    )


def bench(p50_ms: dict) -> pd.DataFrame:
    """bench's results.csv for two variants, fast and slow, under the names of real ones."""
    return pd.DataFrame({"runtime": [REAL[v] for v in p50_ms], "p50_ms": list(p50_ms.values())}).set_index("runtime")


REAL = {"fast": "full_int8", "slow": "float32"}
NAMES = [REAL["fast"], REAL["slow"]]


def rule(**overrides) -> Recommend:
    fields = {"max_accuracy_drop": 0.005, "min_agreement": 0.0, "prefer": "warm_p50", "bootstrap_resamples": 1000,
              "bootstrap_seed": 0, "stable_share": 0.95}  # fmt: skip
    return Recommend(**{**fields, **overrides})


def predictions(models: dict, labels: list) -> pd.DataFrame:
    """verify's predictions.csv rows: models maps a name to its answers, photo by photo."""
    return pd.concat(
        pd.DataFrame({"path": [f"p{i}.jpg" for i in range(len(labels))], "label": labels, "model": name,
                      "predicted": answers})
        for name, answers in models.items()
    )  # fmt: skip


def test_the_bootstrap_share_matches_a_binomial_sum():
    """100 photos; fast (2 ms) gets 7 of Keras' right answers wrong, slow (9 ms) answers as Keras. With all
    n discordant photos one way, fast's interval tops out at n (1 - 2 * 0.025^(1/n)) / 100: above -0.005 up
    to n = 6, below from 7. A resample holds Binomial(100, 0.07) copies of the 7: fast is chosen with
    probability P(X <= 6)."""
    assert [round(n * (1 - 2 * 0.025 ** (1 / n)) / 100, 4) > -0.005 for n in (6, 7)] == [True, False]
    labels = ["a"] * 80 + ["b"] * 20
    keras = labels[:80] + ["a"] * 20  # right on the 80 a's
    fast = ["b"] * 7 + keras[7:]
    table = predictions({"keras": keras, REAL["fast"]: fast, REAL["slow"]: keras}, labels)
    right, agrees = recommend.photo_answers(table)
    verify_json = recommend.resampled({"confidence": 0.95}, right, agrees, np.arange(100), NAMES)
    assert verify_json[REAL["fast"]]["keras_only"] == 7 and verify_json[REAL["fast"]]["accuracy_diff_high"] < -0.005
    results = bench({"fast": 2.0, "slow": 9.0})
    stable = recommend.stability(results, verify_json, table, NAMES, rule(), {})
    expected = at_most(6, 100, 0.07)  # 0.4497
    assert sum(stable["picks"].values()) == 1000 and set(stable["picks"]) == set(NAMES)
    share = stable["picks"][REAL["fast"]] / 1000
    assert abs(share - expected) < 4 * math.sqrt(expected * (1 - expected) / 1000)
    note = recommend.stability_note(REAL["slow"], stable, rule())
    assert note.startswith(
        f"; within noise: the same rule picks float32 in {stable['picks'][REAL['slow']] / 1000:.1%} of 1000"
    )
    assert note.endswith("decided by recommend.prefer warm_p50 (p50_ms), a tie by the earlier in convert.variants")


def test_a_choice_no_resample_can_change_is_stable():
    labels = ["a"] * 80 + ["b"] * 20
    keras = labels[:80] + ["a"] * 20
    never = ["b"] * 80 + ["a"] * 20  # wrong wherever Keras is right: fails in every resample
    table = predictions({"keras": keras, REAL["fast"]: never, REAL["slow"]: keras}, labels)
    right, agrees = recommend.photo_answers(table)
    verify_json = recommend.resampled({"confidence": 0.95}, right, agrees, np.arange(100), NAMES)
    results = bench({"fast": 2.0, "slow": 9.0})
    stable = recommend.stability(results, verify_json, table, NAMES, rule(bootstrap_resamples=50), {})
    assert stable == {"resamples": 50, "seed": 0, "picks": {"float32": 50}}
    assert recommend.stability_note(REAL["slow"], stable, rule()) == (
        "; stable: the same rule picks float32 in 100.0% of 50 bootstrap resamples of the test photos"
    )
