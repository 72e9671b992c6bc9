"""The function's container image: built for the function's architecture as a single-image
manifest, pushed (by platform, where the engine can), then read back from the registry before
Lambda sees it: an image index (Lambda refuses those; docker 29's containerd image store pushes one
even for a single-platform build) is resolved there to its manifest for the architecture, which
deploy ships by digest; an image for another architecture is refused."""

import base64
import hashlib
import ipaddress
import json
import os
import shutil
import subprocess
import tempfile
import time
from pathlib import Path
from urllib.parse import urlsplit

import requests

from pipeline import cli, params
from pipeline.deploy import build, limits
from pipeline.deploy.programs import sh

ACCEPT = ", ".join(limits.IMAGE_MEDIA_TYPES + limits.INDEX_MEDIA_TYPES)
TRANSIENT = (429, 500, 502, 503, 504)  # a registry's answers that say "try again", not "no"
TRIES = 3


class Unusable(cli.UserError):
    """The registry's image is definitely not one Lambda can run: an index, another architecture."""


def container_engine() -> str:
    for engine in ("docker", "podman", "buildah"):
        if shutil.which(engine):
            if engine == "docker" and subprocess.run(["docker", "info"], capture_output=True).returncode != 0:
                continue  # a docker client without a running engine
            return engine
    raise cli.UserError("no container engine: install docker, podman or buildah (or set deploy.package: zip)")


class Registry:
    """The registry's HTTP API (ECR's, or a plain-HTTP local one named by deploy.registry)."""

    def __init__(self, host: str, repository: str, token: "str | None", plain_http: bool):
        self.host, self.repository, self.plain_http = host, repository, plain_http
        self.user, self.password = base64.b64decode(token).decode().split(":", 1) if token else ("", "")
        self.base = f"{'http' if plain_http else 'https'}://{host}/v2/{repository}"

    def asks_for_login(self) -> bool:
        """ECR's registry does (401 without credentials); a local one may not."""
        scheme = "http" if self.plain_http else "https"
        try:
            return requests.get(f"{scheme}://{self.host}/v2/", timeout=60).status_code == 401
        except requests.RequestException as e:
            raise cli.UserError(f"registry {self.host} did not answer: {e}") from None

    def get(self, path: str, accept: str = "") -> requests.Response:
        """One read, tried again (0.5 s, 1 s later) while the registry fails in a way that passes."""
        auth = (self.user, self.password) if self.user else None
        for attempt in range(TRIES):
            try:
                answer = requests.get(f"{self.base}/{path}", headers={"Accept": accept}, auth=auth, timeout=60)
                if answer.status_code not in TRANSIENT or attempt == TRIES - 1:
                    return answer
            except requests.RequestException as e:
                if attempt == TRIES - 1:
                    raise cli.UserError(f"registry {self.host} did not answer: {e}") from None
            time.sleep(0.5 * 2**attempt)
        raise AssertionError("unreachable")

    def digest(self, tag: str) -> "str | None":
        """The digest of the single-platform image tagged `tag`, checked; None if there is none."""
        answer = self.get(f"manifests/{tag}", ACCEPT)
        if answer.status_code == 404:
            return None
        if answer.status_code != 200:
            raise cli.UserError(f"reading {self.repository}:{tag} from {self.host}: HTTP {answer.status_code}")
        return answer.headers.get("Docker-Content-Digest") or f"sha256:{hashlib.sha256(answer.content).hexdigest()}"

    def decoded(self, answer: requests.Response, what: str) -> dict:
        """A JSON answer, or one line saying why there is none (an HTTP error, HTML, a proxy's page)."""
        try:
            answer.raise_for_status()
            return answer.json()
        except (requests.HTTPError, ValueError) as e:
            raise cli.UserError(f"reading {what} from {self.host}: {e}") from None

    def unusable(self, tag: str, architecture: str) -> "str | None":
        """Why the image under the tag cannot be used, when that is certain; a failed read is an
        error (one line), never a reason to build and push again."""
        try:
            self.check(tag, architecture)
            return None
        except Unusable as e:
            return str(e)

    def check(self, tag: str, architecture: str) -> str:
        """The digest of the single-image manifest Lambda is to run for the tag: the tag's own, or, for
        an image index, the index's manifest for linux and the architecture (Lambda refuses an index,
        not a manifest named by digest). Refused: what Lambda could not run (no image for the
        architecture, an image built for another)."""
        answer = self.get(f"manifests/{tag}", ACCEPT)
        manifest = self.decoded(answer, f"{self.repository}:{tag}")
        image, wanted = f"{self.repository}:{tag}", limits.ARCHITECTURES[architecture]
        if index(manifest, answer):
            found = [m for m in manifest["manifests"] if platform(m) == f"linux/{wanted}"]
            if not found:
                listed = ", ".join(platform(m) for m in manifest["manifests"]) or "none"
                raise Unusable(
                    f"{image} is an image index with no linux/{wanted} image (it has {listed}): is the base image "
                    f"available for {wanted}?"
                )
            digest = found[0]["digest"]
            answer = self.get(f"manifests/{digest}", ACCEPT)
            manifest = self.decoded(answer, f"{self.repository}@{digest}")
            image = f"{image} (its linux/{wanted} image {digest})"
            if index(manifest, answer):
                raise Unusable(f"{image} is an image index again: Lambda needs a single-image manifest")
        else:
            digest = answer.headers.get("Docker-Content-Digest") or sha256(answer.content)
        if "config" not in manifest:
            raise Unusable(f"{image}: the registry's manifest names no image config ({manifest.get('mediaType')})")
        blob = f"blobs/{manifest['config']['digest']}"
        config = self.decoded(self.get(blob), f"{self.repository}/{blob}")
        found = config.get("architecture")
        if found != wanted:
            raise Unusable(
                f"{image} is built for {found}, deploy.architecture is {architecture} ({wanted}): "
                "is the base image available for that architecture?"
            )
        return digest

    def keep(self, tag: str, digest: str, architecture: str) -> None:
        """Where the tag is an index, its image for the architecture (digest, from check) is tagged
        <tag>-<arch> as well: a version runs that digest, and the repository's lifecycle rule expires
        untagged images. That tag is added once and never moved; nothing is built or pushed again."""
        if self.digest(tag) == digest:
            return  # the tag names the image itself, no index
        kept = f"{tag}-{limits.ARCHITECTURES[architecture]}"
        there = self.digest(kept)
        if there == digest:
            return
        if there is not None:
            raise cli.UserError(
                f"{self.repository}:{kept} names {there}, not {tag}'s image {digest}: delete that tag, then deploy "
                "again"
            )
        answer = self.get(f"manifests/{digest}", ACCEPT)
        kind = answer.headers.get("Content-Type", "").split(";")[0]
        auth = (self.user, self.password) if self.user else None
        try:
            put = requests.put(
                f"{self.base}/manifests/{kept}",
                data=answer.content,
                headers={"Content-Type": kind},
                auth=auth,
                timeout=60,
            )
            put.raise_for_status()
        except requests.RequestException as e:
            raise cli.UserError(f"tagging {self.repository}@{digest} as {kept} on {self.host}: {e}") from None
        print(f"{self.repository}:{tag} is an image index: shipping its {architecture} image {digest}, tagged {kept}")


