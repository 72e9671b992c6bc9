"""deploy, rollback, destroy. Every decision reads AWS (the 'live' version's recorded deploy key),
so a second machine, a lost artifacts/ or a project outside git decides the same."""

import sys
from datetime import UTC, datetime
from pathlib import Path

from pipeline import cli, files, params
from pipeline.deploy import build, functions, image, limits, resources, smoke
from pipeline.deploy.resources import aws_errors, client

RECORD = Path("artifacts/deploy.json")  # what the last deploy shipped, for people; decisions read AWS


def guard_accuracy(d: params.Deploy, live: "dict | None", variant: str, accuracy: "float | None", force: bool) -> None:
    """Refuse a variant that scored worse at verify than the live one did, beyond the margin."""
    was = (functions.shipped(live) or {}).get("accuracy") if live else None
    if force or was is None or accuracy is None or accuracy >= was - d.max_accuracy_drop:
        return
    raise cli.UserError(
        f"{variant} scored {accuracy:.4f} at verify, the live version {live['Version']} scored {was:.4f} "
        f"(more than deploy.max_accuracy_drop {d.max_accuracy_drop} lower): deploy --force ships it anyway"
    )


def ship_image(d: params.Deploy, key: str, variant: str) -> dict:
    """The image tagged with the deploy key: reused if the registry has it, else built, smoke-tested
    (local), pushed; then checked in the registry (single image, right architecture)."""
    ecr = client("ecr", d.region)
    repo_uri = resources.ensure_repository(ecr, d)
    token = ecr.get_authorization_token()["authorizationData"][0]["authorizationToken"]
    host = d.registry or repo_uri.split("/")[0]
    registry = image.Registry(host, d.repository, token, plain_http=bool(d.registry))
    present = registry.digest(key) is not None
    reusable = present and registry.usable(key, d.architecture)
    if present and not reusable:
        print(f"the registry's image for {key} is not a single {d.architecture} image: building it again")
    if not reusable:
        engine = image.container_engine()
        tag = f"{host}/{d.repository}:{key}"
        print(f"building {tag} for {d.architecture} with {engine}")
        image.build_image(engine, d, tag)
        if d.smoke_test == "local":
            smoke.check(smoke.run_image(engine, tag, smoke.expected_answer(variant)[0]), variant)
        image.push_image(engine, registry, tag)
    else:
        print(f"the registry has the image for {key} already: not rebuilding")
    digest = registry.check(key, d.architecture)
    # Lambda pulls from ECR: with a registry override, still name the image by ECR's repository URI.
    return {"ImageUri": f"{repo_uri}@{digest}"}


def ship_zip(d: params.Deploy, key: str, variant: str, account: str) -> dict:
    archive = build.build_zip(d)
    if d.smoke_test == "local":
        smoke.check(smoke.run_zip(d, smoke.expected_answer(variant)[0]), variant)
    if archive.stat().st_size <= limits.ZIP_DIRECT_UPLOAD_MB * 2**20:
        return {"ZipFile": archive.read_bytes()}
    return resources.upload_zip(client("s3", d.region), d, account, archive, f"{d.function_name}/{key}.zip")


def settle(d: params.Deploy, lam, alias_arn: str, account: str) -> str:
    """What is not versioned, made to match the params on every deploy: concurrency, logs, API."""
    functions.cap_concurrency(lam, d)
    resources.ensure_log_group(client("logs", d.region), d)
    return resources.ensure_api(client("apigatewayv2", d.region), lam, d, alias_arn, account)


