"""A proxy on 127.0.0.1 in front of moto that answers as Lambda does where moto cannot or does not,
and passes every other call through unchanged:

- Invoke of an image function runs the exact image digest the function (or the version) names,
  pulled from the local registry, with podman under the image's runtime interface emulator, and
  returns its real answer (moto cannot run image functions). One container per image, environment
  and memory size is kept warm, as Lambda keeps an execution environment.
- Invoke of a zip function, where the proxy is given a stand-in base for its architecture and
  runtime (zip_bases, keyed by both: the base's Python is the runtime's): the zip deploy uploaded (its
  CodeSha256 names it), unzipped into /var/task of the base, run under the base's emulator with the
  function's Handler. Elsewhere moto's configurable answer, as before.
- The function's architecture is the container's: an arm64 function runs as arm64 (qemu through
  binfmt_misc, Graviton2's CPU model) with /sys/devices/system/cpu/possible and present absent,
  as Lambda's Graviton hosts have them.
- Invoke with LogType=Tail answers with the last 4 KB of the container's log from that invocation
  (X-Amz-Log-Result, base64), as Lambda does: the emulator's own START, END and REPORT lines.
- PublishVersion when code and configuration did not change since the last version hands back
  that version, as Lambda does (moto publishes a new one after any update call).
- GetAccountSettings (moto has none) answers with an account's concurrency limits.
- Each request is answered in the region it was signed for (moto keeps functions per region).
- A version's GetFunction and Invoke name the image it was published with (moto's versions share
  $LATEST's Code, so they follow a later UpdateFunctionCode).
- TagResource on an HTTP API's stage is answered (moto routes it for an API's ARN only).
- Function URLs: their configuration per alias, and requests to them (function_urls.py).
- SnapStart: its setting, and a published version's snapshot (Pending, then On; snapstart_play.py).
- UpdateAlias with a RevisionId that is not the alias's latest is refused (PreconditionFailedException),
  and every change of an alias gives it a new RevisionId, as Lambda does (moto ignores RevisionId and
  never changes it).
- CloudWatch's judgement of an alarm, which moto never makes: judge_alarms over the EMF lines the
  function's containers wrote (emf_documents) or a test's, with each alarm's own settings.
- Given the caller's IAM policy (caller_policy), CreateFunction/UpdateFunctionCode from an S3 zip
  it cannot s3:GetObject is refused as Lambda refuses it (Lambda reads the zip as the caller).
- On request, the refusals and states a real account shows: a new role Lambda cannot assume yet,
  an Inactive version (its first Invoke fails while Lambda restores it), an update in progress (in
  GetFunction's answer, or refusing DeleteFunction), a function whose creation Failed.
"""

import base64
import contextlib
import dataclasses
import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import threading
import time
import uuid
import zipfile
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

import boto3
import requests
from function_urls import URL_CONFIG, FunctionUrls
from moto.iam.access_control import IAMPolicy, PermissionResult  # moto's own IAM policy evaluation
from snapstart_play import SnapStarts

from pipeline.emulators import CPU_MODELS
from pipeline.gateway import INVOKE_PATH
from pipeline.serve import free_port

