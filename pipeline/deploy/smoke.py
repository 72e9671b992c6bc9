"""Smoke tests: the function answers a real test photo as the verify stage did. `local` runs the
image (under its runtime interface emulator) or the zip's handler here before anything is
pushed; `aws` invokes the updated, not yet published function in AWS. Rollback invokes its
target version the same way before 'live' moves to it."""

import base64
import json
import platform
import subprocess
import sys
from pathlib import Path

import botocore.exceptions
import requests

from pipeline import cli, emulators, params, paths, release, variants
from pipeline.deploy import build, errors, limits, programs
from pipeline.gateway import INVOKE_PATH
from pipeline.ports import free_port

ANSWER_S = 60
# An image of another architecture runs here under qemu (binfmt_misc): its first answer (Python, the
# runtime's import and the model's load, all emulated) takes minutes on 2 cores, not seconds; the
# model's arithmetic is Lambda's CPU's, its speed is not.
EMULATED_ANSWER_S = 600
# Lambda's answers to an Invoke while it restores an idle (Inactive) function, or before it is ready.
RESTORING = ("CodeArtifactUserPendingException", "ResourceNotReadyException")


def expected_answer(variant: str) -> tuple[Path, str]:
    """A real test photo (absolute path: the runs below use other working directories) and the
    verify stage's answer for it with this variant, from the release manifest."""
    entry = release.load()["variants"].get(variant)
    if not entry or not entry["smoke_photo"]:
        raise cli.UserError(f"the verify stage did not check {variant}: add it to convert.variants and run `dvc repro`")
    return Path(entry["smoke_photo"]).resolve(), entry["smoke_answer"]


def recorded_answer(meta: dict) -> tuple[Path, str]:
    """The photo and the answer a version gave in its smoke test when it was published (its
    description records them): a version made from an older model is checked against its own
    answer, not today's verify run. Versions published before the record: verify's answer."""
    if not meta.get("photo") or not meta.get("top"):
        return expected_answer(meta["variant"])
    photos = {e["smoke_photo"] for e in release.load()["variants"].values() if e["smoke_photo"]}
    found = [p for p in sorted(photos) if Path(p).name == meta["photo"] and Path(p).exists()]
    if not found:
        raise cli.UserError(
            f"the smoke-test photo {meta['photo']} of this version is not among {paths.RELEASE}'s photos: "
            "run `dvc repro` on the data it was deployed from"
        )
    return Path(found[0]).resolve(), meta["top"]


def event(photo: Path) -> dict:
    return {"image": base64.b64encode(photo.read_bytes()).decode()}


def foreign(architecture: str) -> bool:
    """The function's architecture is not this machine's: its programs run here only under qemu."""
    return variants.MACHINES[architecture] != platform.machine()


def run_image(engine: str, image: str, photo: Path, architecture: str = "x86_64") -> dict:
    """The image under its runtime interface emulator, as the function's architecture: another one runs
    under qemu on Lambda's CPU model for it (make emulators), else the smoke test says to test in AWS."""
    port = free_port()
    run = [engine, "run", "-d", "--rm", "-p", f"127.0.0.1:{port}:8080"]
    if engine == "podman":
        run += ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]
    wait_s = ANSWER_S
    if foreign(architecture):
        if architecture == "arm64" and not emulators.arm64_registered():
            raise cli.UserError(
                f"smoke_test: local runs the arm64 image on this {platform.machine()} machine under qemu, which is "
                "not registered for arm64 here: `make emulators` (root), or smoke_test: aws"
            )
        run += ["--platform", f"linux/{limits.ARCHITECTURES[architecture]}"]
        run += ["-e", f"QEMU_CPU={emulators.CPU_MODELS[architecture]}"]
        # Lambda's Graviton hosts have no /sys/devices/system/cpu/possible or present; under qemu the container
        # would read this machine's instead, and ONNX Runtime 1.32's cpuinfo then segfaults (measured): both
        # hidden (empty), as there.
        run += [a for name in ("possible", "present") for a in ("-v", f"/dev/null:/sys/devices/system/cpu/{name}:ro")]
        wait_s = EMULATED_ANSWER_S
    container = programs.sh(*run, image, what="starting the image for the smoke test").strip()
    try:
        url = f"http://127.0.0.1:{port}{INVOKE_PATH}"
        session = requests.Session()
        for _ in range(wait_s * 4):
            try:
                return session.post(url, json=event(photo), timeout=wait_s).json()
            except (requests.ConnectionError, ValueError):
                subprocess.run(["sleep", "0.25"])
        raise errors.SmokeTestFailed(f"smoke test failed: the image did not answer within {wait_s} s")
    finally:
        subprocess.run([engine, "rm", "-f", container], capture_output=True)


