"""The AWS resources around the function: ECR repository, execution role, S3 bucket for large
zips, log group, HTTP API. Each ensure_* makes its resource match the params, however it was
left (created, half-created, or changed since). Whatever deploy creates carries the TAG (value:
the function's name); what it finds already there under the same name it uses but never tags
(except an HTTP API an earlier version of deploy made before it tagged: adopt), and destroy
deletes only what carries the tag. ARNs are written in the caller's partition."""

import contextlib
import json
import secrets

import botocore.exceptions

from pipeline import cli, params
from pipeline.deploy import limits
from pipeline.deploy.aws import TAG, pages, tag_list, tagged, tags

TRUST_POLICY = {
    "Version": "2012-10-17",
    "Statement": [{"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}],
}
PERMISSION_ID = "apigateway-predict"
ROUTE = "POST /predict"


# ---------------------------------------------------------------- ECR
def ensure_repository(ecr, d: params.Deploy) -> str:
    try:
        repo = ecr.describe_repositories(repositoryNames=[d.repository])["repositories"][0]
    except ecr.exceptions.RepositoryNotFoundException:
        # IMMUTABLE: ECR itself refuses to move a tag deploy pushed (versions run the digests behind them).
        repo = ecr.create_repository(
            repositoryName=d.repository,
            imageScanningConfiguration={"scanOnPush": True},
            imageTagMutability="IMMUTABLE",
            tags=tag_list(d),
        )["repository"]
    ecr.put_image_scanning_configuration(repositoryName=d.repository, imageScanningConfiguration={"scanOnPush": True})
    # Tags are content keys and versions point at digests: only untagged images (a failed push's
    # leftovers) ever expire, so no version's image disappears under it.
    rule = {
        "rulePriority": 1,
        "description": f"expire untagged images after {d.untagged_image_days} days",
        "selection": {
            "tagStatus": "untagged",
            "countType": "sinceImagePushed",
            "countUnit": "days",
            "countNumber": d.untagged_image_days,
        },
        "action": {"type": "expire"},
    }
    ecr.put_lifecycle_policy(repositoryName=d.repository, lifecyclePolicyText=json.dumps({"rules": [rule]}))
    return repo["repositoryUri"]


# ---------------------------------------------------------------- IAM
def basic_execution(partition: str) -> str:
    """The AWS-managed policy the function's role needs (its logs), in the caller's partition."""
    return f"arn:{partition}:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole"


def trusts_lambda(document: dict) -> bool:
    for s in document.get("Statement", []):
        services = s.get("Principal", {}).get("Service", [])
        services = [services] if isinstance(services, str) else services
        actions = s.get("Action", [])
        actions = [actions] if isinstance(actions, str) else actions
        if s.get("Effect") == "Allow" and "lambda.amazonaws.com" in services and "sts:AssumeRole" in actions:
            return True
    return False


def ensure_role(iam, d: params.Deploy, partition: str) -> str:
    try:
        role = iam.get_role(RoleName=d.role_name)["Role"]
        if not trusts_lambda(role["AssumeRolePolicyDocument"]):
            raise cli.UserError(
                f"role {d.role_name} exists but does not let lambda.amazonaws.com assume it: "
                "fix its trust policy or choose another deploy.role_name"
            )
    except iam.exceptions.NoSuchEntityException:
        role = iam.create_role(
            RoleName=d.role_name, AssumeRolePolicyDocument=json.dumps(TRUST_POLICY), Tags=tag_list(d)
        )["Role"]
    # Again on every deploy: a run may have died before.
    iam.attach_role_policy(RoleName=d.role_name, PolicyArn=basic_execution(partition))
    return role["Arn"]


def delete_role(iam, d: params.Deploy) -> "bool | None":
    """True: deleted (its attached and inline policies first); False: not there; None: not ours."""
    try:
        if not tagged(iam.get_role(RoleName=d.role_name)["Role"].get("Tags"), d):
            return None
        for policy in pages(iam.list_attached_role_policies, "AttachedPolicies", RoleName=d.role_name):
            iam.detach_role_policy(RoleName=d.role_name, PolicyArn=policy["PolicyArn"])
        for name in pages(iam.list_role_policies, "PolicyNames", RoleName=d.role_name):
            iam.delete_role_policy(RoleName=d.role_name, PolicyName=name)
        iam.delete_role(RoleName=d.role_name)
        return True
    except iam.exceptions.NoSuchEntityException:
        return False


# ---------------------------------------------------------------- S3 (zips over the direct-upload limit)
BUCKET_RANDOM_BYTES = 4  # 8 hex characters no one can predict end the name


def bucket_prefix(d: params.Deploy, account: str) -> str:
    """The region is in the name: a bucket lives in one region, and Lambda reads zips from its own only.
    A long function name is what gets shortened, never the account or the region."""
    rest = f"-{account}-{d.region}-"
    room = limits.BUCKET_NAME_CHARS - 2 * BUCKET_RANDOM_BYTES - len(rest)
    return d.function_name[:room].lower().replace("_", "-") + rest  # bucket names: lowercase, no underscores


def made_buckets(s3, d: params.Deploy, account: str) -> list[str]:
    """The buckets deploy made itself (named and tagged by it, not deploy.s3_bucket). list_buckets lists
    only the caller's own, so a name someone else took is never one."""
    named = [b["Name"] for b in pages(s3.list_buckets, "Buckets") if b["Name"].startswith(bucket_prefix(d, account))]
    return [b for b in named if tagged(bucket_tags(s3, b, account), d)]


def bucket_tags(s3, bucket: str, account: str) -> list:
    try:
        return s3.get_bucket_tagging(Bucket=bucket, ExpectedBucketOwner=account)["TagSet"]
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] in ("NoSuchTagSet", "NoSuchBucket"):
            return []
        raise


def deploy_buckets(s3, d: params.Deploy, account: str) -> list[str]:
    return [d.s3_bucket] if d.s3_bucket else made_buckets(s3, d, account)


def upload_zip(s3, d: params.Deploy, account: str, archive, key: str) -> dict:
    found = deploy_buckets(s3, d, account)
    bucket = found[0] if found else d.s3_bucket or bucket_prefix(d, account) + secrets.token_hex(BUCKET_RANDOM_BYTES)
    owner = {"ExpectedBucketOwner": account}
    try:
        s3.head_bucket(Bucket=bucket, **owner)
    except botocore.exceptions.ClientError as e:
        if e.response["Error"]["Code"] not in ("404", "NoSuchBucket"):
            raise cli.UserError(f"S3 bucket {bucket} is not this account's ({e.response['Error']['Code']})") from None
        where = {} if d.region == "us-east-1" else {"CreateBucketConfiguration": {"LocationConstraint": d.region}}
        s3.create_bucket(Bucket=bucket, **where)
        block = dict.fromkeys(
            ("BlockPublicAcls", "IgnorePublicAcls", "BlockPublicPolicy", "RestrictPublicBuckets"), True
        )
        s3.put_public_access_block(Bucket=bucket, PublicAccessBlockConfiguration=block, **owner)
        s3.put_bucket_tagging(Bucket=bucket, Tagging={"TagSet": tag_list(d)}, **owner)
    s3.upload_file(str(archive), bucket, key, ExtraArgs=owner)
    return {"S3Bucket": bucket, "S3Key": key}


def delete_buckets(s3, d: params.Deploy, account: str) -> list[str]:
    """Empty and remove the buckets deploy made; a bucket named in deploy.s3_bucket is the user's:
    only the zips deploy put there (under <function_name>/) are removed."""
    gone = []
    for bucket in made_buckets(s3, d, account):
        with contextlib.suppress(s3.exceptions.NoSuchBucket):
            delete_objects(s3, bucket, account, prefix="")
            s3.delete_bucket(Bucket=bucket, ExpectedBucketOwner=account)
            gone.append(bucket)
    if d.s3_bucket:
        with contextlib.suppress(s3.exceptions.NoSuchBucket):
            delete_objects(s3, d.s3_bucket, account, prefix=f"{d.function_name}/")
    return gone


def delete_objects(s3, bucket: str, account: str, prefix: str) -> None:
    listing = s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix, ExpectedBucketOwner=account)
    for page in listing:
        for obj in page.get("Contents", []):
            s3.delete_object(Bucket=bucket, Key=obj["Key"], ExpectedBucketOwner=account)


