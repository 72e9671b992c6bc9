"""Moving 'live' to a new version gradually (deploy.strategy canary or linear), as SAM's
DeploymentPreference does through CodeDeploy, with the alias alone: 'live' stays on the released
version and routes the new one its share (RoutingConfig.AdditionalVersionWeights) while CloudWatch
alarms on the function's own metrics watch the new version (alarms.py). Quiet alarms to the end:
'live' moves to the new version. An alarm in ALARM, Ctrl-C (or SIGTERM): all traffic back on the
released version at once, and the new one recorded rejected in the release history. The history
marks the canary while it runs, so `make rollback` from anywhere ends it the same way, and a second
deploy does not start another one on top of it."""

import contextlib
import signal
import time

from pipeline import cli, params
from pipeline.deploy import alarms, releases


class Tripped(Exception):
    """An alarm on the new version is in ALARM (or was deleted: it can no longer watch)."""


class EndedElsewhere(Exception):
    """The alias no longer routes the canary's share: `make rollback` (or a person) changed it."""


def schedule(d: params.Deploy) -> list[tuple[int, float]]:
    """(percent of the traffic to the new version, seconds it is watched at that share), in order;
    after the last step it gets all of it. all_at_once: no step."""
    if d.strategy == "canary":
        return [(d.canary_percent, d.canary_minutes * 60)]
    if d.strategy == "linear":
        return [(p, d.linear_minutes * 60) for p in range(d.linear_percent, 100, d.linear_percent)]
    return []


def weights(alias: "dict | None") -> dict:
    return ((alias or {}).get("RoutingConfig") or {}).get("AdditionalVersionWeights") or {}


def in_progress(alias: "dict | None", history: releases.History) -> "str | None":
    """The version a canary is running for: the history marks it and the alias routes it a share."""
    if history.canary is not None and str(history.canary) in weights(alias):
        return str(history.canary)
    return None


def route(lam, d: params.Deploy, alias: dict, new: str, percent: int, history: releases.History) -> dict:
    """'live' stays on its version and sends the new one percent of the requests; the history marks the canary."""
    return lam.update_alias(
        FunctionName=d.function_name,
        Name=releases.ALIAS,
        FunctionVersion=alias["FunctionVersion"],
        Description=history.text(),
        RoutingConfig={"AdditionalVersionWeights": {new: percent / 100}},
        RevisionId=alias["RevisionId"],
    )


def end(lam, cw, d: params.Deploy) -> "tuple[str, str] | None":
    """All traffic back on the released version, the canary's version rejected in the same
    UpdateAlias call, its alarms deleted: (released, rejected), or None when no canary runs.
    Read afresh (what the alias is now), so it also ends a canary another process runs."""
    alias = releases.live_alias(lam, d)
    history = releases.read(alias)
    new = in_progress(alias, history)
    if new is None:
        return None
    lam.update_alias(
        FunctionName=d.function_name,
        Name=releases.ALIAS,
        FunctionVersion=alias["FunctionVersion"],
        Description=history.canary_rejected().text(),
        RoutingConfig={"AdditionalVersionWeights": {}},
        RevisionId=alias["RevisionId"],
    )
    alarms.delete(cw, [alarms.name(d, new, kind) for kind in alarms.KINDS])
    return alias["FunctionVersion"], new


def watch(lam, cw, d: params.Deploy, names: list[str], new: str, percent: int, seconds: float, steps: str) -> None:
    """Read the alarms every watch_every_s until the step's time is up, saying where it stands."""
    deadline = time.monotonic() + seconds
    while True:
        alias = releases.live_alias(lam, d)
        if weights(alias) != {new: percent / 100}:
            raise EndedElsewhere(f"the alias no longer routes version {new} its {percent}%")
        found = alarms.states(cw, names)
        missing = [n for n in names if n not in found]
        if missing:
            raise Tripped(f"alarm {missing[0]} was deleted: the canary can no longer be watched")
        fired = [(n, reason) for n, (state, reason) in found.items() if state == "ALARM"]
        if fired:
            raise Tripped(f"alarm {fired[0][0]} is in ALARM ({' '.join(fired[0][1].split())[:200]})")
        left = deadline - time.monotonic()
        shown = ", ".join(f"{n.removeprefix(alarms.name(d, new, ''))} {found[n][0]}" for n in names)
        print(
            f"{d.strategy}{steps}: version {new} takes {percent}% of the traffic, version "
            f"{alias['FunctionVersion']} the rest; {minutes(left)} left; alarms: {shown}"
        )
        if left <= 0:
            return
        time.sleep(min(d.watch_every_s, left))


def minutes(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


@contextlib.contextmanager
def interrupts_as_keyboard():
    """SIGTERM (a CI runner's stop, `kill`) ends a canary as Ctrl-C does."""

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextlib.contextmanager
def uninterrupted():
    """The roll-back itself is not cut short by a second Ctrl-C."""
    before = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in before.items():
            signal.signal(s, handler)


def release(lam, cw, d: params.Deploy, alias: dict, history: releases.History, new: tuple, live: "tuple | None"):
    """Give the new version (version, variant) its shares in turn under its alarms, then all of the
    traffic (returns the alias's ARN); roll back and stop with one line when an alarm fires or on
    Ctrl-C. live: the released version and variant, None when it is not this deployer's."""
    version, released = new[0], alias["FunctionVersion"]
    steps, names = schedule(d), []
    marked = history.canary_started(int(version))
    try:
        with interrupts_as_keyboard():
            for alarm in alarms.definitions(d, new, live):
                cw.put_metric_alarm(**alarm)
                names.append(alarm["AlarmName"])
            print(f"{d.strategy}: alarms {', '.join(names)} watch version {version}")
            for i, (percent, seconds) in enumerate(steps, 1):
                alias = route(lam, d, alias, version, percent, marked)
                watch(lam, cw, d, names, version, percent, seconds, f" step {i}/{len(steps)}" if len(steps) > 1 else "")
    except (Tripped, EndedElsewhere, KeyboardInterrupt) as e:
        with uninterrupted():
            ended = end(lam, cw, d)
            alarms.delete(cw, names)  # those made before an early Ctrl-C, when end() found no canary yet
        why = "interrupted" if isinstance(e, KeyboardInterrupt) else str(e)
        if ended is None:
            now = (releases.live_alias(lam, d) or {}).get("FunctionVersion")
            raise cli.UserError(
                f"{why}: the {d.strategy} of version {version} was ended elsewhere (make rollback?) or had not "
                f"begun: 'live' is on version {now}"
            ) from None
        raise cli.UserError(
            f"{why}: rolled back, all traffic on version {released}; version {version} is rejected "
            "(deploy does not make it live again without --force)"
        ) from None
    alarms.delete(cw, names)
    current = releases.live_alias(lam, d)  # the RevisionId of the last step's update
    return releases.move_alias(lam, d, version, history.made_live(int(version)), current)
