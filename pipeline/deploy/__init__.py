"""make deploy / rollback / destroy: ship the recommended variant to Lambda behind API Gateway.

    python -m pipeline.deploy COMMAND   (deploy [--dry-run] [--force], rollback, destroy, tune, status, url,
                                         logs: __main__.py, `--help` on each)

boto3 throughout; AWS_ENDPOINT_URL and the usual AWS_* variables are honoured, so the same code
runs against AWS or a local AWS-compatible endpoint. Never imports TensorFlow.

    limits.py     every AWS limit the deployer assumes, and the params' check against them
    aws.py        a command's clients (each made once), AWS errors as one line, paginated listings, the tag
    build.py      the function's inputs, their content-hash deploy key and configuration, the zip package
    image.py      the container image: build for one architecture, push, read back and check
    resources.py  ECR, IAM role, S3, log group, HTTP API
    functions.py  the function ($LATEST): created or updated when ready, its package and concurrency
    releases.py   versions (published only after a smoke test), 'live' and the release history on it
    smoke.py      the smoke tests (local image or zip, $LATEST or a version in AWS)
    canary.py     canary and linear releases: a share of 'live' under alarms, then all of it or rolled back
    alarms.py     the CloudWatch alarms that watch a canary, on the function's own metrics
    commands.py   deploy, rollback
    plan.py       deploy --dry-run: deploy's decisions, read from AWS, with nothing built or written
    status.py     status, url, logs: what is live, where, and its log lines, read from AWS
    teardown.py   destroy
    tune.py       tune: a memory sweep on the deployed function, read from its REPORT lines, then restored
"""
