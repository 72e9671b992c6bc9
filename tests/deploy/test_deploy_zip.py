"""Zip functions, offline: a zip package too big to upload directly goes through S3 (built from its
own directory, with wheels for Lambda's Python), and rollback pages through a zip function's
versions. Apart from test_deploy.py so that pytest-xdist runs the two files side by side."""

import contextlib
import io
import json
import sys
import zipfile

import pytest
from deploy_tools import (
    ACCOUNT,
    buckets_of,
    client,
    deploy,
    live,
    moto_client,
    one_line_error,
    replace_file,
    verify_answer,
    versions,
    zip_invokes_answer,
)

from aws_local import STANDIN_BASE_312, SetupFailed, build_standin_base_312
from support import BIN, ROOT, set_params


def test_rollback_pages_through_versions_and_skips_untested_ones(project, aws, names):
    """61 versions (two pages and more) of a zip function: rollback skips one this deployer did not
    publish. The target's smoke test is moto's configurable answer (a zip function runs nowhere here)."""
    lam, name = moto_client(aws, "lambda"), names["function"]  # moto itself: 61 publications set up fast
    zip_invokes_answer(aws, verify_answer(project, "full_int8")[1])  # the target's smoke test
    role = moto_client(aws, "iam").create_role(
        RoleName=names["role"], AssumeRolePolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": []})
    )["Role"]["Arn"]
    lam.create_function(FunctionName=name, Runtime="python3.12", Handler="x.h", Role=role, Code={"ZipFile": tiny_zip()})
    for n in range(1, 62):  # Lambda (and moto) publish a new version only when something changed
        lam.update_function_configuration(FunctionName=name, Environment={"Variables": {"N": str(n)}})
        passed = {"by": "clothes-serverless", "key": "k", "config": "c", "variant": "full_int8", "accuracy": 0.8}
        lam.publish_version(FunctionName=name, Description=json.dumps(passed) if n != 60 else "by hand")
    lam.create_alias(FunctionName=name, Name="live", FunctionVersion="61")
    moved = deploy(project, aws, "rollback")
    assert moved.returncode == 0 and "from version 61 to 59" in moved.stdout, moved.stderr
    assert live(lam, name) == "59"

    # No release manifest here (another machine): rollback cannot check the target and says so; --force moves
    # without it.
    lam.update_alias(FunctionName=name, Name="live", FunctionVersion="61")  # by hand, history kept
    (project / "artifacts/recommend/release.json").unlink()
    refused = one_line_error(deploy(project, aws, "rollback"))
    assert "release.json not found" in refused and "rollback --force" in refused, refused
    forced = deploy(project, aws, "rollback", "--force")
    assert forced.returncode == 0 and "--force: not checking version 59 in Lambda" in forced.stdout, forced.stderr
    assert "from version 61 to 59" in forced.stdout and live(lam, name) == "59"


def tiny_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as z:
        z.writestr("x.py", "def h(event, context):\n    return {}\n")
    return buffer.getvalue()


@pytest.mark.heavy  # the >50 MB zip through S3 (~95 s after the small run): make test-heavy
@pytest.mark.small_run_model  # Xception's float32: the tiny model's zip is far under 50 MB
def test_zip_package_through_s3_from_its_own_directory(project, aws, names, tmp_path):
    """float32 zips to over 50 MB: it goes through an S3 bucket named unpredictably, checked for its owner,
    that Lambda reads with the caller's credentials (docs/deployer-policy.json's, for the test's names).
    A zip_runtime change is applied (the runtime is the function's configuration, and in its key: new
    wheels never run on the old runtime), and the python3.12 zip (the default runtime) runs in "Lambda" on a
    stand-in base with this machine's Python 3.12; a switch to an image stops with one line."""
    try:
        base_312 = build_standin_base_312(aws["base"])
    except SetupFailed as e:
        pytest.fail(f"deploy test set-up: {e}", pytrace=False)
    aws["proxy"].caller_policy = deployer_policy(names["function"])
    aws["proxy"].zip_bases[("x86_64", "python3.12")] = base_312  # this test's alone: the module's aws is shared
    try:
        s3_zip_deploys(project, aws, names, tmp_path)
    finally:
        aws["proxy"].caller_policy = None
        del aws["proxy"].zip_bases[("x86_64", "python3.12")]


def deployer_policy(function: str) -> str:
    """docs/deployer-policy.json for another function name (its ARNs and tag values name the default)."""
    return (ROOT / "docs/deployer-policy.json").read_text().replace("clothes-classifier", function)


