"""The names of the function's metrics, shared with deploy's alarms (pipeline/deploy/alarms.py),
which import this and not metrics.py: the deployer needs the names, not Powertools."""

NAMESPACE = "clothes-serverless"
DIMENSIONS = ("function", "version", "variant")
# Per request. ServerError and ClientError are 1 or 0, so their Average is the rate; the model's
# latency and the top-class probability exist only for answered requests (200).
LATENCY = "Latency"  # the whole request, fetch and decoding included
MODEL_LATENCY = "ModelLatency"  # the answer's inference_ms: decoding the photo and the model, no fetch
SERVER_ERROR = "ServerError"  # a 5xx: the function's own fault
CLIENT_ERROR = "ClientError"  # a 4xx
TOP_PROBABILITY = "TopProbability"
COLD_START = "ColdStart"  # 1 on an execution environment's first request
