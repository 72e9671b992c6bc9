"""Local stand-ins for what deploy talks to, all on 127.0.0.1: moto in server mode (AWS), Debian's
docker-registry (ECR's registry) and a Lambda base image made with debootstrap (public base
images cannot be pulled here); lambda_proxy.py puts Lambda's own behaviour in front of moto.
Each is started by the tests and stopped after; every set-up step is bounded in time."""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
import warnings
from pathlib import Path

import requests
from filelock import FileLock

from pipeline import emulators
from pipeline.ports import free_port
from pipeline.serve import wait_until_up

# One stand-in base per Lambda architecture; the arm64 one is built and run under qemu (binfmt_misc).
STANDIN_BASES = {
    "x86_64": "localhost/lambda-python-standin:3.11",
    "arm64": "localhost/lambda-python-standin:3.11-arm64",
}
STANDIN_BASE = STANDIN_BASES["x86_64"]
# x86_64's base with this machine's own Python 3.12 (pyenv's, its install copied whole): Lambda's default zip
# runtime, python3.12, run where Debian 12 has no 3.12.
STANDIN_BASE_312 = "localhost/lambda-python-standin:3.12"
DEBIAN_ARCH = {"x86_64": "amd64", "arm64": "arm64"}  # Debian's name, also the image config's
# Each bounded (see step): ~30 s, ~10 s and ~5 s when they work natively; a mirror or podman that hangs is cut
# off. arm64's debootstrap and pip run under qemu: 3 min and ~1 min on a quiet machine; beside a training run
# and the targets stage, 22 min and over 5 min (measured).
DEBOOTSTRAP_S, PIP_S, IMPORT_S = {"x86_64": 600, "arm64": 1800}, {"x86_64": 300, "arm64": 1200}, 300
ENTRYPOINT = '#!/bin/sh\nexec /usr/local/bin/aws-lambda-rie /var/lang/bin/python3 -m awslambdaric "$@"\n'


START_S = 30  # a server that is not up by then is stuck, not slow (moto ~0.3 s, the registry ~0.1 s)


class SetupFailed(Exception):
    """A stand-in that could not be made or started, in one line (the fixture fails with it)."""


def step(cmd: list[str], what: str, timeout: float, **kwargs) -> subprocess.CompletedProcess:
    """One set-up command, bounded: pytest-timeout stops a stuck fixture only at 900 s, and with a stack dump,
    so a stuck debootstrap or podman must end here, with the command's last words."""
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, **kwargs)
    except subprocess.TimeoutExpired:
        raise SetupFailed(f"{what}: no result after {timeout:g} s ({' '.join(cmd[:3])} ...)") from None
    if done.returncode != 0:
        last = [line for line in (done.stderr or done.stdout).splitlines() if line.strip()][-1:] or ["no output"]
        raise SetupFailed(f"{what} failed (exit status {done.returncode}): {last[0]}")
    return done


def start_server(cmd: list[str], url: str, what: str, **kwargs) -> subprocess.Popen:
    process = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, **kwargs)
    try:
        wait_until_up(url, process, timeout=START_S)
    except RuntimeError as e:
        process.kill()
        process.wait(timeout=10)
        raise SetupFailed(f"{what} did not start: {e}") from None
    return process


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    moto = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    url = f"http://127.0.0.1:{port}"
    process = start_server([moto, "-H", "127.0.0.1", "-p", str(port)], url + "/moto-api/", "moto_server", env=env)
    # moto cannot run image functions (no Docker); invoke then answers without running anything.
    requests.post(url + "/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=5).raise_for_status()
    return process, url


def start_registry(root: Path, login: "tuple[str, str] | None" = None) -> tuple[subprocess.Popen, str]:
    """Debian's docker-registry on 127.0.0.1; with login (user, password) it asks for them, as ECR's does."""
    port = free_port()
    root.mkdir(parents=True, exist_ok=True)
    config = root / "config.yml"
    text = f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root / 'data'}\n"
    text += f"http:\n  addr: 127.0.0.1:{port}\n"
    if login:
        with warnings.catch_warnings():  # crypt: the standard library's bcrypt, deprecated, here until 3.13
            warnings.simplefilter("ignore", DeprecationWarning)
            import crypt

            hashed = crypt.crypt(login[1], crypt.mksalt(crypt.METHOD_BLOWFISH))
        (root / "htpasswd").write_text(f"{login[0]}:{hashed}\n")
        text += f"auth:\n  htpasswd:\n    realm: test\n    path: {root / 'htpasswd'}\n"
    config.write_text(text)
    process = start_server(["docker-registry", "serve", str(config)], f"http://127.0.0.1:{port}/v2/", "docker-registry")
    return process, f"127.0.0.1:{port}"


