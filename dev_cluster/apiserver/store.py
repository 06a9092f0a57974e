"""In-memory object storage with one global resourceVersion counter, as etcd keeps it.

The store records every change in a bounded history so watches can resume from a
resourceVersion and paginated lists can be served from a consistent snapshot; anything
older than the history window is ``410 Gone``, as on a real server after compaction.
"""

from __future__ import annotations

import asyncio
import builtins
import json
import os
from collections import deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import too_old_resource_version

JSON = dict[str, Any]
GR = tuple[str, str]  # (group, plural)
Key = tuple[str, str]  # (namespace, name); namespace "" for cluster-scoped


def key_of(obj: Mapping[str, Any]) -> Key:
    meta = obj.get("metadata") or {}
    return (str(meta.get("namespace") or ""), str(meta["name"]))


@dataclass
class Change:
    """One write, as watches see it (never mutated once recorded, except the cache)."""

    rv: int
    type: str  # ADDED, MODIFIED, DELETED
    gr: GR
    obj: JSON
    prev: JSON | None
    # Encoded watch lines by (event type, apiVersion), shared by all watchers.
    encoded: dict[tuple[str, str], bytes] = field(default_factory=dict, repr=False)

    @property
    def namespace(self) -> str:
        return key_of(self.obj)[0]


@dataclass(eq=False)
class Watcher:
    """A subscription to one resource's changes; the HTTP layer drains ``queue``."""

    gr: GR
    namespace: str | None
    match: Callable[[Mapping[str, Any]], bool]
    queue: asyncio.Queue[Change | None] = field(default_factory=asyncio.Queue)

    def wants(self, change: Change) -> bool:
        if change.gr != self.gr:
            return False
        if self.namespace is not None and change.namespace != self.namespace:
            return False
        return self.match(change.obj) or (
            change.prev is not None and change.type == "MODIFIED" and self.match(change.prev)
        )


