"""make deploy / rollback / destroy: ship the recommended variant to Lambda behind API Gateway.

    python -m pipeline.deploy [deploy|rollback|destroy] [--yes]

boto3 throughout; AWS_ENDPOINT_URL and the usual AWS_* variables are honoured, so the same code
runs against AWS or a local AWS-compatible endpoint. Idempotent from artifacts/deploy.json: the
image tag is the model's content hash + the git commit, and a deploy whose tag and function image
are already live changes nothing. Never imports TensorFlow.
"""

import argparse
import base64
import contextlib
import json
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import zipfile
from datetime import UTC, datetime
from pathlib import Path

import boto3
import botocore.exceptions
import pandas as pd
import requests

from pipeline import cli, files, params, paths

DEPLOY_RECORD = "artifacts/deploy.json"
BUILD_DIR = Path("build/model")
TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
BASIC_EXECUTION = "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


def aws(service: str, region: str):
    return boto3.client(service, region_name=region)


def git_commit() -> str:
    result = subprocess.run(["git", "rev-parse", "--short=7", "HEAD"], capture_output=True, text=True)
    return result.stdout.strip() if result.returncode == 0 else "nogit"


def container_engine() -> str:
    for engine in ("docker", "podman", "buildah"):
        if shutil.which(engine):
            if engine == "docker" and subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
                continue  # a docker client without a running engine
            return engine
    raise cli.UserError("no container engine: install docker, podman or buildah to build the function image")


def sh(*cmd: str, what: str) -> str:
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise cli.UserError(f"{what} failed: {result.stderr.strip()[-1500:]}")
    return result.stdout


# ---------------------------------------------------------------- the model and its image
def chosen_model(d: params.Deploy) -> tuple[str, Path]:
    variant = d.variant
    if not variant:
        if not Path(paths.RECOMMENDATION).exists():
            raise cli.UserError(f"{paths.RECOMMENDATION} not found: run `dvc repro` first, or set deploy.variant")
        variant = json.loads(Path(paths.RECOMMENDATION).read_text())["variant"]
    model = Path(paths.TFLITE_DIR) / f"{variant}.tflite"
    if not model.exists():
        raise cli.UserError(f"{model} not found: run `dvc repro` first")
    return variant, model


def stage_model(variant: str, model: Path) -> str:
    """Copy the model beside its variant and content hash into the image's build context."""
    digest = files.sha256(model)
    BUILD_DIR.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(model, BUILD_DIR / "model.tflite")
    files.write_json(BUILD_DIR / "model.json", {"variant": variant, "sha256": digest})
    return digest


def build_and_push(engine: str, d: params.Deploy, registry: str, tag: str, token: "str | None") -> tuple[str, str]:
    """Build lambda/Dockerfile with the model baked in, push it; return (image URI, digest)."""
    image = f"{registry}/{d.repository}:{tag}"
    build = ["buildah", "build"] if engine == "buildah" else [engine, "build"]
    sh(
        *build,
        "-f",
        "lambda/Dockerfile",
        "--build-arg",
        f"BASE_IMAGE={d.base_image}",
        "-t",
        image,
        ".",
        what="building the image",
    )
    insecure = bool(d.registry)  # a local registry override is plain HTTP
    if engine == "docker":
        if token:
            user, password = base64.b64decode(token).decode().split(":", 1)
            sh("docker", "login", "-u", user, "--password-stdin", registry, what="registry login")
        sh("docker", "push", image, what="pushing the image (push denied? check ECR permissions)")
        digest = sh("docker", "inspect", "--format", "{{index .RepoDigests 0}}", image, what="inspect").split("@")[-1]
    else:
        with tempfile.TemporaryDirectory() as tmp:
            digest_file = Path(tmp) / "digest"
            auth = []
            if token and not insecure:
                user, password = base64.b64decode(token).decode().split(":", 1)
                auth = ["--creds", f"{user}:{password}"]
            sh(
                engine,
                "push",
                *auth,
                f"--tls-verify={str(not insecure).lower()}",
                "--digestfile",
                str(digest_file),
                image,
                f"docker://{image}",
                what="pushing the image (push denied? check ECR permissions)",
            )
            digest = digest_file.read_text().strip()
    return f"{registry}/{d.repository}", digest