def run_zip(d: params.Deploy, photo: Path) -> dict:
    """The zip's handler with the package's own files only (no site-packages), from another directory."""
    here = f"python{sys.version_info.major}.{sys.version_info.minor}"
    if foreign(d.architecture):  # its wheels are built for the function's CPU (aarch64 .so files)
        raise cli.UserError(
            f"smoke_test: local runs the {d.architecture} zip package with this {platform.machine()} machine's "
            "Python: use smoke_test: aws"
        )
    if d.zip_runtime != here:
        raise cli.UserError(f"smoke_test: local runs the {d.zip_runtime} package with this {here}: use smoke_test: aws")
    code = (
        "import base64, json, sys\nfrom serving import handler\n"
        "event = {'image': base64.b64encode(open(sys.argv[1], 'rb').read()).decode()}\n"
        "print(json.dumps(handler.lambda_handler(event)))\n"
    )
    result = subprocess.run(
        [sys.executable, "-S", "-c", code, str(photo)],
        cwd="/",
        capture_output=True,
        text=True,
        env={"PYTHONPATH": str(build.ZIP_DIR.resolve()), "LAMBDA_TASK_ROOT": str(build.ZIP_DIR.resolve())},
    )
    if result.returncode != 0:
        last = result.stderr.strip().splitlines()[-1:] or ["no output"]
        raise errors.SmokeTestFailed(f"smoke test failed: the zip package's handler crashed: {last[0]}")
    return json.loads(result.stdout.strip().splitlines()[-1])


def restoring(e: botocore.exceptions.ClientError) -> bool:
    code, message = e.response.get("Error", {}).get("Code"), e.response.get("Error", {}).get("Message", "")
    if code in RESTORING:
        return True
    # "The operation cannot be performed at this time. The function is currently in the following state: Pending"
    waiting = any(f"following state: {state}" in message for state in ("Inactive", "Pending"))
    return code == "ResourceConflictException" and waiting


def invoke(lam, d: params.Deploy, photo: Path, qualifier: str = "$LATEST") -> dict:
    """Invoke $LATEST (updated and waited for, not yet published: a failure publishes nothing) or
    a version. An idle version is Inactive: its first Invoke fails while Lambda restores it, so
    wait until it is Active and invoke it again; that second answer is the one checked."""
    payload = json.dumps(event(photo)).encode()
    try:
        answer = lam.invoke(FunctionName=d.function_name, Qualifier=qualifier, Payload=payload)
    except botocore.exceptions.ClientError as e:
        if not restoring(e):
            raise
        print(f"{d.function_name}:{qualifier} is not ready ({e.response['Error']['Code']}): waiting until it is Active")
        lam.get_waiter("function_active_v2").wait(FunctionName=d.function_name, Qualifier=qualifier)
        answer = lam.invoke(FunctionName=d.function_name, Qualifier=qualifier, Payload=payload)
    body = answer["Payload"].read() or b"{}"
    if answer.get("FunctionError"):
        raise errors.SmokeTestFailed(f"smoke test failed: the function raised {body.decode(errors='replace')[:300]}")
    try:
        return json.loads(body)
    except ValueError:
        raise errors.SmokeTestFailed(f"smoke test failed: the function answered {body[:300]!r}, not JSON") from None


def check(answer: dict, photo: Path, expected: str, stays: str = "nothing was published and 'live' stays where it was"):
    if answer.get("top") != expected:
        raise errors.SmokeTestFailed(
            f"smoke test failed: {photo.name} answered {answer.get('top') or answer} where {expected} was expected; "
            f"{stays}"
        )
