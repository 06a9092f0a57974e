"""Loopback ports for the servers the dev cluster, tests and benchmarks start.

Binding port 0 and handing the number to a process started later leaves a window in
which the kernel can give the same port to anyone else who asks it for one: an outgoing
connection's source port or another bind to port 0. The process then fails with "address
already in use" (seen: kube-scheduler, seconds after its port was picked, while the API
server opened connections). The kernel hands out ports only from its ephemeral range, so
ports picked outside it are taken only by a process that names them. A bind check skips
the ones a live listener already holds, and a per-process record keeps two picks apart
(a sequence of picks closes each check socket before the next pick).
"""

from __future__ import annotations

import random
import socket
import threading
from pathlib import Path

# Below Linux's default ephemeral range (32768-60999), above the well-known and common
# registered server ports, and short of torchrun's 29500.
PICK_RANGE = range(15000, 29000)
EPHEMERAL_RANGE_FILE = Path("/proc/sys/net/ipv4/ip_local_port_range")

_picked: set[int] = set()
_lock = threading.Lock()


def ephemeral_range(path: Path = EPHEMERAL_RANGE_FILE) -> range:
    """The ports the kernel hands out on its own (Linux's default where it cannot say)."""
    try:
        low, high = (int(word) for word in path.read_text().split())
    except (OSError, ValueError):
        low, high = 32768, 60999
    return range(low, high + 1)


def _bindable(host: str, port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def pick_port(host: str = "127.0.0.1", *, kernel_range: range | None = None) -> int:
    """A port on `host` that nothing holds now and that the kernel never hands out itself."""
    kernel = ephemeral_range() if kernel_range is None else kernel_range
    with _lock:
        candidates = [p for p in PICK_RANGE if p not in kernel and p not in _picked]
        random.shuffle(candidates)  # two processes picking at once rarely try the same one
        for port in candidates:
            if _bindable(host, port):
                _picked.add(port)
                return port
        # Nothing free outside the kernel's range (a machine that made it span every
        # port): fall back to asking the kernel, with the window described above.
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        _picked.add(port)
        return port
