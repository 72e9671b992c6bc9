"""Canary and linear releases, offline. Each test's function starts with a live version 1 that deploy
published (made here straight in moto, in seconds, under the project's own code key: no package is
built); each deploy then changes only the configuration (memory), so it publishes a new version of
the same code after its smoke test in "Lambda" (moto's configurable answer for a zip function), and
routes it a share of 'live' under its CloudWatch alarms, the canary's minutes shortened to seconds.

The test plays CloudWatch's part: moto stores alarms (their metrics, metric math, thresholds, tags)
and keeps whatever state set_alarm_state gives them, but never evaluates one against metric data,
and it routes no invocation by the alias's weights. The proxy's evaluator (lambda_proxy.judge_alarms)
sets each alarm's state as CloudWatch would compute it, with the alarm's own settings as deploy
stored them, over the EMF lines a version's requests write (made by the handler's metrics module:
moto runs no zip function); the requests a version answered are datapoints the test puts, which
moto's GetMetricData counts as CloudWatch does. The proxy enforces UpdateAlias's RevisionId as
Lambda does (moto ignores it)."""

import contextlib
import io
import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from deploy_tools import (
    as_in_a_terminal,
    client,
    deploy,
    local_aws,
    moto_client,
    one_line_error,
    verify_answer,
    zip_invokes_answer,
)
from lambda_proxy import HARD, emf_traffic, judge_alarms

from support import BIN, LABELS, set_params

TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
KEY = (
    "from pipeline import params\nfrom pipeline.deploy import build\n"
    "d = params.load().deploy\nbuild.copy_model(*build.chosen_model(d))\nprint(build.code_key(d))\n"
)


class Deploying:
    """A deploy running in the background, its output read as it comes (for signals and mid-way checks)."""

    def __init__(self, project: Path, aws: dict):
        env = {**os.environ, **aws["env"], "PATH": f"{BIN}:{os.environ['PATH']}"}
        env["PYTHONPATH"] = f"{project}:{project / 'lambda'}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pipeline.deploy", "deploy"], cwd=project, env=env, text=True,
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=as_in_a_terminal,
        )  # fmt: skip
        self.lines, self.seen = queue.Queue(), []
        self.reader = threading.Thread(target=lambda: [self.lines.put(x) for x in self.process.stdout], daemon=True)
        self.reader.start()

    def wait_for(self, text: str, timeout: float = 60) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=0.2)
            except queue.Empty:
                assert self.process.poll() is None, (
                    f"deploy ended before {text!r}: {self.seen} {self.process.stderr.read()}"
                )
                continue
            self.seen.append(line)
            if text in line:
                return line
        raise AssertionError(f"no {text!r} within {timeout} s: {self.seen}")

    def finish(self, timeout: float = 60) -> tuple[int, str]:
        code = self.process.wait(timeout=timeout)
        self.reader.join(timeout=10)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return code, self.process.stderr.read()

    def stdout(self) -> str:
        return "".join(self.seen)


@pytest.fixture(scope="module")
def aws():
    """moto and the Lambda-like proxy alone: these tests deploy zip functions, so no image is built,
    pushed or run, and neither the registry nor the Lambda-like base image is needed."""
    with local_aws(registry_host="", base="") as found:
        yield found


@pytest.fixture
def released(project, aws, names) -> str:
    """Version 1 of the test's zip function, live, recorded as deploy records what it published (with
    the project's code key and another configuration); canary params with seconds, not minutes.
    The smoke-test answer each deploy's Invoke gets (verify's for its photo)."""
    lam, name = moto_client(aws, "lambda"), names["function"]
    set_params(
        project,
        **{
            "deploy.package": "zip",
            "deploy.smoke_test": "aws",
            "deploy.strategy": "canary",
            "deploy.watch_every_s": 0.2,
            "deploy.watch_after_minutes": 0,
        },
    )
    key = subprocess.run(
        [sys.executable, "-c", KEY], cwd=project, env={"PYTHONPATH": f"{project}:{project / 'lambda'}"},
        capture_output=True, text=True, check=True,
    ).stdout.strip()  # fmt: skip
    role = moto_client(aws, "iam").create_role(RoleName=names["role"], AssumeRolePolicyDocument=json.dumps(TRUST))
    photo, top = verify_answer(project, "full_int8")
    lam.create_function(
        FunctionName=name, Runtime="python3.12", Handler="serving.handler.lambda_handler",
        Role=role["Role"]["Arn"], Code={"ZipFile": tiny_zip()}, Tags={"clothes-serverless": name},
    )  # fmt: skip
    record = {"by": "clothes-serverless", "key": key, "config": "before", "variant": "full_int8", "smoke": "aws"}
    lam.publish_version(FunctionName=name, Description=json.dumps({**record, "photo": Path(photo).name, "top": top}))
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="1")
    return top