# ---------------------------------------------------------------- CloudWatch Logs
def log_group(d: params.Deploy) -> str:
    return f"/aws/lambda/{d.function_name}"


def ensure_log_group(logs, d: params.Deploy) -> None:
    """Before the function's first invocation: Lambda would otherwise create it, keeping logs forever."""
    with contextlib.suppress(logs.exceptions.ResourceAlreadyExistsException):
        logs.create_log_group(logGroupName=log_group(d), tags=tags(d))
    logs.put_retention_policy(logGroupName=log_group(d), retentionInDays=d.log_retention_days)


def delete_log_group(logs, d: params.Deploy, account: str, partition: str) -> "bool | None":
    """True: deleted; False: not there; None: not ours (made by Lambda, or by hand)."""
    arn = f"arn:{partition}:logs:{d.region}:{account}:log-group:{log_group(d)}"
    try:
        if not tagged(logs.list_tags_for_resource(resourceArn=arn).get("tags"), d):
            return None
        logs.delete_log_group(logGroupName=log_group(d))
        return True
    except logs.exceptions.ResourceNotFoundException:
        return False


# ---------------------------------------------------------------- API Gateway (HTTP API)
def find_apis(apigw, d: params.Deploy, ours: bool = True) -> list[dict]:
    """APIs of this name that deploy made (ours) or that it did not: API names are not unique."""
    return [a for a in pages(apigw.get_apis, "Items") if a["Name"] == d.api_name and tagged(a.get("Tags"), d) == ours]