FUNCTIONS = re.compile(r"^/2015-03-31/functions/?$")
FUNCTION = re.compile(r"^/2015-03-31/functions/([^/]+)(/configuration)?/?$")
CODE = re.compile(r"^/2015-03-31/functions/([^/]+)/code/?$")
INVOCATIONS = re.compile(r"^/2015-03-31/functions/([^/]+)/invocations/?$")
VERSIONS = re.compile(r"^/2015-03-31/functions/([^/]+)/versions/?$")
ACCOUNT_SETTINGS = re.compile(r"^/2016-08-19/account-settings/?$")
FUNCTION_CODE = re.compile(r"^/2015-03-31/functions/[^/]+/code/?$")
ALIAS = re.compile(r"^/2015-03-31/functions/([^/]+)/aliases/([^/]+)/?$")
ALIASES = re.compile(r"^/2015-03-31/functions/([^/]+)/aliases/?$")
REVISION_MISMATCH = (
    "The Revision Id provided does not match the latest Revision Id. Call the GetAlias API to retrieve the latest "
    "Revision Id"
)
STAGE_TAGS = re.compile(r"^/v2/tags/(arn:[^/]+::/apis/[^/]+/stages/[^/]+)$")  # TagResource on an HTTP API's stage
SIGNED_REGION = re.compile(r"Credential=[^/]+/[^/]+/([^/]+)/")  # SigV4: .../DATE/REGION/SERVICE/aws4_request
# AWS's own words for each refusal the proxy can make.
S3_ZIP_DENIED = (
    "Your access has been denied by S3, please make sure your request credentials have permission to GetObject for "
    "{bucket}/{key}. S3 Error Code: AccessDenied. S3 Error Message: Access Denied"
)
ROLE_NOT_READY = "The role defined for the function cannot be assumed by Lambda."
RESTORING = "ERROR: Lambda is initializing your function. It will be ready to invoke shortly."
# What PublishVersion compares: the code and the configuration a version freezes.
VERSIONED = (
    *("CodeSha256", "PackageType", "Runtime", "Handler", "Role", "MemorySize", "Timeout", "Environment"),
    *("Architectures", "ImageConfigResponse", "Layers", "EphemeralStorage", "VpcConfig", "TracingConfig"),
)
PODMAN_RUN = ["--runtime", "runc", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1000:1000"]  # docs/toolchain.md
ANSWER_S = 120  # a container's first answer includes its start and the model's load on a loaded 2-core machine
EMULATED_ANSWER_S = 600  # the same under qemu (an arm64 function): Python, the runtime and the model all emulated
TAIL_BYTES = 4096  # what LogType=Tail returns: the end of the invocation's log
REPORT_S = 10  # the emulator writes the REPORT line just after the answer
PLATFORMS = {"x86_64": "amd64", "arm64": "arm64"}  # Lambda's architecture -> podman's --arch
# What Lambda's Graviton (arm64) hosts do not have; cpuinfo (ONNX Runtime, XNNPACK) reads both first.
HIDDEN_ON_ARM64 = ("possible", "present")
CPU_SYS = "/sys/devices/system/cpu"


class LambdaProxy:
    def __init__(self, moto: str, registry: str, zip_bases: "dict | None" = None):
        self.moto, self.registry = moto, registry
        self.zip_bases = zip_bases or {}  # (architecture, runtime) -> the stand-in base that runs such zips
        self.code = Path(tempfile.mkdtemp(prefix="lambda-proxy-", dir="/var/tmp"))  # zips kept, and unzipped
        self.zips = {}  # CodeSha256 -> the zip deploy uploaded (where zip_bases asks for them to run)
        self.creds: str | None = None  # user:password, for a registry that asks for a login
        self.lams = {}  # region -> a client of moto's Lambda there (moto keeps functions per region)
        self.signed = threading.local()  # the region the request being answered was signed for
        self.lock = threading.Lock()
        self.containers = {}  # (Run, environment, memory) -> (container id, port, the image's repo digests)
        self.busy = defaultdict(threading.Lock)  # container id -> held during an invoke (one at a time, as Lambda)
        self.invocations = []  # each Invoke the proxy ran: function, qualifier, version, image, repo digests
        self.role_refusals = defaultdict(list)  # function -> times CreateFunction was refused
        self.refuse_role = {}  # function -> seconds from its first CreateFunction to refuse it
        self.inactive = set()  # (function, version) that are Inactive until invoked
        self.pending_reads = defaultdict(int)  # (function, qualifier) -> reads that still say Pending / InProgress
        self.failed = {}  # function -> why its creation failed (until it is deleted)
        self.fail_creation = {}  # function -> reason: the next CreateFunction leaves it Failed
        self.refuse_delete = defaultdict(int)  # function -> DeleteFunction calls still refused (update in progress)
        self.account = {"ConcurrentExecutions": 1000, "UnreservedConcurrentExecutions": 1000}
        self.caller_policy = None  # the caller's IAM policy (JSON), if a test gives one: S3 zips it cannot read fail
        self.images = {}  # (function, CodeSha256) -> the ImageUri it was published with (remember_image)
        self.stage_tags = {}  # stage ARN -> tags: moto routes TagResource for an API's ARN only, not a stage's
        self.calls = []  # every request, in order: method, path, X-Amz-Target (JSON APIs), body
        self.urls = FunctionUrls(self)  # function URLs: their configuration, and requests to them (function_urls.py)
        self.snaps = SnapStarts(self)  # SnapStart's setting and snapshots (snapstart_play.py)
        self.revisions = {}  # (function, alias) -> its RevisionId as Lambda would give it (moto never changes one)
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"  # keep-alive, and 100-continue for S3 uploads

            def handle_one(self):
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                url = urlsplit(self.path)
                path, query = unquote(url.path), parse_qs(url.query)
                target = self.headers.get("X-Amz-Target", "")
                proxy.calls.append({"method": self.command, "path": path, "target": target, "body": body[:2000]})
                try:
                    answer = proxy.answer(self.command, path, query, body, self.headers)
                    if answer is None:
                        answer = proxy.forward(self.command, self.path, dict(self.headers), body)
                except Exception as e:  # the proxy's own failure, as a 4xx (boto3 would retry a 5xx) that names it
                    answer = error(400, "TestProxyError", f"{type(e).__name__}: {e}"[:500])
                status, headers, content = answer
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(content)))
                self.end_headers()
                self.wfile.write(content)

            do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = handle_one

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def emf_documents(self) -> list[dict]:
        """Every EMF document (one a request) the function's containers wrote so far: what CloudWatch Logs
        would receive and make the function's metrics from (judge_alarms)."""
        found = []
        for container, *_ in list(self.containers.values()):
            for line in container_log(container).decode(errors="replace").splitlines():
                with contextlib.suppress(ValueError):
                    document = json.loads(line)
                    if isinstance(document, dict) and "_aws" in document:
                        found.append(document)
        return found

    def close(self) -> None:
        self.server.shutdown()
        for container, *_ in self.containers.values():
            subprocess.run(["podman", "rm", "-f", container], capture_output=True, timeout=60)
        shutil.rmtree(self.code, ignore_errors=True)

    # ------------------------------------------------------------------ what passes through
    def forward(self, method: str, path: str, headers: dict, body: bytes) -> tuple[int, dict, bytes]:
        skip = ("host", "content-length", "expect", "connection")
        headers = {k: v for k, v in headers.items() if k.lower() not in skip}
        answer = requests.request(method, self.moto + path, headers=headers, data=body, timeout=120)
        drop = ("content-length", "transfer-encoding", "connection", "content-encoding")
        return answer.status_code, {k: v for k, v in answer.headers.items() if k.lower() not in drop}, answer.content

    # ------------------------------------------------------------------ what Lambda answers itself
    @property
    def lam(self):
        """moto's Lambda in the region of the request being answered (us-east-1 outside a request)."""
        region = getattr(self.signed, "region", "us-east-1")
        with self.lock:
            if region not in self.lams:
                self.lams[region] = boto3.session.Session().client(
                    "lambda", endpoint_url=self.moto, region_name=region, aws_access_key_id="testing",
                    aws_secret_access_key="testing",
                )  # fmt: skip
            return self.lams[region]

    def answer(self, method: str, path: str, query: dict, body: bytes, headers) -> "tuple[int, dict, bytes] | None":
        qualifier = (query.get("Qualifier") or ["$LATEST"])[0]
        signed = SIGNED_REGION.search(headers.get("Authorization", ""))
        self.signed.region = signed.group(1) if signed else "us-east-1"
        raw_query = "&".join(f"{k}={v}" for k, values in query.items() for v in values)
        if (door := self.urls.call(method, path, raw_query, body, headers)) is not None:
            return door
        if m := URL_CONFIG.match(path):
            return self.urls.config(method, m.group(1), (query.get("Qualifier") or [None])[0], body)
        if method == "PUT" and (m := FUNCTION.match(path)) and m.group(2):
            self.snaps.record(m.group(1), json.loads(body or b"{}"))
        if denied := self.s3_zip_denied(method, path, body):
            return denied
        if (m := ALIAS.match(path)) or (method == "POST" and (m := ALIASES.match(path))):
            return self.alias(method, path, body, headers, m.group(1), m.group(2) if m.re is ALIAS else None)
        if method == "POST" and (m := STAGE_TAGS.match(path)):
            self.stage_tags.setdefault(m.group(1), {}).update(json.loads(body).get("tags", {}))
            return 201, {"Content-Type": "application/json"}, b"{}"
        if method == "POST" and FUNCTIONS.match(path):
            spec = json.loads(body)
            self.keep_zip(spec.get("Code") or {})
            return self.create(spec)
        if method == "PUT" and CODE.match(path):
            self.keep_zip(json.loads(body))
            return None  # moto's own answer: the proxy only keeps a copy of the zip
        if method == "POST" and (m := INVOCATIONS.match(path)):
            return self.invoke(m.group(1), qualifier, body, tail=headers.get("X-Amz-Log-Type") == "Tail")
        if method == "POST" and (m := VERSIONS.match(path)):
            self.remember_image(m.group(1))
            self.snaps.published(m.group(1))
            return self.publish(m.group(1))
        if method == "GET" and ACCOUNT_SETTINGS.match(path):
            return reply(200, {"AccountLimit": self.account, "AccountUsage": {"FunctionCount": 0}})
        if method == "GET" and (m := FUNCTION.match(path)):
            return self.state(m.group(1), qualifier, configuration=bool(m.group(2)))
        if method == "DELETE" and (m := FUNCTION.match(path)) and not m.group(2):
            name = m.group(1)
            if self.refuse_delete[name] > 0:
                self.refuse_delete[name] -= 1
                arn = f"arn:aws:lambda:us-east-1:123456789012:function:{name}"
                message = (
                    f"The operation cannot be performed at this time. An update is in progress for resource: {arn}"
                )
                return error(409, "ResourceConflictException", message)
            self.failed.pop(name, None)
            if qualifier == "$LATEST":  # the function itself, not one version: its URLs go with it
                self.urls.forget(name)
            if qualifier == "$LATEST":  # the function itself, not one version: its aliases go with it
                self.revisions = {k: v for k, v in self.revisions.items() if k[0] != name}
        return None

    def alias(self, method: str, path: str, body: bytes, headers, name: str, alias: "str | None"):
        """An alias call answered by moto, with Lambda's RevisionId: UpdateAlias naming another than the
        latest is refused, and each change gives the alias a new one."""
        if method == "POST":
            alias = json.loads(body).get("Name")
        key = (name, alias)
        if method == "PUT":
            given = json.loads(body).get("RevisionId")
            latest = self.revisions.get(key)
            if given and latest and given != latest:
                return error(412, "PreconditionFailedException", REVISION_MISMATCH)
        status, answer_headers, content = self.forward(method, path, dict(headers), body)
        if status >= 300:
            return status, answer_headers, content
        if method == "DELETE":
            self.revisions.pop(key, None)
            return status, answer_headers, content
        document = json.loads(content)
        if method == "PUT":
            self.revisions[key] = str(uuid.uuid4())
        self.revisions.setdefault(key, document.get("RevisionId"))
        document["RevisionId"] = self.revisions[key]
        return status, {**answer_headers, "Content-Type": "application/json"}, json.dumps(document).encode()

    def s3_zip_denied(self, method: str, path: str, body: bytes) -> "tuple[int, dict, bytes] | None":
        """AWS's refusal of CreateFunction or UpdateFunctionCode from an S3 zip that the caller's policy
        cannot read: Lambda fetches the object with the caller's credentials, not its own."""
        if self.caller_policy is None:
            return None
        if method == "POST" and FUNCTIONS.match(path):
            code = json.loads(body).get("Code") or {}
        elif method == "PUT" and FUNCTION_CODE.match(path):
            code = json.loads(body)
        else:
            return None
        if "S3Bucket" not in code:
            return None
        readable = IAMPolicy(self.caller_policy).is_action_permitted(
            "s3:GetObject", f"arn:aws:s3:::{code['S3Bucket']}/{code['S3Key']}"
        )
        if readable == PermissionResult.PERMITTED:
            return None
        return error(403, "AccessDeniedException", S3_ZIP_DENIED.format(bucket=code["S3Bucket"], key=code["S3Key"]))

    def create(self, spec: dict) -> "tuple[int, dict, bytes] | None":
        name = spec.get("FunctionName")
        self.snaps.record(name, spec)
        if name in self.refuse_role:
            refused = self.role_refusals[name]
            if not refused or time.monotonic() - refused[0] < self.refuse_role[name]:
                refused.append(time.monotonic())
                return error(400, "InvalidParameterValueException", ROLE_NOT_READY)
        if name in self.fail_creation:
            self.failed[name] = self.fail_creation.pop(name)
        return None

    def state(self, name: str, qualifier: str, configuration: bool) -> "tuple[int, dict, bytes] | None":
        """moto says Active and Successful always: the states a real function passes through, where asked for."""
        patch = {}
        version = qualifier if qualifier != "$LATEST" else None
        if name in self.failed:
            patch = {"State": "Failed", "StateReasonCode": "ImageAccessDenied", "StateReason": self.failed[name]}
        elif version and (name, version) in self.inactive:
            patch = {"State": "Inactive", "StateReasonCode": "Idle", "StateReason": "The function is idle."}
        elif self.pending_reads[(name, qualifier)] > 0:
            self.pending_reads[(name, qualifier)] -= 1
            patch = {"State": "Pending"} if version else {"LastUpdateStatus": "InProgress"}
        patch = {**self.snaps.patch(name, qualifier), **patch}
        if not patch and (configuration or version is None):  # a version's image: moto's may be $LATEST's
            return None
        try:
            if configuration:
                document = self.lam.get_function_configuration(FunctionName=name, Qualifier=qualifier)
            else:
                document = self.lam.get_function(FunctionName=name, Qualifier=qualifier)
        except self.lam.exceptions.ResourceNotFoundException:
            return None  # moto's own answer
        document.pop("ResponseMetadata", None)
        if not configuration:
            self.published_image(name, qualifier, document)
        (document if configuration else document["Configuration"]).update(patch)
        return reply(200, document)

    def remember_image(self, name: str) -> None:
        """The image $LATEST runs as it is published: moto's versions share $LATEST's Code, so after an
        UpdateFunctionCode a version reports (and would run) the new image instead of its own."""
        try:
            fn = self.lam.get_function(FunctionName=name)
        except self.lam.exceptions.ResourceNotFoundException:
            return
        if "ImageUri" in fn.get("Code", {}):
            self.images[(name, fn["Configuration"]["CodeSha256"])] = fn["Code"]["ImageUri"]

    def published_image(self, name: str, qualifier: str, fn: dict) -> None:
        """A version's (or alias's) GetFunction answer with the image it was published with, as Lambda answers."""
        known = self.images.get((name, fn["Configuration"].get("CodeSha256")))
        if qualifier != "$LATEST" and known and "ImageUri" in fn.get("Code", {}):
            fn["Code"]["ImageUri"] = known

    def publish(self, name: str) -> "tuple[int, dict, bytes] | None":
        try:
            latest = self.lam.get_function_configuration(FunctionName=name)
        except self.lam.exceptions.ResourceNotFoundException:
            return None  # moto's own answer
        pages = self.lam.get_paginator("list_versions_by_function").paginate(FunctionName=name)
        published = [v for page in pages for v in page["Versions"] if v["Version"] != "$LATEST"]
        if published:
            last = max(published, key=lambda v: int(v["Version"]))
            if all(latest.get(k) == last.get(k) for k in VERSIONED):
                return reply(201, last)  # "Lambda doesn't publish a version if nothing changed"
        return None

    def invoke(self, name: str, qualifier: str, event: bytes, tail: bool = False) -> "tuple[int, dict, bytes] | None":
        try:
            fn = self.lam.get_function(FunctionName=name, Qualifier=qualifier)
        except self.lam.exceptions.ResourceNotFoundException:
            return None  # moto's own answer
        self.published_image(name, qualifier, fn)
        config = fn["Configuration"]
        if config.get("PackageType") == "Image":
            # The registry's copy of exactly the digest the function names (ECR's host replaced by the local one).
            image, command, mounts = f"{self.registry}/{fn['Code']['ImageUri'].split('/', 1)[1]}", [], []
        else:
            unzipped = self.unzipped(config)
            if unzipped is None:
                return None  # a zip the proxy cannot run (no base for its architecture or runtime): moto's answer
            image, command, mounts = self.zip_bases[zip_key(config)], [config["Handler"]], [unzipped]
        version = config["Version"] if qualifier != "$LATEST" else "$LATEST"
        if (name, qualifier) in self.inactive:
            self.inactive.discard((name, qualifier))
            self.pending_reads[(name, qualifier)] = 1  # Pending while Lambda restores it, then Active
            return error(409, "CodeArtifactUserPendingException", RESTORING)
        environment = config.get("Environment", {}).get("Variables", {})
        run = Run(image, architecture(config), tuple(command), tuple(mounts))
        container, port, digests = self.container(run, environment, config["MemorySize"], config["Timeout"])
        self.invocations.append(
            {"function": name, "qualifier": qualifier, "version": version, "image": image, "digests": digests,
             "architecture": run.architecture, "container": container, "code": config.get("CodeSha256")}
        )  # fmt: skip
        headers = {"Content-Type": "application/json", "X-Amz-Executed-Version": version}
        with self.busy[container]:
            before = len(container_log(container)) if tail else 0
            wait_s = ANSWER_S if run.architecture == "x86_64" else EMULATED_ANSWER_S
            answer = post_until_up(f"http://127.0.0.1:{port}{INVOKE_PATH}", event, wait_s)
            if tail:
                headers["X-Amz-Log-Result"] = base64.b64encode(invocation_log(container, before)).decode()
        try:
            payload = json.loads(answer.content)
        except ValueError:
            payload = None
        if isinstance(payload, dict) and "errorType" in payload and set(payload) <= {
            "errorType", "errorMessage", "stackTrace", "requestId"}:  # fmt: skip
            headers["X-Amz-Function-Error"] = "Unhandled"  # the handler raised, or the runtime could not start
        return 200, headers, answer.content

    def keep_zip(self, code: dict) -> None:
        """A copy of a zip deploy uploads (in the call, or through S3), under the CodeSha256 Lambda gives it."""
        if not self.zip_bases or not ({"ZipFile", "S3Bucket"} & set(code)):
            return
        if "ZipFile" in code:
            data = base64.b64decode(code["ZipFile"])
        else:
            s3 = boto3.client("s3", endpoint_url=self.moto, region_name="us-east-1", aws_access_key_id="testing",
                              aws_secret_access_key="testing")  # fmt: skip
            data = s3.get_object(Bucket=code["S3Bucket"], Key=code["S3Key"])["Body"].read()
        sha = base64.b64encode(hashlib.sha256(data).digest()).decode()
        path = self.code / f"{hashlib.sha256(data).hexdigest()}.zip"
        path.write_bytes(data)
        self.zips[sha] = path

    def unzipped(self, config: dict) -> "str | None":
        """The function's zip unzipped (read-only, as Lambda's /var/task), as a podman volume; None where the
        proxy cannot run it: no base for its architecture, another Python, or a zip it did not see uploaded."""
        if zip_key(config) not in self.zip_bases:
            return None
        path = self.zips.get(config.get("CodeSha256"))
        if path is None:
            return None
        folder = path.with_suffix("")
        with self.lock:
            if not folder.exists():
                with zipfile.ZipFile(path) as z:
                    z.extractall(folder)
        return f"{folder}:/var/task:ro"

    def container(self, run: "Run", environment: dict, memory_mb: int, timeout_s: int) -> tuple[str, int, list]:
        """A running container of the image (as the function's architecture, with its command and
        volumes): its id, its port, and the repo digests podman knows the image by."""
        key = (run, json.dumps(environment, sort_keys=True), memory_mb)
        image = run.image
        with self.lock:
            if key not in self.containers:
                port = free_port()
                env = {**environment, "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(memory_mb),
                       "AWS_LAMBDA_FUNCTION_TIMEOUT": str(timeout_s)}  # fmt: skip
                arch = ["--arch", PLATFORMS[run.architecture]]
                if self.creds:  # podman run takes no --creds: pull with them first
                    pulled = subprocess.run(
                        ["podman", "pull", "-q", *arch, "--tls-verify=false", "--creds", self.creds, image],
                        capture_output=True, text=True, timeout=300,
                    )  # fmt: skip
                    if pulled.returncode != 0:
                        raise RuntimeError(f"podman pull {image}: {pulled.stderr.strip()[-300:]}")
                started = subprocess.run(
                    ["podman", "run", "-d", "--rm", *PODMAN_RUN, *arch, *as_lambda(run.architecture, self.code),
                     "--tls-verify=false", "-p", f"127.0.0.1:{port}:8080", *(a for m in run.mounts for a in ("-v", m)),
                     *(a for k, v in env.items() for a in ("-e", f"{k}={v}")), image, *run.command],
                    capture_output=True, text=True, timeout=300,
                )  # fmt: skip
                if started.returncode != 0:
                    raise RuntimeError(f"podman run {image}: {started.stderr.strip()[-300:]}")
                container = started.stdout.strip()
                # The digests podman knows the running image by (its RepoDigests): the one pulled is among them.
                inspected = subprocess.run(
                    ["podman", "image", "inspect", "--format", "{{json .RepoDigests}}", image],
                    capture_output=True, text=True, timeout=60,
                )  # fmt: skip
                self.containers[key] = (container, port, json.loads(inspected.stdout or "[]"))
            return self.containers[key]