def tiny_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("serving/handler.py", "def lambda_handler(event, context):\n    return {}\n")
    return buffer.getvalue()


def alias(aws, name) -> dict:
    found = client(aws, "lambda").get_alias(FunctionName=name, Name="live")
    return {
        "version": found["FunctionVersion"],
        "weights": (found.get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {},
        "history": json.loads(found["Description"]),
    }


def live_version(aws, name) -> str:
    return client(aws, "lambda").get_alias(FunctionName=name, Name="live")["FunctionVersion"]


def aliases(aws, name) -> list[str]:
    """The function's aliases: 'live', and 'deploy-lock' while a deploy holds the lock."""
    return sorted(a["Name"] for a in client(aws, "lambda").list_aliases(FunctionName=name)["Aliases"])


def judge(aws, name: str, version: str, minutes: int = 4, **fields) -> dict:
    """CloudWatch's judgement now of the canary's alarms on version `version` over the last minutes of
    a canary of 6 requests a minute to it (2 of them from new execution environments, carrying the
    model's load) and 20 to version 1; fields make the new version's requests bad."""
    start = (time.time() // 60 - (minutes - 1)) * 60
    documents = [
        *emf_traffic(name, version, "full_int8", start, minutes, 6, cold_per_minute=2, **fields),
        *emf_traffic(name, "1", "full_int8", start, minutes, 20),  # enough to judge, fewer to make
    ]
    found = judge_alarms(client(aws, "cloudwatch"), f"{name}-v{version}-", documents, time.time())
    return {n.removeprefix(f"{name}-v{version}-"): state for n, state in found.items()}


def canary_alarms(aws, name, version) -> dict:
    found = client(aws, "cloudwatch").describe_alarms(AlarmNamePrefix=f"{name}-v{version}-")["MetricAlarms"]
    return {a["AlarmName"].removeprefix(f"{name}-v{version}-"): a for a in found}


def ended(aws, name: str, canary: int, live: list, rejected: list) -> None:
    """The canary of version `canary` is over: no weights, 'live' on the last version of live, the
    release history exactly as given, the canary's alarms gone."""
    assert alias(aws, name) == {
        "version": str(live[-1]),
        "weights": {},
        "history": {"by": "clothes-serverless", "live": live, "rejected": rejected},
    }
    assert canary_alarms(aws, name, canary) == {}


def dimensions(name: str, version: str) -> list[dict]:
    """The function's own metrics' dimensions for one version of the full int8 variant (serving/metrics.py)."""
    return [
        {"Name": "function", "Value": name},
        {"Name": "version", "Value": version},
        {"Name": "variant", "Value": "full_int8"},
    ]


def answered(aws, name: str, version: str, requests: int) -> None:
    """What the function's log lines make in CloudWatch: one Latency sample per request, now."""
    values = [40.0 + i for i in range(requests)]
    data = {"MetricName": "Latency", "Dimensions": dimensions(name, version), "Unit": "Milliseconds", "Values": values}
    moto_client(aws, "cloudwatch").put_metric_data(Namespace="clothes-serverless", MetricData=[data])


@contextlib.contextmanager
def on_first_call(aws, operation: str, action):
    """action() runs when deploy first calls this CloudWatch operation, before moto answers it (the
    proxy passes CloudWatch's calls through: the test's hook on it, over HTTP like every call)."""
    proxy, original, done = aws["proxy"], aws["proxy"].answer, []

    def answer(method, path, query, body, headers):
        if (headers.get("X-Amz-Target") or "").endswith(f".{operation}") and not done:  # CloudWatch's JSON protocol
            done.append(action())
        return original(method, path, query, body, headers)

    proxy.answer = answer
    try:
        yield done
    finally:
        proxy.answer = original


def test_an_alarm_mid_way_rolls_back_quiet_alarms_promote_and_linear_steps(project, aws, names, released):
    name, cw = names["function"], moto_client(aws, "cloudwatch")
    # 10 minutes: the alarm below ends this canary, however slow the machine gets meanwhile (a canary
    # of 1 minute promoted itself under a loaded CI run and deleted the alarms the test then judged).
    set_params(project, **{"deploy.memory_mb": 2048, "deploy.canary_minutes": 10.0})
    zip_invokes_answer(aws, released)
    running = Deploying(project, aws)
    running.wait_for("canary: version 2 takes 10% of the traffic, version 1 the rest")
    # Mid-way: 'live' is still version 1 and routes version 2 its share; the history marks the canary.
    assert alias(aws, name) == {
        "version": "1",
        "weights": {"2": 0.1},
        "history": {"by": "clothes-serverless", "live": [1], "rejected": [], "canary": 2},
    }
    made = canary_alarms(aws, name, 2)
    assert sorted(made) == ["confidence", "function-errors", "p90-latency", "server-errors"]
    # What they judge is tested in test_canary_judgement.py; here that they are stored as deploy wrote them.
    failed = {q["Id"]: q for q in made["function-errors"]["Metrics"]}
    lambda_dims = [{"Name": "FunctionName", "Value": name}, {"Name": "Resource", "Value": f"{name}:live"},
                   {"Name": "ExecutedVersion", "Value": "2"}]  # fmt: skip
    for query, metric in (("errors", "Errors"), ("invocations", "Invocations")):
        stat = failed[query]["MetricStat"]
        assert stat["Metric"] == {"Namespace": "AWS/Lambda", "MetricName": metric, "Dimensions": lambda_dims}
        assert (stat["Stat"], stat["Period"], failed[query]["ReturnData"]) == ("Sum", 60, False)
    for alarm in made.values():
        assert (alarm["TreatMissingData"], alarm["ComparisonOperator"]) == ("notBreaching", "GreaterThanThreshold")
        assert (alarm["EvaluationPeriods"], alarm["DatapointsToAlarm"]) == (5, 3)
        tags = cw.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]
        assert tags == [{"Key": "clothes-serverless", "Value": name}]

    # A second deploy meanwhile (a CI double trigger) stops at once, naming the lock's holder; it
    # stages nothing and touches neither the canary nor its alarms.
    staged = project / "build/model/model.json"
    before = staged.stat().st_mtime_ns
    assert aliases(aws, name) == ["deploy-lock", "live"]
    second = one_line_error(deploy(project, aws))
    assert re.search(
        rf"another deploy of {name} is running: \S+ pid {running.process.pid} holds its lock since ", second
    )
    assert staged.stat().st_mtime_ns == before and len(canary_alarms(aws, name, 2)) == 4
    assert alias(aws, name)["weights"] == {"2": 0.1}

    # Version 2 answers every request 5xx: its server-errors alarm fires once 3 of the last 5 minutes breach.
    assert judge(aws, name, "2", minutes=2, status=lambda m, i: 500)["server-errors"] == "OK"
    assert judge(aws, name, "2", minutes=3, status=lambda m, i: 500)["server-errors"] == "ALARM"
    code, stderr = running.finish()
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert f"alarm {name}-v2-server-errors is in ALARM (Threshold Crossed: 3 out of the last 5 datapoints" in stderr
    assert "rolled back, all traffic on version 1; version 2 is rejected" in stderr
    ended(aws, name, 2, live=[1], rejected=[2])
    assert aliases(aws, name) == ["live"]  # the lock released

    # Quiet alarms: after its time (3 s here) and the wait for its last metrics (3 s), with its share
    # kept meanwhile, 'live' moves to the new version and its alarms go. Alarms an earlier deploy left
    # on other versions are deleted as it starts (deploy's tag only), and the requests the version
    # answered (its Latency samples, not the live version's) are counted and said.
    set_params(project, **{"deploy.memory_mb": 3008, "deploy.canary_minutes": 0.05, "deploy.watch_after_minutes": 0.05})
    alarm = {"MetricName": "Latency", "Namespace": "clothes-serverless", "Statistic": "Average", "Period": 60,
             "EvaluationPeriods": 1, "Threshold": 1.0, "ComparisonOperator": "GreaterThanThreshold"}  # fmt: skip
    cw.put_metric_alarm(AlarmName=f"{name}-v9-server-errors", Tags=[{"Key": "clothes-serverless", "Value": name}],
                        **alarm)  # fmt: skip
    cw.put_metric_alarm(AlarmName=f"{name}-v8-someone-elses", **alarm)
    zip_invokes_answer(aws, released)
    running = Deploying(project, aws)
    running.wait_for("canary: version 3 takes 10%")
    # A good version on ordinary traffic: cold starts every minute, one minute of hard photos.
    hard_minute = {"probability": lambda m, i: HARD[i] if m == 2 else 0.9}
    assert judge(aws, name, "3", minutes=5, **hard_minute) == dict.fromkeys(
        ["server-errors", "p90-latency", "confidence", "function-errors"], "OK"
    )
    answered(aws, name, "3", 3)
    answered(aws, name, "1", 20)
    running.wait_for("canary (waiting for its last minutes' metrics): version 3 takes 10% of the traffic")
    assert alias(aws, name)["weights"] == {"3": 0.1}
    code, stderr = running.finish()
    quiet = running.stdout()
    assert code == 0, quiet + stderr
    assert f"deleted 1 alarm(s) an earlier deploy left: {name}-v9-server-errors\n" in quiet
    assert canary_alarms(aws, name, 9) == {} and list(canary_alarms(aws, name, 8)) == ["someone-elses"]
    watched = [line for line in quiet.splitlines() if line.startswith("canary: version 3 takes 10%")]
    # The time left as it was at the first read (its calls take a moment on a busy machine).
    assert re.search(
        r"version 1 the rest; 0:0[0-3] left; alarms: server-errors OK, p90-latency OK, confidence OK, "
        "function-errors OK",
        watched[0],
    )
    assert "0:00 left" in watched[-1] and len(watched) > 3  # read every 0.2 s until its time was up
    late = [line for line in quiet.splitlines() if line.startswith("canary (waiting for its last minutes' metrics)")]
    assert re.search(r"0:0[0-3] left", late[0]) and "0:00 left" in late[-1] and len(late) > 3
    assert "version 3 answered 3 request(s) during its canary\n" in quiet and "warning" not in quiet
    assert quiet.index("0:00 left") < quiet.index("answered 3") < quiet.index("version 3 (live)")
    ended(aws, name, 3, live=[1, 3], rejected=[2])

    # Linear: 40%, then 80%, then all of it.
    set_params(project, **{"deploy.memory_mb": 2560, "deploy.strategy": "linear", "deploy.linear_percent": 40,
                           "deploy.linear_minutes": 0.01, "deploy.watch_after_minutes": 0})  # fmt: skip
    zip_invokes_answer(aws, released)
    linear = deploy(project, aws)
    assert linear.returncode == 0, linear.stdout + linear.stderr
    assert "linear step 1/2: version 4 takes 40% of the traffic, version 3 the rest" in linear.stdout
    assert "linear step 2/2: version 4 takes 80% of the traffic, version 3 the rest" in linear.stdout
    # Its last share is read once more after its time (watch_after_minutes 0 here).
    assert "linear (waiting for its last minutes' metrics): version 4 takes 80%" in linear.stdout
    # No request reached it: promoted all the same (min_canary_requests 0), and said so.
    assert "version 4 answered 0 request(s) during its linear" in linear.stdout
    assert "warning: no request reached version 4, so no alarm judged it" in linear.stdout
    assert alias(aws, name)["version"] == "4" and alias(aws, name)["weights"] == {}


def test_ctrl_c_or_make_rollback_during_a_canary_leave_all_traffic_on_the_old_version(project, aws, names, released):
    name = names["function"]
    set_params(project, **{"deploy.memory_mb": 2048, "deploy.canary_minutes": 1.0})
    zip_invokes_answer(aws, released)
    running = Deploying(project, aws)
    running.wait_for("canary: version 2 takes 10%")
    running.process.send_signal(signal.SIGINT)
    code, stderr = running.finish()
    assert code == 2 and "interrupted: rolled back, all traffic on version 1; version 2 is rejected" in stderr, stderr
    ended(aws, name, 2, live=[1], rejected=[2])
    assert aliases(aws, name) == ["live"]  # the lock released

    # SIGTERM (a CI runner's stop) ends it the same way, and releases the lock too.
    set_params(project, **{"deploy.memory_mb": 1536})
    zip_invokes_answer(aws, released)
    running = Deploying(project, aws)
    running.wait_for("canary: version 3 takes 10%")
    running.process.send_signal(signal.SIGTERM)
    code, stderr = running.finish()
    assert code == 2 and "interrupted: rolled back, all traffic on version 1; version 3 is rejected" in stderr, stderr
    ended(aws, name, 3, live=[1], rejected=[2, 3])
    assert aliases(aws, name) == ["live"]

    # make rollback while a canary runs (in another terminal): all traffic back on version 1 at once;
    # the canary's deploy sees it, stops and says so. A deploy meanwhile is refused.
    set_params(project, **{"deploy.memory_mb": 3008})
    zip_invokes_answer(aws, released)
    running = Deploying(project, aws)
    running.wait_for("canary: version 4 takes 10%")
    refused = one_line_error(deploy(project, aws))
    assert f"another deploy of {name} is running" in refused and "holds its lock since" in refused
    back = deploy(project, aws, "rollback")
    assert back.returncode == 0 and "the canary of version 4 is ended: all traffic on version 1" in back.stdout, (
        back.stderr
    )
    code, stderr = running.finish()
    assert code == 2 and "was ended elsewhere" in stderr and "'live' is on version 1" in stderr, stderr
    ended(aws, name, 4, live=[1], rejected=[2, 3, 4])
    assert aliases(aws, name) == ["live"]

    # A deploy killed outright (no chance to roll back) leaves its canary and alarms: destroy deletes the alarms.
    set_params(project, **{"deploy.memory_mb": 2560})
    zip_invokes_answer(aws, released)
    running = Deploying(project, aws)
    running.wait_for("canary: version 5 takes 10%")
    running.process.kill()
    running.finish()
    assert alias(aws, name)["weights"] == {"5": 0.1} and len(canary_alarms(aws, name, 5)) == 4
    # Its lock is left too: the next deploy is refused by it until it is stale, then takes it over (and
    # is refused by the canary left running: `make rollback` ends that), releasing it as it stops.
    assert "holds its lock since" in one_line_error(deploy(project, aws)) and aliases(aws, name) == [
        "deploy-lock",
        "live",
    ]
    set_params(project, **{"deploy.lock_stale_minutes": 0.001})
    after = deploy(project, aws)
    assert "version 5 takes a share of 'live' under its alarms" in one_line_error(after)
    assert re.search(r"took over the lock \S+ pid \d+ left at .* \(stale", after.stdout), after.stdout
    assert aliases(aws, name) == ["live"]
    gone = deploy(project, aws, "destroy", "--yes")
    assert gone.returncode == 0 and f"alarm {name}-v5-server-errors" in gone.stdout, gone.stdout + gone.stderr
    assert canary_alarms(aws, name, 5) == {}


def test_a_rollback_just_before_promotion_an_aws_error_or_no_requests_leave_all_traffic_on_the_old_version(
    project, aws, names, released
):
    name = names["function"]
    # make rollback lands after the last read of the alarms, before promotion (when deploy counts the
    # requests, the last call before it): 'live' stays on version 1 and version 2 stays rejected.
    set_params(project, **{"deploy.memory_mb": 2048, "deploy.canary_minutes": 0.02})
    zip_invokes_answer(aws, released)
    with on_first_call(aws, "GetMetricData", lambda: deploy(project, aws, "rollback")) as rolled_back:
        racing = deploy(project, aws)
    assert rolled_back and "the canary of version 2 is ended: all traffic on version 1" in rolled_back[0].stdout
    stderr = one_line_error(racing)
    assert "'live' no longer routes version 2 its share: not promoting it" in stderr, stderr
    assert "was ended elsewhere" in stderr and "'live' is on version 1" in stderr
    assert "version 2 (live)" not in racing.stdout
    ended(aws, name, 2, live=[1], rejected=[2])

    # Fewer requests than deploy.min_canary_requests: too little evidence, rolled back.
    set_params(project, **{"deploy.memory_mb": 2560, "deploy.min_canary_requests": 5, "deploy.canary_minutes": 0.05})
    zip_invokes_answer(aws, released)
    with on_first_call(aws, "GetMetricData", lambda: answered(aws, name, "3", 4)):  # just before it counts
        few = deploy(project, aws)
    stderr = one_line_error(few)
    assert "version 3 answered 4 request(s) during its canary, fewer than deploy.min_canary_requests 5" in stderr
    # Nothing judged it bad: not rejected, so deploying it again tries again.
    assert "rolled back, all traffic on version 1; version 3 is not rejected" in stderr
    assert alias(aws, name)["version"] == "1" and alias(aws, name)["weights"] == {}
    assert canary_alarms(aws, name, 3) == {}

    # AWS refuses a call during the canary (here promotion: its version was deleted meanwhile, and
    # UpdateAlias answers ResourceNotFoundException): rolled back, one line with AWS's reason.
    set_params(project, **{"deploy.memory_mb": 3008, "deploy.min_canary_requests": 0})
    zip_invokes_answer(aws, released)
    running = Deploying(project, aws)
    running.wait_for("canary: version 4 takes 10%")
    moto_client(aws, "lambda").delete_function(FunctionName=name, Qualifier="4")
    code, stderr = running.finish()
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert "the canary stopped on an error (AWS refused UpdateAlias: ResourceNotFoundException" in stderr, stderr
    assert "rolled back, all traffic on version 1; version 4 is not rejected" in stderr
    ended(aws, name, 4, live=[1], rejected=[2])


def test_the_release_guards_refuse_what_they_exist_to_refuse(project, aws, names, released):
    """A wrong class from the smoke invoke stops the deploy; rollback given a wrong answer keeps 'live';
    v1, v2, rollback, rollback again refuses; a canary that would outlive the credentials does not start."""
    name, lam = names["function"], moto_client(aws, "lambda")
    wrong = next(label for label in LABELS if label != released)
    set_params(project, **{"deploy.memory_mb": 2048, "deploy.strategy": "all_at_once"})
    zip_invokes_answer(aws, wrong)  # a model with permuted labels
    stopped = one_line_error(deploy(project, aws))
    assert "smoke test failed: " in stopped and f"answered {wrong} where {released} was expected" in stopped
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]]
    assert versions == ["$LATEST", "1"] and live_version(aws, name) == "1" and aliases(aws, name) == ["live"]

    zip_invokes_answer(aws, released)
    assert deploy(project, aws).returncode == 0 and live_version(aws, name) == "2"
    zip_invokes_answer(aws, wrong)  # version 1 no longer answers as it did when it was published
    refused = one_line_error(deploy(project, aws, "rollback"))
    assert f"answered {wrong} where {released} was expected; 'live' stays on version 2" in refused
    assert live_version(aws, name) == "2"
    zip_invokes_answer(aws, released)
    assert deploy(project, aws, "rollback").returncode == 0 and live_version(aws, name) == "1"
    again = one_line_error(deploy(project, aws, "rollback"))
    assert "'live' is on version 1; no earlier live version that was not rolled back from is left" in again
    history = {"by": "clothes-serverless", "live": [1, 2, 1], "rejected": [2]}
    assert alias(aws, name) == {"version": "1", "weights": {}, "history": history}

    # Credentials that expire in 3 minutes (an STS session in the environment), a canary of 5: not started.
    set_params(project, **{"deploy.memory_mb": 3008, "deploy.strategy": "canary", "deploy.canary_minutes": 5})
    expiry = (datetime.now(UTC) + timedelta(minutes=3)).isoformat(timespec="seconds")
    zip_invokes_answer(aws, released)
    short = deploy(project, aws, env={"AWS_SESSION_TOKEN": "session", "AWS_CREDENTIAL_EXPIRATION": expiry})
    refused = one_line_error(short)
    assert re.search(r"the AWS credentials expire in [0-3]:\d\d \(at .*\); the canary needs 7:00 to end", refused)
    assert (
        alias(aws, name)["version"] == "1" and alias(aws, name)["weights"] == {} and canary_alarms(aws, name, 3) == {}
    )
    assert aliases(aws, name) == ["live"]