def adopt(apigw, d: params.Deploy, alias_arn: str, partition: str) -> list[dict]:
    """The API an earlier version of this deployer made before it tagged what it made: this name,
    untagged, its POST /predict routed to this function's 'live'. Tagged (its stages too: their writes
    need the tag) and reused: a second API would take the one invoke permission from the URL clients
    use. An untagged API of another shape is someone else's, left alone; two of this shape: refused."""
    found = []
    for api in find_apis(apigw, d, ours=False):
        uris = {
            i["IntegrationId"]: i["IntegrationUri"] for i in pages(apigw.get_integrations, "Items", ApiId=api["ApiId"])
        }
        routes = [r for r in pages(apigw.get_routes, "Items", ApiId=api["ApiId"]) if r["RouteKey"] == ROUTE]
        if any(uris.get(r.get("Target", "").removeprefix("integrations/")) == alias_arn for r in routes):
            found.append(api)
    if len(found) > 1:
        ids = ", ".join(a["ApiId"] for a in found)
        raise cli.UserError(
            f"{len(found)} untagged HTTP APIs named {d.api_name} route {ROUTE} to {d.function_name}:live ({ids}): tag "
            f"the one clients use with {TAG}={d.function_name} (aws apigatewayv2 tag-resource), then deploy again"
        )
    for api in found:
        arn = f"arn:{partition}:apigateway:{d.region}::/apis/{api['ApiId']}"
        apigw.tag_resource(ResourceArn=arn, Tags=tags(d))
        for stage in pages(apigw.get_stages, "Items", ApiId=api["ApiId"]):
            apigw.tag_resource(ResourceArn=f"{arn}/stages/{stage['StageName']}", Tags=tags(d))
        print(f"API {d.api_name} ({api['ApiId']}) was made by an earlier deployer, untagged: tagged and kept")
    return found