def apt_mirror() -> tuple[str, str]:
    """(suite, mirror URI) of this machine's own Debian release, from its apt sources: the project
    names no mirror itself."""
    release = dict(line.split("=", 1) for line in Path("/etc/os-release").read_text().splitlines() if "=" in line)
    suite = release.get("VERSION_CODENAME", "").strip('"')
    entries = []  # (uris, suites) of each deb source
    for f in sorted(Path("/etc/apt/sources.list.d").glob("*.sources")):
        for stanza in f.read_text().split("\n\n"):
            fields = {}
            for line in stanza.splitlines():
                if ":" in line and not line.startswith(("#", " ")):
                    key, value = line.split(":", 1)
                    fields[key.strip().lower()] = value.split()
            if "deb" in fields.get("types", []) and fields.get("enabled", ["yes"]) != ["no"]:
                entries.append((fields.get("uris", []), fields.get("suites", [])))
    legacy = Path("/etc/apt/sources.list")
    if legacy.exists():
        for line in legacy.read_text().splitlines():
            words = [w for w in line.split("#")[0].split() if not w.startswith("[")]
            if len(words) >= 3 and words[0] == "deb":
                entries.append(([words[1]], [words[2]]))
    for uris, suites in entries:
        if suite in suites and uris:
            return suite, uris[0]
    raise RuntimeError(f"no apt source for this machine's release ({suite!r}) in /etc/apt: debootstrap needs one")


def unmount_under(root: Path) -> None:
    """Unmount what a stopped debootstrap left mounted in its root (its /proc): the temporary folder's
    clean-up would otherwise delete through it, into this machine's /proc."""
    mounts = [line.split()[1] for line in Path("/proc/mounts").read_text().splitlines()]
    for point in sorted((m for m in mounts if m.startswith(f"{root}/")), key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=60)


def build_standin_base(rie: Path, architecture: str = "x86_64") -> str:
    """A minimal Debian with Python, awslambdaric and the runtime interface emulator (`rie`, built for
    the architecture), laid out like the AWS Lambda Python base image (/var/task, /lambda-entrypoint.sh),
    for one Lambda architecture: arm64 is debootstrapped and its pip run under qemu (binfmt_misc). Built
    once per machine and architecture; one pytest-xdist worker builds it while any other waits."""
    suffix = "" if architecture == "x86_64" else f"-{architecture}"  # x86's lock keeps its name: older checkouts
    with FileLock(f"/var/tmp/lambda-python-standin{suffix}.lock"):
        return _build_standin_base(rie, architecture)


def image_exists(image: str) -> bool:
    """Whether podman holds the image already (bounded, as every set-up command is: see step)."""
    try:
        return subprocess.run(["podman", "image", "exists", image], capture_output=True, timeout=60).returncode == 0
    except subprocess.TimeoutExpired:
        raise SetupFailed("podman image exists: no answer after 60 s") from None


