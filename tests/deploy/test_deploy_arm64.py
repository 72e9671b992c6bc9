"""arm64 end to end, offline: deploy.architecture arm64 builds its image (or zip) for arm64 here,
pushes it, and the Lambda-like proxy runs it as arm64 (qemu through binfmt_misc, Graviton2's CPU
model, /sys/devices/system/cpu/possible and present absent as on Lambda's Graviton hosts) under
the arm64 runtime interface emulator: it answers the smoke test's photo as verify did on x86.

Emulation proves the arithmetic, the imports and the handler's answer on arm64, never its speed.
Minutes under qemu on 2 cores: marked arm64, left out of make test; `make test-arm64` runs them
(after `make emulators`, which registers arm64 with binfmt_misc as root)."""

import json
import os
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import pytest
import requests
from deploy_tools import (
    MANIFEST_TYPES,
    client,
    deploy,
    local_aws,
    one_line_error,
    registry_digest,
    registry_tags,
    verify_answer,
)
from lambda_proxy import CPU_SYS, HIDDEN_ON_ARM64, container_log

from aws_local import STANDIN_BASES, SetupFailed, build_standin_base, step
from pipeline import emulators
from pipeline.deploy import limits, smoke
from support import ROOT, set_params

# 1800 s, not 900: the first test's set-up may build the arm64 base (debootstrap under qemu: 3-15 min).
pytestmark = [pytest.mark.arm64, pytest.mark.small_run_model, pytest.mark.timeout(1800)]  # what ships, on arm64

# The function's timeout under emulation: its first answer (Python, the runtime's import and the model's
# load, all under qemu) takes tens of seconds where Lambda's takes under one; the answer is what is tested.
EMULATED_TIMEOUT_S = 300
KEY = (
    "from pipeline import params\nfrom pipeline.deploy import build\n"
    "d = params.load().deploy\nbuild.copy_model(*build.chosen_model(d))\nprint(build.code_key(d))\n"
)


@pytest.fixture(scope="session")
def arm64_base(standin_base) -> str:
    """The arm64 stand-in base (made once per machine; after the x86 one: two debootstraps would share 2 cores)."""
    if not emulators.arm64_registered():
        pytest.fail(f"arm64 programs do not run here: {emulators.INSTALL_HINT}", pytrace=False)
    try:
        return build_standin_base(ROOT / ".cache/aws-lambda-rie-arm64", "arm64")
    except SetupFailed as e:
        pytest.fail(f"deploy test set-up: {e}", pytrace=False)


@pytest.fixture(scope="module")
def aws(standin_base, arm64_base, registry):
    """moto and the proxy, which here also runs python3.11 zip functions on the stand-in base of their
    architecture."""
    zip_bases = {("x86_64", "python3.11"): standin_base, ("arm64", "python3.11"): arm64_base}
    with local_aws(registry, standin_base, zip_bases=zip_bases) as found:
        yield found | {"arm64_base": arm64_base}


def deploy_key(project) -> str:
    """The deploy key (the image's tag) deploy will compute for the project as it stands."""
    env = {**os.environ, "PYTHONPATH": f"{project}:{project / 'lambda'}"}
    return step([sys.executable, "-c", KEY], "computing the deploy key", 300, cwd=project, env=env).stdout.split()[-1]


def pushed(aws, repository: str, tag: str) -> tuple[dict, dict]:
    """The manifest and image config the registry holds under the tag."""
    base = f"http://{aws['registry']}/v2/{repository}"
    manifest = requests.get(f"{base}/manifests/{tag}", headers={"Accept": MANIFEST_TYPES}, timeout=10).json()
    config = requests.get(f"{base}/blobs/{manifest['config']['digest']}", timeout=10).json()
    return manifest, config


def inside(container: str, command: str) -> subprocess.CompletedProcess:
    """A shell command in the running function's container (as its architecture)."""
    return subprocess.run(["podman", "exec", container, "sh", "-c", command], capture_output=True, text=True,
                          timeout=120)  # fmt: skip


def answered(aws, function: str, photo: str) -> dict:
    """The live version's answer through the proxy, as Lambda's Invoke gives it."""
    payload = json.dumps(smoke.event(Path(photo))).encode()
    answer = client(aws, "lambda").invoke(FunctionName=function, Qualifier="live", Payload=payload)
    assert "FunctionError" not in answer, answer["Payload"].read()
    return json.loads(answer["Payload"].read())


