"""Lambda function URLs as the Lambda-like proxy plays them (lambda_proxy.py), where moto cannot:

- Create/Get/Update/DeleteFunctionUrlConfig per qualifier: moto 5.2 ignores the Qualifier (one
  config per function, its FunctionArn unqualified), so a URL on 'live' is kept here, with AWS's
  answers (FunctionArn qualified; 404 ResourceNotFoundException when there is none; 409
  ResourceConflictException for a second one). A deleted function loses its URLs.
- A request to https://<id>.lambda-url.<region>.on.aws (the proxy's address, the URL's host in the
  Host header) is authorized as Lambda does: AWS_IAM needs a SigV4 signature for service lambda;
  NONE needs the alias's resource policy to let "*" lambda:InvokeFunctionUrl with
  lambda:FunctionUrlAuthType NONE and lambda:InvokeFunction through the URL (both since October
  2025), else 403 {"Message": "Forbidden"}. Then the qualifier is invoked (the alias's image, run
  by the proxy; moto's configurable answer for a zip it cannot run) with a payload format 2.0
  event built from the request as Lambda builds it, and the answer turned into HTTP: a
  {statusCode, headers, body, isBase64Encoded} answer as given, any other JSON as a 200 JSON body,
  a function error as 502 "Internal Server Error".
- A request to an HTTP API's https://<api id>.execute-api.<region>.amazonaws.com/<route> likewise
  (moto answers none): its route's AWS_PROXY integration invoked with a 2.0 event (routeKey and
  stage as API Gateway sends them) where the function's policy lets apigateway.amazonaws.com invoke
  it from this API (else 500 {"message":"Internal Server Error"}, as API Gateway answers); no route:
  404 {"message":"Not Found"}; a function error: 502 {"message":"Internal Server Error"}.
"""

import base64
import json
import re
import secrets
import time
import uuid
from datetime import UTC, datetime

from pipeline.gateway import URL_FUNCTION_ERROR  # what make serve's function-URL gateway answers too

URL_CONFIG = re.compile(r"^/2021-10-31/functions/([^/]+)/url/?$")
API_HOST = re.compile(r"^([a-z0-9]+)\.execute-api\.([a-z0-9-]+)\.amazonaws\.com(:\d+)?$")
URL_HOST = re.compile(r"^([a-z0-9]+)\.lambda-url\.([a-z0-9-]+)\.on\.aws(:\d+)?$")
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/javascript")
FORBIDDEN = (403, {"Content-Type": "application/json", "x-amzn-ErrorType": "AccessDeniedException"},
             b'{"Message":"Forbidden"}')  # fmt: skip


