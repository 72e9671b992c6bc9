"""The CPUs Lambda runs the function on, emulated here with qemu in user mode (one program, this
machine's kernel and files): x86_64 without AVX-512/VNNI, and arm64 (Graviton2).

Emulation proves arithmetic, never speed: integer kernels take other code paths on other CPUs
(ONNX Runtime's and XNNPACK's dispatch), and their answers are what the target check compares.
`make emulators` installs qemu-user-static and registers arm64 with binfmt_misc (root only); a
machine without them gets one line saying what to do."""

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

from pipeline.cli import UserError

# qemu's CPU model per Lambda architecture: Haswell is x86_64 with AVX2 and FMA but no AVX-512 or
# VNNI (what every x86_64 Lambda host has at least); neoverse-n1 is Graviton2, Lambda's arm64.
CPU_MODELS = {"x86_64": "Haswell", "arm64": "neoverse-n1"}
QEMU = {"x86_64": "qemu-x86_64-static", "arm64": "qemu-aarch64-static"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # Debian's qemu-user-static entry
INSTALL_HINT = "run `make emulators` as root (apt-get install qemu-user-static, then binfmt_misc for arm64)"


def qemu(architecture: str) -> str:
    """The qemu user-mode binary for an architecture, or one line saying how to get it."""
    found = shutil.which(QEMU[architecture])
    if not found:
        raise UserError(f"{QEMU[architecture]} not found: {INSTALL_HINT}")
    return found


def arm64_registered() -> bool:
    """arm64 programs run transparently (binfmt_misc hands them to qemu): containers and chroots need it."""
    entry = BINFMT / "qemu-aarch64"
    return entry.exists() and entry.read_text().startswith("enabled")


def register_arm64() -> None:
    """Register qemu-aarch64 with binfmt_misc where it is not yet (lasts until reboot). Root only."""
    if arm64_registered():
        return
    qemu("arm64")
    if os.geteuid() != 0:
        raise UserError(f"arm64 programs are not registered with binfmt_misc: {INSTALL_HINT}")
    if not (BINFMT / "register").exists():
        mounted = subprocess.run(["mount", "-t", "binfmt_misc", "binfmt_misc", str(BINFMT)], capture_output=True)
        if mounted.returncode != 0:
            raise UserError(f"mounting binfmt_misc failed: {mounted.stderr.decode().strip()}")
    entries = [line for line in BINFMT_CONF.read_text().splitlines() if line.strip() and not line.startswith("#")]
    if not entries:
        raise UserError(f"{BINFMT_CONF} has no binfmt entry: reinstall qemu-user-static")
    with contextlib.suppress(FileExistsError):  # another process registered it meanwhile
        (BINFMT / "register").write_text(entries[0])
    if not arm64_registered():
        raise UserError("qemu-aarch64 did not register with binfmt_misc (is it disabled?)")


def emulated(architecture: str, command: list[str], root: "Path | None" = None) -> tuple[list[str], dict]:
    """The command line and environment that run `command` (an x86_64 program, or an arm64 one from
    the arm64 root file system `root`) on the architecture's Lambda CPU model."""
    cpu = CPU_MODELS[architecture]
    if architecture == "x86_64":
        return [qemu("x86_64"), "-cpu", cpu, *command], {}
    if root is None:
        raise ValueError("arm64 programs need their root file system")
    # -L: the arm64 program's dynamic loader and libraries come from its root, not this machine's.
    return [qemu("arm64"), "-cpu", cpu, "-L", str(root), *command], {"QEMU_LD_PREFIX": str(root)}


def main() -> None:
    import argparse

    argparse.ArgumentParser(description="Check qemu user mode and register arm64 with binfmt_misc (root).").parse_args()
    register_arm64()
    print("emulators ready: " + ", ".join(f"{a} as {CPU_MODELS[a]} ({qemu(a)})" for a in QEMU))


if __name__ == "__main__":
    from pipeline import cli

    cli.run(main)
