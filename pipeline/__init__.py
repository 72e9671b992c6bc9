"""clothes-serverless pipeline stages. Run one with `python -m pipeline.<stage>`, all with `dvc repro`."""

import os

# TensorFlow reads these when it is first imported; quiet its C++ start-up chatter in stage logs.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
os.environ.setdefault("GRPC_VERBOSITY", "ERROR")
