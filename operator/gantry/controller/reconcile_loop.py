"""Per-object reconcile loops woken by watch events, with a slow resync and exact wake-ups.

Each TrainingJob/InferenceService gets one kopf daemon running `run_loop`: a pass runs at
once, then again when something the object depends on changes (`Wakeups.wake`, called
from the watch handlers in `gantry.controller.watch_cache`), when the pass asked for a
wake-up at a given time (a deadline, a TTL, a back-off), or after the resync interval,
whichever comes first. Events arriving during a pass coalesce into one more pass, so a
burst of pod updates costs one reconcile, not one per update.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import functools
import logging
import random
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from typing import Any, NamedTuple, Protocol, TypeVar

from gantry.k8s.errors import ApiError, Conflict

log = logging.getLogger(__name__)

# Back-off after a failed pass: doubles from the first value up to the last.
ERROR_BACKOFF_SECONDS = (0.5, 30.0)
# A 409 on a write means the watch is about to deliver a newer object: retry sooner.
CONFLICT_BACKOFF_SECONDS = (0.1, 5.0)


class OwnerKey(NamedTuple):
    """A reconciled object: (kind, namespace, name)."""

    kind: str
    namespace: str
    name: str


class Stopped(Protocol):
    """What the loop needs of kopf's `DaemonStopped` flag."""

    def __bool__(self) -> bool: ...

    def wait(self, timeout: float | None = None) -> Awaitable[Any]: ...


class Wakeups:
    """asyncio.Events of the loops running per object; watch handlers set them.

    An object may have several loops (the reconciler and the autoscaler of a service):
    a wake-up reaches all of them. Used from the event loop's thread only.
    """

    def __init__(self) -> None:
        self._events: dict[OwnerKey, list[asyncio.Event]] = {}
        # Neighbours a loop waits for (a service's TrainingJob): dependency → dependents.
        self._dependents: dict[OwnerKey, set[OwnerKey]] = {}
        self._depends_on: dict[OwnerKey, set[OwnerKey]] = {}
        # Why loops woke up, by (kind, source): tests and metrics read it.
        self.counts: Counter[tuple[str, str]] = Counter()

    def register(self, key: OwnerKey) -> asyncio.Event:
        event = asyncio.Event()
        self._events.setdefault(key, []).append(event)
        return event

    def unregister(self, key: OwnerKey, event: asyncio.Event) -> None:
        events = self._events.get(key, [])
        if event in events:
            events.remove(event)
        if not events:
            self._events.pop(key, None)
            self.depend(key, ())

    def depend(self, key: OwnerKey, dependencies: Iterable[OwnerKey]) -> None:
        """From now on, a change of any of `dependencies` wakes `key` (replaces the last set)."""
        wanted = set(dependencies)
        for old in self._depends_on.pop(key, set()) - wanted:
            dependents = self._dependents.get(old)
            if dependents is not None:
                dependents.discard(key)
                if not dependents:
                    del self._dependents[old]
        if wanted:
            self._depends_on[key] = wanted
            for dependency in wanted:
                self._dependents.setdefault(dependency, set()).add(key)

    def wake_dependents(self, dependency: OwnerKey, source: str) -> int:
        """Wake every loop that declared `dependency`; how many there were."""
        dependents = list(self._dependents.get(dependency, ()))
        for key in dependents:
            self.wake(key, source)
        return len(dependents)

    def wake(self, key: OwnerKey, source: str) -> bool:
        """Wake `key`'s loop; False when no loop runs for it (e.g. not yet started)."""
        events = self._events.get(key)
        if not events:
            return False
        self.counts[(key.kind, source)] += 1
        for event in events:
            event.set()
        return True

    def wake_namespace(self, kind: str, namespace: str, source: str) -> int:
        """Wake every loop of `kind` in `namespace` (a neighbour they may wait for changed)."""
        keys = [k for k in self._events if k.kind == kind and k.namespace == namespace]
        for key in keys:
            self.wake(key, source)
        return len(keys)

    def running(self) -> int:
        return len(self._events)


WAKEUPS = Wakeups()


