"""Pod IP addresses on the loopback network, unique across dev clusters on one host."""

from __future__ import annotations

import fcntl
import tempfile
from pathlib import Path
from typing import IO


class IPAllocator:
    """Loopback pod IPs: 127.0.X.1-254, never 127.0.0.x; reused after release.

    Each allocator claims whole 127.0.X.0/24 blocks with an flock on
    `<tmp>/gantry-dev-net/127.0.X.lock`, so several dev clusters on one host (parallel
    tests, two users) never hand out the same address; the lock goes with the process."""

    def __init__(self, lock_dir: Path | None = None) -> None:
        self._used: dict[str, str] = {}
        self._lock_dir = lock_dir or Path(tempfile.gettempdir()) / "gantry-dev-net"
        self._blocks: list[int] = []
        self._locks: list[IO[bytes]] = []

    def _claim_block(self) -> int:
        self._lock_dir.mkdir(parents=True, exist_ok=True)
        for block in range(1, 256):
            if block in self._blocks:
                continue
            fh = open(self._lock_dir / f"127.0.{block}.lock", "ab")  # noqa: SIM115 (held open)
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                fh.close()
                continue
            self._locks.append(fh)
            self._blocks.append(block)
            return block
        raise RuntimeError("no free 127.0.X.0/24 block left for pod IPs")

    def allocate(self, uid: str, wanted: str | None = None) -> str:
        if uid in self._used:
            return self._used[uid]
        taken = set(self._used.values())
        if wanted and wanted not in taken:
            parts = wanted.split(".")
            if len(parts) == 4 and parts[:2] == ["127", "0"] and int(parts[2]) in self._blocks:
                self._used[uid] = wanted
                return wanted
        for block in [*self._blocks, None]:
            if block is None:
                block = self._claim_block()
            for last in range(1, 255):
                ip = f"127.0.{block}.{last}"
                if ip not in taken:
                    self._used[uid] = ip
                    return ip
        raise RuntimeError("no loopback address left for pods")

    def release(self, uid: str) -> None:
        self._used.pop(uid, None)

    def close(self) -> None:
        for fh in self._locks:
            fh.close()
        self._locks.clear()
        self._blocks.clear()
