"""make tune: a memory sweep on the deployed function, as AWS Lambda Power Tuning does it, from here.

The sweep measures the live version's code: where $LATEST holds other code (a rollback leaves the
rolled-back code there), live's image is put on $LATEST for the sweep and $LATEST's put back after.
For each tune.memory_mb: set $LATEST to the configuration deploy would give that memory size (its
NUM_THREADS too), wait until the update is done, invoke it tune.invocations times with the smoke
photo and LogType=Tail, and read Lambda's own REPORT line from each log tail (Duration, Billed
Duration, Max Memory Used, Init Duration). Then the original configuration is put back, also when
an invoke fails or the sweep is interrupted (Ctrl-C). Published versions and 'live' are never
touched: only $LATEST changes, and only for the sweep. (Versions cannot be swept themselves: their
configuration is frozen.)

Writes artifacts/tune/invocations.csv (every REPORT line, parsed), artifacts/tune/tune.csv (one row
per memory size, priced with pipeline/cost.py at the function's architecture) and tune.png; names
the cheapest and the fastest size. The report stage shows tune.csv's rows in place of its estimate.
"""

import base64
import dataclasses
import json
import signal
from pathlib import Path

import pandas as pd

from pipeline import cli, cost, files, params, paths
from pipeline.deploy import build, releases, smoke
from pipeline.deploy.aws import Clients, aws_errors

COLUMNS = [  # tune.csv; the header alone is in git until a sweep runs (the report stage reads it)
    "memory_mb", "architecture", "door", "variant", "runtime", "invocations", "duration_p50_ms", "billed_p50_ms",
    "init_ms", "restore_ms", "max_memory_used_mb", *cost.PARTS, "usd_per_million",
]  # fmt: skip
VERSIONED = ("MemorySize", "Timeout", "Environment")  # what the sweep changes, and puts back


def parse_report(tail: str) -> dict:
    """Lambda's REPORT line from a log tail: 'REPORT RequestId: ...<TAB>Duration: 13.96 ms<TAB>Billed
    Duration: 14 ms<TAB>Memory Size: 512 MB<TAB>Max Memory Used: 80 MB<TAB>Init Duration: 250.1 ms'
    (Init Duration only in an environment's first invocation)."""
    line = next((line for line in reversed(tail.splitlines()) if line.startswith("REPORT ")), None)
    if line is None:
        raise cli.UserError(f"no REPORT line in the function's log tail: {tail[-300:]!r}")
    fields = dict(part.strip().split(": ", 1) for part in line.split("\t") if ": " in part)

    def number(key: str) -> "float | None":
        return float(fields[key].split()[0]) if key in fields else None

    report = {
        "request_id": fields.get("REPORT RequestId", ""),
        "duration_ms": number("Duration"),
        "billed_ms": number("Billed Duration"),
        "memory_size_mb": number("Memory Size"),
        "max_memory_used_mb": number("Max Memory Used"),
        "init_ms": number("Init Duration") or 0.0,
        # SnapStart: a restored environment reports these instead of Init Duration (billed on their own).
        "restore_ms": number("Restore Duration") or 0.0,
        "billed_restore_ms": number("Billed Restore Duration") or 0.0,
        "log_bytes": len(tail.encode()),  # the invocation's whole log (the tail: its last 4 KB)
    }
    missing = [k for k in ("duration_ms", "billed_ms", "memory_size_mb") if report[k] is None]
    if missing:
        raise cli.UserError(f"the REPORT line lacks {missing}: {line[:300]!r}")
    return report


def invoke(lam, name: str, photo: Path) -> dict:
    """One invocation with the log tail; its parsed REPORT line. A failed invocation stops the sweep."""
    answer = lam.invoke(FunctionName=name, Payload=json.dumps(smoke.event(photo)).encode(), LogType="Tail")
    body = answer["Payload"].read()
    try:
        top = json.loads(body).get("top")
    except (ValueError, AttributeError):
        top = None
    if answer.get("FunctionError") or not top:
        raise cli.UserError(f"the function did not answer {photo.name} with a prediction: {body[:300]!r}")
    return parse_report(base64.b64decode(answer.get("LogResult") or "").decode(errors="replace"))


