import importlib.util
import json
from pathlib import Path

from support import ROOT

# notebooks/ is a folder of scripts, not a package: load its runner by path.
_spec = importlib.util.spec_from_file_location("execute", ROOT / "notebooks/execute.py")
_module = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_module)
execute = _module.execute


def test_committed_notebook_carries_no_outputs():
    nb = json.loads((ROOT / "notebooks/keras_vs_tflite.ipynb").read_text())
    assert all(not cell.get("outputs") and not cell.get("execution_count") for cell in nb["cells"])


def test_notebook_runs_headless_and_shows_table_and_plot(tmp_path, small_run):
    nb = execute(ROOT / "notebooks/keras_vs_tflite.ipynb", tmp_path / "out.ipynb", small_run)
    outputs = [o for cell in nb.cells for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o["output_type"] == "error"]
    html = [o["data"]["text/html"] for o in outputs if "text/html" in o.get("data", {})]
    assert any("full_int8" in h and "accuracy" in h for h in html)
    # The table shows the verify stage's numbers, read back from what the notebook printed.
    verify = json.loads((small_run / "artifacts/metrics/verify.json").read_text())
    text = next(
        o["data"]["text/plain"] for o in outputs if "max_abs_prob_diff" in o.get("data", {}).get("text/plain", "")
    )
    shown = {line.split()[0]: line.split()[1:] for line in text.splitlines()[1:]}
    for variant in ("float32", "float16", "dynamic_int8", "full_int8"):
        size_mb, accuracy, agreement = (float(v) for v in shown[variant][:3])
        assert (size_mb, accuracy, agreement) == (
            verify[variant]["size_mb"],
            verify[variant]["accuracy"],
            verify[variant]["agreement"],
        )
    assert any("ms per image" in h and "keras" in h for h in html)
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert Path(tmp_path / "out.ipynb").exists()
