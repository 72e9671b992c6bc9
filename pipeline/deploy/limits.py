"""Every AWS limit and behaviour the deployer assumes, stated once (AWS's documented quotas and
behaviours as of 2026), and the check of deploy params against them."""

from pipeline import params
from pipeline.cli import UserError

# Lambda
# A function's memory range: pipeline/params.py (LAMBDA_MEMORY_MB) checks every memory_mb when params.yaml loads
TIMEOUT_S = (1, 900)  # a function's timeout range
ZIP_UNZIPPED_MB = 250  # a zip package, unzipped
ZIP_DIRECT_UPLOAD_MB = 50  # a zip sent in the API call itself; larger ones go through S3
DESCRIPTION_CHARS = 256  # a version's description (where the deployer records what it shipped)
PAGE_SIZE = 50  # listings (versions, aliases) return at most this many a page: always paginate
ACCOUNT_CONCURRENCY = 1000  # default concurrent executions per account and region (new accounts: 10)
UNRESERVED_MIN = 100  # reserved concurrency must leave this much of the account's limit unreserved
ROLE_PROPAGATION_S = 90  # a new IAM role can be refused by Lambda ("cannot be assumed") this long
ROLE_RETRY_EVERY_S = 3
IMAGE_MEDIA_TYPES = (  # single-image manifests; Lambda refuses an index / manifest list
    "application/vnd.docker.distribution.manifest.v2+json",
    "application/vnd.oci.image.manifest.v1+json",
)
INDEX_MEDIA_TYPES = (
    "application/vnd.oci.image.index.v1+json",
    "application/vnd.docker.distribution.manifest.list.v2+json",
)
ARCHITECTURES = {"x86_64": "amd64", "arm64": "arm64"}  # Lambda's name -> the image config's name

# CloudWatch Logs: the only retention periods it accepts
LOG_RETENTION_DAYS = (1, 3, 5, 7, 14, 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922)

# CloudWatch: the function's metrics are standard resolution (one datapoint a minute), so an alarm
# judges whole minutes; DeleteAlarms takes at most 100 names a call. Lambda's alias routing sends
# a share strictly between 0 and 1 to one additional version.
ALARM_PERIOD_S = 60
ALARM_MAX_PERIODS = 1440  # EvaluationPeriods x Period may span at most one day
ALARMS_PER_DELETE = 100

# S3: bucket names are global, 3-63 characters; anyone may create a name you predicted
BUCKET_NAME_CHARS = 63

# API Gateway: 10,000 requests/s per account and region across all APIs
API_ACCOUNT_RATE = 10000


def check(d: params.Deploy) -> None:
    """Deploy params that AWS would refuse, refused here first with the limit named."""
    problems = []
    if not TIMEOUT_S[0] <= d.timeout_s <= TIMEOUT_S[1]:
        problems.append(f"deploy.timeout_s must be {TIMEOUT_S[0]}-{TIMEOUT_S[1]}, got {d.timeout_s}")
    if d.log_retention_days not in LOG_RETENTION_DAYS:
        problems.append(f"deploy.log_retention_days must be one of {LOG_RETENTION_DAYS}, got {d.log_retention_days}")
    if not 0 <= d.reserved_concurrency <= ACCOUNT_CONCURRENCY - UNRESERVED_MIN:
        problems.append(
            f"deploy.reserved_concurrency must be 0 (none) to {ACCOUNT_CONCURRENCY - UNRESERVED_MIN}, "
            f"got {d.reserved_concurrency}"
        )
    if d.untagged_image_days < 1:
        problems.append(f"deploy.untagged_image_days must be at least 1 (ECR lifecycle), got {d.untagged_image_days}")
    if not 0 < d.throttle_rate <= API_ACCOUNT_RATE or d.throttle_burst < 1:
        problems.append(f"deploy.throttle_rate must be 0-{API_ACCOUNT_RATE} and deploy.throttle_burst at least 1")
    for key in ("canary_percent", "linear_percent"):
        if not 1 <= getattr(d, key) <= 99:
            problems.append(
                f"deploy.{key} must be 1-99 (the alias routes a share strictly between 0 and 1), got {getattr(d, key)}"
            )
    for key in ("canary_minutes", "linear_minutes", "watch_every_s", "alarm_p90_ms", "lock_stale_minutes"):
        if getattr(d, key) <= 0:
            problems.append(f"deploy.{key} must be more than 0, got {getattr(d, key)}")
    for key in ("watch_after_minutes", "min_canary_requests"):
        if getattr(d, key) < 0:
            problems.append(f"deploy.{key} must be 0 or more, got {getattr(d, key)}")
    for key in ("alarm_min_samples", "alarm_datapoints"):
        if getattr(d, key) < 1:
            problems.append(f"deploy.{key} must be at least 1, got {getattr(d, key)}")
    if not d.alarm_datapoints <= d.alarm_periods <= ALARM_MAX_PERIODS:
        problems.append(
            f"deploy.alarm_periods must be deploy.alarm_datapoints ({d.alarm_datapoints}) to {ALARM_MAX_PERIODS} "
            f"(CloudWatch's limit for one-minute periods: a day), got {d.alarm_periods}"
        )
    if problems:
        raise UserError("; ".join(problems))
