"""make tune offline: one function deployed for the module (moto behind the Lambda-like proxy, which
runs the pushed image under its runtime interface emulator, one container per memory size), swept
at memory sizes of each test's own (so each size's first invocation starts a new container: cold,
whatever order the tests run in). The REPORT lines tune parses are the emulator's own, passed back
in LogResult; the function's configuration is put back after a sweep, a failed invoke and Ctrl-C."""

import os
import signal
import subprocess
import sys

import pandas as pd
import pytest
from deploy_tools import (
    as_in_a_terminal,
    client,
    deploy,
    deploy_project,
    edit_release,
    one_line_error,
    own_name,
    registry_digest,
    replace_file,
)

from support import BIN, set_params

DEPLOYED_MB = 1769  # the module's function, as deploy configures it


@pytest.fixture(scope="module")
def deployed(aws, deploy_run, built_image, tmp_path_factory):
    """The project and the function's name: the session's image seeded into its repository, then
    deployed (its first, a new configuration: invoked in Lambda before it is published)."""
    name = own_name("test_deploy_tune")
    project = deploy_project(deploy_run, tmp_path_factory.mktemp("tune") / "p")
    deploy_keys = {"function_name": name, "repository": name, "role_name": f"{name}-lambda", "api_name": name}
    set_params(
        project,
        **{f"deploy.{k}": v for k, v in deploy_keys.items()},
        **{"deploy.registry": aws["registry"], "deploy.base_image": aws["base"], "deploy.variant": "full_int8"},
        **{"deploy.memory_mb": DEPLOYED_MB, "deploy.smoke_test": "aws", "tune.invocations": 2},
    )
    target = f"docker://{aws['registry']}/{name}:{built_image['key']}"
    pushed = subprocess.run(["podman", "push", "--tls-verify=false", built_image["tag"], target], capture_output=True)
    assert pushed.returncode == 0, pushed.stderr
    first = deploy(project, aws)
    assert first.returncode == 0, first.stdout + first.stderr
    yield project, name
    gone = deploy(project, aws, "destroy", "--yes")
    assert gone.returncode == 0, gone.stderr


def configuration(aws, name: str) -> dict:
    config = client(aws, "lambda").get_function_configuration(FunctionName=name)
    return {"MemorySize": config["MemorySize"], "NUM_THREADS": config["Environment"]["Variables"]["NUM_THREADS"]}


