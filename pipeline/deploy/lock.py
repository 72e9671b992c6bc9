"""One deploy at a time per function (a CI double trigger, two terminals): a lock kept in AWS, so a
second machine sees it too. The lock is an alias of the function, LOCK, created at the start of a
deploy: CreateAlias is atomic (the second one is refused: ResourceConflictException), and its
description names the holder and since when. It is deleted on every way out of deploy (an error,
Ctrl-C, SIGTERM); a deploy killed outright (SIGKILL, a lost runner) leaves it, and the next deploy
takes it over once it is older than deploy.lock_stale_minutes, through UpdateAlias with the
RevisionId it read (two taking it over at once: AWS refuses the second).

A function's first deploy takes no lock (there is no function to hold an alias yet): CreateFunction
itself is the atomic step there, and the second first deploy is refused by it. `make rollback` takes
none: it must be able to end a canary that a deploy holding the lock runs."""

import contextlib
import functools
import getpass
import json
import os
import signal
import socket
import uuid
from datetime import UTC, datetime

import botocore.exceptions

from pipeline import params
from pipeline.deploy import releases
from pipeline.deploy.aws import Clients, aws_errors
from pipeline.deploy.errors import DeployLocked

LOCK = "deploy-lock"
CONFLICT = ("ResourceConflictException", "ConflictException")  # AWS's code, moto's


def holder() -> str:
    """Who deploys: the CI run where there is one, else user@host, and the process."""
    run = os.environ.get("GITHUB_RUN_ID") or os.environ.get("CI_JOB_ID")
    who = f"CI run {run}" if run else f"{getpass.getuser()}@{socket.gethostname()}"
    return f"{who} pid {os.getpid()}"


def description(token: str, who: str, since: datetime) -> str:
    return json.dumps(
        {"by": releases.MARK, "lock": token, "holder": who, "since": since.isoformat(timespec="seconds")},
        separators=(",", ":"),
    )[:256]  # an alias's description holds 256 characters


def read(alias: dict) -> dict:
    """The lock's holder, since when (a datetime) and token; an alias made by hand reads as held since the epoch."""
    try:
        meta = json.loads(alias.get("Description") or "")
        return {**meta, "since": datetime.fromisoformat(meta["since"])}
    except (ValueError, KeyError, TypeError):
        return {"holder": "someone (the alias names no holder)", "since": datetime.fromtimestamp(0, UTC), "lock": None}


def refusal(d: params.Deploy, meta: dict, now: datetime) -> DeployLocked:
    age = (now - meta["since"]).total_seconds() / 60
    return DeployLocked(
        f"another deploy of {d.function_name} is running: {meta['holder']} holds its lock since "
        f"{meta['since']:%Y-%m-%d %H:%M:%S %Z} ({age:.0f} min ago); wait for it to end (its lock is taken over "
        f"after deploy.lock_stale_minutes {d.lock_stale_minutes:g}: the alias '{LOCK}')"
    )


def stale(d: params.Deploy, meta: dict, now: datetime) -> bool:
    return (now - meta["since"]).total_seconds() > d.lock_stale_minutes * 60


def code(e: botocore.exceptions.ClientError) -> str:
    return e.response.get("Error", {}).get("Code", "")


def take(lam, d: params.Deploy, now: datetime, who: str) -> str:
    """The lock, or DeployLocked naming its holder: its token (which release checks)."""
    token = uuid.uuid4().hex
    text = description(token, who, now)
    try:
        lam.create_alias(FunctionName=d.function_name, Name=LOCK, FunctionVersion="$LATEST", Description=text)
        return token
    except botocore.exceptions.ClientError as e:
        if code(e) not in CONFLICT:
            raise
    held = lam.get_alias(FunctionName=d.function_name, Name=LOCK)
    meta = read(held)
    if not stale(d, meta, now):
        raise refusal(d, meta, now)
    try:
        lam.update_alias(FunctionName=d.function_name, Name=LOCK, Description=text, RevisionId=held["RevisionId"])
    except botocore.exceptions.ClientError as e:
        if code(e) != "PreconditionFailedException":
            raise
        raise refusal(d, read(lam.get_alias(FunctionName=d.function_name, Name=LOCK)), now) from None
    since = f"{meta['since']:%Y-%m-%d %H:%M:%S %Z}"
    print(f"took over the lock {meta['holder']} left at {since} (stale: its deploy was killed outright)")
    return token


def release(lam, d: params.Deploy, token: str) -> None:
    """Delete the lock if it is still this deploy's (a deploy that outlived lock_stale_minutes may have
    lost it to another); a refusal is a warning: the next deploy takes a stale lock over."""
    try:
        held = lam.get_alias(FunctionName=d.function_name, Name=LOCK)
        if read(held).get("lock") == token:
            lam.delete_alias(FunctionName=d.function_name, Name=LOCK)
    except botocore.exceptions.ClientError as e:
        if code(e) != "ResourceNotFoundException":
            print(f"warning: the deploy lock (alias '{LOCK}') was not released ({code(e)}): it goes stale after "
                  f"deploy.lock_stale_minutes {d.lock_stale_minutes:g}")  # fmt: skip


def exists(lam, d: params.Deploy) -> bool:
    try:
        lam.get_function_configuration(FunctionName=d.function_name)
        return True
    except lam.exceptions.ResourceNotFoundException:
        return False


@contextlib.contextmanager
def terminations_as_interrupts():
    """SIGTERM (a CI runner's stop, `kill`) unwinds as Ctrl-C does, so the lock is released on it too."""

    def interrupted(signum, frame):
        raise KeyboardInterrupt

    before = signal.signal(signal.SIGTERM, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, before)


@contextlib.contextmanager
def held(lam, d: params.Deploy):
    """The function's deploy lock for the block, released on every way out of it."""
    with terminations_as_interrupts():
        with aws_errors():
            token = take(lam, d, datetime.now(UTC), holder()) if exists(lam, d) else None
        try:
            yield token
        finally:
            if token is not None:
                # Not cut short by a second Ctrl-C or SIGTERM: a lock left behind blocks deploys until it is stale.
                ignored = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
                try:
                    release(lam, d, token)
                finally:
                    for s, handler in ignored.items():
                        signal.signal(s, handler)


def one_at_a_time(deploy):
    """deploy(p, ...) under the function's lock, taken before anything is staged or built: the command's
    clients are made here, the lock taken with their Lambda client, and handed to deploy(p, clients, ...)."""

    @functools.wraps(deploy)
    def locked(p: params.Params, *args, **kwargs):
        clients = Clients(p.deploy.region)
        with aws_errors():
            lam = clients.lam
        with held(lam, p.deploy):
            return deploy(p, clients, *args, **kwargs)

    return locked
