"""Run the emulated API server: state, background controllers, persistence, HTTP site."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import shutil
import tempfile
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path

from aiohttp import web

from .app import Settings, build_app
from .engine import Engine
from .gc import Collector
from .resources import Registry
from .store import Change, Store

log = logging.getLogger(__name__)
STATE_FILE = "state.json"


@dataclass
class APIServer:
    """A running server; ``url`` is what clients and the kubeconfig point at."""

    url: str
    logs_root: Path
    engine: Engine
    state_dir: Path | None = None
    _dirty: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def store(self) -> Store:
        return self.engine.store

    def save(self) -> None:
        """Write every object to the state directory (a restart reloads them)."""
        if self.state_dir is not None:
            self.store.dump(self.state_dir / STATE_FILE)


async def _persist(server: APIServer, interval: float) -> None:
    while True:
        await server._dirty.wait()
        await asyncio.sleep(interval)
        server._dirty.clear()
        try:
            server.save()
        except OSError:
            log.exception("could not save the API state to %s", server.state_dir)


@contextlib.asynccontextmanager
async def running_apiserver(
    host: str = "127.0.0.1",
    port: int = 0,
    state_dir: Path | None = None,
    logs_root: Path | None = None,
    history_size: int = 10_000,
    bookmark_interval: float = 30.0,
) -> AsyncIterator[APIServer]:
    """Serve until the block exits; with ``state_dir`` objects survive a restart."""
    store = Store(history_size)
    if state_dir is not None:
        state_dir = Path(state_dir)
        state_dir.mkdir(parents=True, exist_ok=True)
        if (state_dir / STATE_FILE).exists():
            store.load(state_dir / STATE_FILE)
    engine = Engine(store, Registry())
    engine.bootstrap()
    temp_logs = None
    if logs_root is None:
        if state_dir is not None:
            logs_root = state_dir / "logs"
        else:
            temp_logs = Path(tempfile.mkdtemp(prefix="gantry-api-logs-"))
            logs_root = temp_logs
    logs_root.mkdir(parents=True, exist_ok=True)
    collector = Collector(engine)
    app = build_app(engine, Settings(logs_root=logs_root, bookmark_interval=bookmark_interval))
    runner = web.AppRunner(app, access_log=None, shutdown_timeout=1.0)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound_port = port
    if isinstance(site._server, asyncio.Server) and site._server.sockets:
        bound_port = int(site._server.sockets[0].getsockname()[1])
    server = APIServer(f"http://{host}:{bound_port}", logs_root, engine, state_dir)

    def mark_dirty(change: Change) -> None:
        server._dirty.set()

    tasks = [asyncio.create_task(collector.run(), name="apiserver-gc")]
    if state_dir is not None:
        store.listeners.append(mark_dirty)
        tasks.append(asyncio.create_task(_persist(server, 0.2), name="apiserver-persist"))
    collector.kick()
    try:
        yield server
    finally:
        store.close_watches()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await runner.cleanup()
        server.save()
        if temp_logs is not None:
            shutil.rmtree(temp_logs, ignore_errors=True)
