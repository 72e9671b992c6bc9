"""The Lambda function itself ($LATEST): created or brought to the code and configuration, after
waiting for an update in progress; a Failed one recreated; the package type and the account's
concurrency checked before anything is built; the concurrency cap. Versions and 'live' are in
releases.py."""

import time

import botocore.exceptions

from pipeline import cli, params
from pipeline.deploy import aws, limits, releases


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


PACKAGE_TYPES = {"image": "Image", "zip": "Zip"}  # deploy.package -> Lambda's PackageType
GONE_S = 60  # a deleted function's name is free again within seconds


def check_package(d: params.Deploy, latest: "dict | None") -> None:
    """Lambda cannot change a function's package type: say so before anything is built."""
    if latest is None or latest.get("PackageType", "Zip") == PACKAGE_TYPES[d.package]:
        return
    now = latest["PackageType"].lower()
    raise cli.UserError(
        f"{d.function_name} is a {now} function and deploy.package is {d.package}: Lambda cannot change a "
        f"function's package type; set deploy.package: {now}, or `make destroy` (it deletes the function and "
        "its versions) and deploy again"
    )


UNSERVED = (404, 501)  # HTTP statuses of a call an endpoint does not serve (plain moto: 404)


def account_limit(lam, d: params.Deploy) -> "dict | None":
    """The account's concurrency limits; None, with a warning, where the endpoint does not serve
    GetAccountSettings (a stand-in for AWS: plain moto answers 404). AWS itself always serves it, so
    any other refusal (AccessDenied) still stops the deploy."""
    try:
        return lam.get_account_settings()["AccountLimit"]
    except botocore.exceptions.ClientError as e:
        status = e.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
        if status not in UNSERVED:
            raise
        print(
            f"warning: the endpoint does not serve GetAccountSettings (HTTP {status}; a stand-in for AWS?): the "
            f"account's concurrency limit is not read, deploy.reserved_concurrency {d.reserved_concurrency} is "
            "reserved as it is"
        )
        return None


def reservation(lam, d: params.Deploy, exists: bool) -> int:
    """The concurrency to reserve, read before anything is created: deploy.reserved_concurrency where
    the account can spare it (Lambda keeps UNRESERVED_MIN of its limit unreserved), else none, with a
    warning. A new account's limit is 10, so it can reserve none: its first deploy with the default
    params must not stop for a cap (the function then shares the account's unreserved pool)."""
    if d.reserved_concurrency == 0:
        return 0
    limit = account_limit(lam, d)
    if limit is None:
        return d.reserved_concurrency
    mine = (
        lam.get_function_concurrency(FunctionName=d.function_name).get("ReservedConcurrentExecutions", 0)
        if exists
        else 0
    )
    spare = limit["UnreservedConcurrentExecutions"] + (mine or 0) - limits.UNRESERVED_MIN
    if d.reserved_concurrency <= spare:
        return d.reserved_concurrency
    print(
        f"warning: this account runs at most {limit['ConcurrentExecutions']} at once, "
        f"{limit['UnreservedConcurrentExecutions']} of them unreserved, and Lambda keeps {limits.UNRESERVED_MIN} "
        f"unreserved: deploy.reserved_concurrency {d.reserved_concurrency} cannot be had, reserving none (ask AWS "
        "for a higher limit to cap the function)"
    )
    return 0