@dataclasses.dataclass(frozen=True)
class Run:
    """What a container runs: the image (a function's, or a zip's stand-in base), as which architecture,
    the command after the entry point (a zip's Handler) and volumes (its unzipped code)."""

    image: str
    architecture: str
    command: tuple = ()
    mounts: tuple = ()


def architecture(config: dict) -> str:
    return (config.get("Architectures") or ["x86_64"])[0]


def as_lambda(arch: str, scratch: Path) -> list[str]:
    """podman run's options for what differs on Lambda's hosts of the architecture: on arm64, Graviton2's
    CPU model for qemu (binfmt_misc runs the container's programs under it) and the /sys files it lacks."""
    if arch != "arm64":
        return []
    return ["-e", f"QEMU_CPU={CPU_MODELS[arch]}", *hide_cpu_files(scratch)]


def container_log(container: str) -> bytes:
    """Everything the container wrote so far (the emulator's lines and the function's), as podman keeps it."""
    # One pipe for both streams: podman writes the lines in the order the container did.
    done = subprocess.run(["podman", "logs", container], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, timeout=60)
    return done.stdout


def invocation_log(container: str, start: int) -> bytes:
    """The log written since `start`, once it holds the REPORT line; its last TAIL_BYTES."""
    deadline = time.monotonic() + REPORT_S
    while True:
        written = container_log(container)[start:]
        if b"\nREPORT " in b"\n" + written or time.monotonic() > deadline:
            return written[-TAIL_BYTES:]
        time.sleep(0.05)


