"""What deploy refuses for arm64 before it runs anything, in one line each: a local smoke test of an
arm64 zip (its aarch64 wheels cannot run in this machine's Python), and of an arm64 image where qemu
is not registered for arm64. Pure checks: the arm64 deploys themselves are in test_deploy_arm64.py."""

import dataclasses
import platform

import pytest

from pipeline import cli, emulators, params
from pipeline.deploy import smoke
from support import ROOT

PHOTO = ROOT / "README.md"  # never read: each refusal comes before the photo is


@pytest.fixture
def arm64() -> params.Deploy:
    if platform.machine() != "x86_64":
        pytest.skip("these refusals are about running arm64 on an x86_64 machine")
    return dataclasses.replace(params.load(ROOT / "params.yaml").deploy, architecture="arm64")


def test_a_local_smoke_test_of_an_arm64_zip_is_refused(arm64):
    with pytest.raises(cli.UserError, match="local runs the arm64 zip package with this x86_64 machine's Python: "
                                            "use smoke_test: aws"):  # fmt: skip
        smoke.run_zip(dataclasses.replace(arm64, zip_runtime="python3.11"), PHOTO)


def test_a_local_smoke_test_of_an_arm64_image_needs_qemu(arm64, monkeypatch):
    """Without binfmt_misc's arm64 entry the container could only fail (exec format error) after the
    smoke test's wait: the deploy says what to do at once instead."""
    monkeypatch.setattr(emulators, "arm64_registered", lambda: False)
    with pytest.raises(
        cli.UserError, match=r"not registered for arm64 here: `make emulators` \(root\), or smoke_test: aws"
    ):
        smoke.run_image("podman", "localhost/never-started", PHOTO, arm64.architecture)
