"""make deploy end to end, offline: moto (AWS) and a registry on 127.0.0.1, images built with podman
on a locally made Lambda base, smoke-tested by running the image under its emulator."""

import json
import os
import shutil
import subprocess
import sys

import boto3
import pytest
import requests

from aws_local import build_standin_base, start_moto, start_registry
from conftest import BIN, ROOT, copy_run, set_params

TOOLS = ("podman", "docker-registry", "debootstrap")


@pytest.fixture(scope="module")
def aws(tmp_path_factory):
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        message = f"{missing} not installed: `make deploy-deps` installs them (make test does)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    base = build_standin_base(ROOT / ".cache/aws-lambda-rie-x86_64")
    moto, endpoint = start_moto()
    registry, registry_host = start_registry(tmp_path_factory.mktemp("registry"))
    env = {
        "AWS_ENDPOINT_URL": endpoint,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    yield {"env": env, "registry": registry_host, "base": base}
    moto.terminate()
    registry.terminate()


@pytest.fixture(scope="module")
def project(aws, small_run, tmp_path_factory):
    project = copy_run(small_run, tmp_path_factory.mktemp("deploy") / "p")
    set_params(
        project,
        **{
            "deploy.registry": aws["registry"],
            "deploy.base_image": aws["base"],
            "deploy.smoke_test": "local",
            "deploy.variant": "full_int8",
        },
    )
    subprocess.run(["git", "init", "-q"], cwd=project, check=True)
    return project


def deploy(project, aws, *args, env=None):
    env = {
        **os.environ,
        **aws["env"],
        "PATH": f"{BIN}:{os.environ['PATH']}",
        "PYTHONPATH": f"{project}:{project / 'lambda'}",
        **(env or {}),
    }
    return subprocess.run(
        [sys.executable, "-m", "pipeline.deploy", *args],
        cwd=project,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def client(aws, service):
    return boto3.client(
        service,
        endpoint_url=aws["env"]["AWS_ENDPOINT_URL"],
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def test_deploy_twice_rollback_and_a_failing_smoke_test(project, aws):
    first = deploy(project, aws)
    assert first.returncode == 0, first.stderr
    record = json.loads((project / "artifacts/deploy.json").read_text())
    assert record["version"] == "1" and record["url"].endswith("/predict") and "curl -XPOST" in first.stdout

    second = deploy(project, aws)
    assert second.returncode == 0 and "nothing to deploy" in second.stdout

    lam, apigw = client(aws, "lambda"), client(aws, "apigatewayv2")
    assert [f["FunctionName"] for f in lam.list_functions()["Functions"]] == ["clothes-classifier"]
    versions = [v["Version"] for v in lam.list_versions_by_function(FunctionName="clothes-classifier")["Versions"]]
    assert versions == ["$LATEST", "1"]
    assert lam.get_alias(FunctionName="clothes-classifier", Name="live")["FunctionVersion"] == "1"
    apis = apigw.get_apis()["Items"]
    assert len(apis) == 1
    assert [r["RouteKey"] for r in apigw.get_routes(ApiId=apis[0]["ApiId"])["Items"]] == ["POST /predict"]
    policy = json.loads(lam.get_policy(FunctionName="clothes-classifier", Qualifier="live")["Policy"])
    assert (
        len(policy["Statement"]) == 1 and policy["Statement"][0]["Principal"]["Service"] == "apigateway.amazonaws.com"
    )
    config = lam.get_function_configuration(FunctionName="clothes-classifier")
    assert config["PackageType"] == "Image" and config["MemorySize"] == 1769
    role = client(aws, "iam").list_attached_role_policies(RoleName="clothes-classifier-lambda")["AttachedPolicies"]
    assert [p["PolicyName"] for p in role] == ["AWSLambdaBasicExecutionRole"]
    manifest = requests.head(
        f"http://{aws['registry']}/v2/clothes-classifier/manifests/{record['tag']}",
        headers={
            "Accept": "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"
        },
        timeout=10,
    )
    assert manifest.headers["Docker-Content-Digest"] == record["digest"]

    # A model change publishes version 2 and moves live; rollback moves it back.
    set_params(project, **{"deploy.variant": "float16"})
    third = deploy(project, aws)
    assert third.returncode == 0, third.stderr
    assert lam.get_alias(FunctionName="clothes-classifier", Name="live")["FunctionVersion"] == "2"
    rollback = deploy(project, aws, "rollback")
    assert rollback.returncode == 0 and "from version 2 to 1" in rollback.stdout
    assert lam.get_alias(FunctionName="clothes-classifier", Name="live")["FunctionVersion"] == "1"

    # An image whose handler cannot load its model fails the smoke test; live stays where it was.
    good = (project / "artifacts/tflite/dynamic_int8.tflite").read_bytes()
    (project / "artifacts/tflite/dynamic_int8.tflite").write_bytes(b"not a tflite model" * 100)
    set_params(project, **{"deploy.variant": "dynamic_int8"})
    broken = deploy(project, aws)
    (project / "artifacts/tflite/dynamic_int8.tflite").write_bytes(good)
    assert broken.returncode == 2 and "smoke test failed" in broken.stderr and "Traceback" not in broken.stderr
    assert lam.get_alias(FunctionName="clothes-classifier", Name="live")["FunctionVersion"] == "1"

    gone = deploy(project, aws, "destroy", "--yes")
    assert gone.returncode == 0, gone.stderr
    assert lam.list_functions()["Functions"] == [] and apigw.get_apis()["Items"] == []
    assert not (project / "artifacts/deploy.json").exists()


def test_errors_a_user_meets(project, aws, tmp_path):
    no_creds = deploy(
        project,
        aws,
        env={
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
            "AWS_SHARED_CREDENTIALS_FILE": str(tmp_path / "none"),
            "AWS_CONFIG_FILE": str(tmp_path / "none"),
        },
    )
    assert no_creds.returncode == 2 and "no AWS credentials" in no_creds.stderr

    bare = tmp_path / "bin"
    bare.mkdir()
    (bare / "git").symlink_to(shutil.which("git"))
    no_engine = deploy(project, aws, env={"PATH": f"{bare}:{BIN}"})
    assert no_engine.returncode == 2 and "no container engine" in no_engine.stderr

    set_params(project, **{"deploy.registry": "127.0.0.1:9", "deploy.variant": "full_int8"})
    try:
        denied = deploy(project, aws)
    finally:
        set_params(project, **{"deploy.registry": aws["registry"]})
    assert denied.returncode == 2 and "pushing the image" in denied.stderr and "Traceback" not in denied.stderr

    destroy = deploy(project, aws, "destroy")
    assert destroy.returncode == 2 and "pass --yes" in destroy.stderr


def test_zip_package_without_a_container_engine(project, aws, tmp_path):
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"  # the local smoke test runs it here
    set_params(
        project,
        **{
            "deploy.package": "zip",
            "deploy.function_name": "clothes-zip",
            "deploy.api_name": "zip-api",
            "deploy.zip_runtime": python,
            "deploy.variant": "full_int8",
        },
    )
    bare = tmp_path / "bin"  # no docker, podman or buildah on this PATH
    bare.mkdir()
    (bare / "git").symlink_to(shutil.which("git"))
    env = {"PATH": f"{bare}:{BIN}"}
    first = deploy(project, aws, env=env)
    assert first.returncode == 0, first.stderr
    record = json.loads((project / "artifacts/deploy.json").read_text())
    assert record["package"] == "zip" and record["version"] == "1" and record["package_mb"] > 10
    config = client(aws, "lambda").get_function_configuration(FunctionName="clothes-zip")
    assert (config["PackageType"], config["Runtime"], config["Handler"]) == (
        "Zip",
        python,
        "serving.handler.lambda_handler",
    )
    assert config["CodeSha256"] == record["code"]
    again = deploy(project, aws, env=env)
    assert again.returncode == 0 and "nothing to deploy" in again.stdout
    assert deploy(project, aws, "destroy", "--yes").returncode == 0
