"""A control plane on its own event loop in a background thread, for synchronous callers
(pytest fixtures, benchmarks) that need a real API server without a node."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import TracebackType

from .launcher import ControlPlane, Ports


class ThreadedControlPlane:
    """`with ThreadedControlPlane(dir) as cp:` → `cp.url`, `cp.kubeconfig`."""

    def __init__(self, state_dir: Path, ports: Ports | None = None) -> None:
        self.control_plane = ControlPlane(Path(state_dir), ports=ports or Ports())
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="control-plane", daemon=True
        )

    @property
    def url(self) -> str:
        return self.control_plane.url

    @property
    def kubeconfig(self) -> Path:
        return self.control_plane.admin_kubeconfig

    def start(self, timeout: float = 180) -> ThreadedControlPlane:
        self._thread.start()
        future = asyncio.run_coroutine_threadsafe(self.control_plane.start(timeout), self._loop)
        try:
            future.result(timeout + 10)
        except BaseException:
            self.stop()
            raise
        return self

    def stop(self) -> None:
        if self._loop.is_closed():
            return
        if self._thread.is_alive():
            future = asyncio.run_coroutine_threadsafe(self.control_plane.stop(), self._loop)
            future.result(60)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(10)
        self._loop.close()

    def __enter__(self) -> ThreadedControlPlane:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()
