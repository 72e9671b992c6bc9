"""Free loopback ports for child processes to bind: the local server, the smoke test's container, the
tests' stand-ins."""

import random
import socket
from pathlib import Path

PICK = random.SystemRandom()


def _bindable(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def free_port(span: int = 1) -> int:
    """A loopback port (the first of span consecutive ones) free now, for a child process to bind.
    Taken below the kernel's ephemeral range: a port from bind(0) is one an outgoing connection or
    another bind(0) may take before the child binds it (CI lost the emulator's port to that race)."""
    try:
        low = int(Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        low = 0
    for _ in range(200):
        if low > 11000:
            port = PICK.randrange(10000, low - span)  # not the global random: tests seed that one per test
        else:
            with socket.socket() as s:
                s.bind(("127.0.0.1", 0))
                port = s.getsockname()[1]
        if all(_bindable(port + i) for i in range(span)):
            return port
    raise RuntimeError("no free loopback ports")
