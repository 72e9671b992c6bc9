"""Write keras_vs_tflite.ipynb from the cells below (no outputs: results come from executing it).

Edit the cells here, then `python notebooks/make_notebook.py`; `make notebook` executes it.
"""

from pathlib import Path

import nbformat
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

CELLS = [
    new_markdown_cell(
        "# Keras vs TFLite on the test split\n\n"
        "Reads the pipeline's artifacts (`dvc repro` makes them): accuracy, agreement and size of every "
        "variant, then times Keras, TFLite float32 and the recommended variant on one real test photo, here and now."
    ),
    new_code_cell(
        "import json\n"
        "import time\n"
        "from pathlib import Path\n\n"
        "import matplotlib.pyplot as plt\n"
        "import pandas as pd\n\n"
        "from serving.images import preprocess\n"
        "from serving.runtime import load_model\n\n"
        "verify = json.loads(Path('artifacts/metrics/verify.json').read_text())\n"
        "info = json.loads(Path('artifacts/model/info.json').read_text())\n"
        "recommended = json.loads(Path('artifacts/recommend/recommendation.json').read_text())\n"
        "print(f\"model: {info['source']}, weights {info['weights']}, input {info['input_size']} px, \"\n"
        "      f\"{len(info['labels'])} classes: {', '.join(info['labels'])}\")"
    ),
    new_markdown_cell("## Accuracy, agreement and size"),
    new_code_cell(
        "# Variants that missed a gate (verify.on_gate_failure: exclude) are listed apart, with why.\n"
        "for why in verify.get('excluded', {}).values():\n"
        "    print(f'excluded at verify: {why}')\n"
        "rows = {name: m for name, m in verify.items() if isinstance(m, dict) and name != 'excluded'}\n"
        "table = pd.DataFrame(rows).T[['size_mb', 'accuracy', 'agreement', 'max_abs_prob_diff']]\n"
        "table"
    ),
    new_code_cell(
        "fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.5))\n"
        "table['accuracy'].astype(float).plot.bar(ax=left, title='test accuracy', ylim=(0, 1))\n"
        "table['size_mb'].astype(float).plot.bar(ax=right, title='file size (MiB)')\n"
        "fig.tight_layout()"
    ),
    new_markdown_cell("## Latency on one photo (batch 1, warm, median of 20)"),
    new_code_cell(
        "import keras\n\n"
        "manifest = pd.read_csv('data/manifest.csv')\n"
        "photo = manifest[manifest['split'] == 'test']['path'].iloc[0]\n"
        "model = keras.models.load_model('artifacts/model/model.keras', compile=False)\n"
        "x = preprocess(photo, model.input_shape[1])\n\n"
        "def median_ms(predict, runs=20):\n"
        "    predict(x)\n"
        "    times = []\n"
        "    for _ in range(runs):\n"
        "        t = time.perf_counter()\n"
        "        predict(x)\n"
        "        times.append((time.perf_counter() - t) * 1000)\n"
        "    return sorted(times)[runs // 2]\n\n"
        "latency = {'keras': median_ms(model.predict_on_batch)}\n"
        "timed = {'float32': 'artifacts/tflite/float32.tflite'} if 'float32' in verify else {}\n"
        "timed[recommended['variant']] = recommended['model']\n"
        "for variant, path in timed.items():\n"
        "    latency[variant] = median_ms(load_model(path, num_threads=2).logits)\n"
        "pd.Series(latency, name='ms per image').round(2).to_frame()"
    ),
]


def main() -> None:
    notebook = new_notebook(
        cells=CELLS, metadata={"kernelspec": {"name": "python3", "display_name": "Python 3", "language": "python"}}
    )
    nbformat.write(notebook, Path(__file__).with_name("keras_vs_tflite.ipynb"))


if __name__ == "__main__":
    main()
