"""make deploy / rollback / destroy: ship the recommended variant to Lambda behind API Gateway.

    python -m pipeline.deploy [deploy|rollback|destroy] [--yes] [--force]

boto3 throughout; AWS_ENDPOINT_URL and the usual AWS_* variables are honoured, so the same code
runs against AWS or a local AWS-compatible endpoint. Never imports TensorFlow.

    limits.py     every AWS limit the deployer assumes, and the params' check against them
    build.py      the function's inputs, their content-hash deploy key, the zip package
    image.py      the container image: build for one architecture, push, read back and check
    resources.py  ECR, IAM role, S3, log group, HTTP API; AWS errors as one line
    functions.py  the function, its versions (published only after a smoke test) and 'live'
    smoke.py      the smoke tests (local image or zip, or $LATEST in AWS)
    commands.py   deploy, rollback, destroy
"""
