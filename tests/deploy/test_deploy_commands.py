"""The deploy commands against moto in this process (no registry, no container, no proxy: seconds): python -m
pipeline.deploy, deploy --dry-run, status, url and logs; and each command's AWS clients, each service's made
once."""

import collections
import dataclasses
import json
import subprocess
import sys
import time

import boto3
import pytest

from aws_local import SetupFailed, start_moto
from pipeline import cli, params
from pipeline.deploy import build, commands, plan, releases, status, teardown
from pipeline.deploy.aws import TAG, Clients
from pipeline.deploy.errors import AccuracyDropped, CanaryRunning
from support import ROOT

READS = ("Get", "List", "Describe", "Filter")  # the operations that change nothing in AWS


def test_the_module_answers_as_python_minus_m():
    """The usage line names the command people type, not __main__.py."""
    done = subprocess.run([sys.executable, "-m", "pipeline.deploy"], cwd=ROOT, capture_output=True, text=True)
    assert done.returncode == 2 and done.stdout == ""
    assert done.stderr.startswith("usage: python -m pipeline.deploy [-h] COMMAND")


# ------------------------------------------------------------------ against moto
@pytest.fixture(scope="module")
def moto_url():
    try:
        process, url = start_moto()
    except SetupFailed as e:
        pytest.fail(f"moto: {e}", pytrace=False)
    yield url
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture
def project(tmp_path, moto_url, monkeypatch, request):
    """A project with what deploy reads from a run (a stand-in model file: nothing runs it here), the
    checkout's function code, and a function name of this test's own in moto."""
    for name, value in {
        "AWS_ENDPOINT_URL": moto_url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    (tmp_path / "lambda").symlink_to(ROOT / "lambda")
    entry = {
        "model": "artifacts/tflite/full_int8.tflite",
        "accuracy": 0.8,
        "excluded": None,
        "excluded_on": {},
        "smoke_photo": "/x/a.jpg",
        "smoke_answer": "hat",
    }
    manifest = {"variant": "full_int8", "labels": ["hat", "shoes"], "input_size": 150, "variants": {"full_int8": entry}}
    (tmp_path / "artifacts/recommend").mkdir(parents=True)
    (tmp_path / "artifacts/recommend/release.json").write_text(json.dumps(manifest))
    (tmp_path / "artifacts/tflite").mkdir()
    (tmp_path / "artifacts/tflite/full_int8.tflite").write_bytes(b"stand-in model")
    monkeypatch.chdir(tmp_path)
    p = params.load(ROOT / "params.yaml")
    name = "cmd-" + request.node.name.lower().replace("_", "-")[-40:].strip("-")
    d = dataclasses.replace(p.deploy, function_name=name, api_name=name, package="zip", variant="", strategy="canary")
    if hasattr(d, "endpoint"):
        d = dataclasses.replace(d, endpoint="http_api")
    return dataclasses.replace(p, deploy=d)


def aws(service):
    return boto3.client(service, region_name="us-east-1")


def make_live(p, key: str, config: str, accuracy: float = 0.8, labels=("hat", "shoes"), versions: int = 1) -> dict:
    """A function with `versions` versions published as deploy publishes them, 'live' on the last."""
    d, lam, iam = p.deploy, aws("lambda"), aws("iam")
    role = iam.create_role(RoleName=d.function_name, AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    lam.create_function(
        FunctionName=d.function_name, Role=role, Runtime="python3.12", Handler=build.HANDLER,
        Code={"ZipFile": b"PK\x05\x06" + bytes(18)},
    )  # fmt: skip
    for n in range(versions):
        described = releases.describe(key, config, "full_int8", accuracy, "aws", "a.jpg", "hat", list(labels))
        lam.update_function_configuration(FunctionName=d.function_name, Description=f"v{n}")
        version = lam.publish_version(FunctionName=d.function_name, Description=described)["Version"]
    history = releases.History(live=[int(version)])
    return lam.create_alias(
        FunctionName=d.function_name, Name="live", FunctionVersion=version, Description=history.text()
    )


def deploy_key(p) -> tuple[str, str]:
    """The key and configuration deploy itself computes (staging build/model as it does)."""
    variant, model = build.chosen_model(p.deploy)
    build.copy_model(variant, model)
    return build.code_key(p.deploy), build.config_key(p.deploy, p.cost.mb_per_vcpu)


@pytest.fixture
def operations():
    """The AWS operations called in this process meanwhile."""
    boto3.setup_default_session()
    called = []
    boto3.DEFAULT_SESSION.events.register("before-call", lambda model, **_: called.append(model.name))
    yield called
    boto3.DEFAULT_SESSION = None


def test_dry_run_of_a_first_deploy_reads_only(project, operations, capsys):
    found = plan.plan(project)
    assert found["action"] == "deploy" and found["live"] is None and found["url"] is None
    steps = "\n".join(found["steps"])
    for expected in ("build the zip", f"create the function {project.deploy.function_name}", "smoke-test it in Lambda",
                     "publish a new version", "create 'live'", "make the endpoint"):  # fmt: skip
        assert expected in steps
    assert operations and all(op.startswith(READS) for op in operations), operations
    assert not (build.MODEL_DIR.exists() or build.ZIP.exists())  # nothing staged or built in the project
    assert "deploy would:" in capsys.readouterr().out


def test_dry_run_computes_the_key_deploy_computes(project, operations):
    key, config = deploy_key(project)
    make_live(project, key, config)
    operations.clear()
    found = plan.decide(project)
    assert found["key"] == key and found["action"] == "nothing" and found["live"] == "1"
    assert all(op.startswith(READS) for op in operations), operations


def test_dry_run_plans_a_canary_and_says_deploys_refusals(project):
    make_live(project, "an-older-key", "an-older-config")
    found = plan.decide(project)
    assert found["action"] == "deploy" and found["live"] == "1"
    assert any(s.startswith("canary: the new version takes 10% for 5 min") for s in found["steps"]), found["steps"]
    lam, name = aws("lambda"), project.deploy.function_name
    lam.update_function_configuration(FunctionName=name, Description="the canary's")
    assert lam.publish_version(FunctionName=name)["Version"] == "2"
    lam.update_alias(FunctionName=name, Name="live", Description=releases.History(live=[1], canary=2).text(),
                     RoutingConfig={"AdditionalVersionWeights": {"2": 0.1}})  # fmt: skip
    with pytest.raises(CanaryRunning, match="takes a share of 'live'"):  # as deploy refuses a second canary
        plan.decide(project)


def test_dry_run_refuses_what_deploy_refuses(project):
    make_live(project, "an-older-key", "an-older-config", accuracy=0.95)  # ours scored 0.8 at verify
    with pytest.raises(AccuracyDropped, match="max_accuracy_drop"):
        plan.decide(project)
    assert plan.decide(project, force=True)["action"] == "deploy"


def test_status_and_url(project, capsys):
    d = project.deploy
    assert status.status(project)["live"] is None
    assert "not deployed" in capsys.readouterr().out
    with pytest.raises(cli.UserError, match="not deployed"):
        status.url(project)
    make_live(project, "k", "c", versions=2)
    lam = aws("lambda")
    history = releases.History(live=[1, 2], rejected=[1], canary=3)
    lam.update_function_configuration(FunctionName=d.function_name, Description="v3")
    lam.publish_version(FunctionName=d.function_name, Description="not ours")
    lam.update_alias(FunctionName=d.function_name, Name="live", Description=history.text(),
                     RoutingConfig={"AdditionalVersionWeights": {"3": 0.25}})  # fmt: skip
    with pytest.raises(cli.UserError, match="no endpoint"):
        status.url(project)
    api = aws("apigatewayv2").create_api(Name=d.api_name, ProtocolType="HTTP", Tags={TAG: d.function_name})
    found = status.status(project)
    out = capsys.readouterr().out
    assert found["live"] == "2" and found["history"] == [1, 2] and found["rejected"] == [1]
    assert found["canary"] == {"version": "3", "share": 0.25}
    assert "version 2 is live (variant full_int8, accuracy 0.8, key k)" in out
    assert "canary: version 3 takes 25% of the requests" in out and "history (oldest first): 1 -> 2" in out
    assert found["url"] == f"{api['ApiEndpoint']}/predict" == status.url(project)
    assert f"URL: {found['url']}" in out


def test_logs_are_the_newest_lines_of_the_window(project, capsys):
    with pytest.raises(cli.UserError, match="no log group"):
        status.logs(project)
    logs, group = aws("logs"), f"/aws/lambda/{project.deploy.function_name}"
    logs.create_log_group(logGroupName=group)
    logs.create_log_stream(logGroupName=group, logStreamName="s")
    now = int(time.time() * 1000)
    events = [(now - 3 * 3600_000, "three hours ago"), (now - 3000, "one"), (now - 2000, "two"), (now - 1000, "three")]
    logs.put_log_events(logGroupName=group, logStreamName="s",
                        logEvents=[{"timestamp": t, "message": m} for t, m in events])  # fmt: skip
    lines = status.logs(project, minutes=60, limit=2)
    assert [line.split(" ", 2)[2] for line in lines] == ["two", "three"]
    assert capsys.readouterr().out.splitlines() == lines
    assert [line.split(" ", 2)[2] for line in status.logs(project, minutes=240, limit=10)][0] == "three hours ago"


def test_the_url_of_a_function_url_deployment_is_lives_function_url(project):
    if not hasattr(project.deploy, "endpoint"):
        pytest.skip("deploy.endpoint not in this checkout's params")
    p = dataclasses.replace(project, deploy=dataclasses.replace(project.deploy, endpoint="function_url"))
    make_live(p, "k", "c")
    with pytest.raises(cli.UserError, match="no endpoint"):
        status.url(p)
    name = p.deploy.function_name
    made = aws("lambda").create_function_url_config(FunctionName=name, Qualifier="live", AuthType="NONE")
    assert status.url(p) == made["FunctionUrl"] == status.read(p.deploy)["url"]


@pytest.fixture
def made_clients(monkeypatch) -> collections.Counter:
    """How many boto3 clients of each service this process makes meanwhile."""
    made, real = collections.Counter(), boto3.client

    def counted(service, *args, **kwargs):
        made[service] += 1
        return real(service, *args, **kwargs)

    monkeypatch.setattr(boto3, "client", counted)
    return made


def test_a_commands_clients_are_made_once_each_and_never_shared(made_clients):
    """Each service's client on its first use, then the same one; another command's holder makes its own."""
    first, second = Clients("us-east-1"), Clients("us-east-1")
    assert made_clients == {}
    assert first.lam is first.lam and first.lam is not second.lam
    assert made_clients == {"lambda": 2}


def test_each_command_makes_each_services_client_once(project, made_clients, capsys):
    """deploy (its lock included), deploy --dry-run, status, url, logs, rollback and destroy, each run
    here in turn: none makes a service's client twice."""
    key, config = deploy_key(project)
    make_live(project, key, config, versions=2)
    d = project.deploy
    aws("lambda").update_alias(
        FunctionName=d.function_name, Name="live", Description=releases.History(live=[1, 2]).text()
    )
    runs = {
        "deploy": lambda: commands.deploy(project),  # nothing to deploy: it settles the log group and the API
        "deploy --dry-run": lambda: plan.plan(project),
        "status": lambda: status.status(project),
        "url": lambda: status.url(project),
        "logs": lambda: status.logs(project),
        "rollback": lambda: commands.rollback(project, force=True),
        "destroy": lambda: teardown.destroy(project, yes=True),
    }
    for name, run in runs.items():
        made_clients.clear()
        run()
        twice = {service: n for service, n in made_clients.items() if n > 1}
        assert made_clients and not twice, f"{name} made these clients more than once: {twice}"
    assert "nothing to deploy" in capsys.readouterr().out
