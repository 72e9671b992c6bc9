"""The CPUs Lambda runs the function on, emulated here with qemu in user mode (one program, this
machine's kernel and files): x86_64 without AVX-512/VNNI, and arm64 (Graviton2).

Emulation proves arithmetic, never speed: integer kernels take other code paths on other CPUs
(ONNX Runtime's and XNNPACK's dispatch), and their answers are what the target check compares.
`make emulators` installs qemu-user-static and registers arm64 with binfmt_misc (root only); a
machine without them gets one line saying what to do."""

import contextlib
import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
from pathlib import Path

from pipeline.cli import UserError

# qemu's CPU model per Lambda architecture: Haswell is x86_64 with AVX2 and FMA but no AVX-512 or
# VNNI (what every x86_64 Lambda host has at least); neoverse-n1 is Graviton2, Lambda's arm64.
CPU_MODELS = {"x86_64": "Haswell", "arm64": "neoverse-n1"}
QEMU = {"x86_64": "qemu-x86_64-static", "arm64": "qemu-aarch64-static"}
BINFMT = Path("/proc/sys/fs/binfmt_misc")
BINFMT_CONF = Path("/usr/lib/binfmt.d/qemu-aarch64.conf")  # Debian's qemu-user-static entry
INSTALL_HINT = "run `make emulators` as root (apt-get install qemu-user-static, then binfmt_misc for arm64)"
# The arm64 Python: Debian 12's, 3.11 like the build machine's venv, so the same cp311 wheels exist for it.
ARM64_SUITE = "bookworm"
ARM64_PYTHON = "3.11"
ARM64_PLATFORMS = ["manylinux_2_28_aarch64", "manylinux_2_17_aarch64", "manylinux2014_aarch64"]


# x86 features Haswell lacks that ONNX Runtime's and XNNPACK's kernels dispatch on (cpuinfo flag names).
WIDER_X86 = {"avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "avx512fp16", "amx_tile", "amx_int8"}


def same_as_target(architecture: str, flags: "set | None" = None) -> bool:
    """This machine computes what the architecture's CPU model would: an x86_64 CPU with none of WIDER_X86
    runs natively the kernels qemu's Haswell would run emulated (measured bit-identical on an AVX2-only
    AMD EPYC: benchmarks/results/targets_native_x86.txt), in a tenth of the time or less. flags: this
    CPU's (/proc/cpuinfo) unless given."""
    if architecture != "x86_64" or (flags is None and platform.machine() != "x86_64"):
        return False
    if flags is None:
        cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").exists() else ""
        flags = set(
            next((line.split(":", 1)[1].split() for line in cpuinfo.splitlines() if line.startswith("flags")), [])
        )
    return bool(flags) and not WIDER_X86 & flags


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


def debian_mirror() -> "list[str]":
    """This machine's Debian mirror from its apt sources, as debootstrap's last argument (the project
    names none; [] leaves debootstrap's own default)."""
    sources = [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]
    text = "\n".join(f.read_text() for f in sources if f.is_file())
    found = re.findall(r"^\s*(?:URIs:|deb(?:\s+\[[^\]]*\])?)\s+(\S+/debian)/?\s", text, re.MULTILINE)
    return found[:1]


# What a Graviton2 (Neoverse N1) says in /proc/cpuinfo, one block per CPU. qemu-user 7.2 shows an arm64 program
# this machine's x86 /proc/cpuinfo, on which ONNX Runtime's cpuinfo crashes at import (SIGSEGV); with -L the
# root's own copy is read instead. (In a chroot without /proc it fails to parse, warns and goes on, as on Lambda.)
NEOVERSE_N1_CPUINFO = """processor\t: {n}
BogoMIPS\t: 243.75
Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp ssbs
CPU implementer\t: 0x41
CPU architecture: 8
CPU variant\t: 0x3
CPU part\t: 0xd0c
CPU revision\t: 1

"""


def arm64_root(cache: Path) -> Path:
    """A minimal Debian arm64 root with Python under cache, made once with debootstrap (root only: it
    makes device files and runs arm64 programs in a chroot through binfmt_misc); ~3 minutes on an idle
    machine, 10 on a busy one. Its /proc/cpuinfo is a Neoverse N1's (NEOVERSE_N1_CPUINFO)."""
    root = cache / "arm64-root"
    if (root / "usr/bin/python3").exists():
        cpuinfo = "".join(NEOVERSE_N1_CPUINFO.format(n=n) for n in range(os.cpu_count() or 1))
        if not (root / "proc/cpuinfo").exists() or (root / "proc/cpuinfo").read_text() != cpuinfo:
            (root / "proc").mkdir(exist_ok=True)
            (root / "proc/cpuinfo").write_text(cpuinfo)
        return root
    qemu("arm64")
    if os.geteuid() != 0:
        raise UserError(f"no arm64 Python in {root}, and making one needs root: {INSTALL_HINT}")
    if not shutil.which("debootstrap"):
        raise UserError("debootstrap not found: apt-get install debootstrap (make deploy-deps)")
    register_arm64()
    partial = cache / "arm64-root.partial"  # renamed when complete: a stopped debootstrap is never taken for one
    shutil.rmtree(partial, ignore_errors=True)
    partial.parent.mkdir(parents=True, exist_ok=True)
    command = ["debootstrap", "--arch=arm64", "--variant=minbase", "--include=python3", ARM64_SUITE, str(partial)]
    made = subprocess.run(command + debian_mirror(), capture_output=True, text=True, timeout=1200)
    if made.returncode != 0:
        last = (made.stderr or made.stdout).strip().splitlines()[-1:] or [f"exit status {made.returncode}"]
        raise UserError(f"debootstrap of the arm64 Python failed: {last[0]}")
    os.replace(partial, root)
    return arm64_root(cache)


def arm64_packages(cache: Path, pins: list) -> Path:
    """The pinned packages' aarch64 wheels installed from this machine into a folder under cache (pip
    chooses the wheels for the target; it never runs under emulation), once per set of pins."""
    site = cache / f"arm64-site-{hashlib.sha256(' '.join(sorted(pins)).encode()).hexdigest()[:12]}"
    if site.exists():
        return site
    partial = site.with_name(f"{site.name}.partial")
    shutil.rmtree(partial, ignore_errors=True)
    platforms = [f"--platform={p}" for p in ARM64_PLATFORMS]
    wheels = ["--only-binary=:all:", "--implementation=cp", f"--python-version={ARM64_PYTHON}", *platforms]
    command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-compile", "--target", str(partial), *wheels]
    done = subprocess.run([*command, *pins], capture_output=True, text=True, timeout=900)
    if done.returncode != 0:
        errors = [line for line in done.stderr.splitlines() if line.startswith("ERROR")] or [done.stderr.strip()]
        raise UserError(f"installing the arm64 wheels {pins} failed: {errors[-1]}")
    os.replace(partial, site)
    return site


def main() -> None:
    register_arm64()
    print("emulators ready: " + ", ".join(f"{a} as {CPU_MODELS[a]} ({qemu(a)})" for a in QEMU))


if __name__ == "__main__":
    from pipeline import cli

    cli.run(main)
