"""deploy.endpoint function_url, offline: the canary tests' zip function (version 1 live, made straight
in moto) deployed behind the HTTP API, then switched to a function URL, back, and to an AWS_IAM URL,
each deploy a canary with its smoke test; then destroyed. moto keeps no function URL per alias and
runs none, and answers no HTTP API request: the Lambda-like proxy plays both (function_urls.py),
invoking 'live' with the event each door sends and answering as each door does; the function's
answers are moto's configurable ones (the proxy runs no python3.12 zip)."""

import json

import pytest
import requests
from deploy_tools import apis_named, client, deploy, functions_named
from test_deploy_canary import aws, released  # noqa: F401 (the fixtures: moto and the proxy; version 1 live)

from pipeline.deploy import function_url
from support import set_params


def answers(aws, top: str, n: int) -> None:  # noqa: F811 (the fixture imported above)
    """moto's answers to the next n Invokes of a zip function: {"top": top} each."""
    canned = {"results": [json.dumps({"top": top})] * n, "region": "us-east-1"}
    requests.post(f"{aws['moto']}/moto-api/static/lambda-simple/response", json=canned, timeout=10).raise_for_status()


def statements(lam, name: str) -> dict:
    try:
        policy = json.loads(lam.get_policy(FunctionName=name, Qualifier="live")["Policy"])
    except lam.exceptions.ResourceNotFoundException:
        return {}
    return {s["Sid"]: s for s in policy["Statement"]}


