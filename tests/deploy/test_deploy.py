"""make deploy end to end, offline: moto (AWS) and a registry on 127.0.0.1, images built with podman
on a locally made Lambda base, smoke-tested by running the image under its emulator. Each test
has its own project (what deploy reads), its own AWS names, and destroys what it deployed."""

import io
import json
import os
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pytest
import requests
from deploy_tools import (
    MANIFEST_TYPES,
    apis_named,
    client,
    deploy,
    edit_release,
    functions_named,
    live,
    one_line_error,
    push_index,
    registry_digest,
    registry_tags,
    replace_file,
    versions,
)

from support import BIN, ROOT, set_params


def test_image_deploy_config_and_code_changes_failed_smoke_test_and_rollback(project, aws, names, seeded):
    name = names["function"]
    first = deploy(project, aws)  # the image is in the repository already (seeded): deploy reuses it
    assert first.returncode == 0, first.stderr
    record = json.loads((project / "artifacts/deploy.json").read_text())
    assert record["version"] == "1" and record["url"].endswith("/predict") and "curl -XPOST" in first.stdout
    lam, apigw, ecr = client(aws, "lambda"), client(aws, "apigatewayv2"), client(aws, "ecr")

    # What was pushed: one image (not an index) for amd64, the digest the function names.
    registry = f"http://{aws['registry']}/v2/{names['repository']}"
    answer = requests.get(f"{registry}/manifests/{record['key']}", headers={"Accept": MANIFEST_TYPES}, timeout=10)
    manifest = answer.json()
    assert manifest["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    config = requests.get(f"{registry}/blobs/{manifest['config']['digest']}", timeout=10).json()
    assert config["architecture"] == "amd64"
    assert record["image"].endswith("@" + answer.headers["Docker-Content-Digest"])

    # What surrounds it: scan on push, untagged-only expiry, concurrency cap, log retention, throttling.
    repo = ecr.describe_repositories(repositoryNames=[names["repository"]])["repositories"][0]
    assert repo["imageScanningConfiguration"]["scanOnPush"] is True
    rules = json.loads(ecr.get_lifecycle_policy(repositoryName=names["repository"])["lifecyclePolicyText"])["rules"]
    assert [r["selection"]["tagStatus"] for r in rules] == ["untagged"]
    assert lam.get_function_concurrency(FunctionName=name)["ReservedConcurrentExecutions"] == 10
    group = client(aws, "logs").describe_log_groups(logGroupNamePrefix=f"/aws/lambda/{name}")["logGroups"]
    assert [(g["logGroupName"], g.get("retentionInDays")) for g in group] == [(f"/aws/lambda/{name}", 30)]
    [api] = apis_named(apigw, names["api"])
    stage = apigw.get_stage(ApiId=api["ApiId"], StageName="$default")["DefaultRouteSettings"]
    assert (stage["ThrottlingRateLimit"], stage["ThrottlingBurstLimit"]) == (10, 20)
    assert [r["RouteKey"] for r in apigw.get_routes(ApiId=api["ApiId"])["Items"]] == ["POST /predict"]
    role = client(aws, "iam").list_attached_role_policies(RoleName=names["role"])["AttachedPolicies"]
    assert [p["PolicyName"] for p in role] == ["AWSLambdaBasicExecutionRole"]
    assert lam.get_function_configuration(FunctionName=name)["Timeout"] == 10

    again = deploy(project, aws)
    assert again.returncode == 0 and "nothing to deploy" in again.stdout, again.stderr
    assert versions(lam, name) == ["1"]

    # The API deleted by hand: the next deploy makes a new one and replaces the invoke permission.
    apigw.delete_api(ApiId=api["ApiId"])
    healed = deploy(project, aws)
    assert healed.returncode == 0 and "nothing to deploy" in healed.stdout, healed.stderr
    [api] = apis_named(apigw, names["api"])
    policy = json.loads(lam.get_policy(FunctionName=name, Qualifier="live")["Policy"])
    assert len(policy["Statement"]) == 1 and f":{api['ApiId']}/" in json.dumps(policy["Statement"][0]["Condition"])

    # As an earlier deployer left it, before it tagged what it made: the API, its route, integration and
    # permission, untagged. Deploy adopts it (tagged) instead of making a second API and moving the
    # permission away from the URL clients use.
    arn = f"arn:aws:apigateway:us-east-1::/apis/{api['ApiId']}"
    apigw.untag_resource(ResourceArn=arn, TagKeys=["clothes-serverless"])
    adopted = deploy(project, aws)
    assert adopted.returncode == 0 and "made by an earlier deployer, untagged: tagged and kept" in adopted.stdout
    assert [a["ApiId"] for a in apis_named(apigw, names["api"])] == [api["ApiId"]]
    assert json.loads(lam.get_policy(FunctionName=name, Qualifier="live")["Policy"]) == policy
    assert apigw.get_tags(ResourceArn=arn)["Tags"] == {"clothes-serverless": name}
    assert aws["proxy"].stage_tags[f"{arn}/stages/$default"] == {"clothes-serverless": name}  # its writes need it

    # A deploy-params change: a new version with the new configuration, the same image, no build.
    set_params(project, **{"deploy.memory_mb": 2048})
    configured = deploy(project, aws)
    assert configured.returncode == 0, configured.stderr
    assert "configuration only" in configured.stdout and "building" not in configured.stdout
    v2 = lam.get_function(FunctionName=name, Qualifier="2")
    assert live(lam, name) == "2" and v2["Configuration"]["MemorySize"] == 2048
    assert v2["Code"]["ImageUri"] == record["image"]

    # An uncommitted (there is no git here at all) change to the handler ships a new image.
    handler = project / "lambda/serving/handler.py"
    handler.write_text(handler.read_text() + "\n# changed\n")
    changed = deploy(project, aws)
    assert changed.returncode == 0 and "building" in changed.stdout, changed.stderr
    assert live(lam, name) == "3"
    assert lam.get_function(FunctionName=name, Qualifier="3")["Code"]["ImageUri"] != record["image"]

    # A variant that scored worse at verify than live is refused, before anything is built.
    scores = json.loads((project / "artifacts/recommend/release.json").read_text())["variants"]
    edit_release(project, "float16", accuracy=scores["full_int8"]["accuracy"] - 0.05)
    set_params(project, **{"deploy.variant": "float16"})
    assert "deploy --force" in one_line_error(deploy(project, aws))

    # An image whose handler cannot load its model fails its smoke test in Lambda (smoke_test aws): it was
    # built and pushed, nothing is published. smoke_test local then finds it in the registry, and tests it
    # here all the same (being pushed is no test): it fails again, nothing is published.
    replace_file(project / "artifacts/tflite/float16.tflite", b"not a tflite model" * 100)
    set_params(project, **{"deploy.smoke_test": "aws"})
    broken = deploy(project, aws, "--force")
    assert "smoke test failed" in one_line_error(broken) and "building" in broken.stdout
    set_params(project, **{"deploy.smoke_test": "local"})
    pushed = deploy(project, aws, "--force")
    assert "smoke test failed" in one_line_error(pushed) and "not rebuilding" in pushed.stdout, pushed.stdout
    assert versions(lam, name) == ["1", "2", "3"] and live(lam, name) == "3"

    rollback = deploy(project, aws, "rollback")
    assert rollback.returncode == 0 and "from version 3 to 2" in rollback.stdout, rollback.stderr
    assert live(lam, name) == "2"

    inline = json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "s3:GetObject", "Resource": "*"}]}
    )
    client(aws, "iam").put_role_policy(RoleName=names["role"], PolicyName="added-by-hand", PolicyDocument=inline)
    gone = deploy(project, aws, "destroy", "--yes")
    assert gone.returncode == 0, gone.stderr
    for what in ("function", "log group", "role", "repository", "API"):
        assert what in gone.stdout
    assert functions_named(lam, name) == [] and apis_named(apigw, names["api"]) == []
    with pytest.raises(client(aws, "iam").exceptions.NoSuchEntityException):  # its inline policy deleted first
        client(aws, "iam").get_role(RoleName=names["role"])
    assert not (project / "artifacts/deploy.json").exists()


