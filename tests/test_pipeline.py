"""The stages as `dvc repro` runs them (the small_run fixture ran the first repro)."""

from conftest import run


def test_second_repro_does_nothing(small_run):
    result = run(["dvc", "repro"], small_run)
    assert "Data and pipelines are up to date." in result.stdout
    assert "Running stage" not in result.stdout


def test_metrics_show_lists_the_headline_numbers(small_run):
    out = run(["dvc", "metrics", "show", "--md"], small_run).stdout
    for variant in ("float32", "float16", "dynamic_int8", "full_int8"):
        for metric in ("accuracy", "agreement", "max_abs_prob_diff"):
            assert f"{variant}.{metric}" in out
        assert f"litert_{variant}.p50_ms" in out
    assert "keras.accuracy" in out and "val_accuracy" in out
    assert "per_class" not in out and "outside_ops" not in out  # detail stays in CSV files
