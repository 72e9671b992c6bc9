"""Moving 'live' to a new version gradually (deploy.strategy canary or linear), as SAM's
DeploymentPreference does through CodeDeploy, with the alias alone: 'live' stays on the released
version and routes the new one its share (RoutingConfig.AdditionalVersionWeights) while CloudWatch
alarms on the function's own metrics watch the new version (alarms.py). Quiet alarms to the end:
'live' moves to the new version. An alarm in ALARM, Ctrl-C (or SIGTERM): all traffic back on the
released version at once; the new one is recorded rejected in the release history when an error-rate
alarm fired or a person stopped it (alarms.REJECTING; docs/canary.md). A canary that could not end
before the AWS credentials expire does not start (require_time): its roll-back would fail with them. The history
marks the canary while it runs, so `make rollback` from anywhere ends it the same way, and a second
deploy does not start another one on top of it."""

import contextlib
import signal
import time
from datetime import UTC, datetime

import boto3

from pipeline import cli, params
from pipeline.deploy import alarms, releases
from pipeline.deploy.aws import aws_errors
from pipeline.deploy.errors import CredentialsExpiring
from pipeline.deploy.lock import terminations_as_interrupts

# Credentials that boto3 renews itself from a source that outlives them (an instance or container
# role, a role assumed from long-lived keys or a web identity token file): their expiry is no limit.
RENEWED = ("iam-role", "container-role", "assume-role", "assume-role-with-web-identity")
ROLLBACK_S = 120  # what a canary needs after its last step to read its alarms once more and roll back


class Tripped(Exception):
    """An alarm on the new version is in ALARM: kind is the alarm's (alarms.KINDS)."""

    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


class Unwatched(Exception):
    """An alarm on the new version was deleted meanwhile: it can no longer judge anything."""


class EndedElsewhere(Exception):
    """The alias no longer routes the canary's share: `make rollback` (or a person) changed it."""


class Unjudged(Exception):
    """Too few requests reached the new version for its alarms to judge it (deploy.min_canary_requests)."""


