"""Deploy's decisions that need no AWS to check: the partition read from the caller's ARN, a concurrency
reservation the account cannot spare, the signature of a request to an AWS_IAM function URL, where
SnapStart is allowed, the canary's schedule and the params it needs, and docker pushing by platform.
Against the stand-ins: tests/deploy."""

import dataclasses
import os

import pytest

from pipeline import cli, params
from pipeline.deploy import canary, functions, limits, releases, resources
from pipeline.deploy.aws import partition
from support import ROOT


def test_the_partition_is_read_from_the_callers_arn():
    """China and GovCloud accounts write their ARNs in aws-cn and aws-us-gov: deploy writes none of its own in aws."""
    assert partition("arn:aws-cn:sts::123456789012:assumed-role/deployer/ci") == "aws-cn"
    assert partition("arn:aws-us-gov:iam::123456789012:user/ci") == "aws-us-gov"
    assert partition("arn:aws:sts::123456789012:user/moto") == "aws"
    assert resources.basic_execution("aws-cn") == "arn:aws-cn:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


class Account:
    """GetAccountSettings and GetFunctionConcurrency as Lambda answers them, for a given account."""

    def __init__(self, limit: int, unreserved: int, mine: "int | None" = None):
        self.limit, self.unreserved, self.mine = limit, unreserved, mine

    def get_account_settings(self):
        return {"AccountLimit": {"ConcurrentExecutions": self.limit, "UnreservedConcurrentExecutions": self.unreserved}}

    def get_function_concurrency(self, FunctionName):
        return {"ReservedConcurrentExecutions": self.mine} if self.mine is not None else {}


def test_a_reservation_the_account_cannot_spare_is_not_made_with_a_warning(capsys):
    """Lambda keeps 100 of an account's limit unreserved: a new account (limit 10) can reserve none, and
    the default reserved_concurrency 10 must not stop its first deploy."""
    d = params.load(ROOT / "params.yaml").deploy
    assert d.reserved_concurrency == 10  # the default this is about
    assert functions.reservation(Account(1000, 1000), d, exists=False) == 10
    assert functions.reservation(Account(1000, 95, mine=10), d, exists=True) == 0  # 95 + its own 10 - 100 = 5
    assert functions.reservation(Account(1000, 110), d, exists=False) == 10  # 110 - 100: exactly 10 to spare
    assert capsys.readouterr().out.count("warning: ") == 1
    assert functions.reservation(Account(10, 10), d, exists=False) == 0
    out = capsys.readouterr().out
    assert out.startswith("warning: ") and "runs at most 10 at once" in out and "reserving none" in out, out
    assert "deploy.reserved_concurrency 10" in out and out.count("\n") == 1


def test_the_client_signs_for_an_aws_iam_url_with_the_urls_region(monkeypatch):
    """lambda/client.py --iam: SigV4 for service lambda in the region the URL names, over the body it sends."""
    import importlib.util

    from support import ROOT

    spec = importlib.util.spec_from_file_location("client", ROOT / "lambda/client.py")
    client_module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(client_module)
    sent = {}

    class Answer:
        status_code = 200

        def json(self):
            return {"top": "hat"}

    def post(url, data=None, headers=None, timeout=None, json=None):
        sent.update(url=url, data=data, headers=headers, json=json)
        return Answer()

    monkeypatch.setattr(client_module.requests, "post", post)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    url = "https://abc123.lambda-url.eu-west-1.on.aws/"
    assert client_module.ask(url, {"image": "aGk="}, iam=True) == {"top": "hat"}
    authorization = sent["headers"]["Authorization"]
    assert authorization.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
    assert "/eu-west-1/lambda/aws4_request" in authorization and "X-Amz-Date" in sent["headers"]
    assert sent["data"] == b'{"image": "aGk="}' and sent["json"] is None
    client_module.ask(url, {"image": "aGk="})  # unsigned without --iam
    assert sent["json"] == {"image": "aGk="} and sent["headers"] is None