class FunctionUrls:
    def __init__(self, proxy):
        self.proxy = proxy
        self.configs = {}  # (region, function, qualifier) -> config as GetFunctionUrlConfig answers it
        self.calls = []  # each request to a URL: its host, the status answered, when
        self.on_call = None  # a test's hook, called with the URL before each request is answered

    # ------------------------------------------------------------------ the configuration API
    def config(self, method: str, name: str, qualifier: "str | None", body: bytes):
        region = self.proxy.signed.region
        lam = self.proxy.lam
        try:
            fn = lam.get_function_configuration(FunctionName=name)
        except lam.exceptions.ResourceNotFoundException:
            return self.proxy_error(404, "ResourceNotFoundException", f"Function not found: {name}")
        key = (region, fn["FunctionName"], qualifier or "$LATEST")
        found = self.configs.get(key)
        if method == "GET":
            return reply(200, found) if found else self.not_found(name)
        if method == "DELETE":
            if not found:
                return self.not_found(name)
            del self.configs[key]
            return 204, {}, b""
        spec = json.loads(body or b"{}")
        if method == "POST":
            if found:
                message = (
                    f"Failed to create function url config for [functionArn = {fn['FunctionArn']}]. Error message: "
                    " FunctionUrlConfig exists for this Lambda function"
                )
                return self.proxy_error(409, "ResourceConflictException", message)
            now = datetime.now(UTC).isoformat(timespec="milliseconds")
            arn = fn["FunctionArn"] + (f":{qualifier}" if qualifier else "")
            found = self.configs[key] = {
                "FunctionUrl": f"https://{secrets.token_hex(16)}.lambda-url.{region}.on.aws/",
                "FunctionArn": arn, "AuthType": spec["AuthType"], "CreationTime": now, "LastModifiedTime": now,
                "InvokeMode": spec.get("InvokeMode", "BUFFERED"), **({"Cors": spec["Cors"]} if "Cors" in spec else {}),
            }  # fmt: skip
            return reply(201, found)
        if not found:
            return self.not_found(name)
        found.update({k: spec[k] for k in ("AuthType", "Cors", "InvokeMode") if k in spec})
        found["LastModifiedTime"] = datetime.now(UTC).isoformat(timespec="milliseconds")
        return reply(200, found)

    def forget(self, name: str) -> None:
        """DeleteFunction takes its URLs with it."""
        for key in [k for k in self.configs if k[1] == name]:
            del self.configs[key]

    def not_found(self, name: str):
        return self.proxy_error(
            404, "ResourceNotFoundException", f"The resource you requested does not exist. ({name})"
        )

    def proxy_error(self, status: int, code: str, message: str):
        answer = reply(status, {"Type": "User", "Message": message})
        answer[1]["x-amzn-ErrorType"] = code
        return answer

    # ------------------------------------------------------------------ a request to a URL
    def owner(self, host: str) -> "tuple[str, str, str, dict] | None":
        m = URL_HOST.match(host)
        if not m:
            return None
        for (region, name, qualifier), config in self.configs.items():
            if config["FunctionUrl"] == f"https://{m.group(1)}.lambda-url.{m.group(2)}.on.aws/":
                return region, name, qualifier, config
        return None

    def call(self, method: str, path: str, raw_query: str, body: bytes, headers):
        host = headers.get("Host", "")
        if m := API_HOST.match(host):
            return self.call_api(m.group(1), m.group(2), method, path, raw_query, body, headers, host)
        found = self.owner(host)
        if found is None:
            return None  # not a function URL's host: the proxy's other answers
        region, name, qualifier, config = found
        if self.on_call:
            self.on_call(config["FunctionUrl"])
        self.proxy.signed.region = region
        status, answer_headers, content = self.authorized(config, name, qualifier, headers) or self.invoke(
            name, qualifier, method, path, raw_query, body, headers, host
        )
        self.calls.append({"url": config["FunctionUrl"], "status": status, "at": time.monotonic()})
        return status, answer_headers, content

    def authorized(self, config: dict, name: str, qualifier: str, headers) -> "tuple | None":
        """None where Lambda lets the request through, else its 403."""
        if config["AuthType"] == "AWS_IAM":
            signed = headers.get("Authorization", "")
            return None if signed.startswith("AWS4-HMAC-SHA256") and "/lambda/aws4_request" in signed else FORBIDDEN
        try:
            statements = json.loads(self.proxy.lam.get_policy(FunctionName=name, Qualifier=qualifier)["Policy"])
        except self.proxy.lam.exceptions.ResourceNotFoundException:
            return FORBIDDEN
        granted = set()
        for s in statements["Statement"]:
            everyone = s.get("Principal") in ("*", {"AWS": "*"})
            text = json.dumps(s)
            if not everyone or s.get("Effect") != "Allow":
                continue
            if s.get("Action") == "lambda:InvokeFunctionUrl" and '"NONE"' in text and "FunctionUrlAuthType" in text:
                granted.add("url")
            if s.get("Action") == "lambda:InvokeFunction" and "InvokedViaFunctionUrl" in text:
                granted.add("invoke")
        return None if granted == {"url", "invoke"} else FORBIDDEN

    def call_api(self, api_id, region, method, path, raw_query, body, headers, host):
        import boto3

        self.proxy.signed.region = region
        apigw = boto3.client("apigatewayv2", endpoint_url=self.proxy.moto, region_name=region,
                             aws_access_key_id="testing", aws_secret_access_key="testing")  # fmt: skip
        not_found = (404, {"Content-Type": "application/json"}, b'{"message":"Not Found"}')
        try:
            routes = apigw.get_routes(ApiId=api_id)["Items"]
        except apigw.exceptions.NotFoundException:
            return not_found
        route = next((r for r in routes if r["RouteKey"] == f"{method} {path}"), None)
        if route is None:
            return not_found
        integration = apigw.get_integration(ApiId=api_id, IntegrationId=route["Target"].split("/")[-1])
        arn = integration["IntegrationUri"]  # arn:aws:lambda:REGION:ACCOUNT:function:NAME:QUALIFIER
        name, qualifier = arn.split(":")[6], (arn.split(":")[7:] or ["$LATEST"])[0]
        try:
            policy = self.proxy.lam.get_policy(FunctionName=name, Qualifier=qualifier)["Policy"]
        except self.proxy.lam.exceptions.ResourceNotFoundException:
            policy = ""
        if f":{api_id}/" not in policy or "apigateway.amazonaws.com" not in policy:
            return 500, {"Content-Type": "application/json"}, b'{"message":"Internal Server Error"}'
        if self.on_call:
            self.on_call(f"https://{host}{path}")
        status, answer_headers, content = self.invoke(
            name, qualifier, method, path, raw_query, body, headers, host, route=route["RouteKey"]
        )
        if status == 502:  # API Gateway's words for a function error
            content = b'{"message":"Internal Server Error"}'
        self.calls.append({"url": f"https://{host}{path}", "status": status, "at": time.monotonic()})
        return status, answer_headers, content

    def invoke(self, name, qualifier, method, path, raw_query, body, headers, host, route="$default"):
        lowered = {k.lower(): v for k, v in headers.items()}
        text = any(lowered.get("content-type", "").startswith(t) for t in TEXT_TYPES)
        now = datetime.now(UTC)
        url_id = host.split(".")[0]
        event = {
            "version": "2.0", "routeKey": route, "rawPath": path, "rawQueryString": raw_query,
            "headers": {k: v for k, v in lowered.items() if k not in ("authorization",)},
            "requestContext": {
                "accountId": "anonymous", "apiId": url_id, "domainName": host.split(":")[0], "domainPrefix": url_id,
                "http": {"method": method, "path": path, "protocol": "HTTP/1.1", "sourceIp": "127.0.0.1",
                         "userAgent": lowered.get("user-agent", "")},
                "requestId": str(uuid.uuid4()), "routeKey": route, "stage": "$default",
                "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"), "timeEpoch": int(now.timestamp() * 1000),
            },
            "isBase64Encoded": not text,
        }  # fmt: skip
        if body:
            event["body"] = body.decode() if text else base64.b64encode(body).decode()
        payload = json.dumps(event).encode()
        ran = self.proxy.invoke(name, qualifier, payload)
        if ran is None:  # a zip the proxy cannot run: moto's configurable answer
            done = self.proxy.lam.invoke(FunctionName=name, Qualifier=qualifier, Payload=payload)
            failed, content = bool(done.get("FunctionError")), done["Payload"].read()
        else:
            failed, content = "X-Amz-Function-Error" in ran[1], ran[2]
        return http_answer(failed, content)


def http_answer(failed: bool, content: bytes) -> tuple[int, dict, bytes]:
    """The function's answer as a function URL sends it (payload format 2.0's response rules)."""
    if failed:
        return 502, {"Content-Type": "text/plain"}, URL_FUNCTION_ERROR
    try:
        answer = json.loads(content)
    except ValueError:
        return 502, {"Content-Type": "text/plain"}, URL_FUNCTION_ERROR
    if isinstance(answer, dict) and "statusCode" in answer:
        body = answer.get("body") or ""
        data = base64.b64decode(body) if answer.get("isBase64Encoded") else body.encode()
        return int(answer["statusCode"]), {"Content-Type": "application/json", **(answer.get("headers") or {})}, data
    return 200, {"Content-Type": "application/json"}, json.dumps(answer).encode()


def reply(status: int, document: dict) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(document, default=str).encode()
