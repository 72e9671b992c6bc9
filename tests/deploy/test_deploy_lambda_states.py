"""What a real account does to a deploy and moto does not, played by the proxy in front of moto: a
function whose creation Failed, an update in progress, an account with little concurrency to
spare (a new one's limit is 10), another partition (aws-cn); what deploy must do first on a new
account (log group, concurrency cap before the first invocation); and a stand-in for AWS that
does not serve GetAccountSettings (plain moto)."""

import json

import yaml
from deploy_tools import (
    client,
    deploy,
    live,
    moto_client,
    one_line_error,
)

from pipeline import params
from pipeline.deploy import functions
from support import ROOT, set_params

# AWS's words when Lambda cannot pull a new image function's image.
IMAGE_DENIED = "Lambda does not have permission to access the ECR image. Check the ECR permissions."


def test_a_new_china_account_a_failed_function_and_an_update_in_progress(project, aws, names, seeded):
    """A new account (concurrency limit 10) in the aws-cn partition, with the default params: the
    partition is the caller's in every ARN deploy writes, and no concurrency is reserved (a warning)."""
    lam, proxy, name = client(aws, "lambda", "cn-north-1"), aws["proxy"], names["function"]
    set_params(project, **{"deploy.region": "cn-north-1"})
    assert yaml.safe_load((project / "params.yaml").read_text())["deploy"]["reserved_concurrency"] == 10
    proxy.fail_creation[name] = IMAGE_DENIED
    proxy.account.update(ConcurrentExecutions=10, UnreservedConcurrentExecutions=10)
    try:
        failed = one_line_error(deploy(project, aws))
        assert "did not become ready" in failed and IMAGE_DENIED in failed

        again = deploy(project, aws)
    finally:
        proxy.account.update(ConcurrentExecutions=1000, UnreservedConcurrentExecutions=1000)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{name} is Failed (ImageAccessDenied: {IMAGE_DENIED}) and no version of it was published" in again.stdout
    assert "deleting it and creating it again" in again.stdout and live(lam, name) == "1"
    assert "warning: this account runs at most 10 at once" in again.stdout
    assert "ReservedConcurrentExecutions" not in lam.get_function_concurrency(FunctionName=name)
    attached = client(aws, "iam", "cn-north-1").list_attached_role_policies(RoleName=names["role"])["AttachedPolicies"]
    assert [p["PolicyArn"] for p in attached] == ["arn:aws-cn:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"]
    [permission] = json.loads(lam.get_policy(FunctionName=name, Qualifier="live")["Policy"])["Statement"]
    assert '"arn:aws-cn:execute-api:cn-north-1:123456789012:' in json.dumps(permission["Condition"]), permission

    proxy.pending_reads[(name, "$LATEST")] = 2  # someone's update still running: InProgress twice
    set_params(project, **{"deploy.memory_mb": 2048})
    waited = deploy(project, aws)
    assert waited.returncode == 0 and "in progress: waiting for it to finish first" in waited.stdout, waited.stderr
    assert live(lam, name) == "2" and proxy.pending_reads[(name, "$LATEST")] == 0


def test_concurrency_is_checked_first_and_capped_with_the_log_group_before_the_first_invoke(
    project, aws, names, seeded
):
    proxy, name = aws["proxy"], names["function"]
    set_params(project, **{"deploy.smoke_test": "aws"})
    first = deploy(project, aws)
    assert first.returncode == 0, first.stdout + first.stderr
    calls = [c for c in proxy.calls if name.encode() in c["body"] or name in c["path"]]
    order = [
        "CreateLogGroup" if c["target"].endswith(".CreateLogGroup") else
        "PutRetentionPolicy" if c["target"].endswith(".PutRetentionPolicy") else
        "PutFunctionConcurrency" if c["method"] == "PUT" and c["path"].endswith("/concurrency") else
        "Invoke" if c["path"].endswith("/invocations") else
        "PublishVersion" if c["method"] == "POST" and c["path"].endswith("/versions") else None
        for c in calls
    ]  # fmt: skip
    order = [o for o in order if o]
    assert order.index("Invoke") > max(order.index(o) for o in ("CreateLogGroup", "PutRetentionPolicy"))
    assert order.index("PutFunctionConcurrency") < order.index("Invoke") < order.index("PublishVersion"), order


def test_an_account_settings_call_a_stand_in_does_not_serve_is_a_warning(aws, capsys):
    """Plain moto (no proxy) answers GetAccountSettings with 404: deploy goes on, reserving what the params say."""
    d = params.load(ROOT / "params.yaml").deploy
    assert functions.reservation(moto_client(aws, "lambda"), d, exists=False) == 10
    out = capsys.readouterr().out
    assert out.startswith("warning: ") and "GetAccountSettings" in out and "404" in out, out
