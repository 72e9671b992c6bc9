"""Running deploy in a test's project and reading what it did: in AWS (moto, through the proxy), in the
local registry, and in its one-line errors. local_aws starts moto and the Lambda-like proxy; deploy_project
makes a project of what deploy reads. The fixtures are in conftest.py beside it."""

import contextlib
import hashlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import boto3
import pytest
import requests
import yaml
from lambda_proxy import LambdaProxy

from aws_local import SetupFailed, start_moto
from support import BIN, ROOT

RELEASE = "artifacts/recommend/release.json"
# What deploy reads from a finished run (besides its code and params): the release manifest
# (pipeline/release.py) and the model files it may ship.
RUN_FILES = (RELEASE,)
MODEL_DIRS = ("artifacts/tflite", "artifacts/onnx")

ACCOUNT = "123456789012"  # moto's
MANIFEST_TYPES = "application/vnd.oci.image.manifest.v1+json, application/vnd.docker.distribution.manifest.v2+json"


@contextlib.contextmanager
def local_aws(registry_host: str, base: str, zip_bases: "dict | None" = None):
    """moto and the Lambda-like proxy in front of it (what deploy talks to), stopped after. With
    zip_bases ((architecture, runtime) -> stand-in base) the proxy runs such zip functions too (lambda_proxy.py)."""
    try:
        moto, endpoint = start_moto()
    except SetupFailed as e:
        pytest.fail(f"deploy test set-up: {e}", pytrace=False)
    proxy = LambdaProxy(endpoint, registry_host, zip_bases)  # deploy talks to AWS through it
    env = {
        "AWS_ENDPOINT_URL": proxy.url,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
    try:
        yield {"env": env, "registry": registry_host, "base": base, "moto": endpoint, "proxy": proxy}
    finally:
        proxy.close()
        moto.terminate()
        moto.wait(timeout=30)


def replace_file(path: Path, data: bytes) -> None:
    """New content under a path that may be a hard link to the shared run: a new file, not a write into it."""
    path.unlink(missing_ok=True)
    path.write_bytes(data)


def deploy(project, aws, *args, env=None):
    """`python -m pipeline.deploy ARGS`; with no command (no args, or options only) the deploy command:
    deploy(project, aws, "--force") runs `deploy --force`."""
    env = {**os.environ, **aws["env"], "PATH": f"{BIN}:{os.environ['PATH']}", **(env or {})}
    env["PYTHONPATH"] = f"{project}:{project / 'lambda'}"
    command = list(args) if args and not args[0].startswith("-") else ["deploy", *args]
    return subprocess.run(
        [sys.executable, "-m", "pipeline.deploy", *command], cwd=project, env=env, capture_output=True, text=True
    )


def client(aws, service, region: str = "us-east-1"):
    """A client of what deploy talks to (moto through the Lambda-like proxy)."""
    return moto_client(aws, service, endpoint=aws["env"]["AWS_ENDPOINT_URL"], region=region)


def moto_client(aws, service, endpoint: "str | None" = None, region: str = "us-east-1"):
    """A client of moto itself (no proxy): for setting up what a test needs, fast."""
    return boto3.client(
        service,
        endpoint_url=endpoint or aws["moto"],
        region_name=region,
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )


def versions(lam, name):
    pages = lam.get_paginator("list_versions_by_function").paginate(FunctionName=name)
    return [v["Version"] for page in pages for v in page["Versions"] if v["Version"] != "$LATEST"]


def live(lam, name):
    return lam.get_alias(FunctionName=name, Name="live")["FunctionVersion"]


def functions_named(lam, name) -> list[str]:
    pages = lam.get_paginator("list_functions").paginate()
    return [f["FunctionName"] for page in pages for f in page["Functions"] if f["FunctionName"] == name]


def apis_named(apigw, name) -> list[dict]:
    return [a for page in apigw.get_paginator("get_apis").paginate() for a in page["Items"] if a["Name"] == name]


def buckets_of(s3, function) -> list[str]:
    return [b["Name"] for b in s3.list_buckets()["Buckets"] if b["Name"].startswith(f"{function}-")]


def registry_digest(aws, repository: str, tag: str) -> str:
    """The manifest digest the local registry holds under a tag (what deploy pushed)."""
    url = f"http://{aws['registry']}/v2/{repository}/manifests/{tag}"
    answer = requests.get(url, headers={"Accept": MANIFEST_TYPES}, timeout=10)
    answer.raise_for_status()
    return answer.headers["Docker-Content-Digest"]


def push_index(aws, local: str, repository: str, tag: str) -> str:
    """A local image pushed as an OCI image index of one image (what docker 29 pushes for a single-platform
    build); the digest of the image's own manifest in it, as the registry lists it."""
    podman, index = ["podman", "--log-level", "error"], f"index-{repository}-{tag}"
    subprocess.run([*podman, "manifest", "rm", index], capture_output=True)
    try:
        for cmd in (
            ["manifest", "create", index],
            ["manifest", "add", index, f"containers-storage:{local}"],
            ["manifest", "push", "--tls-verify=false", "--all", "--format", "oci", index,
             f"docker://{aws['registry']}/{repository}:{tag}"],
        ):  # fmt: skip
            done = subprocess.run([*podman, *cmd], capture_output=True, text=True, timeout=300)
            assert done.returncode == 0, f"{cmd}: {done.stderr}"
    finally:
        subprocess.run([*podman, "manifest", "rm", index], capture_output=True)
    url = f"http://{aws['registry']}/v2/{repository}/manifests/{tag}"
    answer = requests.get(url, headers={"Accept": "application/vnd.oci.image.index.v1+json"}, timeout=10)
    assert answer.json()["mediaType"] == "application/vnd.oci.image.index.v1+json", answer.text
    [image] = answer.json()["manifests"]
    return image["digest"]


def registry_tags(aws, repository: str) -> list[str]:
    answer = requests.get(f"http://{aws['registry']}/v2/{repository}/tags/list", timeout=10)
    answer.raise_for_status()
    return answer.json().get("tags") or []


def verify_answer(project: Path, variant: str) -> tuple[str, str]:
    """The smoke test's photo for a variant and verify's answer for it, as the release manifest says."""
    entry = json.loads((project / RELEASE).read_text())["variants"][variant]
    return entry["smoke_photo"], entry["smoke_answer"]


def edit_release(project: Path, variant: str, **fields) -> bytes:
    """The release manifest with a variant's fields changed (a new file: the run's is never written
    into); returns the original bytes, for replace_file to put back."""
    path = project / RELEASE
    original = path.read_bytes()
    manifest = json.loads(original)
    manifest["variants"][variant].update(fields)
    replace_file(path, json.dumps(manifest).encode())
    return original


def zip_invokes_answer(aws, top: str) -> None:
    """moto's answer to the next Invoke of a zip function (it runs none): {"top": top}."""
    canned = {"results": [json.dumps({"top": top})], "region": "us-east-1"}
    requests.post(f"{aws['moto']}/moto-api/static/lambda-simple/response", json=canned, timeout=10).raise_for_status()


def one_line_error(result):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr and len(result.stderr.strip().splitlines()) == 1, result.stderr
    return result.stderr


def as_in_a_terminal() -> None:
    """Ctrl-C reaches the child as it reaches a command typed in a terminal: a suite started in the
    background (`make test &`, some CI runners) hands its children SIGINT ignored, and Python then never
    raises KeyboardInterrupt (seen: tune ran to its end and exited 0)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def own_name(test_name: str) -> str:
    """A short name of the test's own, valid for every AWS resource deploy makes (lowercase for ECR
    and S3; 31 characters leave room for the role's suffix and the bucket's account and region)."""
    slug = re.sub(r"[^a-z0-9]+", "-", test_name.lower().removeprefix("test_")).strip("-")[:24].strip("-")
    return f"{slug}-{hashlib.sha256(test_name.encode()).hexdigest()[:6]}"


def deploy_project(run: Path, dest: Path) -> Path:
    """A project with only what deploy reads: the code under test (this checkout's pipeline/ and
    lambda/, not the run's copy), the run's params with this checkout's deploy section, the run's
    release manifest and model files. Model files are hard links (hundreds of MB
    otherwise): a test that changes one replaces it (replace_file), never writes into it."""
    dest.mkdir(parents=True)
    for code in ("pipeline", "lambda"):
        shutil.copytree(ROOT / code, dest / code, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / ".dockerignore", dest / ".dockerignore")  # the image's build context
    params = yaml.safe_load((run / "params.yaml").read_text())
    params["deploy"] = yaml.safe_load((ROOT / "params.yaml").read_text())["deploy"]
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    for name in RUN_FILES:
        (dest / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(run / name, dest / name)
    for folder in MODEL_DIRS:
        (dest / folder).mkdir(parents=True)
        for model in (run / folder).iterdir():
            try:
                os.link(model, dest / folder / model.name)
            except OSError:  # another file system
                shutil.copy(model, dest / folder / model.name)
    return dest
