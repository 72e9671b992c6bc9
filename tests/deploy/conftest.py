"""What every deploy test stands on: moto and the Lambda-like proxy in front of it on 127.0.0.1
(one pair per test module), one registry, a project of its own per test holding only what deploy
reads, AWS names of its own per test, and one image built per session for the tests that are not
about building. The helpers that run deploy and read what it did are in deploy_tools.py."""

import os
import shutil
import sys
from pathlib import Path

import pytest
from deploy_tools import deploy, deploy_project, local_aws, own_name

from aws_local import SetupFailed, build_standin_base, start_registry, step
from support import ROOT, set_params

TOOLS = ("podman", "docker-registry", "debootstrap")


@pytest.fixture(scope="session")
def standin_base() -> str:
    """The Lambda-like base image (made once per machine: podman keeps it)."""
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        message = f"{missing} not installed: `make deploy-deps` installs them (make test does)"
        pytest.fail(message) if os.environ.get("CI") else pytest.skip(message)
    try:
        return build_standin_base(ROOT / ".cache/aws-lambda-rie-x86_64")
    except SetupFailed as e:
        pytest.fail(f"deploy test set-up: {e}", pytrace=False)


@pytest.fixture(scope="session")
def registry(tmp_path_factory):
    """One registry for the session: each test pushes to a repository of its own, and layers pushed
    once are not sent again (the shared image's ~150 MB)."""
    try:
        process, host = start_registry(tmp_path_factory.mktemp("registry"))
    except SetupFailed as e:
        pytest.fail(f"deploy test set-up: {e}", pytrace=False)
    yield host
    process.terminate()
    process.wait(timeout=30)


@pytest.fixture(scope="module")
def aws(standin_base, registry):
    with local_aws(registry, standin_base) as found:
        yield found


@pytest.fixture
def names(request) -> dict:
    name = own_name(request.node.name)
    return {"function": name, "repository": name, "role": f"{name}-lambda", "api": name}


def shipped_run(request) -> Path:
    """The run a deploy test ships: the tiny model's (support.build_deploy_run, ready in a minute), or the small
    run's Xception for a test marked small_run_model (what runs on arm64; a float32 zip over 50 MB)."""
    marked = request.node.get_closest_marker("small_run_model")
    return request.getfixturevalue("small_run" if marked else "deploy_run")


@pytest.fixture
def project(aws, request, tmp_path, names):
    """A project of the test's own, deploying under the test's own AWS names with a local smoke
    test; whatever the test deployed is destroyed after it."""
    project = deploy_project(shipped_run(request), tmp_path / "p")
    set_params(
        project,
        **{
            "deploy.registry": aws["registry"],
            "deploy.base_image": aws["base"],
            "deploy.smoke_test": "local",
            "deploy.variant": "full_int8",
            "deploy.function_name": names["function"],
            "deploy.repository": names["repository"],
            "deploy.role_name": names["role"],
            "deploy.api_name": names["api"],
            # The tests written for the HTTP API keep it; test_deploy_function_url.py deploys the default.
            "deploy.endpoint": "http_api",
        },
    )
    yield project
    gone = deploy(project, aws, "destroy", "--yes")
    assert gone.returncode == 0, gone.stderr


BUILD = (
    "from pipeline import params\nfrom pipeline.deploy import build, image\n"
    "d = params.load().deploy\nbuild.copy_model(*build.chosen_model(d))\nkey = build.code_key(d)\n"
    "image.build_image('podman', d, f'localhost/deploy-test:{key}')\nprint(key)\n"
)


@pytest.fixture(scope="session")
def built_image(standin_base, deploy_run, tmp_path_factory) -> dict:
    """The default project's image, built once per session as deploy builds it (podman)."""
    project = deploy_project(deploy_run, tmp_path_factory.mktemp("built") / "p")
    set_params(project, **{"deploy.base_image": standin_base, "deploy.variant": "full_int8"})
    env = {**os.environ, "PYTHONPATH": f"{project}:{project / 'lambda'}"}
    try:
        built = step([sys.executable, "-c", BUILD], "building the shared image", 900, cwd=project, env=env)
    except SetupFailed as e:
        pytest.fail(str(e), pytrace=False)
    key = built.stdout.split()[-1]
    return {"key": key, "tag": f"localhost/deploy-test:{key}"}


@pytest.fixture
def seeded(project, aws, names, built_image) -> str:
    """The test's own repository holds the default image already, so deploy reuses it (no build), and
    smoke-tests in Lambda (smoke_test: aws; local would pull and run the pushed image here first: for
    tests that are not about building, a first deploy's invocation in Lambda is test enough). Its
    deploy key."""
    target = f"docker://{aws['registry']}/{names['repository']}:{built_image['key']}"
    step(["podman", "push", "--tls-verify=false", built_image["tag"], target], "pushing the shared image", 300)
    set_params(project, **{"deploy.smoke_test": "aws"})
    return built_image["key"]