def post_until_up(url: str, event: bytes, wait_s: float = ANSWER_S) -> requests.Response:
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return requests.post(url, data=event, timeout=wait_s)
        except requests.ConnectionError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.25)


def reply(status: int, document: dict) -> tuple[int, dict, bytes]:
    return status, {"Content-Type": "application/json"}, json.dumps(document, default=str).encode()


def error(status: int, code: str, message: str) -> tuple[int, dict, bytes]:
    """An error as Lambda's REST API sends it: the code in x-amzn-ErrorType, the message in the body."""
    answer = reply(status, {"Type": "User", "message": message})
    answer[1]["x-amzn-ErrorType"] = code
    return answer


def hide_cpu_files(scratch: Path) -> list[str]:
    """podman run's options that leave HIDDEN_ON_ARM64 out of the container's CPU_SYS, as Lambda's Graviton
    does: a copy of this machine's folder without them, mounted over it read-only. podman's --security-opt
    mask= binds /dev/null over a file, which is then there and empty: cpuinfo fails on that the same way
    (measured with LiteRT 1.4.0), but code that asks whether the file exists would see Lambda's hosts
    differently."""
    copy = scratch / "cpu-sys"
    if not copy.exists():
        building = scratch / "cpu-sys.partial"
        for folder, dirs, files in os.walk(CPU_SYS):
            into = building / os.path.relpath(folder, CPU_SYS)
            into.mkdir(parents=True, exist_ok=True)
            for name in dirs + files:
                source = Path(folder) / name
                if folder == CPU_SYS and name in HIDDEN_ON_ARM64:
                    continue
                if source.is_symlink():
                    (into / name).symlink_to(os.readlink(source))
                elif name in files:
                    with contextlib.suppress(OSError):  # write-only attributes cannot be read
                        (into / name).write_bytes(source.read_bytes())
        building.rename(copy)
    return ["-v", f"{copy}:{CPU_SYS}:ro"]


