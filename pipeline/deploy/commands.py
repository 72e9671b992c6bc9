"""deploy and rollback. Every decision reads AWS (the 'live' version's recorded deploy key, the
release history on 'live'), so a second machine, a lost artifacts/ or a project outside git
decides the same. destroy is in teardown.py."""

import base64
import hashlib
from datetime import UTC, datetime
from pathlib import Path

from botocore.client import BaseClient

from pipeline import cli, files, params, paths
from pipeline.deploy import build, canary, doors, functions, image, limits, lock, releases, resources, smoke, snapstart
from pipeline.deploy.aws import Clients, aws_errors, caller
from pipeline.deploy.errors import AccuracyDropped, CanaryRunning, LabelsChanged, NothingToRollBack, VersionRejected


def guard_accuracy(d: params.Deploy, live: "dict | None", variant: str, accuracy: "float | None", force: bool) -> None:
    """Refuse a variant that scored worse at verify than the live one did, beyond the margin."""
    was = (releases.recorded(live) or {}).get("accuracy") if live else None
    if force or was is None or accuracy is None or accuracy >= was - d.max_accuracy_drop:
        return
    raise AccuracyDropped(
        f"{variant} scored {accuracy:.4f} at verify, the live version {live['Version']} scored {was:.4f} "
        f"(more than deploy.max_accuracy_drop {d.max_accuracy_drop} lower): deploy --force ships it anyway"
    )


def guard_labels(live: "dict | None", labels: list, force: bool) -> None:
    """A model with other labels is another model: refuse to replace a live one that answers with others."""
    was = releases.recorded(live) if live else None
    changed = releases.labels_changed(was, labels) if was else None
    if changed and not force:
        raise LabelsChanged(
            f"the live version {live['Version']} answers with other labels than this model ({changed}): "
            "deploy --force replaces it"
        )


def ship_image(d: params.Deploy, ecr: BaseClient, key: str, expected: tuple[Path, str]) -> dict:
    """The image tagged with the deploy key: reused if the registry has it (smoke_test local: pulled
    and tested here all the same), else built, smoke-tested (local), pushed; then checked in the
    registry (an index resolved to its image for the architecture, shipped by digest; the right
    architecture). A tag never moves (a version may run its digest): an unusable image under the
    key is replaced under key-r1, key-r2, ... (image.usable_tag), and a registry that fails to
    answer stops the deploy instead of a rebuild."""
    repo_uri = resources.ensure_repository(ecr, d)
    host = d.registry or repo_uri.split("/")[0]
    # The account's ECR token goes to ECR, or to an override registry on this machine only: never
    # as basic auth over plain HTTP to another host.
    token = None
    if not d.registry or image.loopback(host):
        token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    else:
        print(f"deploy.registry {host} is not on this machine: sending it no ECR credentials")
    registry = image.Registry(host, d.repository, token, plain_http=bool(d.registry))
    tag, present = image.usable_tag(registry, key, d.architecture)
    if not present:
        engine = image.container_engine()
        local = f"{host}/{d.repository}:{tag}"
        print(f"building {local} for {d.architecture} with {engine}")
        image.build_image(engine, d, local)
        if d.smoke_test == "local":
            smoke.check(smoke.run_image(engine, local, expected[0], d.architecture), *expected)
        image.push_image(engine, registry, local, d.architecture)
    else:
        print(f"the registry has the image for {tag} already: not rebuilding")
    digest = registry.check(tag, d.architecture)  # an index's image for the architecture, or the tag's own
    registry.keep(tag, digest, d.architecture)
    if present and d.smoke_test == "local":
        # Being in the registry is no test: an `aws`-mode deploy whose Lambda smoke test failed pushed it
        # too. The exact digest Lambda is to run is pulled and tested here.
        engine, pinned = image.container_engine(), f"{host}/{d.repository}@{digest}"
        print(f"smoke_test local: testing the registry's {pinned} here")
        image.pull_image(engine, registry, pinned)
        smoke.check(smoke.run_image(engine, pinned, expected[0], d.architecture), *expected)
    # Lambda pulls from ECR: with a registry override, still name the image by ECR's repository URI.
    return {"ImageUri": f"{repo_uri}@{digest}"}