def test_the_first_deploy_waits_for_the_new_role_and_ships_an_indexs_image(project, aws, names, built_image):
    """The proxy answers CreateFunction as AWS does while IAM propagates a new role, for 7 s. The
    registry holds an OCI image index under the deploy key (as docker 29 pushes): deploy ships the
    index's amd64 manifest by its digest, tagged so that the untagged-expiry rule never takes it, and
    builds nothing under another tag."""
    proxy, name, key = aws["proxy"], names["function"], built_image["key"]
    image = push_index(aws, built_image["tag"], names["repository"], key)
    set_params(project, **{"deploy.smoke_test": "aws"})  # the first deploy's invocation runs the digest shipped
    proxy.refuse_role[name] = 7
    first = deploy(project, aws)
    assert first.returncode == 0, first.stderr
    refused = proxy.role_refusals[name]
    assert "waiting for IAM" in first.stdout and len(refused) >= 2
    assert refused[-1] - refused[0] >= 7 - 2 * 3 and live(client(aws, "lambda"), name) == "1"
    shipped = client(aws, "lambda").get_function(FunctionName=name, Qualifier="1")["Code"]["ImageUri"]
    assert shipped.endswith(f"/{names['repository']}@{image}") and "not rebuilding" in first.stdout
    assert sorted(registry_tags(aws, names["repository"])) == [key, f"{key}-amd64"]
    assert registry_digest(aws, names["repository"], f"{key}-amd64") == image
    assert [i["image"] for i in proxy.invocations if i["function"] == name][-1].endswith(f"@{image}")


