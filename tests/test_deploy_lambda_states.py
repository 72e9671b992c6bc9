"""What a real account does to a deploy and moto does not, played by the proxy in front of moto: a
function whose creation Failed, an update in progress, an account with little concurrency to
spare; and what deploy must do first on a new account (log group, concurrency cap before the
first invocation)."""

from deploy_tools import (
    client,
    deploy,
    functions_named,
    live,
    one_line_error,
)

from conftest import set_params

pytest_plugins = ["deploy_env"]  # the fixtures: aws, names, project, built_image, seeded
# AWS's words when Lambda cannot pull a new image function's image.
IMAGE_DENIED = "Lambda does not have permission to access the ECR image. Check the ECR permissions."


def test_a_failed_function_is_recreated_and_an_update_in_progress_is_waited_for(project, aws, names, seeded):
    lam, proxy, name = client(aws, "lambda"), aws["proxy"], names["function"]
    proxy.fail_creation[name] = IMAGE_DENIED
    failed = one_line_error(deploy(project, aws))
    assert "did not become ready" in failed and IMAGE_DENIED in failed

    again = deploy(project, aws)
    assert again.returncode == 0, again.stdout + again.stderr
    assert f"{name} is Failed (ImageAccessDenied: {IMAGE_DENIED}) and no version of it was published" in again.stdout
    assert "deleting it and creating it again" in again.stdout and live(lam, name) == "1"

    proxy.pending_reads[(name, "$LATEST")] = 2  # someone's update still running: InProgress twice
    set_params(project, **{"deploy.memory_mb": 2048})
    waited = deploy(project, aws)
    assert waited.returncode == 0 and "in progress: waiting for it to finish first" in waited.stdout, waited.stderr
    assert live(lam, name) == "2" and proxy.pending_reads[(name, "$LATEST")] == 0


def test_concurrency_is_checked_first_and_capped_with_the_log_group_before_the_first_invoke(
    project, aws, names, seeded
):
    lam, proxy, name = client(aws, "lambda"), aws["proxy"], names["function"]
    proxy.account["UnreservedConcurrentExecutions"] = 50  # a new account: 10 or 50, not 1,000
    try:
        refused = one_line_error(deploy(project, aws))
    finally:
        proxy.account["UnreservedConcurrentExecutions"] = 1000
    assert "50 of them unreserved" in refused and "set deploy.reserved_concurrency: 0" in refused, refused
    assert functions_named(lam, name) == []

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
