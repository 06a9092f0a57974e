"""Pod IP addresses on the host's loopback interface, unique across dev clusters on one host.

Pods share the host's network, so each binds its own address. Where the agent may add
addresses to `lo` (root, or CAP_NET_ADMIN), pod IPs come from 198.18.0.0/15 (reserved for
network benchmarking, RFC 2544, so it collides with no real network): each pod's address
is added to `lo` as a /32 when the pod starts and removed when it goes. Kubernetes accepts
those in EndpointSlices, so the real EndpointSlice controller publishes the pods as it
would in a cluster. Elsewhere, pods fall back to 127.0.X.Y: every loopback address works
without set-up, but EndpointSlices refuse loopback addresses, so Services then have no
endpoints (the agent warns).

Each allocator claims whole /24 blocks with an flock on `<tmp>/gantry-dev-net/<block>.lock`,
so several dev clusters on one host (parallel tests, two users) never hand out the same
address; the lock goes with the process, and addresses a crashed agent left on `lo` are
removed when the block is claimed again.
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import logging
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import IO

log = logging.getLogger(__name__)
ROUTABLE_PREFIX = "198.18"
LOOPBACK_PREFIX = "127.0"


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", *args], capture_output=True, text=True, timeout=10, check=False)


def can_add_addresses() -> bool:
    """Whether this process may add addresses to `lo` (tried once, with a throwaway one)."""
    if shutil.which("ip") is None or os.geteuid() != 0:
        return False
    probe = f"{ROUTABLE_PREFIX}.255.254/32"
    added = _ip("addr", "add", probe, "dev", "lo")
    if added.returncode != 0 and "File exists" not in added.stderr:
        return False
    _ip("addr", "del", probe, "dev", "lo")
    return True


def addresses_on_lo(prefix: str) -> list[str]:
    out = _ip("-o", "-4", "addr", "show", "dev", "lo").stdout
    found = []
    for line in out.splitlines():
        parts = line.split()
        if "inet" in parts:
            address = parts[parts.index("inet") + 1].split("/")[0]
            if address.startswith(prefix + "."):
                found.append(address)
    return found


class IPAllocator:
    """Pod IPs `<prefix>.X.1-254`, never `127.0.0.x`; reused after release."""

    def __init__(self, lock_dir: Path | None = None, routable: bool | None = None) -> None:
        self.routable = can_add_addresses() if routable is None else routable
        self.prefix = ROUTABLE_PREFIX if self.routable else LOOPBACK_PREFIX
        if not self.routable:
            log.warning(
                "cannot add pod addresses to lo (needs root or CAP_NET_ADMIN): pods get "
                "127.0.X.Y addresses, which EndpointSlices refuse, so Services have no endpoints"
            )
        self._used: dict[str, str] = {}
        self._lock_dir = lock_dir or Path(tempfile.gettempdir()) / "gantry-dev-net"
        self._blocks: list[int] = []
        self._locks: list[IO[bytes]] = []

    def _claim_block(self) -> int:
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        for block in range(1, 255):
            if block in self._blocks:
                continue
            name = f"{self.prefix}.{block}"
            fh = open(self._lock_dir / f"{name}.lock", "ab")  # noqa: SIM115 (held open)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            self._locks.append(fh)
            self._blocks.append(block)
            if self.routable:
                for stale in addresses_on_lo(name):
                    _ip("addr", "del", f"{stale}/32", "dev", "lo")
            return block
        raise RuntimeError(f"no free {self.prefix}.X.0/24 block left for pod IPs")

    def _in_my_blocks(self, ip: str) -> bool:
        parts = ip.split(".")
        return (
            len(parts) == 4
            and ".".join(parts[:2]) == self.prefix
            and parts[2].isdigit()
            and int(parts[2]) in self._blocks
        )

    def allocate(self, uid: str, wanted: str | None = None) -> str:
        if uid in self._used:
            return self._used[uid]
        taken = set(self._used.values())
        chosen = None
        if wanted and wanted not in taken and self._in_my_blocks(wanted):
            chosen = wanted
        else:
            for block in [*self._blocks, None]:
                if block is None:
                    block = self._claim_block()
                free = (f"{self.prefix}.{block}.{n}" for n in range(1, 255))
                chosen = next((ip for ip in free if ip not in taken), None)
                if chosen:
                    break
        if chosen is None:
            raise RuntimeError("no address left for pods")
        self._bring_up(chosen)
        self._used[uid] = chosen
        return chosen

    def _bring_up(self, ip: str) -> None:
        if not self.routable:
            return
        ipaddress.ip_address(ip)  # never hand anything else to `ip`
        added = _ip("addr", "add", f"{ip}/32", "dev", "lo")
        if added.returncode != 0 and "File exists" not in added.stderr:
            raise RuntimeError(f"cannot add pod address {ip} to lo: {added.stderr.strip()}")

    def release(self, uid: str) -> None:
        ip = self._used.pop(uid, None)
        if ip and self.routable:
            _ip("addr", "del", f"{ip}/32", "dev", "lo")

    def close(self) -> None:
        if self.routable:
            for ip in list(self._used.values()):
                with contextlib.suppress(OSError, subprocess.SubprocessError):
                    _ip("addr", "del", f"{ip}/32", "dev", "lo")
        self._used.clear()
        for fh in self._locks:
            fh.close()
        self._locks.clear()
        self._blocks.clear()
