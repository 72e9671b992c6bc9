"""Where stages read and write. dvc.yaml declares the same paths as deps and outs."""

MANIFEST = "data/manifest.csv"
BAD_IMAGES = "data/bad_images.csv"
DATA_SUMMARY = "data/summary.json"
LABELS = "data/labels.json"  # the classes in the model's output order

MODEL = "artifacts/model/model.keras"
MODEL_INFO = "artifacts/model/info.json"
HISTORY = "artifacts/model/history.csv"
TRAIN_METRICS = "artifacts/metrics/train.json"

TFLITE_DIR = "artifacts/tflite"
ONNX_DIR = "artifacts/onnx"
CONVERT_METRICS = "artifacts/metrics/convert.json"

VERIFY_METRICS = "artifacts/metrics/verify.json"
PER_CLASS = "artifacts/verify/per_class.csv"
PREDICTIONS = "artifacts/verify/predictions.csv"

BENCH_METRICS = "artifacts/metrics/bench.json"  # headline numbers per runtime
BENCH_TABLE = "artifacts/bench/results.csv"  # every number per runtime
BENCH_ENVIRONMENT = "artifacts/bench/environment.json"  # machine, model, runtime environment sizes

RECOMMENDATION = "artifacts/recommend/recommendation.json"
COST = "artifacts/recommend/cost.csv"

REPORT_DIR = "artifacts/report"