# What ends a canary on its own terms (its message is the reason); anything else is an error it stopped on.
OUTCOMES = (Tripped, Unwatched, EndedElsewhere, Unjudged)


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
    Read afresh (what the alias is now), so it also ends a canary another process runs (make rollback)."""
    ended = unroute(lam, d, only=None)
    if ended is not None:
        alarms.delete(cw, [alarms.name(d, ended[1], kind) for kind in alarms.KINDS])
    return ended


def unroute(lam, d: params.Deploy, reject: bool = True, only: "str | None" = None) -> "tuple[str, str] | None":
    """end() without deleting the alarms: the alias's part, in one UpdateAlias call (RevisionId: one
    that lands after this read makes AWS refuse it instead of being overwritten). reject False: the
    canary's version is not recorded rejected (nothing judged it bad: a later deploy may try it again).
    only: end the canary of this version and no other (a deploy ends its own canary, never another's)."""
    alias = releases.live_alias(lam, d)
    history = releases.read(alias)
    new = in_progress(alias, history)
    if new is None or (only is not None and new != only):
        return None
    lam.update_alias(
        FunctionName=d.function_name,
        Name=releases.ALIAS,
        FunctionVersion=alias["FunctionVersion"],
        Description=(history.canary_rejected() if reject else history.canary_ended()).text(),
        RoutingConfig={"AdditionalVersionWeights": {}},
        RevisionId=alias["RevisionId"],
    )
    return alias["FunctionVersion"], new


def watch(lam, cw, d: params.Deploy, names: list[str], new: str, percent: int, seconds: float, steps: str) -> dict:
    """Read the alarms every watch_every_s until the step's time is up, saying where it stands;
    the alias as last read (promotion names its RevisionId)."""
    deadline = time.monotonic() + seconds
    while True:
        alias = releases.live_alias(lam, d)
        if weights(alias) != {new: percent / 100}:
            raise EndedElsewhere(f"the alias no longer routes version {new} its {percent}%")
        found = alarms.states(cw, names)
        missing = [n for n in names if n not in found]
        if missing:
            raise Unwatched(f"alarm {missing[0]} was deleted: the canary can no longer be watched")
        fired = [(n, reason) for n, (state, reason) in found.items() if state == "ALARM"]
        if fired:
            # The rejecting kinds first: an error-rate trip with a latency one is still a broken version.
            fired.sort(key=lambda f: kind_of(d, new, f[0]) not in alarms.REJECTING)
            alarm, why = fired[0]
            raise Tripped(f"alarm {alarm} is in ALARM ({' '.join(why.split())[:200]})", kind_of(d, new, alarm))
        left = deadline - time.monotonic()
        shown = ", ".join(f"{n.removeprefix(alarms.name(d, new, ''))} {found[n][0]}" for n in names)
        print(
            f"{d.strategy}{steps}: version {new} takes {percent}% of the traffic, version "
            f"{alias['FunctionVersion']} the rest; {minutes(left)} left; alarms: {shown}"
        )
        if left <= 0:
            return alias
        time.sleep(min(d.watch_every_s, left))


def kind_of(d: params.Deploy, version: str, alarm: str) -> str:
    return alarm.removeprefix(alarms.name(d, version, ""))


def time_needed(d: params.Deploy) -> float:
    """Seconds from the canary's first step to its promotion or roll-back: every step, the wait for the
    last minutes' metrics, and the roll-back itself."""
    return sum(seconds for _, seconds in schedule(d)) + d.watch_after_minutes * 60 + d.watch_every_s + ROLLBACK_S


def credentials_expiry(session: "boto3.Session | None" = None) -> "datetime | None":
    """When the AWS credentials in use expire and boto3 cannot renew them (an STS session in the
    environment, aws-vault's, a CI OIDC session with its expiry given); None when they do not."""
    credentials = (session or boto3.Session()).get_credentials()
    expiry = getattr(credentials, "_expiry_time", None)  # botocore's RefreshableCredentials keeps it here
    if expiry is None or getattr(credentials, "method", "") in RENEWED:
        return None
    return expiry


def require_time(d: params.Deploy, expiry: "datetime | None", now: datetime) -> None:
    """Refuse a canary that could not end before the credentials expire: its promotion or roll-back
    would fail with them, leaving up to all but the first share on an unjudged version."""
    if expiry is None:
        return
    left, needed = (expiry - now).total_seconds(), time_needed(d)
    if left < needed:
        raise CredentialsExpiring(
            f"the AWS credentials expire in {minutes(left)} (at {expiry:%H:%M:%S %Z}); the {d.strategy} needs "
            f"{minutes(needed)} to end and roll back if it must: not starting it; renew the credentials (a longer "
            "session) or shorten deploy.canary_minutes/linear_minutes"
        )


def minutes(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60}:{seconds % 60:02d}"


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
    """Give the new version (version, variant) its shares in turn under its alarms, keep the last
    one for watch_after_minutes (its last minutes' metrics arrive late), count the requests it
    answered, then give it all of the traffic (returns the alias's ARN); roll back and stop with
    one line when an alarm fires, on Ctrl-C or on any error meanwhile. live: the released version
    and variant, None when it is not this deployer's."""
    version, released = new[0], alias["FunctionVersion"]
    steps, names = schedule(d), []
    marked = history.canary_started(int(version))
    require_time(d, credentials_expiry(), datetime.now(UTC))
    try:
        with terminations_as_interrupts():  # SIGTERM ends a canary as Ctrl-C does
            clear_left(cw, d)
            for alarm in alarms.definitions(d, new, live):
                cw.put_metric_alarm(**alarm)
                names.append(alarm["AlarmName"])
            print(f"{d.strategy}: alarms {', '.join(names)} watch version {version}")
            started = datetime.now(UTC)
            for i, (percent, seconds) in enumerate(steps, 1):
                alias = route(lam, d, alias, version, percent, marked)
                step = f" step {i}/{len(steps)}" if len(steps) > 1 else ""
                alias = watch(lam, cw, d, names, version, percent, seconds, step)
            late = " (waiting for its last minutes' metrics)"
            alias = watch(lam, cw, d, names, version, steps[-1][0], d.watch_after_minutes * 60, late)
            require_evidence(cw, d, new, started)
            with uninterrupted():  # once 'live' moves, its alarms go too: a Ctrl-C now would leave them
                arn = promote(lam, d, version, history, alias)
                drop(cw, names, f"version {version} is live, but")
            return arn
    except (Exception, KeyboardInterrupt) as e:
        with uninterrupted():
            raise roll_back(lam, cw, d, e, version, released, names) from None


def clear_left(cw, d: params.Deploy) -> None:
    """Deploy's alarms on other versions are leftovers (a deploy killed outright, an alarm that
    could not be deleted): a deploy is refused while a canary runs, so none watches anything."""
    found = alarms.find_left(cw, d)
    if found:
        alarms.delete(cw, found)
        print(f"deleted {len(found)} alarm(s) an earlier deploy left: {', '.join(found)}")


def require_evidence(cw, d: params.Deploy, new: tuple, started: datetime) -> None:
    """How many requests the new version answered while it took its share: quiet alarms over no
    request judged nothing. Fewer than min_canary_requests: roll back; none (and none required):
    promoted, with a warning."""
    count = alarms.answered(cw, d, new, started, datetime.now(UTC))
    if count < d.min_canary_requests:
        raise Unjudged(
            f"version {new[0]} answered {count} request(s) during its {d.strategy}, fewer than "
            f"deploy.min_canary_requests {d.min_canary_requests}: too few to judge it"
        )
    print(f"version {new[0]} answered {count} request(s) during its {d.strategy}")
    if count == 0:
        print(
            f"warning: no request reached version {new[0]}, so no alarm judged it: promoting it anyway "
            "(deploy.min_canary_requests 0)"
        )


def promote(lam, d: params.Deploy, version: str, history: releases.History, seen: dict) -> str:
    """'live' to the new version, with the RevisionId of the alias as the watch last read it: a
    `make rollback` that lands after that read makes AWS refuse this update instead of being
    overwritten (the rejected version made live, the rollback's record lost). Read once more first,
    for one clear line instead of AWS's refusal (and because moto ignores RevisionId)."""
    now = releases.live_alias(lam, d)
    if in_progress(now, releases.read(now)) != version:
        raise EndedElsewhere(f"'live' no longer routes version {version} its share: not promoting it")
    return releases.move_alias(lam, d, version, history.made_live(int(version)), seen)


def drop(cw, names: list[str], what: str) -> None:
    """Delete the alarms; a refusal is a warning, not a failure (what is done stays done)."""
    try:
        alarms.delete(cw, names)
    except Exception as e:
        print(
            f"warning: {what} its alarms were not deleted ({reason(e)}): the next canary or make destroy deletes them"
        )


def reason(e: BaseException) -> str:
    """What stopped the canary, in one line: AWS's refusals worded as everywhere else (aws_errors)."""
    if isinstance(e, KeyboardInterrupt):
        return "interrupted"
    if isinstance(e, (*OUTCOMES, cli.UserError)):
        return " ".join(str(e).split())
    try:
        with aws_errors():
            raise e
    except cli.UserError as said:
        return str(said)
    except Exception:
        return " ".join(f"{type(e).__name__}: {e}".split())[:400]


def roll_back(lam, cw, d: params.Deploy, e: BaseException, version: str, released: str, names: list) -> cli.UserError:
    """Roll back (all traffic on the released version, its alarms deleted) and say why in one line.
    The new version is recorded rejected when an error-rate alarm judged it or a person stopped it
    (Ctrl-C, SIGTERM); not when a latency or confidence alarm, too few requests, a deleted alarm or an
    AWS error stopped the canary: deploying it again then tries again."""
    why = reason(e)
    if not isinstance(e, (*OUTCOMES, KeyboardInterrupt)):
        why = f"the {d.strategy} stopped on an error ({why})"
    reject = isinstance(e, KeyboardInterrupt) or (isinstance(e, Tripped) and e.kind in alarms.REJECTING)
    try:
        ended = unroute(lam, d, reject, only=version)
    except Exception as failed:
        return cli.UserError(
            f"{why}; rolling back failed too ({reason(failed)}): version {version} may still take a share of "
            f"'{releases.ALIAS}': `make rollback` ends it"
        )
    # Those made before an early stop too, when no canary had begun yet.
    drop(cw, [*names, *(alarms.name(d, version, kind) for kind in alarms.KINDS)], "the canary ended, but")
    if ended is None:
        now = (releases.live_alias(lam, d) or {}).get("FunctionVersion")
        return cli.UserError(
            f"{why}: the {d.strategy} of version {version} was ended elsewhere (make rollback?) or had not "
            f"begun: '{releases.ALIAS}' is on version {now}"
        )
    verdict = (
        "is rejected (deploy does not make it live again without --force)"
        if reject
        else "is not rejected (no error-rate alarm judged it: deploy again to try it again)"
    )
    return cli.UserError(f"{why}: rolled back, all traffic on version {released}; version {version} {verdict}")
