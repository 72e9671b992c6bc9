"""Talking to AWS: clients, every refusal as one line with AWS's own reason, paginated listings,
and the tag that marks what deploy created."""

import contextlib
import functools

import boto3
import botocore.exceptions
from boto3.s3.transfer import S3UploadFailedError
from botocore.client import BaseClient

from pipeline import cli, params

TAG = "clothes-serverless"


def client(service: str, region: str) -> BaseClient:
    """Create clients inside aws_errors(): a bad AWS_PROFILE or config file fails here."""
    return boto3.client(service, region_name=region)


class Clients:
    """One command's AWS clients, each service's made once, on its first use (SAM's Deployer holds
    its client once): a command makes one at its entry and hands it down, or hands one client to a
    function that does one thing. Rules: first use inside aws_errors(), where a bad AWS_PROFILE
    fails as one line; never kept at module level, so each command (the tests run several in one
    process, against different endpoints) makes its own."""

    def __init__(self, region: str):
        self.region = region

    @functools.cached_property
    def lam(self) -> BaseClient:
        return client("lambda", self.region)

    @functools.cached_property
    def apigw(self) -> BaseClient:
        return client("apigatewayv2", self.region)

    @functools.cached_property
    def cw(self) -> BaseClient:
        return client("cloudwatch", self.region)

    @functools.cached_property
    def ecr(self) -> BaseClient:
        return client("ecr", self.region)

    @functools.cached_property
    def iam(self) -> BaseClient:
        return client("iam", self.region)

    @functools.cached_property
    def logs(self) -> BaseClient:
        return client("logs", self.region)

    @functools.cached_property
    def s3(self) -> BaseClient:
        return client("s3", self.region)

    @functools.cached_property
    def sts(self) -> BaseClient:
        return client("sts", self.region)


def partition(arn: str) -> str:
    """The partition an ARN is written in (arn:PARTITION:...): aws, aws-cn (China), aws-us-gov (GovCloud)."""
    return arn.split(":")[1]


def caller(clients: Clients) -> tuple[str, str]:
    """The caller's account and partition: every ARN deploy writes is in the caller's partition, not aws."""
    identity = clients.sts.get_caller_identity()
    return identity["Account"], partition(identity["Arn"])


def tags(d: params.Deploy) -> dict:
    return {TAG: d.function_name}


def tag_list(d: params.Deploy) -> list[dict]:
    return [{"Key": TAG, "Value": d.function_name}]


def tagged(found: "dict | list | None", d: params.Deploy) -> bool:
    """Whether a resource's tags (a mapping, or AWS's list of Key/Value pairs) mark it as this deployment's."""
    if isinstance(found, list):
        found = {t["Key"]: t["Value"] for t in found}
    return (found or {}).get(TAG) == d.function_name


@contextlib.contextmanager
def aws_errors():
    """Whatever AWS or boto3 refuses becomes one line with AWS's own reason."""
    try:
        yield
    except botocore.exceptions.NoCredentialsError:
        raise cli.UserError("no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") from None
    except botocore.exceptions.ClientError as e:
        error, operation = e.response.get("Error", {}), e.operation_name
        reason = " ".join(f"{error.get('Code')}: {error.get('Message')}".split())[:400]
        raise cli.UserError(f"AWS refused {operation}: {reason}") from None
    except botocore.exceptions.WaiterError as e:
        raise cli.UserError(f"the function did not become ready: {waited_for(e)}") from None
    except S3UploadFailedError as e:
        raise cli.UserError(f"uploading the zip package to S3 failed: {e}") from None
    except botocore.exceptions.BotoCoreError as e:
        raise cli.UserError(f"AWS call failed: {e}") from None


def waited_for(e: botocore.exceptions.WaiterError) -> str:
    """Lambda's reason when it gives one; else the state it was left in, never the raw answer."""
    response = e.last_response or {}
    config = response.get("Configuration", response)
    reason = config.get("LastUpdateStatusReason") or config.get("StateReason")
    if not reason and response.get("Error"):
        reason = f"{response['Error'].get('Code')}: {response['Error'].get('Message')}"
    if not reason:
        state = config.get("State") or config.get("LastUpdateStatus") or "unknown"
        reason = f"{e.reason} (state: {state})"
    return " ".join(str(reason).split())[:400]


def pages(method, key: str, **kwargs):
    """Every item of a paginated listing (boto3's paginator knows each API's token names)."""
    for page in method.__self__.get_paginator(method.__name__).paginate(**kwargs):
        yield from page.get(key, [])
