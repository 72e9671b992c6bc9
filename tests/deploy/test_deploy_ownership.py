"""What deploy owns and what it leaves alone: destroy deletes only what carries deploy's tag (not a
same-named API or a shared role made by someone else) and goes on past a failure; an image tag,
once pushed, never moves (a version may run its digest), not even when the registry fails to
answer for a while."""

import json

from deploy_tools import apis_named, client, deploy, live, one_line_error, registry_digest, registry_tags
from registry_proxy import FlakyRegistry

from support import set_params

TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}


def test_destroy_deletes_only_what_deploy_created_and_goes_on_past_a_failure(project, aws, names, seeded):
    lam, apigw, iam, proxy = client(aws, "lambda"), client(aws, "apigatewayv2"), client(aws, "iam"), aws["proxy"]
    name = names["function"]
    theirs = apigw.create_api(Name=names["api"], ProtocolType="HTTP")["ApiId"]  # API names are not unique
    iam.create_role(RoleName=names["role"], AssumeRolePolicyDocument=json.dumps(TRUST))  # a shared role
    first = deploy(project, aws)
    assert first.returncode == 0 and live(lam, name) == "1", first.stdout + first.stderr
    ours = [a["ApiId"] for a in apis_named(apigw, names["api"]) if a["ApiId"] != theirs]
    assert len(ours) == 1 and theirs not in json.dumps(lam.get_policy(FunctionName=name, Qualifier="live"))

    proxy.refuse_delete[name] = 1  # the function's deletion fails once (an update in progress)
    failed = deploy(project, aws, "destroy", "--yes")
    message = one_line_error(failed)
    assert "1 could not be deleted: function" in message and "ResourceConflictException" in message, message
    deleted = next(line for line in failed.stdout.splitlines() if line.startswith("deleted "))
    for what in ("log group", f"API {names['api']} ({ours[0]})"):
        assert what in deleted  # deleted all the same
    assert theirs in failed.stdout
    # What the function still runs with stays while it exists: its role (here not deploy's) and its image.
    waiting = failed.stdout.split(f"not deleted while function {name} still exists")[1]
    assert f"role {names['role']}" in waiting and f"repository {names['repository']}" in waiting
    assert "repository" not in deleted and client(aws, "ecr").describe_repositories(
        repositoryNames=[names["repository"]]
    )

    gone = deploy(project, aws, "destroy", "--yes")
    assert gone.returncode == 0 and f"function {name}" in gone.stdout, gone.stdout + gone.stderr
    assert "repository" in gone.stdout and f"role {names['role']}" in gone.stdout.split("left alone")[1]
    assert [a["ApiId"] for a in apis_named(apigw, names["api"])] == [theirs]
    assert iam.get_role(RoleName=names["role"])["Role"]["RoleName"] == names["role"]
    apigw.delete_api(ApiId=theirs)
    for policy in iam.list_attached_role_policies(RoleName=names["role"])["AttachedPolicies"]:
        iam.detach_role_policy(RoleName=names["role"], PolicyArn=policy["PolicyArn"])  # deploy attached it
    iam.delete_role(RoleName=names["role"])


def test_a_registry_that_fails_for_a_while_neither_rebuilds_nor_moves_a_tag(project, aws, names, seeded):
    repository = names["repository"]
    pushed = registry_digest(aws, repository, seeded)
    flaky = FlakyRegistry(aws["registry"])
    try:
        set_params(project, **{"deploy.registry": flaky.host})
        flaky.failures[f"/v2/{repository}/manifests/"] = 1  # once: read again, and it answers
        first = deploy(project, aws)
        assert first.returncode == 0 and "already: not rebuilding" in first.stdout, first.stdout + first.stderr
        assert not built(first) and flaky.failed

        handler = project / "lambda/serving/handler.py"  # new code: a key the registry has no image for
        handler.write_text(handler.read_text() + "\n# changed\n")
        flaky.failures[f"/v2/{repository}/manifests/"] = 10  # longer than deploy tries
        down = deploy(project, aws)
        assert "HTTP 503" in one_line_error(down) and not built(down)
    finally:
        flaky.close()
    assert registry_tags(aws, repository) == [seeded] and registry_digest(aws, repository, seeded) == pushed


def built(result) -> bool:
    return any(line.startswith("building ") for line in result.stdout.splitlines())
