"""Binds every PersistentVolumeClaim to a directory under `<state>/pvc/<ns>/<claim>`."""

from __future__ import annotations

from pathlib import Path

from . import api as k8s
from .api import APIClient
from .informer import Informer
from .volumes import pvc_dir


class ClaimBinder:
    def __init__(self, client: APIClient, pvcs: Informer, state_dir: Path) -> None:
        self.client = client
        self.pvcs = pvcs
        self.state_dir = state_dir

    async def reconcile(self) -> None:
        for pvc in self.pvcs.items():
            meta, spec = pvc["metadata"], pvc.get("spec") or {}
            if (pvc.get("status") or {}).get("phase") == "Bound" or meta.get("deletionTimestamp"):
                continue
            ns = str(meta.get("namespace") or "default")
            pvc_dir(self.state_dir, ns, meta["name"]).mkdir(parents=True, exist_ok=True)
            storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
            status = {
                "phase": "Bound",
                "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
                "capacity": {"storage": storage},
            }
            answer = await self.client.patch(
                k8s.PVCS, ns, meta["name"], {"status": status}, sub="status"
            )
            self.pvcs.upsert(answer)
