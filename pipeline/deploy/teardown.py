"""make destroy: delete what deploy created, and only that (what carries its tag)."""

import sys
from pathlib import Path

from botocore.client import BaseClient

from pipeline import cli, params, paths
from pipeline.deploy import alarms, aws, function_url, resources
from pipeline.deploy.aws import Clients, aws_errors, caller


def destroy(p: params.Params, yes: bool) -> list[str]:
    """Delete what deploy created (what carries its tag), each resource on its own: one that fails
    does not stop the rest, and every failure is reported at the end. Same-named resources that
    deploy did not create (a shared role, someone's API) are left alone, and named."""
    d = p.deploy
    if not yes:
        if not sys.stdin.isatty():
            raise cli.UserError("destroy asks first: run it in a terminal, or pass --yes")
        question = (
            f"delete {d.function_name}, its API or function URL, alarms, role, log group, image repository and "
            "bucket? [y/N] "
        )
        if input(question).strip().lower() != "y":
            print("nothing deleted")
            return []
    clients = Clients(d.region)
    with aws_errors():
        account, partition = caller(clients)
    gone, kept, failed, waiting = [], [], [], []
    for what, remove in teardown(d, clients, account, partition):
        if what in after_function(d) and any(f.startswith(f"function {d.function_name}:") for f in failed):
            with aws_errors():
                there = function_exists(clients.lam, d)
            if there:  # the function still runs with its role and image: they go when it has gone
                waiting.append(what)
                continue
        try:
            with aws_errors():
                deleted, left = remove()
        except cli.UserError as e:
            failed.append(f"{what}: {e}")
            continue
        gone += deleted
        kept += left
    Path(paths.DEPLOY_RECORD).unlink(missing_ok=True)
    if gone or not (kept or failed):
        print("deleted " + ", ".join(gone) if gone else "nothing to delete: none of it exists")
    if kept:
        print(f"left alone (there, but not created by deploy: no {aws.TAG} tag): " + ", ".join(kept))
    if waiting:
        print(
            f"not deleted while function {d.function_name} still exists (it runs with them; destroy again "
            "once it is deleted): " + ", ".join(waiting)
        )
    if failed:
        raise cli.UserError(f"{len(failed)} could not be deleted: " + "; ".join(failed))
    return gone


def after_function(d: params.Deploy) -> set[str]:
    """What the function runs with: not deleted while it still exists (its deletion failed)."""
    return {f"role {d.role_name}", f"repository {d.repository}"}


def function_exists(lam: BaseClient, d: params.Deploy) -> bool:
    try:
        lam.get_function_configuration(FunctionName=d.function_name)
        return True
    except lam.exceptions.ResourceNotFoundException:
        return False


def teardown(d: params.Deploy, clients: Clients, account: str, partition: str):
    """(what, remove) for each resource; remove() returns what it deleted and what it left alone
    (there, but not deploy's). Each remove() makes its service's client, if it is the first, inside
    the caller's aws_errors()."""

    def one(what: str, ours: bool, delete) -> tuple[list, list]:
        if not ours:
            return [], [what]
        delete()
        return [what], []

    def apis():
        apigw = clients.apigw
        mine = resources.find_apis(apigw, d)
        for api in mine:
            apigw.delete_api(ApiId=api["ApiId"])
        named = [f"API {d.api_name} ({a['ApiId']})" for a in mine]
        return named, [f"API {d.api_name} ({a['ApiId']})" for a in resources.find_apis(apigw, d, ours=False)]

    def canary_alarms():
        cw = clients.cw
        found = alarms.find_left(cw, d)  # a deploy that was killed during a canary leaves its alarms
        alarms.delete(cw, found)
        return [f"alarm {n}" for n in found], []

    def function():
        lam, what = clients.lam, f"function {d.function_name} and its versions"
        try:
            arn = lam.get_function_configuration(FunctionName=d.function_name)["FunctionArn"]
        except lam.exceptions.ResourceNotFoundException:
            return [], []
        # ListTags, not GetFunction's Tags: GetFunction leaves them out without lambda:ListTags.
        ours = aws.tagged(lam.list_tags(Resource=arn.removesuffix(":$LATEST")).get("Tags"), d)
        return one(what, ours, lambda: lam.delete_function(FunctionName=d.function_name))

    def repository():
        ecr, what = clients.ecr, f"repository {d.repository} and its images"
        try:
            repo = ecr.describe_repositories(repositoryNames=[d.repository])["repositories"][0]
        except ecr.exceptions.RepositoryNotFoundException:
            return [], []
        ours = aws.tagged(ecr.list_tags_for_resource(resourceArn=repo["repositoryArn"]).get("tags"), d)
        return one(what, ours, lambda: ecr.delete_repository(repositoryName=d.repository, force=True))

    def outcome(what: str, done: "bool | None") -> tuple[list, list]:
        return ([what], []) if done else ([], [what] if done is None else [])

    def log_group():
        what = f"log group {resources.log_group(d)}"
        return outcome(what, resources.delete_log_group(clients.logs, d, account, partition))

    def url():
        return outcome(
            f"function URL of {d.function_name}:live", function_url.delete(clients.lam, d, account, partition)
        )

    def role():
        return outcome(f"role {d.role_name}", resources.delete_role(clients.iam, d))

    def buckets():
        return [f"bucket {b}" for b in resources.delete_buckets(clients.s3, d, account)], []

    yield f"API {d.api_name}", apis
    yield "alarms", canary_alarms
    yield "function URL", url
    yield f"function {d.function_name}", function
    yield f"log group {resources.log_group(d)}", log_group
    yield f"role {d.role_name}", role
    yield f"repository {d.repository}", repository
    yield "buckets", buckets