def ensure_api(apigw, lam, d: params.Deploy, alias_arn: str, account: str, partition: str) -> str:
    apis = find_apis(apigw, d) or adopt(apigw, d, alias_arn, partition)
    api = apis[0] if apis else apigw.create_api(Name=d.api_name, ProtocolType="HTTP", Tags=tags(d))
    api_id = api["ApiId"]
    integrations = [i for i in pages(apigw.get_integrations, "Items", ApiId=api_id) if i["IntegrationUri"] == alias_arn]
    integration = (
        integrations[0]
        if integrations
        else apigw.create_integration(
            ApiId=api_id, IntegrationType="AWS_PROXY", IntegrationUri=alias_arn, PayloadFormatVersion="2.0"
        )
    )
    target = f"integrations/{integration['IntegrationId']}"
    routes = [r for r in pages(apigw.get_routes, "Items", ApiId=api_id) if r["RouteKey"] == ROUTE]
    if not routes:
        apigw.create_route(ApiId=api_id, RouteKey=ROUTE, Target=target)
    elif routes[0].get("Target") != target:
        apigw.update_route(ApiId=api_id, RouteId=routes[0]["RouteId"], Target=target)
    throttle = {"ThrottlingRateLimit": d.throttle_rate, "ThrottlingBurstLimit": d.throttle_burst}
    stages = [s for s in pages(apigw.get_stages, "Items", ApiId=api_id) if s["StageName"] == "$default"]
    if stages:
        now = stages[0].get("DefaultRouteSettings", {})
        if any(now.get(k) != v for k, v in throttle.items()):  # the params changed since
            apigw.update_stage(ApiId=api_id, StageName="$default", DefaultRouteSettings=throttle)
    else:
        stage = {"StageName": "$default", "AutoDeploy": True, "DefaultRouteSettings": throttle}
        apigw.create_stage(ApiId=api_id, **stage, Tags=tags(d))  # a stage takes no tags from its API
    allow_api(lam, d, f"arn:{partition}:execute-api:{d.region}:{account}:{api_id}/*/*/predict")
    return api_url(api, d)


def api_url(api: dict, d: params.Deploy) -> str:
    """The URL clients POST photos to: the API's endpoint and the route's path."""
    default = f"https://{api['ApiId']}.execute-api.{d.region}.amazonaws.com"
    return f"{api.get('ApiEndpoint', default)}/predict"


def allow_api(lam, d: params.Deploy, source_arn: str) -> None:
    """The permission for this API to invoke 'live'; one left from a deleted API is replaced."""
    try:
        policy = json.loads(lam.get_policy(FunctionName=d.function_name, Qualifier="live")["Policy"])
    except lam.exceptions.ResourceNotFoundException:
        policy = {"Statement": []}
    ours = [s for s in policy["Statement"] if s.get("Sid") == PERMISSION_ID]
    if ours and json.dumps(source_arn) in json.dumps(ours[0].get("Condition", {})):
        return
    if ours:
        lam.remove_permission(FunctionName=d.function_name, Qualifier="live", StatementId=PERMISSION_ID)
    lam.add_permission(
        FunctionName=d.function_name,
        Qualifier="live",
        StatementId=PERMISSION_ID,
        Action="lambda:InvokeFunction",
        Principal="apigateway.amazonaws.com",
        SourceArn=source_arn,
    )


def disallow_api(lam, d: params.Deploy) -> None:
    """The API's permission to invoke 'live' removed, once deploy deleted the API (deploy.endpoint function_url)."""
    with contextlib.suppress(lam.exceptions.ResourceNotFoundException):  # none there
        lam.remove_permission(FunctionName=d.function_name, Qualifier="live", StatementId=PERMISSION_ID)
