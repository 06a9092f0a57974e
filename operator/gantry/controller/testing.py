"""Run the whole operator in a background thread (integration tests, demos).

The operator gets its own event loop; `stop()` sets kopf's stop flag and joins the thread.
Only one in-process operator may run at a time: kopf's registry and the connection
target are process-wide.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import dataclass, field

import kopf

from gantry.controller.connection import set_target
from gantry.controller.handlers import load_handlers

log = logging.getLogger(__name__)
_running = threading.Lock()


@dataclass
class OperatorHandle:
    """A running in-process operator; `stop()` it (or use it as a context manager)."""

    thread: threading.Thread
    stop_flag: threading.Event
    ready_flag: threading.Event
    errors: list[BaseException] = field(default_factory=list)

    def stop(self, timeout: float = 30) -> None:
        self.stop_flag.set()
        self.thread.join(timeout)
        if self.thread.is_alive():
            log.warning("the in-process operator did not stop within %gs", timeout)
        else:
            set_target(None)
            if _running.locked():
                _running.release()

    @property
    def alive(self) -> bool:
        return self.thread.is_alive()

    def __enter__(self) -> OperatorHandle:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_operator_in_thread(
    kubeconfig_or_url: str,
    *,
    namespaces: list[str] | None = None,
    ready_timeout: float = 30,
) -> OperatorHandle:
    """Start kopf with every handler module against an API URL or a kubeconfig path."""
    if not _running.acquire(blocking=False):
        raise RuntimeError("an in-process operator is already running; stop it first")
    try:
        set_target(kubeconfig_or_url)
        load_handlers()
    except BaseException:
        _running.release()
        raise
    stop_flag, ready_flag = threading.Event(), threading.Event()
    handle = OperatorHandle(threading.Thread(), stop_flag, ready_flag)

    def main() -> None:
        try:
            asyncio.run(
                kopf.operator(
                    standalone=True,
                    clusterwide=not namespaces,
                    namespaces=namespaces or (),
                    stop_flag=stop_flag,
                    ready_flag=ready_flag,
                )
            )
        except BaseException as err:  # reported to the caller through handle.errors
            handle.errors.append(err)
            log.exception("the in-process operator failed")
            ready_flag.set()

    handle.thread = threading.Thread(target=main, name="gantry-operator", daemon=True)
    handle.thread.start()
    if not ready_flag.wait(ready_timeout) or handle.errors:
        handle.stop()
        cause = handle.errors[0] if handle.errors else None
        raise RuntimeError(f"the operator did not start: {cause or 'timed out'}") from cause
    return handle