# ---------------------------------------------------------------------------------------------------
# CloudWatch's alarm evaluation, offline: moto stores alarms (metric math included) and never
# evaluates one. What CloudWatch would compute from the function's EMF log lines with an alarm's own
# settings (Period, statistics, metric math, EvaluationPeriods, DatapointsToAlarm, TreatMissingData).


@dataclasses.dataclass(frozen=True)
class Point:
    """One value of one metric, as CloudWatch extracts it from an EMF document (or Lambda records it)."""

    time_s: float
    namespace: str
    metric: str
    dimensions: frozenset  # of (name, value)
    value: float


# Synthetic traffic for a version the proxy does not run (moto answers a zip function's Invoke): the
# EMF documents its containers would write, made by the handler's own metrics module.
# Top-class probabilities of ten photos, easy to hard; each version's requests cycle through them.
PHOTOS = [0.98, 0.95, 0.91, 0.87, 0.83, 0.78, 0.72, 0.66, 0.58, 0.49]
HARD = [0.66, 0.58, 0.49, 0.58, 0.49, 0.66]  # six hard photos: mean 0.577, 0.2 below PHOTOS' 0.777


@dataclasses.dataclass
class Context:
    """What the handler reads of Lambda's context."""

    function_name: str
    function_version: str
    aws_request_id: str = "req"