def sha256(content: bytes) -> str:
    return f"sha256:{hashlib.sha256(content).hexdigest()}"


def index(manifest: dict, answer: requests.Response) -> bool:
    kind = manifest.get("mediaType") or answer.headers.get("Content-Type", "").split(";")[0]
    return kind in limits.INDEX_MEDIA_TYPES or "manifests" in manifest


def platform(entry: dict) -> str:
    """An index entry's os/architecture (an attestation's is unknown/unknown)."""
    found = entry.get("platform") or {}
    return f"{found.get('os', 'unknown')}/{found.get('architecture', 'unknown')}"


def loopback(host: str) -> bool:
    """A registry on this machine (localhost, 127.0.0.0/8, ::1), host[:port]."""
    name = urlsplit(f"//{host}").hostname or ""
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


REPLACEMENTS = 20  # key-r1 .. key-r20: more unusable images than that is not a registry to build on


def usable_tag(registry: Registry, key: str, architecture: str) -> tuple[str, bool]:
    """The tag to deploy and whether the registry has a usable image under it. A tag never moves:
    when the key's image is definitely unusable, the replacement tags key-r1, key-r2, ... are
    probed in order and the first usable one is reused, or the first free one is built, so the
    next deploy finds the same replacement instead of building again."""
    if registry.digest(key) is None:
        return key, False
    problem = registry.unusable(key, architecture)
    if problem is None:
        return key, True
    for n in range(1, REPLACEMENTS + 1):
        tag = f"{key}-r{n}"
        if registry.digest(tag) is None:
            print(f"the registry's image for {key} cannot be used ({problem}): building it again as {tag}")
            return tag, False
        if registry.unusable(tag, architecture) is None:
            print(f"the registry's image for {key} cannot be used ({problem}): using {tag}")
            return tag, True
    raise cli.UserError(
        f"the registry's images for {key} and {key}-r1 .. -r{REPLACEMENTS} cannot be used ({problem}): "
        f"delete them from {registry.repository}, then deploy again"
    )