def summarize(
    rows: pd.DataFrame,
    variant: str,
    architecture: str,
    c: params.Cost,
    door: str = "http_api",
    body_bytes: int = 0,
    snapstart: bool = False,
) -> pd.DataFrame:
    """One row per memory size. Duration: the warm invocations' p50 (all but the first, when there
    are more). Init: what the first one, in a new environment, cost beyond them: its billed ms over
    the warm p50 (the handler loads the model on its first request), plus its Init Duration where
    that is not already inside its Billed Duration. An image's REPORT line (and, since Lambda
    standardized INIT billing in August 2025, an on-demand zip's) bills ceil(Duration + Init
    Duration): counting Init again would count it twice. The line itself says which it is."""
    out = []
    for memory, runs in rows.groupby("memory_mb", sort=False):
        first, warm = runs.iloc[0], (runs.iloc[1:] if len(runs) > 1 else runs)
        logged = float(warm["log_bytes"].median()) if "log_bytes" in warm else cost.PLATFORM_LOG_BYTES
        handler_logged = max(0, round(logged) - cost.PLATFORM_LOG_BYTES)  # per_million adds Lambda's own lines
        billed = float(warm["billed_ms"].median())
        extra = max(0.0, first["billed_ms"] - billed)
        # 0.02 ms: REPORT prints both durations rounded to 0.01 ms, Billed Duration is their sum's ceiling.
        inside = first["billed_ms"] >= first["duration_ms"] + first["init_ms"] - 0.02
        init_ms = extra if inside else first["init_ms"] + extra
        out.append(
            {
                "memory_mb": memory,
                "architecture": architecture,
                "door": door,
                "variant": variant,
                "runtime": variant,  # the cost table's row name, as bench's: the variant's own
                "invocations": len(runs),
                "duration_p50_ms": round(float(warm["duration_ms"].median()), 2),
                "billed_p50_ms": billed,
                "init_ms": round(init_ms, 1),
                "restore_ms": float(runs["restore_ms"].max()) if "restore_ms" in runs else 0.0,
                "max_memory_used_mb": runs["max_memory_used_mb"].max(),
                **cost.per_million(
                    billed, init_ms, int(memory), architecture, c, door, body_bytes, handler_logged, snapstart
                ),
            }
        )
    return pd.DataFrame(out, columns=COLUMNS)


def choices(table: pd.DataFrame) -> "tuple[pd.Series, pd.Series]":
    """The cheapest size (lowest usd_per_million) and the fastest (lowest warm p50); a tie goes to the
    first row, the smaller size."""
    return table.loc[table["usd_per_million"].idxmin()], table.loc[table["duration_p50_ms"].idxmin()]


