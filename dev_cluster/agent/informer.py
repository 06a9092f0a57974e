"""List-then-watch caches of API objects (the client-go informer pattern).

Controllers read these caches and are woken when they change; writes go to the API.
A controller that has just written an object puts the answer in the cache at once
(`upsert`) so that its next pass does not act twice before the watch catches up; an
older resourceVersion never overwrites a newer one.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable, Iterator

import aiohttp

from .api import APIClient, APIError, Obj, Resource, WatchExpired

log = logging.getLogger(__name__)

Key = tuple[str, str]


def key_of(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta.get("name") or ""))


def _rv(obj: Obj) -> int:
    try:
        return int((obj.get("metadata") or {}).get("resourceVersion") or 0)
    except ValueError:
        return 0


class Informer:
    """One resource's objects, kept current by list + watch with resume."""

    def __init__(self, client: APIClient, resource: Resource, field_selector: str = "") -> None:
        self.client = client
        self.resource = resource
        self.field_selector = field_selector
        self.objects: dict[Key, Obj] = {}
        self._gone: dict[Key, int] = {}
        self.synced = asyncio.Event()
        self._listeners: list[Callable[[], None]] = []

    def subscribe(self, listener: Callable[[], None]) -> None:
        self._listeners.append(listener)

    def _notify(self) -> None:
        for listener in self._listeners:
            listener()

    def get(self, namespace: str, name: str) -> Obj | None:
        return self.objects.get((namespace, name))

    def items(self, namespace: str | None = None) -> Iterator[Obj]:
        for (ns, _), obj in list(self.objects.items()):
            if namespace is None or ns == namespace:
                yield obj

    def upsert(self, obj: Obj) -> None:
        """Take a newer version of an object (from a watch or a write's answer)."""
        key = key_of(obj)
        current = self.objects.get(key)
        rv = _rv(obj)
        if current is not None and _rv(current) > rv:
            return
        if key in self._gone and self._gone[key] >= rv:
            return
        self._gone.pop(key, None)
        self.objects[key] = obj
        self._notify()

    def remove(self, obj: Obj) -> None:
        key = key_of(obj)
        current = self.objects.get(key)
        if current is not None and current.get("metadata", {}).get("uid") != obj.get(
            "metadata", {}
        ).get("uid"):
            return
        self.objects.pop(key, None)
        self._gone[key] = max(_rv(obj), _rv(current) if current else 0)
        self._notify()

    async def run(self) -> None:
        """List and watch forever; relist when the watch expires or the API fails."""
        delay = 0.2
        while True:
            try:
                listing = await self.client.list(self.resource, field_selector=self.field_selector)
                fresh: dict[Key, Obj] = {}
                for item in listing.get("items") or []:
                    fresh[key_of(item)] = item
                self.objects = fresh
                self._gone.clear()
                version = str((listing.get("metadata") or {}).get("resourceVersion") or "0")
                self.synced.set()
                self._notify()
                delay = 0.2
                while True:
                    async for event in self.client.watch(
                        self.resource, version, self.field_selector
                    ):
                        obj = event.get("object") or {}
                        version = str(obj.get("metadata", {}).get("resourceVersion") or version)
                        kind = event.get("type")
                        if kind == "DELETED":
                            self.remove(obj)
                        elif kind in ("ADDED", "MODIFIED"):
                            self.upsert(obj)
            except WatchExpired:
                log.debug("watch on %s expired; relisting", self.resource.plural)
            except asyncio.CancelledError:
                raise
            except APIError as exc:
                # a refusal (403, 404) is worth a warning; it will not fix itself quickly
                log.warning("watch on %s failed (%s); retrying", self.resource.plural, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except (aiohttp.ClientError, OSError, ValueError) as exc:
                log.debug("watch on %s failed (%s); retrying", self.resource.plural, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
            except Exception:  # a malformed object must not stop the node from watching
                log.exception("watch on %s failed; relisting", self.resource.plural)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


class Trigger:
    """Coalesces change notifications into one wake-up for a controller loop."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def __call__(self) -> None:
        self._event.set()

    async def wait(self, timeout: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._event.wait(), timeout)
        self._event.clear()
