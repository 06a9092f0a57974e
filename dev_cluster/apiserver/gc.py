"""Garbage collection, the namespace controller and CRD instance cleanup.

Runs as a background task woken after writes, as the kube-controller-manager's
controllers do: dependents whose owners are all gone are deleted; owners being deleted
in the foreground wait for their blocking dependents; terminating namespaces and CRDs
are emptied and then removed.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from . import errors
from .engine import (
    CRD_CLEANUP,
    CRD_GR,
    FOREGROUND,
    NS_GR,
    DeleteOptions,
    Engine,
    WriteOptions,
)
from .meta import clone, deleting
from .store import GR

JSON = dict[str, Any]
log = logging.getLogger(__name__)


class Collector:
    """Background controller loop; ``kick()`` after writes, ``run()`` as a task."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._wake = asyncio.Event()
        engine.on_dirty = self.kick

    def kick(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            # Let the request that caused the wake-up answer first, as a real GC lags.
            await asyncio.sleep(0)
            try:
                for _ in range(1000):
                    if not self.step():
                        break
            except Exception:  # a controller bug must not stop the server
                log.exception("garbage collection pass failed")

    def step(self) -> bool:
        """One pass; True when it changed something (so another pass may be due)."""
        changed = False
        suspects, self.engine.suspects = self.engine.suspects, set()
        for uid in sorted(suspects):
            changed |= self._collect(uid)
        changed |= self._namespaces()
        changed |= self._crds()
        return changed

    def _info(self, gr: GR) -> Any:
        return self.engine.registry.storage_info(*gr)

    def _delete(self, gr: GR, obj: JSON, propagation: str = "Background") -> bool:
        info = self._info(gr)
        if info is None or deleting(obj):
            return False
        meta = obj["metadata"]
        try:
            self.engine.delete(
                info,
                str(meta.get("namespace") or ""),
                str(meta["name"]),
                DeleteOptions(propagation=propagation),
            )
        except errors.APIError:
            return False
        return True

    def _collect(self, uid: str) -> bool:
        store = self.engine.store
        owner = store.by_uid(uid)
        changed = False
        if owner is None:
            for gr, dep in store.dependents_of(uid):
                refs = dep["metadata"].get("ownerReferences") or []
                if all(store.by_uid(str(r.get("uid"))) is None for r in refs):
                    changed |= self._delete(gr, dep)
            return changed
        finalizers = owner["metadata"].get("finalizers") or []
        if deleting(owner) and FOREGROUND in finalizers:
            blocking = False
            for gr, dep in store.dependents_of(uid):
                changed |= self._delete(gr, dep, "Foreground")
                refs = dep["metadata"].get("ownerReferences") or []
                if any(r.get("uid") == uid and r.get("blockOwnerDeletion") for r in refs):
                    blocking = True
            if not blocking:
                changed |= self._drop_finalizer(owner, FOREGROUND)
            else:
                self.engine.suspects.add(uid)
        return changed

    def _drop_finalizer(self, obj: JSON, finalizer: str) -> bool:
        where = self.engine.store.uids.get(str(obj["metadata"]["uid"]))
        if where is None:
            return False
        info = self._info(where[0])
        new = clone(obj)
        new["metadata"]["finalizers"] = [
            f for f in new["metadata"].get("finalizers") or [] if f != finalizer
        ]
        meta = obj["metadata"]
        self.engine.update(
            info, str(meta.get("namespace") or ""), str(meta["name"]), new, WriteOptions()
        )
        return True

    def _namespaces(self) -> bool:
        store = self.engine.store
        changed = False
        for ns in store.list(NS_GR):
            if not deleting(ns):
                continue
            name = ns["metadata"]["name"]
            remaining = 0
            for gr in store.resources():
                info = self._info(gr)
                if info is None or not info.namespaced:
                    continue
                for obj in store.list(gr, name):
                    remaining += 1
                    changed |= self._delete(gr, obj)
            if remaining == 0 and not ns["metadata"].get("finalizers"):
                self.engine._remove(self._info(NS_GR), ns)
                changed = True
        return changed

    def _crds(self) -> bool:
        store = self.engine.store
        changed = False
        for crd in store.list(CRD_GR):
            if not deleting(crd) or CRD_CLEANUP not in (crd["metadata"].get("finalizers") or []):
                continue
            spec = crd["spec"]
            gr = (spec["group"], spec["names"]["plural"])
            objs = store.list(gr)
            for obj in objs:
                changed |= self._delete(gr, obj)
            if not store.list(gr):
                changed |= self._drop_finalizer(crd, CRD_CLEANUP)
        return changed
