"""The docker path, offline: where a Docker engine runs (or Debian's dockerd can be started), deploy
builds, logs in and pushes with docker. Apart from test_deploy.py so that pytest-xdist runs the two
files side by side."""

import base64
import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
import requests
from deploy_tools import ACCOUNT, MANIFEST_TYPES, deploy

from aws_local import start_registry
from support import BIN, set_params

# The Debian docker.io daemon path beside podman's (make test deploys with podman): ~150 s of a worker,
# so it runs in make test-heavy, which .ci/run runs after make test.
pytestmark = pytest.mark.heavy


def docker_answers(env: dict) -> bool:
    """`docker info` succeeds (bounded: fixture set-up is outside pytest-timeout)."""
    try:
        return (
            subprocess.run(["docker", "info"], env={**os.environ, **env}, capture_output=True, timeout=20).returncode
            == 0
        )
    except subprocess.TimeoutExpired:
        return False


@pytest.fixture
def docker_engine(tmp_path):
    """A Docker engine: the one running here, or Debian's dockerd started on a socket of its own."""
    if shutil.which("docker") and docker_answers({}):
        yield {}
        return
    if not shutil.which("dockerd") or not shutil.which("docker"):
        pytest.skip("DOCKER PATH NOT TESTED: no docker/dockerd here (`make deploy-deps` installs docker.io)")
    root = Path("/var/tmp") / f"dockerd-{os.getpid()}-{tmp_path.name}"  # short: socket paths are limited
    env = {"DOCKER_HOST": f"unix://{root}/docker.sock"}
    log = (tmp_path / "dockerd.log").open("w")
    daemon = subprocess.Popen(
        ["dockerd", "--host", env["DOCKER_HOST"], "--data-root", f"{root}/data", "--exec-root", f"{root}/exec",
         "--pidfile", f"{root}/pid"],
        stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    try:
        for _ in range(60):
            if docker_answers(env):
                break
            if daemon.poll() is not None:
                break
            time.sleep(0.5)
        else:
            daemon.terminate()
        if daemon.poll() is not None:
            last = (tmp_path / "dockerd.log").read_text().strip().splitlines()[-1:] or ["no output"]
            pytest.skip(f"DOCKER PATH NOT TESTED: dockerd cannot run on this machine: {last[0]}")
        yield env
    finally:
        daemon.terminate()
        daemon.wait(timeout=30)
        shutil.rmtree(root, ignore_errors=True)


FAKE_ECR_LOGIN = """#!/bin/sh
# docker-credential-ecr-login as it answers for a token it did not fetch itself: it stores nothing.
echo "$1" >> "$(dirname "$0")/calls"
[ "$1" = store ] && { echo "not implemented" >&2; exit 1; }
echo "credentials not found in native keychain" >&2; exit 1
"""


def test_the_docker_path(project, aws, names, docker_engine, tmp_path):
    """Where docker runs, deploy uses it: a single amd64 image built by docker, pushed, checked. The
    registry asks for a login (as ECR's does) and the user's docker config names the ECR credential
    helper (credsStore: ecr-login, as on CI and EC2 images), which cannot store deploy's token:
    deploy logs in and pushes with a config of its own, and leaves no token behind."""
    docker = {**os.environ, **docker_engine}
    saved = subprocess.Popen(["podman", "save", aws["base"]], stdout=subprocess.PIPE)
    loaded = subprocess.run(["docker", "load"], stdin=saved.stdout, env=docker, capture_output=True, text=True)
    assert saved.wait() == 0 and loaded.returncode == 0, loaded.stderr
    registry, host = start_registry(tmp_path / "registry", login=("AWS", f"{ACCOUNT}-auth-token"))  # moto's token
    home, helpers = tmp_path / "home", tmp_path / "helpers"
    (home / ".docker").mkdir(parents=True)
    helpers.mkdir()
    user_config = json.dumps({"credsStore": "ecr-login"})
    (home / ".docker/config.json").write_text(user_config)
    (helpers / "docker-credential-ecr-login").write_text(FAKE_ECR_LOGIN)
    (helpers / "docker-credential-ecr-login").chmod(0o755)
    set_params(project, **{"deploy.registry": host})
    env = {**docker_engine, "HOME": str(home), "PATH": f"{helpers}:{BIN}:{os.environ['PATH']}"}
    proxy = aws["proxy"]  # a first deploy is invoked in "Lambda": it runs the image from this registry
    proxy.registry, proxy.creds = host, f"AWS:{ACCOUNT}-auth-token"
    try:
        first = deploy(project, aws, env=env)
        assert first.returncode == 0 and "with docker" in first.stdout, first.stdout + first.stderr
        record = json.loads((project / "artifacts/deploy.json").read_text())
        answer = requests.get(
            f"http://{host}/v2/{names['repository']}/manifests/{record['key']}",
            headers={"Accept": MANIFEST_TYPES},
            auth=("AWS", f"{ACCOUNT}-auth-token"),
            timeout=10,
        )
        assert answer.json()["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
        # The build reads the user's config (a private base image may need it); login and push never do.
        calls = (helpers / "calls").read_text().split() if (helpers / "calls").exists() else []
        assert (home / ".docker/config.json").read_text() == user_config and "store" not in calls, calls
        token = base64.b64encode(f"AWS:{ACCOUNT}-auth-token".encode())
        assert not [f for f in home.rglob("*") if f.is_file() and token in f.read_bytes()]
    finally:
        proxy.registry, proxy.creds = aws["registry"], None
        registry.terminate()
        registry.wait(timeout=30)