def emf_request(function: str, version: str, variant: str, at_s: float, status: int = 200, total_ms: float = 300.0,
                inference_ms: float = 45.0, probability: float = 0.9) -> dict:  # fmt: skip
    """The EMF document the handler prints for one request (serving/metrics.py writes it), at at_s."""
    from serving import metrics  # Powertools: only where the proxy makes a function's log lines

    log = {"request_id": f"r{at_s}", "event": "http_api", "status": status, "total_ms": total_ms}
    if status == 200:
        log.update(top="t-shirt", probability=probability, inference_ms=inference_ms)
    document = metrics.document(log, Context(function, version), variant)
    document["_aws"]["Timestamp"] = int(at_s * 1000)
    return document


def emf_traffic(function: str, version: str, variant: str, start_s: float, minutes: int, per_minute: int,
                cold_per_minute: int = 0, **fields) -> list[dict]:  # fmt: skip
    """per_minute requests a minute from start_s on; the first cold_per_minute of each minute from a new
    execution environment (the runtime's start and the model's load in the whole request's time, a
    slower first inference); every whole request carries the client's URL fetch. fields: a function
    of (minute, i) per emf_request field, overriding these."""
    found = []
    for m in range(minutes):
        for i in range(per_minute):
            cold = i < cold_per_minute
            values = {
                "total_ms": 3000.0 + 400 if cold else 250.0 + 90 * (i % 6),  # load + fetch | fetch + model
                "inference_ms": 110.0 if cold else 44.0 + i % 3,
                "probability": PHOTOS[(m * per_minute + i) % len(PHOTOS)],
            }
            values.update({k: f(m, i) for k, f in fields.items()})
            found.append(emf_request(function, version, variant, start_s + m * 60 + i * 60 / per_minute, **values))
    return found