def test_an_s3_zip_the_callers_policy_cannot_read_is_refused_as_aws_refuses_it(aws, names):
    """The proxy plays Lambda reading an S3 zip with the caller's credentials: without s3:GetObject, AccessDenied."""
    lam, name = client(aws, "lambda"), names["function"]
    role = moto_client(aws, "iam").create_role(RoleName=names["role"], AssumeRolePolicyDocument="{}")["Role"]["Arn"]
    s3 = moto_client(aws, "s3")
    bucket = f"{name}-{ACCOUNT}-us-east-1-0badcafe"
    s3.create_bucket(Bucket=bucket)
    s3.put_object(Bucket=bucket, Key=f"{name}/k.zip", Body=tiny_zip())
    code = {"S3Bucket": bucket, "S3Key": f"{name}/k.zip"}
    aws["proxy"].caller_policy = deployer_policy(name).replace('"s3:GetObject",', "")
    try:
        with pytest.raises(lam.exceptions.ClientError) as refused:
            lam.create_function(FunctionName=name, Runtime="python3.12", Handler="x.h", Role=role, Code=code)
        aws["proxy"].caller_policy = deployer_policy(name)
        lam.create_function(FunctionName=name, Runtime="python3.12", Handler="x.h", Role=role, Code=code)
    finally:
        aws["proxy"].caller_policy = None
        with contextlib.suppress(lam.exceptions.ResourceNotFoundException):
            lam.delete_function(FunctionName=name)
    error, status = refused.value.response["Error"], refused.value.response["ResponseMetadata"]["HTTPStatusCode"]
    assert (error["Code"], status) == ("AccessDeniedException", 403)
    assert error["Message"] == (
        "Your access has been denied by S3, please make sure your request credentials have permission to GetObject "
        f"for {bucket}/{name}/k.zip. S3 Error Code: AccessDenied. S3 Error Message: Access Denied"
    )


def s3_zip_deploys(project, aws, names, tmp_path):
    python = f"python{sys.version_info.major}.{sys.version_info.minor}"  # the local smoke test runs it here
    set_params(project, **{"deploy.package": "zip", "deploy.zip_runtime": python, "deploy.variant": "float32"})
    bare = tmp_path / "bin"  # no docker, podman or buildah on this PATH
    bare.mkdir()
    env = {"PATH": f"{bare}:{BIN}"}
    # A first deploy is invoked in "Lambda" too (only Lambda tests a configuration): moto's
    # configurable answer for a zip function (it runs none), verify's for the photo the test sends.
    zip_invokes_answer(aws, verify_answer(project, "float32")[1])
    first = deploy(project, aws, env=env)
    assert first.returncode == 0, first.stderr
    name = names["function"]
    config = client(aws, "lambda").get_function_configuration(FunctionName=name)
    assert (config["PackageType"], config["Runtime"], config["Handler"]) == (
        "Zip",
        python,
        "serving.handler.lambda_handler",
    )
    buckets = buckets_of(client(aws, "s3"), name)
    assert len(buckets) == 1 and buckets[0].startswith(f"{name}-{ACCOUNT}-us-east-1-")  # a bucket lives in one region
    assert len(buckets[0]) == len(f"{name}-{ACCOUNT}-us-east-1-") + 8  # and a part no one can predict
    again = deploy(project, aws, env=env)
    assert again.returncode == 0 and "nothing to deploy" in again.stdout, again.stderr
    # A Dockerfile-only edit: a new deploy key, the same zip bytes. PublishVersion hands back version 1,
    # the live one: 'live' and its history stay as they were.
    before = client(aws, "lambda").get_alias(FunctionName=name, Name="live")
    dockerfile = project / "lambda/Dockerfile"
    replace_file(dockerfile, dockerfile.read_bytes() + b"# a comment\n")
    same = deploy(project, aws, env=env)
    assert same.returncode == 0 and "nothing new to publish: identical to live version 1" in same.stdout, same.stderr
    after = client(aws, "lambda").get_alias(FunctionName=name, Name="live")
    assert (after["FunctionVersion"], after["Description"]) == ("1", before["Description"])

    # python3.12 (the default zip runtime): smoke_test aws invokes the zip in "Lambda", which runs it on the
    # python3.12 stand-in base: its cp312 wheels answer the smoke photo as verify did, or deploy fails.
    set_params(project, **{"deploy.zip_runtime": "python3.12", "deploy.smoke_test": "aws"})
    moved = deploy(project, aws, env=env)
    assert moved.returncode == 0, moved.stdout + moved.stderr
    lam = client(aws, "lambda")
    v2 = lam.get_function_configuration(FunctionName=name, Qualifier="2")
    assert (v2["Runtime"], v2["Handler"], live(lam, name)) == ("python3.12", "serving.handler.lambda_handler", "2")
    # A new runtime is a new configuration: Lambda ran it ($LATEST) before deploy published it as version 2.
    ran = aws["proxy"].invocations[-1]
    assert (ran["image"], ran["version"], ran["code"]) == (STANDIN_BASE_312, "$LATEST", v2["CodeSha256"])
    shipped = zipfile.ZipFile(project / "build/function.zip").namelist()  # what version 2 was made of
    assert "serving/handler.py" in shipped and "model/model.tflite" in shipped
    assert any("cpython-312-x86_64-linux-gnu.so" in n for n in shipped) and not any("cpython-311" in n for n in shipped)
    set_params(project, **{"deploy.package": "image"})
    switched = deploy(project, aws, env=env)
    message = one_line_error(switched)
    assert "is a zip function and deploy.package is image" in message and "make destroy" in message, message
    assert versions(lam, name) == ["1", "2"]

    gone = deploy(project, aws, "destroy", "--yes")
    assert gone.returncode == 0 and f"bucket {buckets[0]}" in gone.stdout and "log group" in gone.stdout
    assert buckets_of(client(aws, "s3"), name) == []