@pytest.mark.heavy  # five deploys through both doors (~30 s after the small run): make test-heavy
def test_a_switch_between_doors_keeps_the_old_one_until_the_new_one_answers(project, aws, names, released):  # noqa: F811
    name, lam, apigw = names["function"], client(aws, "lambda"), client(aws, "apigatewayv2")
    fast = {"deploy.strategy": "canary", "deploy.canary_minutes": 0.01, "deploy.watch_after_minutes": 0}
    set_params(project, **fast, **{"deploy.endpoint": "http_api", "deploy.memory_mb": 2048})
    answers(aws, released, 1)  # the smoke test's Invoke of the new configuration
    first = deploy(project, aws)
    assert first.returncode == 0, first.stdout + first.stderr
    [api] = apis_named(apigw, names["api"])
    assert "canary: version 2 takes 10% of the traffic" in first.stdout
    assert function_url.find(lam, params_of(project)) is None

    # To a function URL: made on 'live', it answers the smoke photo while the API still stands, then the API goes.
    seen = []
    aws["proxy"].urls.on_call = lambda url: seen.append((url, [a["ApiId"] for a in apis_named(apigw, names["api"])]))
    set_params(project, **{"deploy.endpoint": "function_url", "deploy.memory_mb": 3008})
    answers(aws, released, 2)  # the smoke test's, then the URL's
    switched = deploy(project, aws)
    assert switched.returncode == 0, switched.stdout + switched.stderr
    config = lam.get_function_url_config(FunctionName=name, Qualifier="live")
    url = config["FunctionUrl"]
    assert config["FunctionArn"].endswith(f":function:{name}:live") and config["AuthType"] == "NONE"
    assert config["Cors"]["AllowOrigins"] == ["*"] and config["Cors"]["AllowMethods"] == ["POST"]
    assert seen == [(url, [api["ApiId"]])]  # the URL answered while the API was there
    assert apis_named(apigw, names["api"]) == []
    assert "canary: version 3 takes 10% of the traffic" in switched.stdout  # the canary ran as before
    assert f"{url} answers " in switched.stdout and f"API {names['api']} ({api['ApiId']}) deleted" in switched.stdout
    assert f"(live)\n  {url}\n  curl -XPOST {url} " in switched.stdout
    assert json.loads((project / "artifacts/deploy.json").read_text())["url"] == url
    # Public, through the URL only: both statements AWS asks for, each with its condition; the API's is gone.
    granted = statements(lam, name)
    assert set(granted) == {"function-url", "function-url-invoke"}
    assert granted["function-url"]["Action"] == "lambda:InvokeFunctionUrl" and "NONE" in json.dumps(granted)
    assert granted["function-url-invoke"]["Action"] == "lambda:InvokeFunction"
    assert "InvokedViaFunctionUrl" in json.dumps(granted["function-url-invoke"])
    arn = lam.get_function_configuration(FunctionName=name)["FunctionArn"]
    assert lam.list_tags(Resource=arn)["Tags"][function_url.MARK] == "live"
    # A caller's request through the URL gets the function's answer: public, no signature.
    answers(aws, released, 1)
    hit = requests.post(aws["proxy"].url, data=b"{}", headers={"Host": url.split("/")[2]}, timeout=30)
    assert hit.status_code == 200 and hit.json() == {"top": released}

    # Back to the HTTP API (nothing else changed: no new version): the new API answers first, then the URL goes.
    seen.clear()
    set_params(project, **{"deploy.endpoint": "http_api"})
    answers(aws, released, 1)
    back = deploy(project, aws)
    assert back.returncode == 0, back.stdout + back.stderr
    assert "nothing to deploy" in back.stdout and f"the function URL {url} deleted" in back.stdout
    [again] = apis_named(apigw, names["api"])
    assert seen == [(f"https://{again['ApiId']}.execute-api.us-east-1.amazonaws.com/predict", [again["ApiId"]])]
    assert function_url.find(lam, params_of(project)) is None
    assert (
        set(statements(lam, name)) == {"apigateway-predict"}
        and function_url.MARK not in lam.list_tags(Resource=arn)["Tags"]
    )

    # An AWS_IAM URL: no public grant at all; deploy's own request is signed, an unsigned one is refused.
    set_params(project, **{"deploy.endpoint": "function_url", "deploy.url_auth": "AWS_IAM"})
    answers(aws, released, 1)
    signed = deploy(project, aws)
    assert signed.returncode == 0, signed.stdout + signed.stderr
    iam_url = lam.get_function_url_config(FunctionName=name, Qualifier="live")["FunctionUrl"]
    assert statements(lam, name) == {} and apis_named(apigw, names["api"]) == []
    refused = requests.post(aws["proxy"].url, data=b"{}", headers={"Host": iam_url.split("/")[2]}, timeout=30)
    assert refused.status_code == 403 and refused.json() == {"Message": "Forbidden"}

    # SnapStart on a python3.11 zip: refused in one line, before anything changes.
    set_params(project, **{"deploy.snapstart": True, "deploy.zip_runtime": "python3.11"})
    refused_snapstart = deploy(project, aws)
    assert refused_snapstart.returncode == 2 and "Traceback" not in refused_snapstart.stderr
    assert refused_snapstart.stderr.strip() == (
        "error: deploy.snapstart needs a python3.12+ runtime; deploy.zip_runtime is python3.11"
    )
    # On python3.12: the new version is published with SnapStart, deploy waits for its snapshot (the proxy
    # answers Pending first, as Lambda does while it takes it), the canary runs, and the versions no longer
    # needed are deleted (each snapshot is billed): 'live''s and the one a rollback returns to stay.
    set_params(project, **{"deploy.zip_runtime": "python3.12", "deploy.memory_mb": 2560})
    answers(aws, released, 1)
    snapped = deploy(project, aws)
    assert snapped.returncode == 0, snapped.stdout + snapped.stderr
    assert "version 4: SnapStart snapshot ready" in snapped.stdout and "canary: version 4 takes 10%" in snapped.stdout
    assert lam.get_function_configuration(FunctionName=name, Qualifier="4")["SnapStart"] == {
        "ApplyOn": "PublishedVersions", "OptimizationStatus": "On"
    }  # fmt: skip
    assert "SnapStart: deleted version(s) 1, 2" in snapped.stdout
    listed = [v["Version"] for v in lam.list_versions_by_function(FunctionName=name)["Versions"]]
    assert listed == ["$LATEST", "3", "4"]

    # destroy removes the URL it made, with the function.
    gone = deploy(project, aws, "destroy", "--yes")
    assert gone.returncode == 0, gone.stdout + gone.stderr
    assert f"function URL of {name}:live" in gone.stdout and functions_named(lam, name) == []


def params_of(project):
    from pipeline import params

    return params.load(project / "params.yaml").deploy


def test_a_snapstart_init_loads_the_model_and_an_on_demand_one_does_not(deploy_run):
    """The snapshot must hold the model: Lambda's SnapStart init (AWS_LAMBDA_INITIALIZATION_TYPE=snap-start)
    loads it at import; on demand the first request still does."""
    import os
    import subprocess
    import sys

    from support import ROOT

    code = "from serving import handler; print(handler.model.cache_info().currsize)"
    model = deploy_run / "artifacts/tflite/full_int8.tflite"
    loaded = {}
    for kind in ("snap-start", "on-demand"):
        env = {**os.environ, "PYTHONPATH": str(ROOT / "lambda"), "MODEL_PATH": str(model),
               "AWS_LAMBDA_INITIALIZATION_TYPE": kind}  # fmt: skip
        done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
        assert done.returncode == 0, done.stderr
        loaded[kind] = done.stdout.strip().splitlines()[-1]
    assert loaded == {"snap-start": "1", "on-demand": "0"}