def build_image(engine: str, d: params.Deploy, image: str) -> None:
    platform = f"linux/{limits.ARCHITECTURES[d.architecture]}"
    # Lambda wants one image: BuildKit pushes an index when it adds attestations; podman/buildah
    # default to OCI; docker's classic builder (no buildx) makes single docker images only.
    if engine == "buildah":
        command = ["buildah", "build", "--format", "docker"]
    elif engine == "podman":
        command = ["podman", "build", "--format", "docker"]
    elif subprocess.run(["docker", "buildx", "version"], capture_output=True).returncode == 0:
        command = ["docker", "buildx", "build", "--load", "--provenance=false", "--sbom=false"]
    else:
        command = ["docker", "build"]
    sh(
        *command,
        "--platform",
        platform,
        "-f",
        str(build.DOCKERFILE),
        "--build-arg",
        f"BASE_IMAGE={d.base_image}",
        "--build-arg",
        f"REQUIREMENTS={build.requirements()}",
        "-t",
        image,
        ".",
        what=f"building the image for {platform} (is {d.base_image} available for {platform}?)",
    )


def login(command: list[str], registry: Registry, env: "dict | None" = None) -> None:
    """The password on stdin, never on a command line (ps shows those)."""
    sh(
        *command,
        "--username",
        registry.user,
        "--password-stdin",
        registry.host,
        stdin=registry.password,
        env=env,
        what=f"{command[0]} login to {registry.host}",
    )


def pushes_by_platform(env: dict) -> bool:
    """docker push takes --platform from docker 28 on (an older one refuses the option)."""
    usage = subprocess.run(["docker", "push", "--help"], capture_output=True, text=True, env=env).stdout
    return "--platform" in usage


def docker_env() -> dict:
    """The engine the user's docker talks to, named in the environment: a private --config leaves
    the user's contexts behind with the rest of their config."""
    if os.environ.get("DOCKER_HOST"):
        return dict(os.environ)
    host = sh("docker", "context", "inspect", "--format", "{{.Endpoints.docker.Host}}", what="docker context inspect")
    return {**os.environ, "DOCKER_HOST": host.strip()}


def pull_image(engine: str, registry: Registry, image: str) -> None:
    """Pull an image (by digest) from the registry, logged in as push_image logs in: with credentials
    in a private folder, gone after the pull."""
    logs_in = bool(registry.user) and registry.asks_for_login()
    what = f"pulling {image} for the local smoke test"
    with tempfile.TemporaryDirectory() as tmp:
        if engine == "docker":
            auths = {}
            if logs_in:
                auths[registry.host] = {
                    "auth": base64.b64encode(f"{registry.user}:{registry.password}".encode()).decode()
                }
            (Path(tmp) / "config.json").write_text(json.dumps({"auths": auths}))
            sh("docker", "--config", tmp, "pull", image, env=docker_env(), what=what)
            return
        tls = f"--tls-verify={str(not registry.plain_http).lower()}"
        auth = ["--authfile", str(Path(tmp) / "auth.json")] if logs_in else []
        if logs_in:
            login([engine, "login", *auth, tls], registry)
        sh(engine, "pull", *auth, tls, f"docker://{image}" if engine == "buildah" else image, what=what)


def push_image(engine: str, registry: Registry, image: str, architecture: str) -> None:
    """Log in (when the registry asks for it) and push, with credentials in a private folder that is
    gone after the push: never the user's docker config, whose credential helper (credsStore:
    ecr-login, common on CI and EC2 images) cannot store this token, and where a login would
    leave a 12-hour token behind. docker pushes by platform where it can: docker 29's containerd
    image store pushes an image index without it (moby/moby#51532), even for one platform."""
    denied = "pushing the image (denied? check the ECR permissions in docs/deployer-policy.json)"
    logs_in = bool(registry.user) and registry.asks_for_login()
    with tempfile.TemporaryDirectory() as tmp:
        if engine == "docker":
            # The credentials written as "auths" in the private config, no `docker login`: a config
            # without "auths" makes docker pick the platform's credential store (osxkeychain, pass,
            # secretservice), where the token would stay behind.
            if logs_in:
                auth = base64.b64encode(f"{registry.user}:{registry.password}".encode()).decode()
                config = {"auths": {registry.host: {"auth": auth}}}
            else:
                config = {"auths": {}}
            (Path(tmp) / "config.json").write_text(json.dumps(config))
            env = docker_env()
            by_platform = (
                ["--platform", f"linux/{limits.ARCHITECTURES[architecture]}"] if pushes_by_platform(env) else []
            )
            sh("docker", "--config", tmp, "push", *by_platform, image, env=env, what=denied)
            return
        tls = f"--tls-verify={str(not registry.plain_http).lower()}"
        auth = ["--authfile", str(Path(tmp) / "auth.json")] if logs_in else []
        if logs_in:
            login([engine, "login", *auth, tls], registry)
        sh(
            engine,
            "push",
            *auth,
            tls,
            "--digestfile",
            str(Path(tmp) / "digest"),
            image,
            f"docker://{image}",
            what=denied,
        )
