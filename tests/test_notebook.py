import importlib.util
import json
from pathlib import Path

from conftest import ROOT

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
    assert any("ms per image" in h and "keras" in h for h in html)
    assert any("image/png" in o.get("data", {}) for o in outputs)
    assert Path(tmp_path / "out.ipynb").exists()