class Store:
    """Objects by group/resource and namespace/name; writes bump the global resourceVersion."""

    def __init__(self, history_size: int = 10_000) -> None:
        self.rv = 1
        self._objects: dict[GR, dict[Key, JSON]] = {}
        self._history: deque[Change] = deque(maxlen=history_size)
        self._watchers: set[Watcher] = set()
        self.uids: dict[str, tuple[GR, Key]] = {}
        self.dependents: dict[str, set[tuple[GR, Key]]] = {}
        self.listeners: list[Callable[[Change], None]] = []

    # reads
    def get(self, gr: GR, namespace: str, name: str) -> JSON | None:
        return self._objects.get(gr, {}).get((namespace, name))

    def list(self, gr: GR, namespace: str | None = None) -> builtins.list[JSON]:
        """Objects in etcd key order (namespace, then name)."""
        objs = self._objects.get(gr, {})
        keys = sorted(k for k in objs if namespace is None or k[0] == namespace)
        return [objs[k] for k in keys]

    def resources(self) -> builtins.list[GR]:
        return [gr for gr, objs in self._objects.items() if objs]

    def count(self, gr: GR, namespace: str | None = None) -> int:
        objs = self._objects.get(gr, {})
        if namespace is None:
            return len(objs)
        return sum(1 for k in objs if k[0] == namespace)

    def by_uid(self, uid: str) -> JSON | None:
        where = self.uids.get(uid)
        return None if where is None else self._objects.get(where[0], {}).get(where[1])

    def dependents_of(self, uid: str) -> builtins.list[tuple[GR, JSON]]:
        out: builtins.list[tuple[GR, JSON]] = []
        for gr, key in sorted(self.dependents.get(uid, ())):
            obj = self._objects.get(gr, {}).get(key)
            if obj is not None:
                out.append((gr, obj))
        return out

    @property
    def oldest_rv(self) -> int:
        """Watches and continues from before this resourceVersion are gone."""
        return self._history[0].rv - 1 if self._history else self.rv

    # writes
    def put(self, gr: GR, obj: JSON) -> Change:
        """Store a new version of an object, stamping the next resourceVersion."""
        self.rv += 1
        obj["metadata"]["resourceVersion"] = str(self.rv)
        key = key_of(obj)
        bucket = self._objects.setdefault(gr, {})
        prev = bucket.get(key)
        bucket[key] = obj
        self._index(gr, key, prev, obj)
        return self._record(Change(self.rv, "ADDED" if prev is None else "MODIFIED", gr, obj, prev))

    def remove(self, gr: GR, namespace: str, name: str) -> Change | None:
        bucket = self._objects.get(gr, {})
        prev = bucket.pop((namespace, name), None)
        if prev is None:
            return None
        self.rv += 1
        final = dict(prev, metadata=dict(prev["metadata"], resourceVersion=str(self.rv)))
        self._index(gr, (namespace, name), prev, None)
        return self._record(Change(self.rv, "DELETED", gr, final, prev))

    def _index(self, gr: GR, key: Key, old: JSON | None, new: JSON | None) -> None:
        if old is not None:
            self.uids.pop(str(old["metadata"].get("uid")), None)
            for ref in old["metadata"].get("ownerReferences") or []:
                deps = self.dependents.get(str(ref.get("uid")))
                if deps is not None:
                    deps.discard((gr, key))
                    if not deps:
                        del self.dependents[str(ref.get("uid"))]
        if new is not None:
            self.uids[str(new["metadata"].get("uid"))] = (gr, key)
            for ref in new["metadata"].get("ownerReferences") or []:
                self.dependents.setdefault(str(ref.get("uid")), set()).add((gr, key))

    def _record(self, change: Change) -> Change:
        self._history.append(change)
        for watcher in self._watchers:
            if watcher.wants(change):
                watcher.queue.put_nowait(change)
        for listener in self.listeners:
            listener(change)
        return change

    # watches
    def watch(
        self,
        gr: GR,
        namespace: str | None,
        match: Callable[[Mapping[str, Any]], bool],
        since: int | None,
    ) -> Watcher:
        """Subscribe; with ``since``, first queue every later change still in history."""
        if since is not None and since < self.oldest_rv:
            raise too_old_resource_version(since, self.oldest_rv + 1)
        watcher = Watcher(gr, namespace, match)
        if since is not None:
            for change in self._history:
                if change.rv > since and watcher.wants(change):
                    watcher.queue.put_nowait(change)
        self._watchers.add(watcher)
        return watcher

    def unwatch(self, watcher: Watcher) -> None:
        self._watchers.discard(watcher)

    def close_watches(self) -> None:
        for watcher in self._watchers:
            watcher.queue.put_nowait(None)
        self._watchers.clear()

    def snapshot(self, gr: GR, namespace: str | None, at: int) -> builtins.list[JSON]:
        """The collection as it was at resourceVersion ``at`` (for list continuations)."""
        if at < self.oldest_rv:
            raise too_old_resource_version(at, self.oldest_rv + 1)
        objs = {
            k: v
            for k, v in self._objects.get(gr, {}).items()
            if namespace is None or k[0] == namespace
        }
        for change in reversed(self._history):
            if change.rv <= at:
                break
            if change.gr != gr or (namespace is not None and change.namespace != namespace):
                continue
            key = key_of(change.obj)
            if change.prev is None:
                objs.pop(key, None)
            else:
                objs[key] = change.prev
        return [objs[k] for k in sorted(objs)]

    # persistence
    def dump(self, path: Path) -> None:
        """Write every object to ``path`` atomically (a restart reloads them)."""
        data = {
            "resourceVersion": self.rv,
            "objects": [
                {"group": gr[0], "resource": gr[1], "object": obj}
                for gr, objs in self._objects.items()
                for obj in objs.values()
            ],
        }
        tmp = path.with_suffix(".tmp")
        # Secrets are stored too: keep the file private to its owner.
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(json.dumps(data))
        tmp.replace(path)

    def load(self, path: Path) -> builtins.list[tuple[GR, JSON]]:
        """Reload a dump; history starts empty, so older resourceVersions are gone."""
        data = json.loads(path.read_text())
        loaded: builtins.list[tuple[GR, JSON]] = []
        for item in data.get("objects", []):
            gr = (str(item["group"]), str(item["resource"]))
            obj = item["object"]
            key = key_of(obj)
            self._objects.setdefault(gr, {})[key] = obj
            self._index(gr, key, None, obj)
            loaded.append((gr, obj))
        self.rv = int(data.get("resourceVersion", 1))
        return loaded

    def all_objects(self) -> Iterable[tuple[GR, JSON]]:
        for gr, objs in list(self._objects.items()):
            for obj in list(objs.values()):
                yield gr, obj