ZIP_LIMIT_MB = 250  # Lambda's limit on an unzipped package
DIRECT_UPLOAD_MB = 50  # larger zips must go through S3
PLATFORMS = {"x86_64": "x86_64", "arm64": "aarch64"}


def build_zip(d: params.Deploy) -> Path:
    """The serving package + the model + LiteRT/numpy/Pillow wheels for Lambda's Python and
    architecture, zipped in a fixed order with fixed timestamps."""
    root = Path("build/zip")
    shutil.rmtree(root, ignore_errors=True)
    root.mkdir(parents=True)
    version = d.zip_runtime.removeprefix("python")
    arch = PLATFORMS[d.architecture]
    platforms = [f"--platform=manylinux_2_{n}_{arch}" for n in (28, 27, 17)] + [f"--platform=manylinux2014_{arch}"]
    sh(
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--target",
        str(root),
        "--only-binary=:all:",
        "--implementation=cp",
        f"--python-version={version}",
        *platforms,
        "-r",
        "lambda/requirements.txt",
        what="installing lambda/requirements.txt for the zip package",
    )
    shutil.copytree("lambda/serving", root / "serving", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copytree(BUILD_DIR, root / "model")
    unzipped = sum(f.stat().st_size for f in root.rglob("*") if f.is_file()) / 2**20
    if unzipped > ZIP_LIMIT_MB:
        raise cli.UserError(
            f"the zip package unzips to {unzipped:.0f} MB, over Lambda's {ZIP_LIMIT_MB} MB: use deploy.package: image"
        )
    archive = Path("build/function.zip")
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as z:
        for f in sorted(p for p in root.rglob("*") if p.is_file() and "__pycache__" not in p.parts):
            info = zipfile.ZipInfo(str(f.relative_to(root)), date_time=(2020, 1, 1, 0, 0, 0))
            info.external_attr = 0o644 << 16
            z.writestr(info, f.read_bytes(), zipfile.ZIP_DEFLATED)
    return archive


def zip_code(d: params.Deploy, archive: Path, tag: str, account: str) -> dict:
    """Code= for the Lambda API: the zip's bytes, or through S3 when it is over the direct limit."""
    if archive.stat().st_size <= DIRECT_UPLOAD_MB * 2**20:
        return {"ZipFile": archive.read_bytes()}
    s3 = aws("s3", d.region)
    bucket = d.s3_bucket or f"{d.function_name}-deploy-{account}"
    try:
        s3.head_bucket(Bucket=bucket)
    except botocore.exceptions.ClientError:
        extra = {} if d.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": d.region}}
        s3.create_bucket(Bucket=bucket, **extra)
    key = f"{d.function_name}/{tag}.zip"
    s3.upload_file(str(archive), bucket, key)
    return {"S3Bucket": bucket, "S3Key": key}


def smoke_zip(variant: str, d: params.Deploy) -> dict:
    """The package's handler on a real photo with the package's own files only (no site-packages)."""
    if d.zip_runtime != f"python{sys.version_info.major}.{sys.version_info.minor}":
        raise cli.UserError(
            f"smoke_test: local runs the {d.zip_runtime} package with this Python "
            f"({sys.version_info.major}.{sys.version_info.minor}): use smoke_test: aws"
        )
    photo, _ = expected_answer(variant)
    code = (
        "import base64, json\nfrom serving import handler\n"
        f"event = {{'image': base64.b64encode(open({photo!r}, 'rb').read()).decode()}}\n"
        "print(json.dumps(handler.lambda_handler(event)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code],
        cwd="/",
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(Path("build/zip").resolve()), "PATH": "/usr/bin:/bin"},
    )
    if result.returncode != 0:
        raise cli.UserError(f"smoke test failed: the zip package's handler crashed: {result.stderr[-800:]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------- AWS resources
def ensure_repository(ecr, d: params.Deploy) -> str:
    try:
        repo = ecr.describe_repositories(repositoryNames=[d.repository])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        repo = ecr.create_repository(repositoryName=d.repository, imageScanningConfiguration={"scanOnPush": True})[
            "repository"
        ]
    policy = {
        "rules": [
            {
                "rulePriority": 1,
                "description": f"keep the last {d.keep_images} images",
                "selection": {"tagStatus": "any", "countType": "imageCountMoreThan", "countNumber": d.keep_images},
                "action": {"type": "expire"},
            }
        ]
    }
    ecr.put_lifecycle_policy(repositoryName=d.repository, lifecyclePolicyText=json.dumps(policy))
    return repo["repositoryUri"]


def ensure_role(iam, d: params.Deploy) -> str:
    try:
        return iam.get_role(RoleName=d.role_name)["Role"]["Arn"]
    except iam.exceptions.NoSuchEntityException:
        arn = iam.create_role(RoleName=d.role_name, AssumeRolePolicyDocument=json.dumps(TRUST_POLICY))["Role"]["Arn"]
        iam.attach_role_policy(RoleName=d.role_name, PolicyArn=BASIC_EXECUTION)
        return arn


def ensure_function(lam, d: params.Deploy, code: dict, role_arn: str) -> None:
    """Create the function, or update its code and configuration; code is Code= of create_function."""
    config = dict(
        Role=role_arn,
        MemorySize=d.memory_mb,
        Timeout=d.timeout_s,
        Environment={"Variables": {"NUM_THREADS": str(max(1, round(d.memory_mb / 1769)))}},
    )
    try:
        lam.get_function(FunctionName=d.function_name)
    except lam.exceptions.ResourceNotFoundException:
        package = (
            {"PackageType": "Image"}
            if "ImageUri" in code
            else {"PackageType": "Zip", "Runtime": d.zip_runtime, "Handler": "serving.handler.lambda_handler"}
        )
        lam.create_function(
            FunctionName=d.function_name, Code=code, Architectures=[d.architecture], **package, **config
        )
        lam.get_waiter("function_active_v2").wait(FunctionName=d.function_name)
        return
    try:
        lam.update_function_code(FunctionName=d.function_name, Architectures=[d.architecture], **code)
        lam.get_waiter("function_updated_v2").wait(FunctionName=d.function_name)
        lam.update_function_configuration(FunctionName=d.function_name, **config)
        lam.get_waiter("function_updated_v2").wait(FunctionName=d.function_name)
    except lam.exceptions.ResourceConflictException:
        raise cli.UserError(
            f"an update of {d.function_name} is already in progress: wait for it, then deploy again"
        ) from None


def move_alias(lam, d: params.Deploy, version: str) -> None:
    try:
        lam.update_alias(FunctionName=d.function_name, Name="live", FunctionVersion=version)
    except lam.exceptions.ResourceNotFoundException:
        lam.create_alias(FunctionName=d.function_name, Name="live", FunctionVersion=version)


def live_version(lam, d: params.Deploy) -> "str | None":
    try:
        return lam.get_alias(FunctionName=d.function_name, Name="live")["FunctionVersion"]
    except lam.exceptions.ResourceNotFoundException:
        return None


def ensure_api(apigw, lam, d: params.Deploy, alias_arn: str, account: str) -> str:
    apis = [a for a in apigw.get_apis()["Items"] if a["Name"] == d.api_name]
    api = apis[0] if apis else apigw.create_api(Name=d.api_name, ProtocolType="HTTP")
    api_id = api["ApiId"]
    integrations = [i for i in apigw.get_integrations(ApiId=api_id)["Items"] if i.get("IntegrationUri") == alias_arn]
    integration_id = (
        integrations[0]
        if integrations
        else apigw.create_integration(
            ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=alias_arn, PayloadFormatVersion="2.0"
        )
    )["IntegrationId"]
    if not [r for r in apigw.get_routes(ApiId=api_id)["Items"] if r["RouteKey"] == "POST /predict"]:
        apigw.create_route(ApiId=api_id, RouteKey="POST /predict", Target=f"integrations/{integration_id}")
    throttle = {"ThrottlingRateLimit": d.throttle_rate, "ThrottlingBurstLimit": d.throttle_burst}
    if not [s for s in apigw.get_stages(ApiId=api_id)["Items"] if s["StageName"] == "$default"]:
        apigw.create_stage(ApiId=api_id, StageName="$default", AutoDeploy=True, DefaultRouteSettings=throttle)
    source = f"arn:aws:execute-api:{d.region}:{account}:{api_id}/*/*/predict"
    with contextlib.suppress(lam.exceptions.ResourceConflictException):  # the statement exists already
        lam.add_permission(
            FunctionName=d.function_name,
            Qualifier="live",
            StatementId="apigateway-predict",
            Action="lambda:InvokeFunction",
            Principal="apigateway.amazonaws.com",
            SourceArn=source,
        )
    return f"{api.get('ApiEndpoint', f'https://{api_id}.execute-api.{d.region}.amazonaws.com')}/predict"


# ---------------------------------------------------------------- smoke test
def expected_answer(variant: str) -> tuple[str, str]:
    """A real test photo and the verify stage's answer for it with this variant."""
    predictions = pd.read_csv(paths.PREDICTIONS)
    row = predictions[predictions["model"] == variant].iloc[0]
    return row["path"], row["predicted"]


def smoke_local(engine: str, image: str) -> dict:
    """Run the pushed image here (its runtime interface emulator on a loopback port) and ask it once."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    run = [engine, "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8080"]
    if engine == "podman":
        run += [
            "--runtime",
            "runc",
            "--ulimit",
            "nofile=1024:1024",
            "--ulimit",
            "nproc=1000:1000",
            "--tls-verify=false",
        ]
    container = sh(*run, image, what="starting the image for the smoke test").strip()
    try:
        photo, _ = expected_answer(json.loads((BUILD_DIR / "model.json").read_text())["variant"])
        event = {"image": base64.b64encode(Path(photo).read_bytes()).decode()}
        url = f"http://127.0.0.1:{port}/2015-03-31/functions/function/invocations"
        deadline = time.monotonic() + 60
        while True:
            try:
                return requests.post(url, json=event, timeout=60).json()
            except (requests.ConnectionError, ValueError):
                if time.monotonic() > deadline:
                    raise cli.UserError("smoke test: the image did not answer within 60 s") from None
                time.sleep(0.3)
    finally:
        subprocess.run([engine, "rm", "-f", container], capture_output=True)


def smoke_aws(lam, d: params.Deploy, version: str, photo: str) -> dict:
    event = {"image": base64.b64encode(Path(photo).read_bytes()).decode()}
    answer = lam.invoke(FunctionName=d.function_name, Qualifier=version, Payload=json.dumps(event).encode())
    return json.loads(answer["Payload"].read() or b"{}")


def check_smoke(answer: dict, variant: str) -> None:
    photo, expected = expected_answer(variant)
    if answer.get("top") != expected:
        raise cli.UserError(
            f"smoke test failed: {Path(photo).name} answered {answer.get('top') or answer} where "
            f"the verify stage says {expected}; 'live' stays on the previous version"
        )


# ---------------------------------------------------------------- commands
def current_code(lam, d: params.Deploy) -> str:
    """What the function runs now: its image URI, or its zip's CodeSha256."""
    code = lam.get_function(FunctionName=d.function_name)
    return code["Code"].get("ImageUri") or code["Configuration"]["CodeSha256"]


def deploy(p: params.Params) -> dict:
    d = p.deploy
    variant, model = chosen_model(d)
    digest = stage_model(variant, model)
    tag = f"{digest[:12]}-{git_commit()}"
    record = json.loads(Path(DEPLOY_RECORD).read_text()) if Path(DEPLOY_RECORD).exists() else {}
    lam, iam = aws("lambda", d.region), aws("iam", d.region)
    try:
        if record.get("tag") == tag and record.get("function") == d.function_name:
            with contextlib.suppress(lam.exceptions.ResourceNotFoundException):
                if current_code(lam, d) == record["code"] and live_version(lam, d) == record["version"]:
                    print(f"nothing to deploy: {variant} ({tag}) is live as version {record['version']}")
                    return record
        account = aws("sts", d.region).get_caller_identity()["Account"]
        if d.package == "image":
            engine = container_engine()
            ecr = aws("ecr", d.region)
            repo_uri = ensure_repository(ecr, d)
            token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
            image_repo, image_digest = build_and_push(engine, d, d.registry or repo_uri.split("/")[0], tag, token)
            if d.smoke_test == "local":
                check_smoke(smoke_local(engine, f"{image_repo}:{tag}"), variant)
            # Lambda pulls from ECR: with a registry override, still name the image by ECR's repository URI.
            code = {"ImageUri": f"{repo_uri}@{image_digest}"}
            shipped = {
                "image": code["ImageUri"],
                "digest": image_digest,
                "registry_image": f"{image_repo}@{image_digest}",
            }
        else:
            archive = build_zip(d)
            if d.smoke_test == "local":
                check_smoke(smoke_zip(variant, d), variant)
            code = zip_code(d, archive, tag, account)
            shipped = {"zip": str(archive), "package_mb": round(archive.stat().st_size / 2**20, 1)}
        ensure_function(lam, d, code, ensure_role(iam, d))
        previous = live_version(lam, d)
        version = lam.publish_version(FunctionName=d.function_name, Description=tag)["Version"]
        if d.smoke_test == "aws":
            check_smoke(smoke_aws(lam, d, version, expected_answer(variant)[0]), variant)
        move_alias(lam, d, version)
        alias_arn = lam.get_alias(FunctionName=d.function_name, Name="live")["AliasArn"]
        url = ensure_api(aws("apigatewayv2", d.region), lam, d, alias_arn, account)
        running = current_code(lam, d)
    except botocore.exceptions.NoCredentialsError:
        raise cli.UserError("no AWS credentials: set AWS_PROFILE or AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY") from None
    except botocore.exceptions.ClientError as e:
        raise cli.UserError(f"AWS refused: {e}") from None
    record = {
        "function": d.function_name,
        "package": d.package,
        "variant": variant,
        "model_sha256": digest,
        "tag": tag,
        **shipped,
        "code": running,
        "version": version,
        "previous_version": previous,
        "alias": "live",
        "url": url,
        "deployed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    files.write_json(DEPLOY_RECORD, record)
    print(
        f"deployed {variant} as version {version} (live)\n  {url}\n"
        f"  curl -XPOST {url} --data-binary @photo.jpg -H 'Content-Type: image/jpeg'"
    )
    return record


def rollback(p: params.Params) -> str:
    d = p.deploy
    lam = aws("lambda", d.region)
    current = live_version(lam, d)
    if current is None:
        raise cli.UserError(f"{d.function_name} has no 'live' alias: nothing to roll back")
    versions = sorted(
        int(v["Version"])
        for v in lam.list_versions_by_function(FunctionName=d.function_name)["Versions"]
        if v["Version"] != "$LATEST"
    )
    older = [v for v in versions if v < int(current)]
    if not older:
        raise cli.UserError(f"'live' is on version {current}, the first one: nothing to roll back to")
    move_alias(lam, d, str(older[-1]))
    print(f"'live' moved from version {current} to {older[-1]}")
    return str(older[-1])


def destroy(p: params.Params, yes: bool) -> None:
    d = p.deploy
    if not yes:
        if not sys.stdin.isatty():
            raise cli.UserError("destroy asks first: run it in a terminal, or pass --yes")
        if input(f"delete {d.function_name}, its API, role and repository? [y/N] ").strip().lower() != "y":
            print("nothing deleted")
            return
    apigw, lam, iam, ecr = (aws(s, d.region) for s in ("apigatewayv2", "lambda", "iam", "ecr"))
    for api in apigw.get_apis()["Items"]:
        if api["Name"] == d.api_name:
            apigw.delete_api(ApiId=api["ApiId"])
    for call, kwargs, missing in (
        (lam.delete_function, {"FunctionName": d.function_name}, lam.exceptions.ResourceNotFoundException),
        (
            iam.detach_role_policy,
            {"RoleName": d.role_name, "PolicyArn": BASIC_EXECUTION},
            iam.exceptions.NoSuchEntityException,
        ),
        (iam.delete_role, {"RoleName": d.role_name}, iam.exceptions.NoSuchEntityException),
        (
            ecr.delete_repository,
            {"repositoryName": d.repository, "force": True},
            ecr.exceptions.RepositoryNotFoundException,
        ),
    ):
        with contextlib.suppress(missing):
            call(**kwargs)
    Path(DEPLOY_RECORD).unlink(missing_ok=True)
    print(f"deleted {d.function_name}, API {d.api_name}, role {d.role_name}, repository {d.repository}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", nargs="?", default="deploy", choices=["deploy", "rollback", "destroy"])
    parser.add_argument("--yes", action="store_true", help="destroy without asking")
    args = parser.parse_args()
    p = params.load()
    if args.command == "deploy":
        deploy(p)
    elif args.command == "rollback":
        rollback(p)
    else:
        destroy(p, args.yes)


if __name__ == "__main__":
    cli.run(main)
