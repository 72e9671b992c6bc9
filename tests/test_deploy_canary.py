"""Canary and linear releases, offline. Each test's function starts with a live version 1 that deploy
published (made here straight in moto, in seconds, under the project's own code key: no package is
built); each deploy then changes only the configuration (memory), so it publishes a new version of
the same code after its smoke test in "Lambda" (moto's configurable answer for a zip function), and
routes it a share of 'live' under its CloudWatch alarms, the canary's minutes shortened to seconds.

The test plays CloudWatch's part: moto stores alarms (their metrics, metric math, thresholds, tags)
and keeps whatever state set_alarm_state gives them, but never evaluates one against metric data,
and it routes no invocation by the alias's weights. So what is tested is what deploy writes and how
it acts on an alarm's state, not CloudWatch's judgement; the requests a version answered are
datapoints the test puts, which moto's GetMetricData counts as CloudWatch does. moto ignores
UpdateAlias's RevisionId: what keeps a rollback that lands just before promotion is deploy reading
the alias once more, and that is what is tested."""

import contextlib
import dataclasses
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

from conftest import BIN, set_params
from pipeline import cli, params
from pipeline.deploy import canary, limits, releases

pytest_plugins = ["deploy_env"]  # the fixtures: names, project
TRUST = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
KEY = (
    "from pipeline import params\nfrom pipeline.deploy import build\n"
    "d = params.load().deploy\nbuild.stage_model(*build.chosen_model(d))\nprint(build.code_key(d))\n"
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
    set_params(project, **{"deploy.memory_mb": 2048, "deploy.canary_minutes": 1.0})
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
    dims = dimensions(name, "2")
    errors, latency, confidence = made["server-errors"], made["p90-latency"], made["confidence"]
    assert (errors["MetricName"], errors["Statistic"], errors["Threshold"]) == ("ServerError", "Average", 0.01)
    assert (latency["MetricName"], latency["ExtendedStatistic"], latency["Threshold"]) == ("Latency", "p90", 1000)
    assert errors["Dimensions"] == latency["Dimensions"] == dims and errors["Namespace"] == "clothes-serverless"
    queries = {q["Id"]: q for q in confidence["Metrics"]}
    assert queries["drop"]["Expression"] == "live - new" and confidence["Threshold"] == 0.1
    assert queries["new"]["MetricStat"]["Metric"]["Dimensions"] == dims
    assert queries["live"]["MetricStat"]["Metric"]["Dimensions"][1] == {"Name": "version", "Value": "1"}
    # Lambda's own Errors and Invocations of version 2 behind 'live' (what a timeout or a crash counts in).
    failed = {q["Id"]: q for q in made["function-errors"]["Metrics"]}
    assert failed["rate"]["Expression"] == "FILL(errors, 0) / invocations" and failed["rate"]["ReturnData"]
    assert made["function-errors"]["Threshold"] == 0.01
    lambda_dims = [{"Name": "FunctionName", "Value": name}, {"Name": "Resource", "Value": f"{name}:live"},
                   {"Name": "ExecutedVersion", "Value": "2"}]  # fmt: skip
    for query, metric in (("errors", "Errors"), ("invocations", "Invocations")):
        stat = failed[query]["MetricStat"]
        assert stat["Metric"] == {"Namespace": "AWS/Lambda", "MetricName": metric, "Dimensions": lambda_dims}
        assert (stat["Stat"], stat["Period"], failed[query]["ReturnData"]) == ("Sum", 60, False)
    for alarm in made.values():
        assert (alarm["TreatMissingData"], alarm["ComparisonOperator"]) == ("notBreaching", "GreaterThanThreshold")
        tags = cw.list_tags_for_resource(ResourceARN=alarm["AlarmArn"])["Tags"]
        assert tags == [{"Key": "clothes-serverless", "Value": name}]

    reason = "Threshold Crossed: 1 datapoint [0.31] was greater than the threshold (0.1)."
    cw.set_alarm_state(AlarmName=f"{name}-v2-confidence", StateValue="ALARM", StateReason=reason)
    code, stderr = running.finish()
    assert code == 2 and len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr, stderr
    assert f"alarm {name}-v2-confidence is in ALARM (Threshold Crossed" in stderr
    assert "rolled back, all traffic on version 1; version 2 is rejected" in stderr
    ended(aws, name, 2, live=[1], rejected=[2])

    # Quiet alarms: after its time (2 s here) and the wait for its last metrics (3 s), with its share
    # kept meanwhile, 'live' moves to the new version and its alarms go. Alarms an earlier deploy left
    # on other versions are deleted as it starts (deploy's tag only), and the requests the version
    # answered (its Latency samples, not the live version's) are counted and said.
    set_params(project, **{"deploy.memory_mb": 3008, "deploy.canary_minutes": 0.03, "deploy.watch_after_minutes": 0.05})
    alarm = {"MetricName": "Latency", "Namespace": "clothes-serverless", "Statistic": "Average", "Period": 60,
             "EvaluationPeriods": 1, "Threshold": 1.0, "ComparisonOperator": "GreaterThanThreshold"}  # fmt: skip
    cw.put_metric_alarm(AlarmName=f"{name}-v9-server-errors", Tags=[{"Key": "clothes-serverless", "Value": name}],
                        **alarm)  # fmt: skip
    cw.put_metric_alarm(AlarmName=f"{name}-v8-someone-elses", **alarm)
    zip_invokes_answer(aws, released)
    running = Deploying(project, aws)
    running.wait_for("canary: version 3 takes 10%")
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
        r"version 1 the rest; 0:0[0-2] left; alarms: server-errors OK, p90-latency OK, confidence OK, "
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

    # make rollback while a canary runs (in another terminal): all traffic back on version 1 at once;
    # the canary's deploy sees it, stops and says so. A deploy meanwhile is refused.
    set_params(project, **{"deploy.memory_mb": 3008})
    zip_invokes_answer(aws, released)
    running = Deploying(project, aws)
    running.wait_for("canary: version 3 takes 10%")
    refused = one_line_error(deploy(project, aws))
    assert "version 3 takes a share of 'live' under its alarms" in refused and "make rollback" in refused
    back = deploy(project, aws, "rollback")
    assert back.returncode == 0 and "the canary of version 3 is ended: all traffic on version 1" in back.stdout, (
        back.stderr
    )
    code, stderr = running.finish()
    assert code == 2 and "was ended elsewhere" in stderr and "'live' is on version 1" in stderr, stderr
    ended(aws, name, 3, live=[1], rejected=[2, 3])

    # A deploy killed outright (no chance to roll back) leaves its canary and alarms: destroy deletes the alarms.
    set_params(project, **{"deploy.memory_mb": 2560})
    zip_invokes_answer(aws, released)
    running = Deploying(project, aws)
    running.wait_for("canary: version 4 takes 10%")
    running.process.kill()
    running.finish()
    assert alias(aws, name)["weights"] == {"4": 0.1} and len(canary_alarms(aws, name, 4)) == 4
    gone = deploy(project, aws, "destroy", "--yes")
    assert gone.returncode == 0 and f"alarm {name}-v4-server-errors" in gone.stdout, gone.stdout + gone.stderr
    assert canary_alarms(aws, name, 4) == {}


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


@pytest.mark.fast
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