def make_ready(lam, d: params.Deploy, found: "dict | None") -> "dict | None":
    """$LATEST ready to be updated: an update in progress (another deploy, the console) is waited
    for; a function whose creation failed, with no version ever published, is deleted so that it
    is created again (Lambda never recovers a Failed function)."""
    if found is None:
        return None
    name = d.function_name
    if found.get("State") == "Failed":
        reason = f"{found.get('StateReasonCode', '')}: {found.get('StateReason', '')}".strip(": ")
        if releases.versions(lam, d):
            raise cli.UserError(
                f"{name} is Failed ({reason}) and has published versions: deleting it would delete them; "
                "fix the cause, then `make destroy` and deploy again"
            )
        print(f"{name} is Failed ({reason}) and no version of it was published: deleting it and creating it again")
        lam.delete_function(FunctionName=name)
        deadline = time.monotonic() + GONE_S
        while latest(lam, d) is not None and time.monotonic() < deadline:
            time.sleep(1)
        return None
    if found.get("State") == "Pending" or found.get("LastUpdateStatus") == "InProgress":
        print(f"an update of {name} is in progress: waiting for it to finish first")
        waiter = "function_active_v2" if found.get("State") == "Pending" else "function_updated_v2"
        lam.get_waiter(waiter).wait(FunctionName=name)
        return latest(lam, d)
    return found


def conflict(e: botocore.exceptions.ClientError, d: params.Deploy) -> cli.UserError:
    message = " ".join(e.response.get("Error", {}).get("Message", "").split())
    return cli.UserError(
        f"AWS refused {e.operation_name}: {message} (something else is changing {d.function_name}: wait for it "
        "to finish, then deploy again)"
    )


def ensure_function(lam, d: params.Deploy, found: "dict | None", code: "dict | None", config: dict) -> None:
    """Create the function, or bring $LATEST (found, and ready) to this code (None: keep its code)
    and configuration."""
    try:
        if found is None:
            retry_role(
                lam.create_function,
                FunctionName=d.function_name,
                Code=code,
                PackageType=PACKAGE_TYPES[d.package],
                Architectures=[d.architecture],
                Tags=aws.tags(d),
                **config,
            )
            lam.get_waiter("function_active_v2").wait(FunctionName=d.function_name)
            return
        if code is not None:
            lam.update_function_code(FunctionName=d.function_name, Architectures=[d.architecture], **code)
            lam.get_waiter("function_updated_v2").wait(FunctionName=d.function_name)
        retry_role(lam.update_function_configuration, FunctionName=d.function_name, **config)
        lam.get_waiter("function_updated_v2").wait(FunctionName=d.function_name)
    except lam.exceptions.ResourceConflictException as e:
        raise conflict(e, d) from None


def confirm_shipped(lam, d: params.Deploy, code: "dict | None", expected_sha: str) -> tuple[str, str]:
    """$LATEST's CodeSha256 and RevisionId, read right after its update (before any invoke), checked
    to be the code this deploy shipped: an image by the digest URI it names, a zip (or the code kept)
    by its hash. PublishVersion is then given both, so it publishes exactly what was tested."""
    fn = lam.get_function(FunctionName=d.function_name)
    config = fn["Configuration"]
    if code is not None and "ImageUri" in code:
        ok = fn.get("Code", {}).get("ImageUri") == code["ImageUri"]
    else:
        ok = config["CodeSha256"] == expected_sha
    if not ok:
        raise cli.UserError(
            f"{d.function_name}'s code is not what this deploy shipped (something else updated it meanwhile): "
            "nothing was published; deploy again"
        )
    return config["CodeSha256"], config.get("RevisionId", "")  # Lambda always has one; moto has none


def cap_concurrency(lam, d: params.Deploy, reserved: int) -> None:
    """Reserved concurrency caps what one function (one slow client) can take of the account;
    `reserved` is reservation()'s answer (0: none, a reservation left from before removed)."""
    if reserved == 0:
        lam.delete_function_concurrency(FunctionName=d.function_name)
        return
    try:
        lam.put_function_concurrency(FunctionName=d.function_name, ReservedConcurrentExecutions=reserved)
    except lam.exceptions.InvalidParameterValueException as e:
        raise cli.UserError(
            f"AWS refused reserved concurrency {reserved}: {e.response['Error']['Message']} "
            "(accounts whose concurrency limit is 10 cannot reserve any: set deploy.reserved_concurrency: 0, "
            "or ask AWS for a higher limit)"
        ) from None
