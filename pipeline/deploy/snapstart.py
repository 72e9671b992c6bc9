"""SnapStart (deploy.snapstart): Lambda initializes each published version once, snapshots the
initialized environment (the model loaded: serving/handler.py loads it during a SnapStart init),
and restores new environments from the snapshot instead of initializing them.

AWS documents SnapStart for Python 3.12 and later: zips on the managed python3.12+ runtimes, and
container images built on AWS's own Python 3.12+ base images (public.ecr.aws/lambda/python:3.12 and
later), where Lambda runs the snapshot/restore lifecycle itself. Any other image (another base, a
runtime interface client of one's own) needs the Runtime API's restore hooks or a Dockerfile label
this project does not add: refused. Each cached snapshot is billed while its version exists, so
deploy deletes the versions it no longer needs: all but 'live''s, a canary's, and the one a
rollback would return to (docs/endpoints.md)."""

import re

from pipeline import cli, params
from pipeline.deploy import releases

AWS_PYTHON_BASE = re.compile(r"^public\.ecr\.aws/lambda/python:3\.(\d+)")
MIN_MINOR = 12  # Python 3.12: the first Python SnapStart supports
ON = {"ApplyOn": "PublishedVersions"}
OFF = {"ApplyOn": "None"}


def refusal(d: params.Deploy) -> "str | None":
    """Why SnapStart cannot be on for this package, or None (also when it is off)."""
    if not d.snapstart:
        return None
    if d.package == "zip":
        found = re.fullmatch(r"python3\.(\d+)", d.zip_runtime)
        if found and int(found.group(1)) >= MIN_MINOR:
            return None
        return f"deploy.snapstart needs a python3.{MIN_MINOR}+ runtime; deploy.zip_runtime is {d.zip_runtime}"
    found = AWS_PYTHON_BASE.match(d.base_image)
    if found and int(found.group(1)) >= MIN_MINOR:
        return None
    return (
        f"deploy.snapstart needs an image on AWS's Python 3.{MIN_MINOR}+ base"
        f" (public.ecr.aws/lambda/python:3.{MIN_MINOR} or later); deploy.base_image is {d.base_image}"
    )


def refuse(d: params.Deploy) -> None:
    if why := refusal(d):
        raise cli.UserError(why)


def config(d: params.Deploy, latest: "dict | None") -> dict:
    """What UpdateFunctionConfiguration is given for SnapStart: on where the params say so; off where
    they do not and the function has it on; nothing otherwise (a function that never had it)."""
    if d.snapstart:
        return {"SnapStart": ON}
    if latest and (latest.get("SnapStart") or {}).get("ApplyOn") == ON["ApplyOn"]:
        return {"SnapStart": OFF}
    return {}


def wait_for_snapshot(lam, d: params.Deploy, version: str) -> None:
    """A SnapStart version is Pending while Lambda initializes it and takes its snapshot: wait until it
    is Active, and check the snapshot is on (Failed: Lambda's reason, in one line)."""
    lam.get_waiter("function_active_v2").wait(FunctionName=d.function_name, Qualifier=version)
    found = lam.get_function_configuration(FunctionName=d.function_name, Qualifier=version)
    status = (found.get("SnapStart") or {}).get("OptimizationStatus")
    if status != "On":
        reason = found.get("StateReason") or f"SnapStart OptimizationStatus {status}"
        raise cli.UserError(f"version {version}'s snapshot is not ready ({reason}): 'live' was not moved to it")
    print(f"version {version}: SnapStart snapshot ready")


def needed(alias: "dict | None", rollback_to: "str | None", rejected: "set[int]") -> set[str]:
    """The versions deploy keeps: 'live''s, any version it routes a share to (a canary), the one a
    rollback would return to, and those 'live' was rolled back from (deploy refuses to make their code
    and configuration live again by reading them)."""
    keep = {str(v) for v in rejected}
    if alias:
        keep.add(alias["FunctionVersion"])
        keep |= set((alias.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {})
    if rollback_to:
        keep.add(rollback_to)
    return keep


def prune(lam, d: params.Deploy) -> list[str]:
    """With SnapStart on, delete the versions no longer needed (each one's snapshot is billed while it
    exists); the versions deploy did not publish are left alone. The versions deleted."""
    if not d.snapstart:
        return []
    alias = releases.live_alias(lam, d)
    if alias is None:
        return []
    history = releases.read(alias)
    target = releases.rollback_target(lam, d, alias["FunctionVersion"], history)
    keep = needed(alias, target["Version"] if target else None, set(history.rejected))
    gone = []
    for v in releases.versions(lam, d):
        if v["Version"] not in keep and releases.recorded(v):
            lam.delete_function(FunctionName=d.function_name, Qualifier=v["Version"])
            gone.append(v["Version"])
    if gone:
        print(f"SnapStart: deleted version(s) {', '.join(gone)} (their snapshots are billed while they exist)")
    return gone
