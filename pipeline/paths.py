"""Where stages read and write. dvc.yaml declares the same paths as deps and outs."""

MANIFEST = "data/manifest.csv"
BAD_IMAGES = "data/bad_images.csv"
DATA_SUMMARY = "data/summary.json"

MODEL = "artifacts/model/model.keras"
MODEL_INFO = "artifacts/model/info.json"
HISTORY = "artifacts/model/history.csv"
TRAIN_METRICS = "artifacts/metrics/train.json"

TFLITE_DIR = "artifacts/tflite"
CONVERT_METRICS = "artifacts/metrics/convert.json"

VERIFY_METRICS = "artifacts/metrics/verify.json"
PER_CLASS = "artifacts/metrics/per_class.json"
PREDICTIONS = "artifacts/verify/predictions.csv"

BENCH_METRICS = "artifacts/metrics/bench.json"
BENCH_TABLE = "artifacts/bench/results.csv"
RECOMMENDATION = "artifacts/bench/recommendation.json"
COST = "artifacts/bench/cost.csv"

REPORT_DIR = "artifacts/report"