def test_arm64_on_an_amd64_only_base_fails_before_lambda(project, aws, names):
    set_params(project, **{"deploy.architecture": "arm64"})
    failed = deploy(project, aws)
    assert "arm64" in one_line_error(failed)
    assert functions_named(client(aws, "lambda"), names["function"]) == []


def zip_names(project: Path) -> list[str]:
    """Build the project's zip package as deploy would (without deploying); its file names."""
    built = subprocess.run(
        [
            sys.executable,
            "-c",
            "from pipeline import params; from pipeline.deploy import build\n"
            "d = params.load().deploy; build.copy_model(*build.chosen_model(d)); print(build.build_zip(d))",
        ],
        cwd=project,
        env={**os.environ, "PYTHONPATH": f"{project}:{project / 'lambda'}"},
        capture_output=True,
        text=True,
    )
    assert built.returncode == 0, built.stderr
    return zipfile.ZipFile(project / built.stdout.strip()).namelist()


def test_errors_a_user_meets(project, aws, tmp_path):
    none = str(tmp_path / "none")
    no_creds = deploy(
        project,
        aws,
        env={
            "AWS_ACCESS_KEY_ID": "",
            "AWS_SECRET_ACCESS_KEY": "",
            "AWS_SHARED_CREDENTIALS_FILE": none,
            "AWS_CONFIG_FILE": none,
        },
    )
    assert "no AWS credentials" in one_line_error(no_creds)
    no_profile = one_line_error(deploy(project, aws, env={"AWS_PROFILE": "no-such-profile"}))
    assert "no-such-profile" in no_profile and "could not be found" in no_profile, no_profile

    bare = tmp_path / "bin"  # the test's own repository has no image yet: an engine is needed
    bare.mkdir()
    assert "no container engine" in one_line_error(deploy(project, aws, env={"PATH": f"{bare}:{BIN}"}))

    set_params(project, **{"deploy.timeout_s": 1000, "deploy.log_retention_days": 31})
    limits = one_line_error(deploy(project, aws))
    assert "900" in limits and "log_retention_days" in limits
    set_params(project, **{"deploy.timeout_s": 10, "deploy.log_retention_days": 30, "deploy.registry": "127.0.0.1:9"})
    assert "did not answer" in one_line_error(deploy(project, aws))

    assert "pass --yes" in one_line_error(deploy(project, aws, "destroy"))


def image_files(tag: str) -> list[str]:
    """Every path in a locally built image's filesystem."""
    created = subprocess.run(["podman", "create", tag], capture_output=True, text=True, check=True).stdout.strip()
    try:
        exported = subprocess.run(["podman", "export", created], capture_output=True, check=True).stdout
    finally:
        subprocess.run(["podman", "rm", created], capture_output=True)
    with tarfile.open(fileobj=io.BytesIO(exported)) as tar:
        return tar.getnames()


