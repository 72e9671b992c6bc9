"""The Lambda function, its versions and the 'live' alias. A version is published only after its
code passed the smoke test, and its description records what it is (deploy key, configuration
key, variant, verify accuracy): rollback and "nothing to deploy" read AWS, not a local file."""

import json
import time

import botocore.exceptions

from pipeline import cli, params
from pipeline.deploy import build, limits
from pipeline.deploy.resources import pages

ALIAS = "live"
MARK = "clothes-serverless"  # versions whose description carries this were published by this deployer


def role_not_ready(e: botocore.exceptions.ClientError) -> bool:
    error = e.response.get("Error", {})
    return error.get("Code") == "InvalidParameterValueException" and "cannot be assumed by Lambda" in error.get(
        "Message", ""
    )


def retry_role(call, **kwargs):
    """Lambda refuses a role IAM created seconds ago: retry that refusal, and only that, for a while."""
    deadline = time.monotonic() + limits.ROLE_PROPAGATION_S
    told = False
    while True:
        try:
            return call(**kwargs)
        except botocore.exceptions.ClientError as e:
            if not role_not_ready(e) or time.monotonic() > deadline:
                raise
            if not told:
                print(
                    f"waiting for IAM: Lambda cannot assume the role yet (retrying up to {limits.ROLE_PROPAGATION_S} s)"
                )
                told = True
            time.sleep(limits.ROLE_RETRY_EVERY_S)


def latest(lam, d: params.Deploy) -> "dict | None":
    try:
        return lam.get_function_configuration(FunctionName=d.function_name)
    except lam.exceptions.ResourceNotFoundException:
        return None


def ensure_function(lam, d: params.Deploy, code: "dict | None", config: dict) -> None:
    """Create the function, or bring $LATEST to this code (None: keep its code) and configuration."""
    if latest(lam, d) is None:
        package = (
            {"PackageType": "Image"}
            if "ImageUri" in code
            else {"PackageType": "Zip", "Runtime": d.zip_runtime, "Handler": build.HANDLER}
        )
        retry_role(
            lam.create_function,
            FunctionName=d.function_name,
            Code=code,
            Architectures=[d.architecture],
            **package,
            **config,
        )
        lam.get_waiter("function_active_v2").wait(FunctionName=d.function_name)
        return
    try:
        if code is not None:
            lam.update_function_code(FunctionName=d.function_name, Architectures=[d.architecture], **code)
            lam.get_waiter("function_updated_v2").wait(FunctionName=d.function_name)
        retry_role(lam.update_function_configuration, FunctionName=d.function_name, **config)
        lam.get_waiter("function_updated_v2").wait(FunctionName=d.function_name)
    except lam.exceptions.ResourceConflictException:
        raise cli.UserError(f"an update of {d.function_name} is in progress: wait for it, then deploy again") from None


def describe(key: str, config: str, variant: str, accuracy: "float | None", smoke: str) -> str:
    text = json.dumps(
        {"by": MARK, "key": key, "config": config, "variant": variant, "accuracy": accuracy, "smoke": smoke},
        separators=(",", ":"),
    )
    assert len(text) <= limits.DESCRIPTION_CHARS, text
    return text


def shipped(version: dict) -> "dict | None":
    """What a version's description records, if this deployer published it (after its smoke test)."""
    try:
        meta = json.loads(version.get("Description") or "")
    except ValueError:
        return None
    return meta if isinstance(meta, dict) and meta.get("by") == MARK else None


def versions(lam, d: params.Deploy) -> list[dict]:
    """Every published version, oldest first (the listing is paginated, 50 a page)."""
    found = pages(lam.list_versions_by_function, "Versions", FunctionName=d.function_name)
    return sorted((v for v in found if v["Version"] != "$LATEST"), key=lambda v: int(v["Version"]))


def live(lam, d: params.Deploy) -> "dict | None":
    """The version 'live' points to (its configuration), or None."""
    try:
        version = lam.get_alias(FunctionName=d.function_name, Name=ALIAS)["FunctionVersion"]
    except lam.exceptions.ResourceNotFoundException:
        return None
    return lam.get_function_configuration(FunctionName=d.function_name, Qualifier=version)


def publish(lam, d: params.Deploy, code_sha: str, description: str) -> str:
    # CodeSha256: publish exactly the code that was smoke-tested, or fail
    version = lam.publish_version(FunctionName=d.function_name, CodeSha256=code_sha, Description=description)
    lam.get_waiter("published_version_active").wait(FunctionName=d.function_name, Qualifier=version["Version"])
    return version["Version"]


def move_alias(lam, d: params.Deploy, version: str) -> str:
    try:
        return lam.update_alias(FunctionName=d.function_name, Name=ALIAS, FunctionVersion=version)["AliasArn"]
    except lam.exceptions.ResourceNotFoundException:
        return lam.create_alias(FunctionName=d.function_name, Name=ALIAS, FunctionVersion=version)["AliasArn"]


def rollback_target(lam, d: params.Deploy, current: str) -> "dict | None":
    """The newest version older than `current` that this deployer published (so it passed)."""
    older = [v for v in versions(lam, d) if int(v["Version"]) < int(current) and shipped(v)]
    return older[-1] if older else None


def cap_concurrency(lam, d: params.Deploy) -> None:
    """Reserved concurrency caps what one function (one slow client) can take of the account."""
    if d.reserved_concurrency == 0:
        lam.delete_function_concurrency(FunctionName=d.function_name)
        return
    try:
        lam.put_function_concurrency(FunctionName=d.function_name, ReservedConcurrentExecutions=d.reserved_concurrency)
    except lam.exceptions.InvalidParameterValueException as e:
        raise cli.UserError(
            f"AWS refused reserved concurrency {d.reserved_concurrency}: {e.response['Error']['Message']} "
            "(accounts whose concurrency limit is 10 cannot reserve any: set deploy.reserved_concurrency: 0, "
            "or ask AWS for a higher limit)"
        ) from None