def test_arm64_image_answers_as_verify_did(project, aws, names):
    """onnx_int8 (ONNX Runtime 1.32's aarch64 wheel) in an image built here for linux/arm64 on the arm64 base:
    smoke-tested here under qemu (smoke_test local), one arm64 image manifest pushed, the function arm64, run
    by the proxy as arm64 without the /sys files Lambda's Graviton lacks (ONNX Runtime says so in the log,
    and answers), with verify's answer. An x86_64 image already under the deploy key is read back from the
    registry and not used for arm64."""
    variant = "onnx_int8"
    photo, expected = verify_answer(project, variant)
    set_params(project, **{"deploy.architecture": "arm64", "deploy.base_image": aws["arm64_base"],
                           "deploy.variant": variant, "deploy.timeout_s": EMULATED_TIMEOUT_S})  # fmt: skip
    key, repository = deploy_key(project), names["repository"]
    x86 = f"docker://{aws['registry']}/{repository}:{key}"  # the x86 stand-in base: any amd64 image will do
    step(["podman", "push", "--tls-verify=false", aws["base"], x86], "pushing an x86_64 image under the key", 300)
    started = time.monotonic()
    done = deploy(project, aws)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    # Both smoke tests ran: here (smoke_test local, before the push) and in "Lambda" (a first deploy always is).
    print(f"arm64 image: built, smoke-tested here, pushed, deployed and first answered in {took:.0f} s")
    assert "is built for amd64, deploy.architecture is arm64" in done.stdout, done.stdout
    assert f"building it again as {key}-r1" in done.stdout, done.stdout

    assert sorted(registry_tags(aws, repository)) == [key, f"{key}-r1"]
    manifest, config = pushed(aws, repository, f"{key}-r1")
    pushed_digest = registry_digest(aws, repository, f"{key}-r1")  # what the function runs, by digest
    assert manifest.get("mediaType") in limits.IMAGE_MEDIA_TYPES and "manifests" not in manifest, manifest
    assert (config["os"], config["architecture"]) == ("linux", "arm64")
    lam = client(aws, "lambda")
    assert lam.get_function_configuration(FunctionName=names["function"])["Architectures"] == ["arm64"]

    run = aws["proxy"].invocations[-1]
    assert run["architecture"] == "arm64" and run["image"].endswith(f"{repository}@{pushed_digest}")
    assert inside(run["container"], "uname -m").stdout.strip() == "aarch64"
    for name in HIDDEN_ON_ARM64:  # absent, as on Lambda's Graviton, not empty
        assert inside(run["container"], f"test -e {CPU_SYS}/{name}").returncode == 1, name
    assert inside(run["container"], f"cat {CPU_SYS}/online").stdout.strip()  # the rest of the folder is there
    # ONNX Runtime's CPU detection met the hidden files (its cpuinfo's own words), and the function answered.
    assert b"Error in cpuinfo" in container_log(run["container"])
    started = time.monotonic()
    assert answered(aws, names["function"], photo)["top"] == expected
    print(f"arm64 image: a warm answer in {time.monotonic() - started:.1f} s (emulated)")


def test_arm64_zip_answers_as_verify_did(project, aws, names):
    """full_int8 (LiteRT) in a python3.11 zip for arm64: the aarch64 wheels of the arm64 pins (ai-edge-litert
    1.4.0: 2.x has no aarch64 wheel), unzipped by the proxy into the arm64 base's /var/task and run there with
    the function's Handler, without the /sys files Lambda's Graviton lacks: verify's answer. A local smoke test
    cannot run arm64 wheels with this machine's Python: refused in one line."""
    variant = "full_int8"
    photo, expected = verify_answer(project, variant)
    set_params(project, **{"deploy.architecture": "arm64", "deploy.package": "zip", "deploy.zip_runtime": "python3.11",
                           "deploy.variant": variant, "deploy.timeout_s": EMULATED_TIMEOUT_S})  # fmt: skip
    refused = one_line_error(deploy(project, aws))  # the project's smoke_test is local
    assert "local runs the arm64 zip package" in refused and "use smoke_test: aws" in refused, refused

    set_params(project, **{"deploy.smoke_test": "aws"})
    started = time.monotonic()
    done = deploy(project, aws)
    took = time.monotonic() - started
    assert done.returncode == 0, done.stdout + done.stderr
    print(f"arm64 zip: built, deployed and first answered in {took:.0f} s")

    shipped = zipfile.ZipFile(project / "build/function.zip").namelist()
    assert any(n.startswith("ai_edge_litert-1.4.0.dist-info/") for n in shipped)
    libraries = [n for n in shipped if n.endswith(".so") or ".so." in n]
    assert any("aarch64" in n for n in libraries) and not any("x86_64" in n for n in libraries), libraries
    config = client(aws, "lambda").get_function_configuration(FunctionName=names["function"])
    assert (config["PackageType"], config["Runtime"], config["Architectures"]) == ("Zip", "python3.11", ["arm64"])

    run = aws["proxy"].invocations[-1]
    assert (run["architecture"], run["image"], run["code"]) == ("arm64", STANDIN_BASES["arm64"], config["CodeSha256"])
    assert inside(run["container"], "uname -m").stdout.strip() == "aarch64"
    assert inside(run["container"], "ls /var/task/model").stdout.split() == ["model.json", "model.tflite"]
    for name in HIDDEN_ON_ARM64:
        assert inside(run["container"], f"test -e {CPU_SYS}/{name}").returncode == 1, name
    assert answered(aws, names["function"], photo)["top"] == expected


def test_an_x86_base_is_refused_for_arm64(project, aws, names):
    """deploy.architecture arm64 on an x86_64-only base image: one line, and no function."""
    set_params(project, **{"deploy.architecture": "arm64", "deploy.smoke_test": "aws"})  # the x86 base
    refused = one_line_error(deploy(project, aws))
    assert "arm64" in refused, refused
    functions = client(aws, "lambda").list_functions()["Functions"]
    assert names["function"] not in [f["FunctionName"] for f in functions]
