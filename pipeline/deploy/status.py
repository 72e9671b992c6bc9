"""status, url, logs: what is deployed, read from AWS alone (never artifacts/deploy.json, which only
says what this machine last shipped), writing nothing."""

import time
from datetime import UTC, datetime

from botocore.client import BaseClient

from pipeline import cli, params
from pipeline.deploy import canary, releases, resources
from pipeline.deploy.aws import Clients, aws_errors

READ_BACK_EVENTS = 10_000  # logs: a page is at most 10,000 events; more than this in the window is cut to the newest


def endpoint_url(clients: Clients, d: params.Deploy) -> "str | None":
    """The URL clients call, where deploy.endpoint says it is: the function URL on 'live', or the HTTP
    API's POST /predict (None where deploy made none yet)."""
    lam = clients.lam
    if getattr(d, "endpoint", "http_api") == "function_url":
        try:
            return lam.get_function_url_config(FunctionName=d.function_name, Qualifier=releases.ALIAS)["FunctionUrl"]
        except lam.exceptions.ResourceNotFoundException:
            return None
    apis = resources.find_apis(clients.apigw, d)
    return resources.api_url(apis[0], d) if apis else None


def read(d: params.Deploy) -> dict:
    """What status prints, as data: the live version and what it ships, the history, a canary, the URL."""
    clients = Clients(d.region)
    with aws_errors():
        lam = clients.lam
        alias = releases.live_alias(lam, d)
        if alias is None:
            return {"function": d.function_name, "region": d.region, "live": None}
        history = releases.read(alias)
        live = releases.live(lam, d, alias)
        running = canary.in_progress(alias, history)
        return {
            "function": d.function_name,
            "region": d.region,
            "live": live["Version"],
            "shipped": releases.recorded(live) or {},
            "last_modified": live.get("LastModified", ""),
            "history": history.live,
            "rejected": history.rejected,
            "canary": {"version": running, "share": canary.weights(alias)[running]} if running else None,
            "url": endpoint_url(clients, d),
        }


def describe(found: dict) -> list[str]:
    """status's lines."""
    where = f"{found['function']} ({found['region']})"
    if found["live"] is None:
        return [f"{where}: not deployed (no '{releases.ALIAS}' alias): `make deploy` ships it"]
    meta = found["shipped"]
    what = (
        ", ".join(f"{k} {meta[k]}" for k in ("variant", "accuracy", "key") if meta.get(k) is not None)
        or "not published by this deployer"
    )
    lines = [f"{where}: version {found['live']} is live ({what})"]
    if meta.get("smoke"):
        lines.append(f"  smoke-tested {'in Lambda' if meta['smoke'] == 'aws' else 'here'}: {meta.get('top', '?')}")
    if found["last_modified"]:
        lines.append(f"  published {found['last_modified']}")
    c = found["canary"]
    lines.append(
        f"  canary: version {c['version']} takes {c['share']:.0%} of the requests under its alarms "
        "(a deploy is watching it, or one was killed: `make rollback` ends it)"
        if c
        else "  canary: none in progress"
    )
    history = " -> ".join(str(v) for v in found["history"]) or "none recorded"
    lines.append(f"  history (oldest first): {history}")
    lines.append(f"  rejected (rolled back from): {', '.join(map(str, found['rejected'])) or 'none'}")
    lines.append(f"  URL: {found['url'] or 'none (deploy makes it)'}")
    return lines


def status(p: params.Params) -> dict:
    found = read(p.deploy)
    print("\n".join(describe(found)))
    return found


def url(p: params.Params) -> str:
    d, clients = p.deploy, Clients(p.deploy.region)
    with aws_errors():
        if releases.live_alias(clients.lam, d) is None:
            raise cli.UserError(f"{d.function_name} is not deployed (no '{releases.ALIAS}' alias): `make deploy`")
        found = endpoint_url(clients, d)
    if found is None:
        raise cli.UserError(f"{d.function_name} has no endpoint ({getattr(d, 'endpoint', 'http_api')}): `make deploy`")
    return found


def log_line(event: dict) -> str:
    at = datetime.fromtimestamp(event["timestamp"] / 1000, UTC).strftime("%Y-%m-%d %H:%M:%S")
    return f"{at} {event['message'].rstrip()}"


def read_logs(logs: BaseClient, d: params.Deploy, since_ms: int, limit: int, pattern: str = "") -> list[dict]:
    """The newest `limit` events of the function's log group since since_ms (epoch ms), oldest first."""
    query = {"logGroupName": resources.log_group(d), "startTime": since_ms}
    if pattern:
        query["filterPattern"] = pattern
    events = []
    try:
        for page in logs.get_paginator("filter_log_events").paginate(**query):
            events.extend(page.get("events", []))
            if len(events) > READ_BACK_EVENTS:
                events = events[-READ_BACK_EVENTS:]
    except logs.exceptions.ResourceNotFoundException:
        raise cli.UserError(
            f"no log group {resources.log_group(d)}: {d.function_name} was never deployed here (`make deploy`)"
        ) from None
    events.sort(key=lambda e: (e["timestamp"], e.get("ingestionTime", 0)))
    return events[-limit:]


def logs(p: params.Params, minutes: float = 30, limit: int = 100, pattern: str = "") -> list[str]:
    d, clients = p.deploy, Clients(p.deploy.region)
    with aws_errors():
        events = read_logs(clients.logs, d, int((time.time() - minutes * 60) * 1000), limit, pattern)
    lines = [log_line(e) for e in events]
    if not lines:
        print(f"no log lines in {resources.log_group(d)} in the last {minutes:g} minutes", flush=True)
    for line in lines:
        print(line)
    return lines
