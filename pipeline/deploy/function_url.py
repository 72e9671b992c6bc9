"""The function URL on 'live' (deploy.endpoint function_url): Lambda's own HTTPS endpoint, no API in
front, nothing billed per request (docs/endpoints.md). On the alias, so a canary's weights on 'live'
apply to it as they do to the HTTP API.

A function URL takes no tags of its own: the function carries MARK (value: the alias) when deploy
made or adopted the URL on it, and destroy (or a switch back to the HTTP API) deletes a URL only
under that mark. One already on 'live' of a function deploy made (someone added it by hand) is
adopted: marked, and set to the params. Access is the resource policy's: for auth NONE, two
statements for everyone, each with the condition AWS supports for it (lambda:FunctionUrlAuthType on
lambda:InvokeFunctionUrl, lambda:InvokedViaFunctionUrl on lambda:InvokeFunction: URLs made since
October 2025 need both); for AWS_IAM none (callers' own policies grant it), and a NONE grant left
from before is removed, so the URL is never public once auth is AWS_IAM."""

import json

from pipeline import params
from pipeline.deploy import releases
from pipeline.deploy.aws import TAG

MARK = f"{TAG}:function-url"  # on the function: deploy made (or adopted) the URL on the alias named by its value
# The statements deploy adds for auth NONE: the URL's action, and the invoke it makes (since October 2025).
STATEMENTS = {
    "function-url": {"Action": "lambda:InvokeFunctionUrl", "FunctionUrlAuthType": "NONE"},
    "function-url-invoke": {"Action": "lambda:InvokeFunction", "InvokedViaFunctionUrl": True},
}
CORS_METHODS = ["POST"]
CORS_HEADERS = ["content-type"]
CORS_MAX_AGE_S = 300


def function_arn(d: params.Deploy, account: str, partition: str) -> str:
    return f"arn:{partition}:lambda:{d.region}:{account}:function:{d.function_name}"


def wanted(d: params.Deploy) -> dict:
    """The URL's configuration from the params: auth, and CORS for browsers where origins are given."""
    config = {"AuthType": d.url_auth}
    if d.url_cors_origins:
        config["Cors"] = {
            "AllowOrigins": list(d.url_cors_origins),
            "AllowMethods": CORS_METHODS,
            "AllowHeaders": CORS_HEADERS,
            "MaxAge": CORS_MAX_AGE_S,
        }
    return config


def find(lam, d: params.Deploy) -> "dict | None":
    try:
        return lam.get_function_url_config(FunctionName=d.function_name, Qualifier=releases.ALIAS)
    except lam.exceptions.ResourceNotFoundException:
        return None


def marked(lam, arn: str) -> bool:
    """deploy made (or adopted) the URL on 'live': the function carries the mark."""
    return lam.list_tags(Resource=arn).get("Tags", {}).get(MARK) == releases.ALIAS


def differs(found: dict, config: dict) -> bool:
    cors = found.get("Cors") or {}
    want = config.get("Cors") or {}
    return found.get("AuthType") != config["AuthType"] or any(cors.get(k) != v for k, v in want.items())


def ensure(lam, d: params.Deploy, account: str, partition: str) -> str:
    """The URL on 'live' as the params say, marked as deploy's, with its permissions; its address."""
    arn, config = function_arn(d, account, partition), wanted(d)
    found = find(lam, d)
    if found is None:
        found = lam.create_function_url_config(FunctionName=d.function_name, Qualifier=releases.ALIAS, **config)
    else:
        if not marked(lam, arn):
            print(f"the function URL on {d.function_name}:{releases.ALIAS} was not made by deploy: adopted")
        if differs(found, config):
            lam.update_function_url_config(FunctionName=d.function_name, Qualifier=releases.ALIAS, **config)
    lam.tag_resource(Resource=arn, Tags={MARK: releases.ALIAS})
    allow(lam, d)
    return found["FunctionUrl"]


def policy(lam, d: params.Deploy) -> list:
    try:
        return json.loads(lam.get_policy(FunctionName=d.function_name, Qualifier=releases.ALIAS)["Policy"])["Statement"]
    except lam.exceptions.ResourceNotFoundException:
        return []


def allow(lam, d: params.Deploy) -> None:
    """Auth NONE: everyone may call the URL (and only through it); AWS_IAM: no grant here at all."""
    present = {s.get("Sid"): s for s in policy(lam, d)}
    for sid, grant in STATEMENTS.items():
        if d.url_auth != "NONE":
            if sid in present:
                lam.remove_permission(FunctionName=d.function_name, Qualifier=releases.ALIAS, StatementId=sid)
            continue
        if sid in present:
            continue
        lam.add_permission(
            FunctionName=d.function_name, Qualifier=releases.ALIAS, StatementId=sid, Principal="*", **grant
        )


def delete(lam, d: params.Deploy, account: str, partition: str) -> "bool | None":
    """True: deleted with its permissions and mark; False: none there; None: not deploy's, left alone."""
    arn = function_arn(d, account, partition)
    if find(lam, d) is None:
        return False
    if not marked(lam, arn):
        return None
    lam.delete_function_url_config(FunctionName=d.function_name, Qualifier=releases.ALIAS)
    present = {s.get("Sid") for s in policy(lam, d)}
    for sid in STATEMENTS:
        if sid in present:
            lam.remove_permission(FunctionName=d.function_name, Qualifier=releases.ALIAS, StatementId=sid)
    lam.untag_resource(Resource=arn, TagKeys=[MARK])
    return True