T = TypeVar("T")
_executor: concurrent.futures.ThreadPoolExecutor | None = None


def configure_workers(workers: int) -> None:
    """Size the pool that runs the reconcilers' (blocking) API writes."""
    global _executor
    old, _executor = (
        _executor,
        concurrent.futures.ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="gantry-reconcile"
        ),
    )
    if old is not None:
        old.shutdown(wait=False)


async def in_thread(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """Run blocking I/O off the event loop, on the reconcilers' pool."""
    if _executor is None:
        configure_workers(16)
    loop = asyncio.get_running_loop()
    return await loop.run_in_executor(_executor, functools.partial(fn, *args, **kwargs))


def next_timeout(resync: float, due_in: float | None) -> float:
    """Seconds to sleep: until the pass's wake-up time, never longer than the resync."""
    if due_in is None:
        return resync
    return max(0.05, min(resync, due_in))


def error_backoff(failures: int, bounds: tuple[float, float] = ERROR_BACKOFF_SECONDS) -> float:
    """Exponential back-off with jitter (between half and all of the step), capped."""
    first, cap = bounds
    step = min(cap, first * 2 ** max(0, failures - 1))
    return float(random.uniform(step / 2, step))  # jitter, not cryptography


async def wait_for_wake(wake: asyncio.Event, stopped: Stopped, timeout: float) -> None:
    """Return when woken, stopped, or after `timeout` seconds."""
    waiters = {
        asyncio.ensure_future(wake.wait()),
        asyncio.ensure_future(stopped.wait()),
    }
    try:
        await asyncio.wait(waiters, timeout=timeout, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


async def run_loop(
    key: OwnerKey,
    stopped: Stopped,
    reconcile_pass: Callable[[], Awaitable[float | None]],
    *,
    resync: Callable[[], float],
    wakeups: Wakeups = WAKEUPS,
) -> None:
    """Run `reconcile_pass` until stopped; it returns seconds until it must run again.

    API errors back off exponentially (a wake-up still runs a pass at once: the event
    may be what resolves the error); other exceptions are logged the same way, so one
    bad object never ends its loop.
    """
    wake = wakeups.register(key)
    failures = 0
    try:
        while not stopped:
            wake.clear()
            try:
                due_in = await reconcile_pass()
                failures = 0
            except Conflict as err:
                # The object changed since the cache gave it to us: its watch event is on
                # the way (and wakes the loop); retry soon either way.
                failures += 1
                due_in = error_backoff(failures, CONFLICT_BACKOFF_SECONDS)
                log.info("%s %s/%s: %s (retrying)", key.kind, key.namespace, key.name, err)
            except ApiError as err:
                failures += 1
                due_in = error_backoff(failures)
                log.warning("%s %s/%s: %s (retrying)", key.kind, key.namespace, key.name, err)
            except Exception:
                failures += 1
                due_in = error_backoff(failures)
                log.exception("%s %s/%s: reconcile failed", key.kind, key.namespace, key.name)
            if stopped:
                break
            await wait_for_wake(wake, stopped, next_timeout(resync(), due_in))
    finally:
        wakeups.unregister(key, wake)


class LatestBody:
    """The freshest known copy of the reconciled object.

    After the loop writes the object's status, the watch may deliver that change after the
    next pass has begun; that pass must not recompute from the older copy (it would, say,
    start the same attempt twice). So the written result is kept until the watch catches
    up: while the cached copy still has the resourceVersion the write was based on, the
    result is used instead.
    """

    def __init__(self) -> None:
        self._based_on: str | None = None
        self._written: dict[str, Any] | None = None

    def remember(self, based_on: Mapping[str, Any], written: dict[str, Any]) -> None:
        self._based_on = str((based_on.get("metadata") or {}).get("resourceVersion"))
        self._written = written

    def pick(self, cached: Mapping[str, Any]) -> dict[str, Any]:
        version = str((cached.get("metadata") or {}).get("resourceVersion"))
        if self._written is not None and version == self._based_on:
            return self._written
        self._based_on, self._written = None, None
        return dict(cached)
