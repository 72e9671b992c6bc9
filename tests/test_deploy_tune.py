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
    edit_release,
    one_line_error,
    registry_digest,
    replace_file,
)

from conftest import BIN, ROOT, set_params
from pipeline.cli import UserError
from pipeline.deploy import tune
from pipeline.params import Cost

pytest_plugins = ["deploy_env"]  # the fixtures: aws, registry, standin_base, built_image
DEPLOYED_MB = 1769  # the module's function, as deploy configures it


@pytest.fixture(scope="module")
def deployed(aws, deploy_run, built_image, tmp_path_factory):
    """The project and the function's name: the session's image seeded into its repository, then
    deployed (its first, a new configuration: invoked in Lambda before it is published)."""
    from deploy_env import deploy_project, own_name  # after pytest_plugins loaded it (assertion rewriting)

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


# The emulator's REPORT line for an environment's first invocation, as it printed it (Init Duration first,
# Max Memory Used = Memory Size: the emulator measures neither), and one in Lambda's own order.
EMULATOR_REPORT = (
    "REPORT RequestId: bc594e04-db6f-4828-bd92-917ef5425bbc\tInit Duration: 0.32 ms\tDuration: 120.62 ms\t"
    "Billed Duration: 121 ms\tMemory Size: 512 MB\tMax Memory Used: 512 MB\t"
)
LAMBDA_REPORT = (
    "REPORT RequestId: 3f1c0a6e-0000-4000-8000-000000000000\tDuration: 31.08 ms\tBilled Duration: 32 ms\t"
    "Memory Size: 1769 MB\tMax Memory Used: 141 MB\t"
)


@pytest.mark.fast
def test_report_lines_are_parsed_from_a_log_tail():
    tail = 'START RequestId: bc59 Version: $LATEST\n{"status": 200}\nEND RequestId: bc59\n' + EMULATOR_REPORT + "\n"
    first = tune.parse_report(tail)
    assert (first["duration_ms"], first["billed_ms"], first["memory_size_mb"], first["init_ms"]) == (
        120.62, 121.0, 512.0, 0.32
    )  # fmt: skip
    warm = tune.parse_report(LAMBDA_REPORT)
    assert (warm["billed_ms"], warm["max_memory_used_mb"], warm["init_ms"]) == (32.0, 141.0, 0.0)
    with pytest.raises(UserError, match="no REPORT line"):
        tune.parse_report("START RequestId: x\nEND RequestId: x\n")


# The list prices the tune tables below are priced at (cost's params, us-east-1 on 2026-12-02).
LIST_PRICES = Cost(
    memory_mb=[1024], photo="phone", cold_start_share=0.01, mb_per_vcpu=1769, prices_region="us-east-1",
    prices_date="2026-12-02", x86_64_price_per_gb_second=0.0000166667, arm64_price_per_gb_second=0.0000133334,
    price_per_million_requests=0.2, api_price_per_million=1.0, api_price_per_million_past_tier=0.9,
    api_tier_millions=300, api_request_step_kb=512, requests_per_month_millions=10, logs_price_per_gb=0.0,
    snapstart_cache_price_per_gb_second=0.0000015046, snapstart_restore_price_per_gb=0.0001397998, snapstart_versions=2,
)  # fmt: skip


@pytest.mark.fast
def test_a_sweep_is_summarized_and_priced_exactly():
    """Per size: the warm invocations' p50; init = the first's Init Duration + its billed ms beyond that p50."""
    rows = pd.DataFrame(
        {
            "memory_mb": [1024, 1024, 1024, 2048, 2048, 2048],
            "duration_ms": [300.5, 40.2, 41.7, 280.0, 25.3, 24.1],
            "billed_ms": [301.0, 41.0, 42.0, 280.0, 26.0, 25.0],
            "init_ms": [250.0, 0.0, 0.0, 200.0, 0.0, 0.0],
            "max_memory_used_mb": [140.0, 141.0, 141.0, 150.0, 150.0, 151.0],
        }
    )
    c = LIST_PRICES
    table = tune.summarize(rows, "full_int8", "full_int8", "x86_64", c).set_index("memory_mb")
    assert list(table.columns) == tune.COLUMNS[1:]
    assert (table.loc[1024, "billed_p50_ms"], table.loc[1024, "duration_p50_ms"]) == (41.5, 40.95)
    assert table.loc[1024, "init_ms"] == 250.0 + 301.0 - 41.5
    assert table.loc[2048, "init_ms"] == 200.0 + 280.0 - 25.5 and table.loc[2048, "max_memory_used_mb"] == 151.0
    # 41.5 ms bills as 42 ms at 1 GB; 509.5 ms of init for 1% of requests; $0.20 + $1.00.
    assert table.loc[1024, "usd_compute"] == round(1e6 * 0.042 * 1.0 * 0.0000166667, 4) == 0.7
    assert table.loc[1024, "usd_init"] == round(0.01 * 1e6 * 0.510 * 1.0 * 0.0000166667, 4)
    assert table.loc[1024, "usd_per_million"] == round(0.7000014 + 0.0850002 + 1.2, 4)


