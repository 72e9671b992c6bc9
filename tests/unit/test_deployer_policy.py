"""docs/deployer-policy.json grants what pipeline/deploy/ calls, and nothing else: every boto3 call
in the code (read from its source, so rarely taken paths count too) is mapped to the IAM action it
needs, with the actions no single call shows (the registry protocol docker push speaks, PassRole,
the repository policy Lambda sets for an image function, the zip Lambda reads with the caller's
credentials) named and explained below. parliament lints it, and the conditions that keep a deployer
from granting itself more (attach any policy to a role it passes, let any principal invoke, write
any API's stage) are asserted as written."""

import ast
import json

import botocore.session
from botocore import xform_name
from parliament import analyze_policy_string

from support import ROOT

POLICY = ROOT / "docs/deployer-policy.json"
# What each client is called in the code (aws.Clients' attributes too), and the service it is.
CLIENTS = {
    "lam": "lambda", "ecr": "ecr", "iam": "iam", "s3": "s3", "logs": "logs", "apigw": "apigatewayv2",
    "cw": "cloudwatch", "sts": "sts",
}  # fmt: skip
PREFIX = {
    "lambda": "lambda",
    "ecr": "ecr",
    "iam": "iam",
    "s3": "s3",
    "logs": "logs",
    "sts": "sts",
    "cloudwatch": "cloudwatch",
}
# Operations whose IAM action has another name (S3's are named for what they touch).
ACTION = {
    "lambda:Invoke": "lambda:InvokeFunction",
    "s3:ListBuckets": "s3:ListAllMyBuckets",
    "s3:HeadBucket": "s3:ListBucket",
    "s3:ListObjectsV2": "s3:ListBucket",
    "s3:PutPublicAccessBlock": "s3:PutBucketPublicAccessBlock",
}
# s3.upload_file: PutObject, or a multipart upload (PutObject covers create/part/complete), aborted on failure.
UPLOAD_FILE = {"s3:PutObject", "s3:AbortMultipartUpload"}
# Not one boto3 call each: docker/podman push and the registry reads (manifests, blobs) speak the
# registry protocol, which ECR authorizes as these actions; PassRole goes with CreateFunction and
# UpdateFunctionConfiguration's Role; Lambda reads and sets the repository's policy so that it can
# pull an image function's image (it needs the caller's permission for that); creating a resource
# with tags needs the service's tagging permission too; Lambda reads a zip given as S3Bucket/S3Key
# with the caller's credentials ("make sure your request credentials have permission to GetObject").
IMPLIED = {
    "ecr:BatchCheckLayerAvailability", "ecr:InitiateLayerUpload", "ecr:UploadLayerPart",
    "ecr:CompleteLayerUpload", "ecr:PutImage", "ecr:BatchGetImage", "ecr:GetDownloadUrlForLayer",
    "iam:PassRole", "ecr:GetRepositoryPolicy", "ecr:SetRepositoryPolicy",
    "ecr:TagResource", "iam:TagRole", "lambda:TagResource", "logs:TagResource", "cloudwatch:TagResource",
    "s3:GetObject",
}  # fmt: skip
# The only actions that take no resource narrower than "*" (AWS's service authorization reference;
# GetMetricData: how many requests a canary's version answered).
ANY_RESOURCE = {
    "sts:GetCallerIdentity",
    "ecr:GetAuthorizationToken",
    "s3:ListAllMyBuckets",
    "lambda:GetAccountSettings",
    "cloudwatch:GetMetricData",
}


def operations(service: str) -> dict[str, str]:
    """boto3's method names of a service -> its operation names (get_function -> GetFunction)."""
    session = botocore.session.get_session()
    model = session.get_service_model(service)
    return {xform_name(name): name for name in model.operation_names}


def waiter_operation(service: str, waiter: str) -> str:
    config = botocore.session.get_session().get_waiter_model(service)
    names = {xform_name(n): n for n in config.waiter_names}
    return config.get_waiter(names[waiter]).operation


def calls_in_code() -> set[str]:
    """Every AWS action the deploy code can call: methods read off its clients (lam.get_function,
    clients.sts.get_caller_identity, lam.list_versions_by_function passed to a paginator),
    waiters and paginators named by string."""
    found = set()
    for source in sorted((ROOT / "pipeline/deploy").glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if not isinstance(node, ast.Attribute):
                continue
            owner = node.value
            if isinstance(owner, ast.Name) and owner.id in CLIENTS:
                service = CLIENTS[owner.id]
            elif (
                isinstance(owner, ast.Attribute)
                and owner.attr in CLIENTS
                and getattr(owner.value, "id", "") == "clients"
            ):
                service = CLIENTS[owner.attr]  # clients.sts.get_caller_identity(): a command's aws.Clients
            elif isinstance(owner, ast.Call) and getattr(owner.func, "id", "") == "client" and owner.args:
                service = owner.args[0].value
            else:
                continue
            found |= actions(service, node.attr, node)
    return found


def actions(service: str, method: str, node: ast.Attribute) -> set[str]:
    prefix = "apigateway" if service == "apigatewayv2" else PREFIX[service]
    if method == "upload_file":
        return UPLOAD_FILE
    if method in ("get_waiter", "get_paginator"):
        return set()  # read at the call (below, by string)
    names = operations(service)
    if method not in names:
        return set()  # exceptions, meta
    operation = names[method]
    if service == "apigatewayv2":  # HTTP APIs are authorized by HTTP verb on the API's path
        model = botocore.session.get_session().get_service_model(service)
        return {f"apigateway:{model.operation_model(operation).http['method']}"}
    action = f"{prefix}:{operation}"
    return {ACTION.get(action, action)}


def string_named() -> set[str]:
    """Waiters and paginators named by string in the code: get_waiter("function_active_v2")."""
    found = set()
    for source in sorted((ROOT / "pipeline/deploy").glob("*.py")):
        for node in ast.walk(ast.parse(source.read_text())):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.args):
                continue
            owner, arg = node.func.value, node.args[0]
            if node.func.attr not in ("get_waiter", "get_paginator") or not isinstance(arg, ast.Constant):
                continue
            service = CLIENTS.get(getattr(owner, "id", ""))
            if service is None:
                continue
            if node.func.attr == "get_waiter":
                operation = waiter_operation(service, arg.value)
            else:
                operation = operations(service)[arg.value]
            action = f"{PREFIX.get(service, service)}:{operation}"
            found.add(ACTION.get(action, action))
    return found


