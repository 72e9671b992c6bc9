"""Local stand-ins for what deploy talks to, all on 127.0.0.1: moto in server mode (AWS), Debian's
docker-registry (ECR's registry), and a Lambda base image made with debootstrap (public base
images cannot be pulled here). Each is started by the tests and stopped after."""

import os
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import requests

from pipeline.serve import free_port, wait_until_up

STANDIN_BASE = "localhost/lambda-python-standin:3.11"
ENTRYPOINT = '#!/bin/sh\nexec /usr/local/bin/aws-lambda-rie /var/lang/bin/python3 -m awslambdaric "$@"\n'


def start_moto() -> tuple[subprocess.Popen, str]:
    port = free_port()
    env = {**os.environ, "MOTO_IAM_LOAD_MANAGED_POLICIES": "true"}
    moto = shutil.which("moto_server", path=os.path.dirname(sys.executable))
    process = subprocess.Popen(
        [moto, "-H", "127.0.0.1", "-p", str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    url = f"http://127.0.0.1:{port}"
    wait_until_up(url + "/moto-api/", process)
    # moto cannot run image functions (no Docker); invoke then answers without running anything.
    requests.post(url + "/moto-api/config", json={"lambda": {"use_docker": False}}, timeout=5).raise_for_status()
    return process, url


def start_registry(root: Path) -> tuple[subprocess.Popen, str]:
    port = free_port()
    config = root / "config.yml"
    config.write_text(
        f"version: 0.1\nstorage:\n  filesystem:\n    rootdirectory: {root / 'data'}\nhttp:\n  addr: 127.0.0.1:{port}\n"
    )
    process = subprocess.Popen(
        ["docker-registry", "serve", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    wait_until_up(f"http://127.0.0.1:{port}/v2/", process)
    return process, f"127.0.0.1:{port}"


def build_standin_base(rie: Path) -> str:
    """A minimal Debian with Python, awslambdaric and the runtime interface emulator, laid out like
    the AWS Lambda Python base image (/var/task, /lambda-entrypoint.sh). Built once per machine."""
    if subprocess.run(["podman", "image", "exists", STANDIN_BASE]).returncode == 0:
        return STANDIN_BASE
    with tempfile.TemporaryDirectory(dir="/var/tmp") as tmp:
        rootfs = Path(tmp) / "rootfs"
        subprocess.run(
            [
                "debootstrap",
                "--variant=minbase",
                "--include=python3,python3-venv,ca-certificates",
                "bookworm",
                str(rootfs),
                "http://deb.debian.org/debian",
            ],
            check=True,
            capture_output=True,
        )
        # pip inside the chroot and inside image builds needs this machine's resolver, CA bundle and pip config.
        for f in ("/etc/resolv.conf", "/etc/pip.conf", "/etc/ssl/certs/ca-certificates.crt"):
            if Path(f).exists():
                shutil.copyfile(f, rootfs / f.lstrip("/"))
        subprocess.run(
            [
                "chroot",
                str(rootfs),
                "sh",
                "-c",
                "python3 -m venv /var/lang && /var/lang/bin/pip install -q awslambdaric==4.2.2",
            ],
            check=True,
            capture_output=True,
        )
        shutil.copyfile(rie, rootfs / "usr/local/bin/aws-lambda-rie")
        (rootfs / "usr/local/bin/aws-lambda-rie").chmod(0o755)
        (rootfs / "lambda-entrypoint.sh").write_text(ENTRYPOINT)
        (rootfs / "lambda-entrypoint.sh").chmod(0o755)
        (rootfs / "var/task").mkdir(parents=True, exist_ok=True)
        archive = Path(tmp) / "rootfs.tar"
        with tarfile.open(archive, "w") as tar:
            tar.add(rootfs, arcname=".")
        subprocess.run(
            [
                "podman",
                "import",
                "--change",
                'ENTRYPOINT ["/lambda-entrypoint.sh"]',
                "--change",
                "ENV LAMBDA_TASK_ROOT=/var/task",
                "--change",
                "ENV PATH=/var/lang/bin:/usr/local/bin:/usr/bin:/bin",
                "--change",
                "WORKDIR /var/task",
                str(archive),
                STANDIN_BASE,
            ],
            check=True,
            capture_output=True,
        )
    return STANDIN_BASE