@pytest.mark.heavy  # an ONNX image and zip built and deployed (~45 s after the small run): make test-heavy
def test_an_onnx_variant_ships_with_onnx_runtime_only_in_the_image_and_the_zip(project, aws, names):
    """The function carries exactly the serving package and the model, and only the runtime the
    chosen variant needs: LiteRT for .tflite, ONNX Runtime for .onnx."""
    set_params(project, **{"deploy.variant": "onnx_int8"})
    shipped = deploy(project, aws)  # smoke_test local: the image answered a real photo as verify did
    assert shipped.returncode == 0, shipped.stderr
    record = json.loads((project / "artifacts/deploy.json").read_text())
    assert record["variant"] == "onnx_int8"
    files = image_files(f"{aws['registry']}/{names['repository']}:{record['key']}")
    task_root = sorted(
        n.removeprefix("var/task/") for n in files if n.startswith("var/task/") and "__pycache__" not in n
    )
    serving = sorted(f"serving/{p.name}" for p in (ROOT / "lambda/serving").glob("*.py"))
    assert task_root == sorted(["model", "model/model.json", "model/model.onnx", "serving", *serving])
    packages = {n.split("/site-packages/")[1].split("/")[0] for n in files if "/site-packages/" in n}
    assert "onnxruntime" in packages and "ai_edge_litert" not in packages and "tensorflow" not in packages
    assert "aws_lambda_powertools" in packages  # the metrics (serving/metrics.py)

    zipped = zip_names(project)
    ours = sorted(n for n in zipped if n.startswith(("serving/", "model/")))
    assert ours == sorted(["model/model.json", "model/model.onnx", *serving])
    assert any(n.startswith("onnxruntime/") for n in zipped) and not any(
        n.startswith("ai_edge_litert/") for n in zipped
    )


def test_the_manifest_check_resolves_an_index_and_refuses_another_architecture(aws):
    """What Lambda would refuse, read back from a real registry before any Lambda call: an image index
    (docker 29's containerd store pushes one even for a single-platform build) is resolved to its
    manifest for the architecture, whose digest deploy ships; an index without one, or an image made
    for another architecture, is refused."""
    from pipeline.cli import UserError
    from pipeline.deploy.image import Registry

    push_index(aws, aws["base"], "manifest-check", "index")
    podman = ["podman", "--log-level", "error"]
    single = f"docker://{aws['registry']}/manifest-check:single"
    done = subprocess.run([*podman, "push", "--tls-verify=false", "--format", "docker", aws["base"], single],
                          capture_output=True, text=True)  # fmt: skip
    assert done.returncode == 0, done.stderr
    url = f"http://{aws['registry']}/v2/manifest-check/manifests/index"
    index = requests.get(url, headers={"Accept": "application/vnd.oci.image.index.v1+json"}, timeout=10).json()
    [entry] = index["manifests"]
    assert entry["platform"]["architecture"] == "amd64"
    registry = Registry(aws["registry"], "manifest-check", None, plain_http=True)
    assert registry.check("index", "x86_64") == entry["digest"]
    with pytest.raises(UserError, match=r"manifest-check:index is an image index with no linux/arm64 image"):
        registry.check("index", "arm64")
    with pytest.raises(UserError, match=r"manifest-check:single is built for amd64, deploy.architecture is arm64"):
        registry.check("single", "arm64")
    assert registry.check("single", "x86_64") == registry_digest(aws, "manifest-check", "single")


def test_an_override_registry_off_this_machine_gets_no_token_and_replacement_tags_are_stable():
    """The account's ECR token goes as basic auth to an override registry (plain HTTP) only on this
    machine. An unusable image under the key is replaced under key-r1, key-r2, ...: the first usable
    one is reused, so the next deploy does not build again."""
    from pipeline.deploy.image import Unusable, loopback, usable_tag

    assert all(loopback(h) for h in ("localhost:5000", "127.0.0.1:5000", "127.1.2.3", "[::1]:5000"))
    assert not any(loopback(h) for h in ("registry.example.com:5000", "10.0.0.5:5000", "[2001:db8::1]:80"))

    class Fake:
        repository = "repo"

        def __init__(self, images: dict):
            self.images = images  # tag -> usable

        def digest(self, tag):
            return "sha256:x" if tag in self.images else None

        def unusable(self, tag, architecture):
            return None if self.images[tag] else str(Unusable("an image index"))

    assert usable_tag(Fake({}), "k", "x86_64") == ("k", False)
    assert usable_tag(Fake({"k": True}), "k", "x86_64") == ("k", True)
    assert usable_tag(Fake({"k": False}), "k", "x86_64") == ("k-r1", False)
    assert usable_tag(Fake({"k": False, "k-r1": True}), "k", "x86_64") == ("k-r1", True)
    assert usable_tag(Fake({"k": False, "k-r1": False}), "k", "x86_64") == ("k-r2", False)
