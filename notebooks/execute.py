"""Run a notebook headless against a project's artifacts; write the executed copy elsewhere.

python notebooks/execute.py notebooks/keras_vs_tflite.ipynb artifacts/report/keras_vs_tflite.ipynb
"""

import sys
from pathlib import Path

import nbformat
from nbclient import NotebookClient


def execute(notebook: Path, output: Path, project: Path = Path(".")) -> nbformat.NotebookNode:
    nb = nbformat.read(notebook, as_version=4)
    NotebookClient(nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(project)}}).execute()
    output.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, output)
    return nb


if __name__ == "__main__":
    execute(Path(sys.argv[1]), Path(sys.argv[2]))
