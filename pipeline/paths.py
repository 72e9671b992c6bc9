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

TARGETS = "artifacts/targets/targets.json"  # per architecture: checked or why not, variants excluded with why
TARGETS_TABLE = "artifacts/targets/targets.csv"  # variant x target: agreement, probability difference, verdict
TARGETS_METRICS = "artifacts/metrics/targets.json"  # headline numbers per target

BENCH_METRICS = "artifacts/metrics/bench.json"  # headline numbers per runtime
BENCH_TABLE = "artifacts/bench/results.csv"  # every number per runtime
BENCH_ENVIRONMENT = "artifacts/bench/environment.json"  # machine, model, runtime environment sizes
BENCH_HANDLER = "artifacts/bench/handler.csv"  # the handler end to end per runtime, photo and threads, by stage

RECOMMENDATION = "artifacts/recommend/recommendation.json"
COST = "artifacts/recommend/cost.csv"
RELEASE = "artifacts/recommend/release.json"  # what deploy ships and checks (pipeline/release.py)
HEADLINE = "artifacts/headline.json"  # the shipped variant's numbers: dvc.yaml's only metrics file

DEPLOY_RECORD = "artifacts/deploy.json"  # what the last deploy shipped, for people; decisions read AWS

TUNE_DIR = "artifacts/tune"  # make tune (not a stage): the memory sweep on the deployed function
TUNE_TABLE = "artifacts/tune/tune.csv"  # one row per memory size; header only until make tune runs
TUNE_INVOCATIONS = "artifacts/tune/invocations.csv"  # every invocation's REPORT line, parsed

REPORT_DIR = "artifacts/report"
