"""dvc.yaml at work on the small run: editing a module reruns the stages that run it (and a transfer key
leaves train alone), and `dvc metrics show` is the headline, in a terminal's width."""

import json
import shutil

import pandas as pd
import yaml

from pipeline import paths, recommend, variants
from support import ROOT, run


def stages() -> dict:
    return yaml.safe_load((ROOT / "dvc.yaml").read_text())["stages"]


def test_editing_a_module_reruns_its_stages_and_a_transfer_key_does_not_touch_train(small_run, tmp_path):
    project = tmp_path / "p"
    shutil.copytree(small_run, project, symlinks=True)
    assert "up to date" in run(["dvc", "status"], project).stdout
    with open(project / "pipeline/files.py", "a") as f:
        f.write("\n# an edit\n")
    status = run(["dvc", "status"], project).stdout
    for name in ("data", "train", "convert", "verify", "bench", "recommend", "report"):
        assert f"{name}:" in status, f"editing pipeline/files.py leaves stage {name} up to date:\n{status}"
    shutil.copy(small_run / "pipeline/files.py", project / "pipeline/files.py")
    with open(project / "lambda/serving/fetch.py", "a") as f:
        f.write("\n# an edit\n")
    status = run(["dvc", "status"], project).stdout
    assert "bench:" in status and "train:" not in status and "verify:" not in status
    shutil.copy(small_run / "lambda/serving/fetch.py", project / "lambda/serving/fetch.py")
    params = yaml.safe_load((project / "params.yaml").read_text())
    params["train"]["transfer"]["epochs"] += 1
    (project / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    assert "up to date" in run(["dvc", "status"], project).stdout


def test_metrics_show_is_the_headline_and_fits_a_terminal(tmp_path):
    """`dvc metrics show` prints one file, the shipped variant's numbers, within 120 columns even for the
    longest variant name and the widest numbers their rounding leaves."""
    declared = [m for stage in stages().values() for m in stage.get("metrics", [])]
    assert declared == [paths.HEADLINE]
    variant = max(variants.NAMES, key=len)
    verify = {variant: {"accuracy": 0.123456789, "agreement": 0.987654321}}
    results = pd.DataFrame(
        [{"p50_ms": 1234.56789, "cold_start_s": 12.3456789, "size_mb": 123.456789, "usd_per_million": 12.3456789}],
        index=[variant],
    )
    numbers = recommend.headline(variant, verify, results)
    (tmp_path / "artifacts").mkdir()
    (tmp_path / paths.HEADLINE).write_text(json.dumps(numbers))
    (tmp_path / "dvc.yaml").write_text(yaml.safe_dump({"metrics": declared}))
    run(["dvc", "init", "--no-scm", "-q"], tmp_path)
    shown = run(["dvc", "metrics", "show"], tmp_path).stdout.splitlines()
    assert shown[0].split() == ["Path", *sorted(numbers)]
    assert variant in shown[1] and max(map(len, shown)) <= 120, "\n".join(shown)
