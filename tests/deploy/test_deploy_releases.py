"""Releases you can trust, offline: the release history in AWS (the 'live' alias), rollback to the
previous live version that stays back, and the default smoke test (`smoke_test: aws`) run for
real: the Lambda-like proxy in front of moto runs the exact image digest each Invoke names under
its runtime interface emulator (tests/standins/lambda_proxy.py)."""

import json

from deploy_tools import (
    client,
    deploy,
    edit_release,
    live,
    one_line_error,
    registry_digest,
    registry_tags,
    replace_file,
    verify_answer,
    versions,
)

from support import LABELS, set_params


def history(lam, name) -> dict:
    return json.loads(lam.get_alias(FunctionName=name, Name="live")["Description"])


def digests_run(proxy, name) -> list[str]:
    """The image digest each Invoke of the function ran: the digest it named, checked to be one podman
    knows the running image by."""
    calls = [c for c in proxy.invocations if c["function"] == name]
    named = [c["image"].split("@")[1] for c in calls]
    assert all(d in {known.split("@")[1] for known in c["digests"]} for d, c in zip(named, calls, strict=True))
    return named


def test_rollback_goes_to_the_previous_live_version_and_stays_back(project, aws, names, seeded):
    """v1 -> v2 -> rollback -> v3 -> rollback lands on v1; the rejected v3 is not made live again
    by a deploy of the same code and configuration (only with --force, and then Lambda's own
    "nothing changed" answer hands back version 3 instead of a new one). Each version passes the
    default smoke test in Lambda first; the first rollback's target is Inactive and is woken."""
    lam, proxy, name = client(aws, "lambda"), aws["proxy"], names["function"]
    set_params(project, **{"deploy.smoke_test": "aws"})
    # The image answers a class other than the one expected (as a model with permuted labels would):
    # the deploy stops before anything is published. The expectation is changed, not the image.
    _, expected = verify_answer(project, "full_int8")
    wrong = next(label for label in LABELS if label != expected)
    right = edit_release(project, "full_int8", smoke_answer=wrong)
    refused = one_line_error(deploy(project, aws))
    assert "smoke test failed: " in refused and f"where {wrong} was expected; nothing was published" in refused
    assert versions(lam, name) == [] and lam.list_aliases(FunctionName=name)["Aliases"] == []
    replace_file(project / "artifacts/recommend/release.json", right)
    first = deploy(project, aws)
    assert first.returncode == 0 and "deployed full_int8 as version 1" in first.stdout, first.stdout + first.stderr
    assert [c["qualifier"] for c in proxy.invocations if c["function"] == name] == ["$LATEST", "$LATEST"]

    set_params(project, **{"deploy.memory_mb": 2048})
    assert deploy(project, aws).returncode == 0 and live(lam, name) == "2"
    # Weights set by hand on the alias: every move of 'live' clears them.
    lam.update_alias(FunctionName=name, Name="live", RoutingConfig={"AdditionalVersionWeights": {"1": 0.5}})

    proxy.inactive.add((name, "1"))  # idle for weeks: its first Invoke fails while Lambda restores it
    back = deploy(project, aws, "rollback")
    assert back.returncode == 0 and "from version 2 to 1" in back.stdout, back.stdout + back.stderr
    assert "not ready (CodeArtifactUserPendingException): waiting until it is Active" in back.stdout
    assert [c["version"] for c in proxy.invocations if c["function"] == name][-1] == "1"  # woken, then checked
    routing = lam.get_alias(FunctionName=name, Name="live").get("RoutingConfig") or {}
    assert live(lam, name) == "1" and not routing.get("AdditionalVersionWeights")

    set_params(project, **{"deploy.memory_mb": 3008})
    third = deploy(project, aws)
    assert third.returncode == 0 and live(lam, name) == "3", third.stdout + third.stderr
    again = deploy(project, aws, "rollback")
    assert again.returncode == 0 and "from version 3 to 1" in again.stdout, again.stdout + again.stderr
    assert history(lam, name) == {"by": "clothes-serverless", "live": [1, 2, 1, 3, 1], "rejected": [2, 3]}

    refused = one_line_error(deploy(project, aws))  # the same code and configuration as the rejected version 3
    assert "version 3 has this code and configuration" in refused and "rejected" in refused
    assert live(lam, name) == "1" and versions(lam, name) == ["1", "2", "3"]

    forced = deploy(project, aws, "--force")
    assert forced.returncode == 0, forced.stdout + forced.stderr
    assert "Lambda published no new version: version 3 already has this code and configuration" in forced.stdout
    assert "the existing version 3 (live)" in forced.stdout
    assert live(lam, name) == "3" and versions(lam, name) == ["1", "2", "3"]
    assert history(lam, name)["rejected"] == [2]
    pushed = registry_digest(aws, names["repository"], seeded)
    assert digests_run(proxy, name) == [pushed] * 7  # 5 deploys and 2 rollbacks, each ran the pushed image
    assert all(v["CodeSha256"] == lam.get_function_configuration(FunctionName=name, Qualifier="1")["CodeSha256"]
               for v in lam.list_versions_by_function(FunctionName=name)["Versions"])  # fmt: skip


def test_the_default_smoke_test_publishes_nothing_from_a_broken_image(project, aws, names):
    """smoke_test: aws invokes the updated $LATEST, which runs the pushed image for real: a model that
    does not load and a handler that crashes on import both stop the deploy before PublishVersion."""
    lam, proxy, name = client(aws, "lambda"), aws["proxy"], names["function"]
    set_params(project, **{"deploy.smoke_test": "aws"})
    replace_file(project / "artifacts/tflite/full_int8.tflite", b"not a tflite model" * 100)
    no_model = one_line_error(deploy(project, aws))
    assert "smoke test failed" in no_model and "internal error" in no_model, no_model
    assert versions(lam, name) == [] and lam.list_aliases(FunctionName=name)["Aliases"] == []

    handler = project / "lambda/serving/handler.py"
    handler.write_text('raise RuntimeError("broken on purpose")\n' + handler.read_text())
    crashed = one_line_error(deploy(project, aws))
    assert "smoke test failed: the function raised" in crashed and "broken on purpose" in crashed, crashed
    assert versions(lam, name) == [] and lam.list_aliases(FunctionName=name)["Aliases"] == []
    pushed = {registry_digest(aws, names["repository"], tag) for tag in registry_tags(aws, names["repository"])}
    assert len(pushed) == 2 and set(digests_run(proxy, name)) == pushed  # each broken image ran, as pushed
