"""deploy --dry-run: what deploy would build, publish and move, decided as commands.deploy decides it
(the same reads of AWS, the same guards, the same deploy key), touching nothing: no build, no smoke
test, no write to AWS or to build/ (the model is staged in a temporary folder to compute its key)."""

import tempfile
from pathlib import Path

from botocore.client import BaseClient

from pipeline import params
from pipeline.deploy import build, canary, commands, functions, image, limits, releases, smoke, status
from pipeline.deploy.aws import Clients, aws_errors
from pipeline.deploy.errors import CanaryRunning, VersionRejected


def image_plan(d: params.Deploy, ecr: BaseClient, key: str) -> str:
    """What deploy's ship_image would do, read off the registry (ECR's repository listing and its
    registry's manifests; a missing repository is one deploy would create)."""
    try:
        repo_uri = ecr.describe_repositories(repositoryNames=[d.repository])["repositories"][0]["repositoryUri"]
    except ecr.exceptions.RepositoryNotFoundException:
        return f"create ECR repository {d.repository}; build the image {key} for {d.architecture}, push it"
    host = d.registry or repo_uri.split("/")[0]
    token = None
    if not d.registry or image.loopback(host):  # as ship_image: ECR's token only to ECR or this machine
        token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    tag, present = image.usable_tag(image.Registry(host, d.repository, token, plain_http=bool(d.registry)), key,
                                    d.architecture)  # fmt: skip
    if present:
        return f"reuse the registry's image {tag} (not rebuilt)" + (
            ", pulled and smoke-tested here" if d.smoke_test == "local" else ""
        )
    here = ", smoke-test it here" if d.smoke_test == "local" else ""
    return f"build the image {tag} for {d.architecture}{here}, push it"


def moves(d: params.Deploy, live: "dict | None") -> list[str]:
    """How 'live' would move to the new version (deploy.strategy; the first release all at once)."""
    if live is None:
        return ["create 'live' on the new version: all the traffic (the first release)"]
    steps = canary.schedule(d)
    if not steps:
        return [f"'live' from version {live['Version']} to the new one, all at once"]
    watched = [f"{percent}% for {seconds / 60:g} min" for percent, seconds in steps]
    return [
        f"{d.strategy}: the new version takes {', then '.join(watched)} of 'live' under its alarms "
        f"(+{d.watch_after_minutes:g} min watched after the last step), then all of it; an alarm rolls it back "
        f"to version {live['Version']}"
    ]


def decide(p: params.Params, force: bool = False) -> dict:
    """The plan, as data. Raises deploy's own refusals (a canary running, other labels, worse accuracy,
    a rejected version, another package type) as deploy would, before anything."""
    d = p.deploy
    limits.check(d)
    variant, model = build.chosen_model(d)
    accuracy = build.verify_accuracy(variant)
    with tempfile.TemporaryDirectory(prefix="deploy-dry-run-") as staged:
        labels = build.copy_model(variant, model, into=Path(staged) / "model")
        key = build.code_key(d, model_dir=Path(staged) / "model")
    config = build.config_key(d, p.cost.mb_per_vcpu)
    photo, answer = smoke.expected_answer(variant)
    found = {"variant": variant, "accuracy": accuracy, "key": key, "config": config, "model": str(model)}
    clients = Clients(d.region)
    with aws_errors():
        lam = clients.lam
        alias = releases.live_alias(lam, d)
        history = releases.read(alias)
        live = releases.live(lam, d, alias)
        was = releases.recorded(live) if live else None
        found["live"] = live["Version"] if live else None
        found["url"] = status.endpoint_url(clients, d) if alias else None
        running = canary.in_progress(alias, history)
        if running:
            raise CanaryRunning(
                f"version {running} takes a share of 'live' under its alarms: deploy would refuse until it ends "
                "(`make rollback` ends it)"
            )
        commands.guard_labels(live, labels, force)
        commands.guard_accuracy(d, live, variant, accuracy, force)
        if was and (was["key"], was["config"]) == (key, config):
            nothing = f"nothing: {variant} ({key}) is live as version {live['Version']}"
            return found | {"action": "nothing", "steps": [nothing]}
        rejected = releases.rejected_with(releases.versions(lam, d), history, key, config)
        if rejected and not force:
            raise VersionRejected(
                f"version {rejected} has this code and configuration and was rolled back from: deploy would refuse "
                "(deploy --force makes it live anyway)"
            )
        latest = functions.latest(lam, d)
        functions.check_package(d, latest)
        same_code = bool(was and was["key"] == key and latest and latest["CodeSha256"] == live["CodeSha256"])
        steps = []
        if same_code:
            steps.append(f"build nothing: same code as version {live['Version']}, a new configuration ({config})")
        elif d.package == "image":
            steps.append(image_plan(d, clients.ecr, key))
        else:
            steps.append(
                f"build the zip for {d.zip_runtime} on {d.architecture}"
                + (", smoke-test it here" if d.smoke_test == "local" else "")
            )
        if latest is None:
            steps.append(f"create the function {d.function_name} ({d.package}, {d.memory_mb} MB, {d.architecture})")
        elif latest.get("State") == "Failed":
            steps.append(f"delete the Failed function {d.function_name} and create it again")
        else:
            steps.append(f"update the function {d.function_name} ($LATEST)")
        tested_in = "aws" if d.smoke_test == "aws" or not was or was["config"] != config else "local"
        if tested_in == "aws":
            steps.append(f"smoke-test it in Lambda with {photo.name} (expects {answer})")
        steps.append(f"publish a new version: {variant}, key {key}, config {config}")
        steps.extend(moves(d, live))
        if found["url"] is None:
            steps.append(f"make the endpoint ({getattr(d, 'endpoint', 'http_api')}) and print its URL")
    return found | {"action": "deploy", "steps": steps, "smoke": tested_in}


def plan(p: params.Params, force: bool = False) -> dict:
    found = decide(p, force)
    live = f"version {found['live']}" if found["live"] else "nothing (the first deploy)"
    print(
        f"deploy --dry-run: nothing is built, published or moved\n"
        f"  variant {found['variant']} (verify accuracy {found['accuracy']}), key {found['key']}, "
        f"config {found['config']}\n  live now: {live}\n  url: {found['url'] or 'none yet'}\n"
        "deploy would:"
    )
    for n, step in enumerate(found["steps"], 1):
        print(f"  {n}. {step}")
    return found