def emf_points(document: dict, alias: str = "live") -> list[Point]:
    """The metrics one EMF document (one request's log line) makes: each metric of each directive
    under the directive's dimension sets, the values read from the document's top level, as CloudWatch
    does; and Lambda's own Invocations (and Errors 0) for the version that ran, through the alias."""
    meta = document["_aws"]
    when = meta["Timestamp"] / 1000
    found = []
    for directive in meta["CloudWatchMetrics"]:
        for names in directive["Dimensions"]:
            dims = frozenset((n, str(document[n])) for n in names)
            for metric in directive["Metrics"]:
                values = document[metric["Name"]]
                for value in values if isinstance(values, list) else [values]:
                    found.append(Point(when, directive["Namespace"], metric["Name"], dims, float(value)))
    if "function" in document and "version" in document:
        lam = frozenset({("FunctionName", document["function"]), ("Resource", f"{document['function']}:{alias}"),
                         ("ExecutedVersion", str(document["version"]))})  # fmt: skip
        found += [Point(when, "AWS/Lambda", "Invocations", lam, 1.0), Point(when, "AWS/Lambda", "Errors", lam, 0.0)]
    return found


def statistic(values: list[float], name: str) -> "float | None":
    """One period's statistic; percentiles by nearest rank (CloudWatch's are within its histogram's 1%)."""
    if not values:
        return None
    ordered = sorted(values)
    if name.startswith("p"):
        rank = max(1, -(-float(name[1:]) * len(ordered) // 100))
        return ordered[int(rank) - 1]
    return {
        "Average": sum(values) / len(values),
        "Sum": sum(values),
        "SampleCount": float(len(values)),
        "Minimum": ordered[0],
        "Maximum": ordered[-1],
    }[name]


def period_value(metric: dict, stat: str, points: list[Point], start: float, period: int) -> "float | None":
    dims = frozenset((d["Name"], d["Value"]) for d in metric.get("Dimensions", []))
    values = [
        p.value
        for p in points
        if p.namespace == metric["Namespace"] and p.metric == metric["MetricName"] and p.dimensions == dims
        and start <= p.time_s < start + period
    ]  # fmt: skip
    return statistic(values, stat)


def math(expression: str, values: dict) -> "float | None":
    """A metric math expression over one period's values (None: the query had no data): the subset
    the deployer writes (+ - * /, comparisons, AND/OR, IF, FILL). An operation on no data is no data."""

    def if_(condition, true, false=None):
        return true if condition else false

    def fill(value, default):
        return default if value is None else value

    text = re.sub(r"\bAND\b", " and ", re.sub(r"\bOR\b", " or ", expression))
    text = re.sub(r"\bIF\(", "if_(", re.sub(r"\bFILL\(", "fill(", text))
    try:
        return eval(text, {"__builtins__": {}}, {**values, "if_": if_, "fill": fill})  # noqa: S307
    except (TypeError, ZeroDivisionError):
        return None


def alarm_datapoints(alarm: dict, points: list[Point], now_s: float) -> list["float | None"]:
    """The value of each of the alarm's last EvaluationPeriods periods, oldest first, the one holding
    now_s last; None where it has no data."""
    found = []
    queries = alarm.get("Metrics")
    period = next(q["MetricStat"]["Period"] for q in queries if "MetricStat" in q) if queries else alarm["Period"]
    last = now_s // period * period
    for k in range(alarm["EvaluationPeriods"] - 1, -1, -1):
        start = last - k * period
        if not queries:
            metric = {"Namespace": alarm["Namespace"], "MetricName": alarm["MetricName"],
                      "Dimensions": alarm.get("Dimensions", [])}  # fmt: skip
            stat = alarm.get("Statistic") or alarm["ExtendedStatistic"]
            found.append(period_value(metric, stat, points, start, period))
            continue
        values = {}
        for q in queries:  # in order: an expression names queries before it
            if "MetricStat" in q:
                ms = q["MetricStat"]
                values[q["Id"]] = period_value(ms["Metric"], ms["Stat"], points, start, ms["Period"])
            else:
                values[q["Id"]] = math(q["Expression"], values)
        found.append(next(values[q["Id"]] for q in queries if q.get("ReturnData", True)))
    return found


COMPARE = {
    "GreaterThanThreshold": lambda v, t: v > t,
    "GreaterThanOrEqualToThreshold": lambda v, t: v >= t,
    "LessThanThreshold": lambda v, t: v < t,
    "LessThanOrEqualToThreshold": lambda v, t: v <= t,
}


def evaluate_alarm(alarm: dict, points: list[Point], now_s: float) -> tuple[str, str]:
    """The state CloudWatch would give the alarm at now_s (ALARM, OK or INSUFFICIENT_DATA) and its
    reason: ALARM when DatapointsToAlarm (default EvaluationPeriods) of the last EvaluationPeriods
    periods breach, missing periods counted as TreatMissingData says."""
    values = alarm_datapoints(alarm, points, now_s)
    needed = alarm.get("DatapointsToAlarm") or alarm["EvaluationPeriods"]
    treat = alarm.get("TreatMissingData", "missing")
    breaching = [v is not None and COMPARE[alarm["ComparisonOperator"]](v, alarm["Threshold"]) for v in values]
    if treat == "breaching":
        breaching = [b or v is None for b, v in zip(breaching, values, strict=True)]
    shown = [round(v, 4) for v in values if v is not None]
    reason = (
        f"Threshold Crossed: {sum(breaching)} out of the last {len(values)} datapoints {shown} were "
        f"{alarm['ComparisonOperator']} ({alarm['Threshold']}) (minimum {needed} datapoints for ALARM)"
    )
    if sum(breaching) >= needed:
        return "ALARM", reason
    if all(v is None for v in values) and treat in ("missing", "ignore"):
        return "INSUFFICIENT_DATA", "no datapoints"
    return "OK", reason


def zip_key(config: dict) -> tuple:
    """The (architecture, runtime) of a zip function's configuration: what picks its stand-in base."""
    return architecture(config), config.get("Runtime")


def judge_alarms(cw, prefix: str, documents: list[dict], now_s: float) -> dict:
    """Play CloudWatch: evaluate every alarm whose name starts with prefix over the EMF documents and
    set its state as CloudWatch would (moto keeps what set_alarm_state gives); {name: state}. An alarm
    deleted meanwhile is skipped, as CloudWatch evaluates each alarm on its own: a canary that saw an
    earlier one of them in ALARM rolls back and deletes the rest while this loop goes on."""
    points = [p for document in documents for p in emf_points(document)]
    states = {}
    for alarm in cw.describe_alarms(AlarmNamePrefix=prefix)["MetricAlarms"]:
        state, reason = evaluate_alarm(alarm, points, now_s)
        states[alarm["AlarmName"]] = state
        with contextlib.suppress(cw.exceptions.ResourceNotFound):
            cw.set_alarm_state(AlarmName=alarm["AlarmName"], StateValue=state, StateReason=reason[:1000])
    return states