def ship_zip(
    d: params.Deploy, clients: Clients, key: str, expected: tuple[Path, str], account: str
) -> tuple[dict, str]:
    """The zip's Code argument, and the CodeSha256 Lambda gives it (base64 of its SHA-256)."""
    archive = build.build_zip(d)
    if d.smoke_test == "local":
        smoke.check(smoke.run_zip(d, expected[0]), *expected)
    sha = base64.b64encode(hashlib.sha256(archive.read_bytes()).digest()).decode()
    if archive.stat().st_size <= limits.ZIP_DIRECT_UPLOAD_MB * 2**20:
        return {"ZipFile": archive.read_bytes()}, sha
    return resources.upload_zip(clients.s3, d, account, archive, f"{d.function_name}/{key}.zip"), sha


def settle(d: params.Deploy, clients: Clients, alias_arn: str, account: str, partition: str, expected: tuple) -> str:
    """What is not versioned, made to match the params on every deploy: logs, concurrency, the front
    door (a switch of deploy.endpoint included)."""
    resources.ensure_log_group(clients.logs, d)
    lam = clients.lam
    functions.cap_concurrency(lam, d, functions.reservation(lam, d, exists=True))
    return doors.open_door(d, clients, alias_arn, account, partition, expected)


@lock.one_at_a_time
def deploy(p: params.Params, clients: Clients, force: bool = False) -> dict:
    """Called as deploy(p, force=...): the lock makes the command's clients, and takes it with their Lambda client."""
    d = p.deploy
    limits.check(d)
    snapstart.refuse(d)
    variant, model = build.chosen_model(d)
    accuracy = build.verify_accuracy(variant)
    labels = build.copy_model(variant, model)
    key, config = build.code_key(d), build.config_key(d, p.cost.mb_per_vcpu)
    photo, answer = smoke.expected_answer(variant)
    with aws_errors():
        lam = clients.lam
        account, partition = caller(clients)
        alias = releases.live_alias(lam, d)
        history = releases.read(alias)
        live = releases.live(lam, d, alias)
        was = releases.recorded(live) if live else None
        running = canary.in_progress(alias, history)
        if running:
            raise CanaryRunning(
                f"version {running} takes a share of 'live' under its alarms (a canary, or one a killed deploy left): "
                "wait for it to end, or `make rollback` ends it"
            )
        guard_labels(live, labels, force)  # before the accuracy guard: scores on other classes do not compare
        guard_accuracy(d, live, variant, accuracy, force)
        if was and (was["key"], was["config"]) == (key, config):
            url = settle(d, clients, alias["AliasArn"], account, partition, (photo, answer))
            print(f"nothing to deploy: {variant} ({key}) is live as version {live['Version']}")
            return write_record(lam, d, variant, key, live["Version"], url)
        published = releases.versions(lam, d)
        rejected = releases.rejected_with(published, history, key, config)
        if rejected and not force:
            raise VersionRejected(
                f"version {rejected} has this code and configuration, and 'live' was rolled back from it (rejected): "
                "not making it live again; change the code or the params, or deploy --force to make it live anyway"
            )
        latest = functions.make_ready(lam, d, functions.latest(lam, d))
        functions.check_package(d, latest)
        reserved = functions.reservation(lam, d, exists=latest is not None)
        same_code = bool(was and was["key"] == key and latest and latest["CodeSha256"] == live["CodeSha256"])
        role_arn = resources.ensure_role(clients.iam, d, partition)
        # Before the function's first invocation (Lambda would make the group itself, never expiring)
        # and, with the cap on concurrency, before anything is published.
        resources.ensure_log_group(clients.logs, d)
        if same_code:
            print(f"same code as version {live['Version']}: updating the configuration only")
            code, sha = None, live["CodeSha256"]
        elif d.package == "image":
            code, sha = ship_image(d, clients.ecr, key, (photo, answer)), ""
        else:
            code, sha = ship_zip(d, clients, key, (photo, answer), account)
        settings = {**build.function_config(d, p.cost.mb_per_vcpu, role_arn), **snapstart.config(d, latest)}
        functions.ensure_function(lam, d, latest, code, settings)
        code_sha, revision = functions.confirm_shipped(lam, d, code, sha)  # before any invoke
        functions.cap_concurrency(lam, d, reserved)
        # Only Lambda can test a configuration (memory, timeout): a new configuration (the first
        # deploy's included) is always invoked there, with or without new code; new code where
        # smoke_test says so.
        tested_in = "aws" if d.smoke_test == "aws" or not was or was["config"] != config else "local"
        if tested_in == "aws":
            smoke.check(smoke.invoke(lam, d, photo), photo, answer)
        description = releases.describe(key, config, variant, accuracy, tested_in, photo.name, answer, labels)
        version, new = releases.publish(lam, d, code_sha, revision, description, published)
        if d.snapstart:
            snapstart.wait_for_snapshot(lam, d, version)
        if live and version == live["Version"]:
            # A new deploy key for the same bytes and configuration (a Dockerfile-only edit for a zip,
            # a deployment made before the key's formula changed): 'live' and its history stay.
            print(f"nothing new to publish: identical to live version {version}")
            url = doors.open_door(d, clients, alias["AliasArn"], account, partition, (photo, answer))
            return write_record(lam, d, variant, key, version, url)
        if not new:
            print(
                f"Lambda published no new version: version {version} already has this code and configuration "
                "(PublishVersion hands back the last version when nothing changed since it)"
            )
            if int(version) in history.rejected and not force:
                raise cli.UserError(
                    f"version {version} is the version 'live' was rolled back from (rejected): 'live' stays on "
                    f"version {live['Version']}; deploy --force makes version {version} live again"
                )
        if alias is not None and d.strategy != "all_at_once":
            released = (live["Version"], was["variant"]) if was else None
            alias_arn = canary.release(lam, clients.cw, d, alias, history, (version, variant), released)
        else:
            if d.strategy != "all_at_once":
                print(f"first release: all the traffic at once (deploy.strategy {d.strategy} needs a live version)")
            alias_arn = releases.move_alias(lam, d, version, history.made_live(int(version)), alias)
        url = doors.open_door(d, clients, alias_arn, account, partition, (photo, answer))
        snapstart.prune(lam, d)
    print(
        f"deployed {variant} as {'version' if new else 'the existing version'} {version} (live)\n  {url}\n"
        f"  curl -XPOST {url} --data-binary @photo.jpg -H 'Content-Type: image/jpeg'"
        + ("  (AWS_IAM: sign it, e.g. python lambda/client.py photo.jpg --endpoint URL --iam)" if iam(d) else "")
    )
    return write_record(lam, d, variant, key, version, url)