def plot(table: pd.DataFrame, path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    ax.plot(table["memory_mb"], table["usd_per_million"], "o-", color="tab:blue")
    ax.set(xlabel="memory (MB)", ylabel="USD per million requests", title="make tune: cost and latency")
    right = ax.twinx()
    right.plot(table["memory_mb"], table["duration_p50_ms"], "s--", color="tab:orange")
    right.set_ylabel("warm p50 duration (ms)", color="tab:orange")
    with files.atomic_path(path) as tmp:
        fig.savefig(tmp, dpi=110, bbox_inches="tight", format="png")
    plt.close(fig)


def live_code(lam, d: params.Deploy, live: dict, latest: dict) -> "tuple[dict, dict] | None":
    """Where $LATEST holds other code than the live version (after a rollback: the rejected code),
    the sweep measures live's: (live's code, $LATEST's to put back after), for UpdateFunctionCode.
    None where both hold the same code."""
    if latest["CodeSha256"] == live["CodeSha256"]:
        return None
    if latest.get("PackageType") != "Image":
        raise cli.UserError(
            f"{d.function_name}'s $LATEST holds other code than 'live' (version {live['Version']}; a rollback leaves "
            "the code rolled back from there), and a zip's code cannot be taken back from a version: make tune "
            "measures the live code only, deploy it again first"
        )

    def image(**qualifier) -> dict:
        return {"ImageUri": lam.get_function(FunctionName=d.function_name, **qualifier)["Code"]["ImageUri"]}

    return image(Qualifier=live["Version"]), image()


def put_code(lam, name: str, code: dict) -> None:
    lam.update_function_code(FunctionName=name, **code)
    lam.get_waiter("function_updated_v2").wait(FunctionName=name)


def restore(lam, name: str, original: dict, code: "dict | None" = None) -> None:
    """Put the configuration back (and $LATEST's own code, where the sweep ran live's); a second
    Ctrl-C cannot cut this short."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        if code is not None:
            put_code(lam, name, code)
        lam.update_function_configuration(FunctionName=name, **original)
        lam.get_waiter("function_updated_v2").wait(FunctionName=name)
        print(f"restored {name} to {original['MemorySize']} MB")
    finally:
        signal.signal(signal.SIGINT, previous)


def size_configs(d: params.Deploy, sizes: list, mb_per_vcpu: int) -> list[dict]:
    """What the sweep sets on $LATEST for each memory size, in order: deploy's own configuration at that size
    (its NUM_THREADS from the vCPUs the size gets), only the keys the sweep puts back after."""
    configs = []
    for memory in sizes:
        config = build.function_config(dataclasses.replace(d, memory_mb=memory), mb_per_vcpu)
        configs.append({k: config[k] for k in VERSIONED})
    return configs


def sweep(lam, d: params.Deploy, t: params.Tune, mb_per_vcpu: int, photo: Path) -> pd.DataFrame:
    rows = []
    for memory, config in zip(t.memory_mb, size_configs(d, t.memory_mb, mb_per_vcpu), strict=True):
        lam.update_function_configuration(FunctionName=d.function_name, **config)
        lam.get_waiter("function_updated_v2").wait(FunctionName=d.function_name)
        print(f"{memory} MB: invoking {t.invocations} times", flush=True)
        for i in range(t.invocations):
            rows.append({"memory_mb": memory, "invocation": i + 1, **invoke(lam, d.function_name, photo)})
    return pd.DataFrame(rows)


def tune(p: params.Params) -> pd.DataFrame:
    d = p.deploy
    with aws_errors():
        lam = Clients(d.region).lam  # the sweep needs Lambda's client alone
        live = releases.live(lam, d, releases.live_alias(lam, d))
        if live is None:
            raise cli.UserError(f"{d.function_name} has no '{releases.ALIAS}' version: make deploy first")
        variant = (releases.recorded(live) or {}).get("variant")
        if not variant:
            raise cli.UserError(f"version {live['Version']} of {d.function_name} was not published by make deploy")
        photo, _ = smoke.expected_answer(variant)
        lam.get_waiter("function_updated_v2").wait(FunctionName=d.function_name)
        latest = lam.get_function_configuration(FunctionName=d.function_name)
        original = {k: latest[k] for k in VERSIONED if k in latest}
        architecture = latest.get("Architectures", ["x86_64"])[0]
        swap = live_code(lam, d, live, latest)
        print(f"tuning {d.function_name} ({variant}, {architecture}), now {original['MemorySize']} MB")
        try:
            if swap:
                print(f"$LATEST holds other code than 'live' (version {live['Version']}): sweeping live's code on it")
                put_code(lam, d.function_name, swap[0])
            rows = sweep(lam, d, p.tune, p.cost.mb_per_vcpu, photo)
        except KeyboardInterrupt:
            print("interrupted: putting the configuration back", flush=True)
            raise  # after the restore below: cli.run ends it (exit status 130), nothing written
        finally:  # after success, a failed invoke, an AWS refusal or Ctrl-C alike
            restore(lam, d.function_name, original, swap[1] if swap else None)
    body = cost.base64_bytes(photo.stat().st_size)
    table = summarize(rows, variant, architecture, p.cost, d.endpoint, body, d.snapstart)
    with files.atomic_path(paths.TUNE_INVOCATIONS) as tmp:
        rows.to_csv(tmp, index=False)
    with files.atomic_path(paths.TUNE_TABLE) as tmp:
        table.to_csv(tmp, index=False)
    plot(table, f"{paths.TUNE_DIR}/tune.png")
    cheapest, fastest = choices(table)
    print(table[["memory_mb", "duration_p50_ms", "billed_p50_ms", "init_ms", "usd_per_million"]].to_string(index=False))
    print(
        f"cheapest: {cheapest['memory_mb']} MB (${cheapest['usd_per_million']} per million); "
        f"fastest: {fastest['memory_mb']} MB ({fastest['duration_p50_ms']} ms p50). "
        f"{paths.TUNE_TABLE} written: `dvc repro` puts it in the report"
    )
    return table