def _build_standin_base(rie: Path, architecture: str) -> str:
    image = STANDIN_BASES[architecture]
    if image_exists(image):
        return image
    if not rie.exists():
        raise SetupFailed(f"{rie} not found: `make rie rie-arm64` extracts it from the aws-sam-cli wheel")
    # A foreign root's dpkg and pip run only where binfmt_misc hands its programs to qemu.
    if architecture != "x86_64" and not emulators.arm64_registered():
        raise SetupFailed(f"arm64 programs do not run here: {emulators.INSTALL_HINT}")
    suite, mirror = apt_mirror()
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        try:
            step(
                ["debootstrap", f"--arch={DEBIAN_ARCH[architecture]}", "--variant=minbase",
                 "--include=python3,python3-venv,ca-certificates", suite, str(rootfs), mirror],
                f"debootstrap {suite} {DEBIAN_ARCH[architecture]} from {mirror}",
                timeout=DEBOOTSTRAP_S[architecture],
            )  # fmt: skip
        finally:
            unmount_under(rootfs)
        # pip inside the chroot and inside image builds needs this machine's resolver, CA bundle and pip config.
        for f in ("/etc/resolv.conf", "/etc/pip.conf", "/etc/ssl/certs/ca-certificates.crt"):
            if Path(f).exists():
                shutil.copyfile(f, rootfs / f.lstrip("/"))
        install = "python3 -m venv /var/lang && /var/lang/bin/pip install -q awslambdaric==4.2.2"
        # QEMU_CPU: Lambda's arm64 CPU for what runs under qemu (ignored by x86 programs, which run natively).
        env = {**os.environ, "QEMU_CPU": emulators.CPU_MODELS[architecture]}
        what = "pip install awslambdaric in the stand-in base"
        step(["chroot", str(rootfs), "sh", "-c", install], what, PIP_S[architecture], env=env)
        shutil.copyfile(rie, rootfs / "usr/local/bin/aws-lambda-rie")
        (rootfs / "usr/local/bin/aws-lambda-rie").chmod(0o755)
        (rootfs / "lambda-entrypoint.sh").write_text(ENTRYPOINT)
        (rootfs / "lambda-entrypoint.sh").chmod(0o755)
        (rootfs / "var/task").mkdir(parents=True, exist_ok=True)
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        changes = ['ENTRYPOINT ["/lambda-entrypoint.sh"]', "ENV LAMBDA_TASK_ROOT=/var/task",
                   "ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin", "WORKDIR /var/task"]  # fmt: skip
        # --arch: the image config names the architecture its programs are built for (registry.check reads it).
        step(
            ["podman", "import", "--arch", DEBIAN_ARCH[architecture], *(a for c in changes for a in ("--change", c)),
             str(archive), image],
            "podman import of the stand-in base",
            timeout=IMPORT_S,
        )  # fmt: skip
    return image


def python_312() -> Path:
    """This machine's Python 3.12 (pyenv's newest 3.12, or one on PATH) that runs, or SetupFailed saying how to get
    one (pyenv's shim on PATH runs only where 3.12 is the selected version)."""
    pyenv = Path(os.environ.get("PYENV_ROOT", Path.home() / ".pyenv")) / "versions"
    candidates = [*sorted(pyenv.glob("3.12*/bin/python3.12"), reverse=True), shutil.which("python3.12")]
    for python in filter(None, candidates):
        if subprocess.run([python, "-c", "import sys"], capture_output=True, timeout=60).returncode == 0:
            return Path(python)
    raise SetupFailed("no Python 3.12 here for the python3.12 zip's stand-in base: `pyenv install 3.12` makes one")


def build_standin_base_312(base: str) -> str:
    """STANDIN_BASE_312: the x86_64 stand-in base (base) with this machine's Python 3.12 as /var/lang, awslambdaric
    installed in it. Its install is copied at its own path (its libpython is found there) without its tests;
    its shared libraries (libssl, libffi, sqlite) are Debian 12's, as in base. Built once per machine."""
    with FileLock("/var/tmp/lambda-python-standin-312.lock"):
        if image_exists(STANDIN_BASE_312):
            return STANDIN_BASE_312
        python = python_312()
        prefix = Path(step([str(python), "-c", "import sys; print(sys.base_prefix)"], "python3.12", 60).stdout.strip())
        with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
            with tarfile.open(Path(tmp) / "python.tar", "w") as tar:
                tar.add(prefix, arcname=str(prefix).lstrip("/"), filter=without_tests)
            venv = f"{prefix}/bin/python3.12 -m venv --clear /var/lang"
            pip = "/var/lang/bin/pip install -q awslambdaric==4.2.2"
            (Path(tmp) / "Containerfile").write_text(f"FROM {base}\nADD python.tar /\nRUN {venv} && {pip}\n")
            step(["podman", "build", "-q", "-t", STANDIN_BASE_312, tmp], "podman build of the python3.12 stand-in base",
                 timeout=PIP_S["x86_64"])  # fmt: skip
    return STANDIN_BASE_312


def without_tests(member: tarfile.TarInfo) -> "tarfile.TarInfo | None":
    """A Python install's files but its own test suite and third-party packages (a third of its size)."""
    parts = Path(member.name).parts
    return None if "test" in parts or "site-packages" in parts or "__pycache__" in parts else member