def iam(d: params.Deploy) -> bool:
    return d.endpoint == "function_url" and d.url_auth == "AWS_IAM"


def write_record(lam: BaseClient, d: params.Deploy, variant: str, key: str, version: str, url: str) -> dict:
    with aws_errors():
        shipped = lam.get_function(FunctionName=d.function_name, Qualifier=version)
    record = {
        "function": d.function_name,
        "package": d.package,
        "variant": variant,
        "key": key,
        "version": version,
        "code_sha256": shipped["Configuration"]["CodeSha256"],
        "image": shipped["Code"].get("ImageUri", ""),
        "alias": releases.ALIAS,
        "url": url,
        "deployed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    files.write_json(paths.DEPLOY_RECORD, record)
    return record


def rollback(p: params.Params, force: bool = False) -> str:
    """'live' back to the previous live version that was not rolled back from, after that version
    answered the smoke test in Lambda (an idle one is woken first); the version left is rejected."""
    d, clients = p.deploy, Clients(p.deploy.region)
    with aws_errors():
        lam = clients.lam
        alias = releases.live_alias(lam, d)
        if alias is None:
            raise NothingToRollBack(f"{d.function_name} has no '{releases.ALIAS}' alias: nothing to roll back")
        history, current = releases.read(alias), alias["FunctionVersion"]
        if canary.in_progress(alias, history):  # 'live' never left the released version: all traffic back on it
            released, rejected = canary.end(lam, clients.cw, d)
            print(
                f"the canary of version {rejected} is ended: all traffic on version {released}; version {rejected} "
                "is rejected: deploy does not make it live again without --force"
            )
            return released
        target = releases.rollback_target(lam, d, current, history)
        if target is None:
            raise NothingToRollBack(
                f"'live' is on version {current}; no earlier live version that was not rolled back from is left"
            )
        meta = releases.recorded(target)
        if force:  # no release manifest here (another machine, a fresh clone)
            print(f"rollback --force: not checking version {target['Version']} in Lambda before 'live' moves to it")
        else:
            try:
                photo, answer = smoke.recorded_answer(meta)
            except cli.UserError as e:
                raise cli.UserError(f"{e}; or rollback --force moves 'live' without checking it") from None
            print(f"checking version {target['Version']} ({meta['variant']}) in Lambda before 'live' moves to it")
            smoke.check(
                smoke.invoke(lam, d, photo, qualifier=target["Version"]),
                photo,
                answer,
                f"'live' stays on version {current}",
            )
        moved = history.rolled_back(int(current), int(target["Version"]))
        releases.move_alias(lam, d, target["Version"], moved, alias)
    print(
        f"'live' moved from version {current} to {target['Version']} ({meta['variant']}); version {current} is "
        "rejected: deploy does not make it live again without --force"
    )
    return target["Version"]
