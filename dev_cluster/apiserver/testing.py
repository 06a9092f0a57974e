"""A server on a background thread, for synchronous tests and scripts."""

from __future__ import annotations

import asyncio
import threading
from pathlib import Path
from types import TracebackType

from .server import APIServer, running_apiserver


class ThreadedAPIServer:
    """Runs :func:`running_apiserver` in its own event loop; ``stop()`` ends it."""

    def __init__(self, state_dir: Path | None = None, **options: object) -> None:
        self._state_dir = state_dir
        self._options = options
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._error: BaseException | None = None
        self.server: APIServer | None = None
        self._thread = threading.Thread(target=self._run, name="apiserver", daemon=True)

    @property
    def url(self) -> str:
        assert self.server is not None
        return self.server.url

    def start(self) -> ThreadedAPIServer:
        self._thread.start()
        self._ready.wait(30)
        if self._error is not None:
            raise RuntimeError("the API server did not start") from self._error
        if self.server is None:
            raise RuntimeError("the API server did not start within 30 s")
        return self

    def _run(self) -> None:
        asyncio.run(self._main())

    async def _main(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        try:
            async with running_apiserver(state_dir=self._state_dir, **self._options) as server:  # type: ignore[arg-type]
                self.server = server
                self._ready.set()
                await self._stop.wait()
        except BaseException as exc:
            self._error = exc
            self._ready.set()
            raise

    def stop(self) -> None:
        if self._loop is not None and self._stop is not None and self._thread.is_alive():
            self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)

    def __enter__(self) -> ThreadedAPIServer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()


def start_in_thread(state_dir: Path | None = None, **options: object) -> ThreadedAPIServer:
    """Start a server on a thread; use ``.url``, then ``.stop()`` or a ``with`` block."""
    return ThreadedAPIServer(state_dir, **options).start()