def test_tune_reads_the_emulators_report_lines_and_restores_the_function(deployed, aws, built_image):
    """$LATEST holds other code than 'live' (as a rollback leaves it): the sweep measures live's, and
    $LATEST gets its own code back after."""
    project, name = deployed
    lam = client(aws, "lambda")
    live_image = lam.get_function(FunctionName=name, Qualifier="live")["Code"]["ImageUri"]
    other = f"docker://{aws['registry']}/{name}:rolled-back-from"  # an OCI manifest: the same layers, another digest
    pushed = subprocess.run(["podman", "push", "--tls-verify=false", "--format", "oci", built_image["tag"], other],
                            capture_output=True, text=True)  # fmt: skip
    assert pushed.returncode == 0, pushed.stderr
    rolled_back_from = f"{live_image.split('@')[0]}@{registry_digest(aws, name, 'rolled-back-from')}"
    assert rolled_back_from != live_image
    lam.update_function_code(FunctionName=name, ImageUri=rolled_back_from)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    set_params(project, **{"tune.memory_mb": [1024, 3538]})
    before = len(aws["proxy"].invocations)
    try:
        swept = deploy(project, aws, "tune")
        latest = lam.get_function(FunctionName=name)["Code"]["ImageUri"]
    finally:
        lam.update_function_code(FunctionName=name, ImageUri=live_image)
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
    assert swept.returncode == 0, swept.stdout + swept.stderr
    assert configuration(aws, name) == {"MemorySize": DEPLOYED_MB, "NUM_THREADS": "1"}
    assert f"restored {name} to {DEPLOYED_MB} MB" in swept.stdout
    ran = [i["image"].split("@")[1] for i in aws["proxy"].invocations[before:] if i["function"] == name]
    assert ran == [live_image.split("@")[1]] * 4 and latest == rolled_back_from

    runs = pd.read_csv(project / "artifacts/tune/invocations.csv")
    assert list(runs["memory_mb"]) == [1024, 1024, 3538, 3538] and runs["request_id"].nunique() == 4
    # The emulator's REPORT line, as Lambda writes it: its Memory Size is the memory tune set, Billed Duration
    # is Duration rounded up to the ms, and an environment's first invocation carries Init Duration.
    assert (runs["memory_size_mb"] == runs["memory_mb"]).all()
    assert ((runs["billed_ms"] - runs["duration_ms"]).between(0, 1)).all() and (runs["duration_ms"] > 0).all()
    assert (runs.groupby("memory_mb")["init_ms"].first() > 0).all()
    # Each size ran in a container of its own, with the configuration deploy would give it (NUM_THREADS).
    invoked = [c for c in aws["proxy"].invocations if c["function"] == name]
    assert len(invoked) >= 5  # deploy's invocation, then the sweep's four
    table = pd.read_csv(project / "artifacts/tune/tune.csv").set_index("memory_mb")
    assert list(table.index) == [1024, 3538] and (table["invocations"] == 2).all()
    assert (table["variant"] == "full_int8").all() and (table["runtime"] == "full_int8").all()
    # The warm invocation's billed ms priced as recommend prices the estimate, at the function's architecture.
    warm = runs.groupby("memory_mb")["billed_ms"].last()
    assert (table["billed_p50_ms"] == warm).all() and (table["architecture"] == "x86_64").all()
    # deploy.endpoint function_url (the default): no per-request price for the door; the log tail's bytes priced.
    assert (table["door"] == "function_url").all() and (table["usd_door"] == 0.0).all()
    assert (table["usd_logs"] > 0).all() and (table["usd_per_million"] > 0.2).all()
    assert (project / "artifacts/tune/tune.png").stat().st_size > 10_000
    assert "cheapest: " in swept.stdout and "fastest: " in swept.stdout


def test_a_failed_invoke_stops_the_sweep_and_restores_the_function(deployed, aws, tmp_path):
    """The smoke photo replaced by bytes that are no image: the function answers 415, not a prediction."""
    project, name = deployed
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a photo" * 100)
    original = edit_release(project, "full_int8", smoke_photo=str(broken))
    set_params(project, **{"tune.memory_mb": [1280]})
    try:
        failed = one_line_error(deploy(project, aws, "tune"))
    finally:
        replace_file(project / "artifacts/recommend/release.json", original)
    assert "did not answer broken.jpg with a prediction" in failed and "415" in failed
    assert configuration(aws, name) == {"MemorySize": DEPLOYED_MB, "NUM_THREADS": "1"}


def test_an_interrupt_restores_the_function(deployed, aws):
    """Ctrl-C while the first new size's container starts: the configuration is put back before tune exits,
    and nothing is written."""
    project, name = deployed
    set_params(project, **{"tune.memory_mb": [1536, 2048]})
    env = {**os.environ, **aws["env"], "PATH": f"{BIN}:{os.environ['PATH']}"}
    env["PYTHONPATH"] = f"{project}:{project / 'lambda'}"
    process = subprocess.Popen(
        [sys.executable, "-m", "pipeline.deploy", "tune"], cwd=project, env=env, text=True,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, preexec_fn=as_in_a_terminal,
    )  # fmt: skip
    seen = []
    for line in process.stdout:
        seen.append(line)
        if line.startswith("1536 MB: invoking"):
            process.send_signal(signal.SIGINT)
            break
    out, err = process.communicate(timeout=120)
    assert process.returncode == 130, "".join(seen) + out + err
    assert "interrupted: putting the configuration back" in out and f"restored {name} to {DEPLOYED_MB} MB" in out
    assert err.strip().splitlines()[-1] == "interrupted: no artifact was half-written"
    assert configuration(aws, name) == {"MemorySize": DEPLOYED_MB, "NUM_THREADS": "1"}
    assert not (project / "artifacts/tune").exists() or "1536" not in (project / "artifacts/tune/tune.csv").read_text()