def policy_actions() -> set[str]:
    statements = json.loads(POLICY.read_text())["Statement"]
    return {a for s in statements for a in listed(s["Action"])}


def test_the_policy_grants_exactly_what_the_code_calls():
    needed = calls_in_code() | string_named() | IMPLIED
    granted = policy_actions()
    assert not needed - granted, f"the code calls, the policy does not grant: {sorted(needed - granted)}"
    assert not granted - needed, f"the policy grants, the code never calls: {sorted(granted - needed)}"


def listed(value) -> list:
    return [value] if isinstance(value, str) else value


def test_only_actions_without_resources_are_granted_on_every_resource():
    for statement in json.loads(POLICY.read_text())["Statement"]:
        if "*" in listed(statement["Resource"]):
            assert set(listed(statement["Action"])) <= ANY_RESOURCE, statement


def test_parliament_finds_nothing():
    """A well-kept IAM linter (unknown actions, condition keys an action does not take, malformed
    ARNs, resources an action cannot be limited to): none in the policy."""
    findings = analyze_policy_string(POLICY.read_text()).findings
    assert not findings, [(f.issue, f.detail) for f in findings]


def granting(action: str) -> list[dict]:
    return [s for s in json.loads(POLICY.read_text())["Statement"] if action in listed(s["Action"])]


def test_what_could_grant_the_deployer_more_is_conditioned():
    """Attaching a policy to the role the deployer passes to Lambda would let it run code as anything
    (attach AdministratorAccess, ship code); a permission for another principal would open the function
    to it; stages carry tags (routes and integrations cannot), so only deploy's are written."""
    basic = {"ArnEquals": {"iam:PolicyARN": "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"}}
    for action in ("iam:AttachRolePolicy", "iam:DetachRolePolicy"):
        assert [s.get("Condition") for s in granting(action)] == [basic], action
    principal = {"StringEquals": {"lambda:Principal": "apigateway.amazonaws.com"}}
    everyone = {"StringEquals": {"lambda:Principal": "*"}}  # a function URL with auth NONE (its two statements)
    assert [s.get("Condition") for s in granting("lambda:AddPermission")] == [principal, everyone]
    # AWS has no condition key for InvokedViaFunctionUrl: the public grant is held to the 'live' alias instead.
    [public] = [s for s in granting("lambda:AddPermission") if s["Condition"] == everyone]
    assert listed(public["Resource"]) == ["arn:aws:lambda:*:*:function:clothes-classifier:live"]
    # The function URL's configuration: on the function and its 'live' alias only.
    for action in (
        "lambda:CreateFunctionUrlConfig",
        "lambda:UpdateFunctionUrlConfig",
        "lambda:DeleteFunctionUrlConfig",
    ):
        assert [listed(s["Resource"]) for s in granting(action)] == [
            ["arn:aws:lambda:*:*:function:clothes-classifier", "arn:aws:lambda:*:*:function:clothes-classifier:live"]
        ], action
    # Untagging could strip the ownership tag destroy relies on: only the function URL's mark may go.
    [untag] = granting("lambda:UntagResource")
    assert untag["Condition"] == {"ForAllValues:StringEquals": {"aws:TagKeys": ["clothes-serverless:function-url"]}}
    ours = "clothes-classifier"
    for verb in ("POST", "PATCH", "DELETE"):
        for statement in granting(f"apigateway:{verb}"):
            if any("/stages" in r for r in listed(statement["Resource"])):
                assert statement["Condition"]["StringEquals"] in (
                    {"aws:RequestTag/clothes-serverless": ours},
                    {"aws:ResourceTag/clothes-serverless": ours},
                ), statement
    writes = {(v, r) for v in ("POST", "PATCH", "DELETE") for s in granting(f"apigateway:{v}") for r in
              listed(s["Resource"]) if "/stages" in r}  # fmt: skip
    assert writes == {
        ("POST", "arn:aws:apigateway:*::/apis/*/stages"),
        ("PATCH", "arn:aws:apigateway:*::/apis/*/stages/*"),
        ("DELETE", "arn:aws:apigateway:*::/apis/*/stages/*"),
    }


def test_the_zip_bucket_is_readable_by_the_caller():
    """Lambda fetches an S3Bucket/S3Key zip with the deploying caller's credentials."""
    [statement] = granting("s3:GetObject")
    assert listed(statement["Resource"]) == ["arn:aws:s3:::clothes-classifier-*", "arn:aws:s3:::clothes-classifier-*/*"]