@pytest.mark.fast
def test_the_tune_table_in_git_is_the_header_tune_writes():
    """The report stage reads artifacts/tune/tune.csv (a dvc.yaml dep): git holds its header until make tune runs."""
    assert (ROOT / "artifacts/tune/tune.csv").read_text().splitlines() == [",".join(tune.COLUMNS)]


@pytest.mark.fast
def test_init_inside_billed_duration_is_counted_once():
    """An image function's REPORT line bills Init inside Billed Duration (ceil(Duration + Init Duration));
    the cold invocation's billed ms beyond the warm p50 is then its whole extra cost, Init not added again."""
    rows = pd.DataFrame(
        {
            "memory_mb": [1024, 1024, 1024],
            "duration_ms": [300.5, 40.2, 41.7],
            "billed_ms": [551.0, 41.0, 42.0],  # 300.5 + 250.0 = 550.5, billed as 551
            "init_ms": [250.0, 0.0, 0.0],
            "max_memory_used_mb": [140.0, 141.0, 141.0],
        }
    )
    c = LIST_PRICES
    table = tune.summarize(rows, "full_int8", "full_int8", "x86_64", c).set_index("memory_mb")
    assert table.loc[1024, "init_ms"] == 551.0 - 41.5
    assert table.loc[1024, "usd_init"] == round(0.01 * 1e6 * 0.510 * 1.0 * 0.0000166667, 4)


def tune_table(rows: list[tuple]) -> pd.DataFrame:
    """A tune.csv's columns that make tune chooses by: (memory_mb, duration_p50_ms, usd_per_million) per size."""
    return pd.DataFrame(rows, columns=["memory_mb", "duration_p50_ms", "usd_per_million"])


@pytest.mark.fast
def test_make_tune_names_the_cheapest_and_the_fastest_size():
    # Cheapest and fastest read off the rows by eye: 1024 MB costs least, 3008 MB answers soonest, and neither is
    # the first or the last row. Fails if either idxmin becomes idxmax, or the two columns are swapped.
    table = tune_table([(512, 80.0, 2.10), (1024, 41.0, 1.95), (3008, 14.0, 2.40), (2048, 22.0, 2.20)])
    cheapest, fastest = tune.choices(table)
    assert (cheapest["memory_mb"], fastest["memory_mb"]) == (1024, 3008)
    # A tie goes to the first row: the smaller size, listed first.
    cheapest, fastest = tune.choices(tune_table([(512, 30.0, 1.5), (1024, 30.0, 1.5)]))
    assert (cheapest["memory_mb"], fastest["memory_mb"]) == (512, 512)


@pytest.mark.fast
def test_each_swept_size_gets_its_own_configuration_with_its_threads():
    # One vCPU per 1769 MB (Lambda's documented ratio, cost.mb_per_vcpu): 512 MB and 1769 MB run 1 thread, 3538 MB
    # exactly 2, 5307 MB 3, 10240 MB 5.79 -> 6. Fails if the sweep keeps deploy's own memory size or thread count
    # for every size, or the thread count is not rounded from the size's vCPUs.
    from pipeline import params

    d = params.load(ROOT / "params.yaml").deploy
    sizes = [512, 1769, 3538, 5307, 10240]
    configs = tune.size_configs(d, sizes, 1769)
    assert [c["MemorySize"] for c in configs] == sizes
    assert [c["Environment"]["Variables"]["NUM_THREADS"] for c in configs] == ["1", "1", "2", "3", "6"]
    assert all(c["Timeout"] == d.timeout_s and set(c) == set(tune.VERSIONED) for c in configs)
