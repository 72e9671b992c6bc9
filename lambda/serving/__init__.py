"""What the Lambda function runs, and nothing else: the handler, the SSRF-safe URL fetch, image
preprocessing, and the model runtime (the labels travel with the model, in model.json). numpy, Pillow
and LiteRT only: never TensorFlow.

The Lambda image and the zip package copy this folder whole; the pipeline imports from it (made
importable by pyproject.toml, since `lambda` itself is a Python keyword), never the reverse.
"""

HANDLER = "serving.handler.lambda_handler"  # what Lambda calls: the Dockerfile's CMD, the zip's Handler