def deploy(p: params.Params, force: bool = False) -> dict:
    d = p.deploy
    limits.check(d)
    variant, model = build.chosen_model(d)
    accuracy = build.verify_accuracy(variant)
    build.stage_model(variant, model)
    key, config = build.code_key(d), build.config_key(d, p.cost.mb_per_vcpu)
    lam = client("lambda", d.region)
    with aws_errors():
        account = client("sts", d.region).get_caller_identity()["Account"]
        live = functions.live(lam, d)
        was = functions.shipped(live) if live else None
        guard_accuracy(d, live, variant, accuracy, force)
        latest = functions.latest(lam, d)
        same_code = bool(was and was["key"] == key and latest and latest["CodeSha256"] == live["CodeSha256"])
        if same_code and was["config"] == config:
            url = settle(d, lam, lam.get_alias(FunctionName=d.function_name, Name=functions.ALIAS)["AliasArn"], account)
            print(f"nothing to deploy: {variant} ({key}) is live as version {live['Version']}")
            return write_record(lam, d, variant, key, live["Version"], url)
        role_arn = resources.ensure_role(client("iam", d.region), d)
        if same_code:
            print(f"same code as version {live['Version']}: updating the configuration only")
            code = None
        elif d.package == "image":
            code = ship_image(d, key, variant)
        else:
            code = ship_zip(d, key, variant, account)
        functions.ensure_function(lam, d, code, build.function_config(d, p.cost.mb_per_vcpu, role_arn))
        if d.smoke_test == "aws":
            smoke.check(smoke.invoke(lam, d, smoke.expected_answer(variant)[0]), variant)
        tested = functions.latest(lam, d)
        description = functions.describe(key, config, variant, accuracy, d.smoke_test)
        version = functions.publish(lam, d, tested["CodeSha256"], description)
        alias_arn = functions.move_alias(lam, d, version)
        url = settle(d, lam, alias_arn, account)
    print(
        f"deployed {variant} as version {version} (live)\n  {url}\n"
        f"  curl -XPOST {url} --data-binary @photo.jpg -H 'Content-Type: image/jpeg'"
    )
    return write_record(lam, d, variant, key, version, url)


def write_record(lam, d: params.Deploy, variant: str, key: str, version: str, url: str) -> dict:
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
        "alias": functions.ALIAS,
        "url": url,
        "deployed_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    files.write_json(RECORD, record)
    return record


def rollback(p: params.Params) -> str:
    d = p.deploy
    lam = client("lambda", d.region)
    with aws_errors():
        live = functions.live(lam, d)
        if live is None:
            raise cli.UserError(f"{d.function_name} has no '{functions.ALIAS}' alias: nothing to roll back")
        target = functions.rollback_target(lam, d, live["Version"])
        if target is None:
            raise cli.UserError(f"'live' is on version {live['Version']}; no older version passed its smoke test")
        functions.move_alias(lam, d, target["Version"])
    print(
        f"'live' moved from version {live['Version']} to {target['Version']} ({functions.shipped(target)['variant']})"
    )
    return target["Version"]


def destroy(p: params.Params, yes: bool) -> list[str]:
    d = p.deploy
    if not yes:
        if not sys.stdin.isatty():
            raise cli.UserError("destroy asks first: run it in a terminal, or pass --yes")
        question = f"delete {d.function_name}, its API, role, log group, image repository and bucket? [y/N] "
        if input(question).strip().lower() != "y":
            print("nothing deleted")
            return []
    gone = []
    with aws_errors():
        account = client("sts", d.region).get_caller_identity()["Account"]
        apigw, lam, ecr = client("apigatewayv2", d.region), client("lambda", d.region), client("ecr", d.region)
        for api in resources.find_apis(apigw, d):
            apigw.delete_api(ApiId=api["ApiId"])
            gone.append(f"API {d.api_name} ({api['ApiId']})")
        try:
            lam.delete_function(FunctionName=d.function_name)
            gone.append(f"function {d.function_name} and its versions")
        except lam.exceptions.ResourceNotFoundException:
            pass
        if resources.delete_log_group(client("logs", d.region), d):
            gone.append(f"log group {resources.log_group(d)}")
        if resources.delete_role(client("iam", d.region), d):
            gone.append(f"role {d.role_name}")
        try:
            ecr.delete_repository(repositoryName=d.repository, force=True)
            gone.append(f"repository {d.repository} and its images")
        except ecr.exceptions.RepositoryNotFoundException:
            pass
        gone += [f"bucket {b}" for b in resources.delete_buckets(client("s3", d.region), d, account)]
    RECORD.unlink(missing_ok=True)
    print("deleted " + ", ".join(gone) if gone else "nothing to delete: none of it exists")
    return gone