@pytest.mark.parametrize(
    ("package", "runtime", "base", "refused"),
    [
        ("zip", "python3.12", "", None),
        ("zip", "python3.13", "", None),
        ("zip", "python3.11", "", "needs a python3.12+ runtime"),
        ("image", "", "public.ecr.aws/lambda/python:3.12", None),
        ("image", "", "public.ecr.aws/lambda/python:3.13-arm64", None),
        ("image", "", "public.ecr.aws/lambda/python:3.11", "needs an image on AWS's Python 3.12+ base"),
        ("image", "", "localhost/lambda-python-standin:3.12", "needs an image on AWS's Python 3.12+ base"),
    ],
)
def test_snapstart_only_where_aws_supports_it_for_the_package(package, runtime, base, refused):
    import dataclasses

    from pipeline import params
    from pipeline.deploy import snapstart
    from support import ROOT

    d = dataclasses.replace(params.load(ROOT / "params.yaml").deploy, snapstart=True, package=package,
                            zip_runtime=runtime or "python3.12", base_image=base or "x")  # fmt: skip
    why = snapstart.refusal(d)
    assert (why is None) if refused is None else (refused in why)
    assert snapstart.refusal(dataclasses.replace(d, snapstart=False)) is None


def test_the_schedule_and_the_params_it_needs():
    d = params.load().deploy
    assert canary.schedule(d) == []  # all_at_once, the default
    canary_d = dataclasses.replace(d, strategy="canary", canary_percent=10, canary_minutes=5)
    assert canary.schedule(canary_d) == [(10, 300)]
    linear = dataclasses.replace(d, strategy="linear", linear_percent=30, linear_minutes=0.5)
    assert canary.schedule(linear) == [(30, 30), (60, 30), (90, 30)]
    for key, value in (("canary_percent", 100), ("linear_percent", 0), ("canary_minutes", 0), ("watch_every_s", -1),
                       ("watch_after_minutes", -1), ("min_canary_requests", -1)):  # fmt: skip
        with pytest.raises(cli.UserError, match=f"deploy.{key} must be"):
            limits.check(dataclasses.replace(d, **{key: value}))
    # The history marks a canary while it runs; promoting or rolling it back clears the mark.
    history = releases.History([1, 2], [3]).canary_started(4)
    assert releases.read({"Description": history.text()}) == history
    assert history.canary_rejected() == releases.History([1, 2], [3, 4])
    assert history.made_live(4) == releases.History([1, 2, 4], [3])
    assert canary.in_progress({"RoutingConfig": {"AdditionalVersionWeights": {"4": 0.1}}}, history) == "4"
    assert (
        canary.in_progress({"RoutingConfig": {"AdditionalVersionWeights": {"4": 0.1}}}, releases.History([1])) is None
    )


FAKE_DOCKER = """#!/bin/sh
# docker as far as push_image uses it: `push --help` lists --platform where $NEW_DOCKER is set (docker 28+).
if [ "$1" = push ] && [ "$2" = --help ]; then
  [ -n "$NEW_DOCKER" ] && echo "      --platform string   Push a platform-specific manifest as a single-platform image"
  exit 0
fi
echo "$@" >> "$(dirname "$0")/calls"
"""


def test_docker_pushes_by_platform_where_it_can(tmp_path, monkeypatch):
    """docker 29's containerd image store pushes an image index unless push names the platform."""
    from pipeline.deploy.image import Registry, push_image

    (tmp_path / "docker").write_text(FAKE_DOCKER)
    (tmp_path / "docker").chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:{os.environ['PATH']}")
    monkeypatch.setenv("DOCKER_HOST", "unix:///nowhere.sock")
    registry = Registry("127.0.0.1:9", "repo", None, plain_http=True)
    monkeypatch.setenv("NEW_DOCKER", "1")
    push_image("docker", registry, "127.0.0.1:9/repo:k", "arm64")
    monkeypatch.delenv("NEW_DOCKER")
    push_image("docker", registry, "127.0.0.1:9/repo:k", "x86_64")
    calls = [line.split()[2:] for line in (tmp_path / "calls").read_text().splitlines()]  # after --config DIR
    assert calls == [["push", "--platform", "linux/arm64", "127.0.0.1:9/repo:k"], ["push", "127.0.0.1:9/repo:k"]]
