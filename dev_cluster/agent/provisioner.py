"""A local-path volume provisioner: one host directory per claim, as kind's does.

A bare control plane provisions nothing, and kube-scheduler will not place a pod whose
claim is unbound. The dev cluster ships the default StorageClass `gantry-local`
(provisioner `gantry.dev/local-path`); kube-controller-manager's PV controller marks each
claim of that class for this provisioner, which creates a hostPath PersistentVolume
pre-bound to the claim (`<state>/pvc/<namespace>/<claim>`); the PV controller binds them.
When a claim is deleted its volume is Released; with reclaim policy Delete, the directory
and the PV are removed here.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from . import api as k8s
from .api import APIClient, APIError
from .informer import Informer

log = logging.getLogger(__name__)
Obj = dict[str, Any]
PROVISIONER = "gantry.dev/local-path"
STORAGE_CLASS = "gantry-local"
PROVISIONER_ANNOTATIONS = (
    "volume.kubernetes.io/storage-provisioner",
    "volume.beta.kubernetes.io/storage-provisioner",
)


def storage_class() -> Obj:
    """The default StorageClass of the dev cluster."""
    return {
        "apiVersion": "storage.k8s.io/v1",
        "kind": "StorageClass",
        "metadata": {
            "name": STORAGE_CLASS,
            "annotations": {"storageclass.kubernetes.io/is-default-class": "true"},
        },
        "provisioner": PROVISIONER,
        "reclaimPolicy": "Delete",
        "volumeBindingMode": "Immediate",
    }


def claim_dir(state_dir: Path, namespace: str, claim: str) -> Path:
    return state_dir / "pvc" / namespace / claim


def wants_volume(claim: Obj) -> bool:
    """A pending claim that the PV controller handed to this provisioner."""
    meta, spec = claim.get("metadata") or {}, claim.get("spec") or {}
    annotations = meta.get("annotations") or {}
    ours = any(annotations.get(a) == PROVISIONER for a in PROVISIONER_ANNOTATIONS)
    return (
        ours
        and not spec.get("volumeName")
        and not meta.get("deletionTimestamp")
        and (claim.get("status") or {}).get("phase", "Pending") == "Pending"
    )


def volume_for(claim: Obj, state_dir: Path) -> Obj:
    """The PersistentVolume for `claim`, pre-bound to it through claimRef."""
    meta, spec = claim["metadata"], claim.get("spec") or {}
    ns, name = str(meta["namespace"]), str(meta["name"])
    storage = ((spec.get("resources") or {}).get("requests") or {}).get("storage", "1Gi")
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {
            "name": f"pvc-{meta['uid']}",
            "annotations": {"pv.kubernetes.io/provisioned-by": PROVISIONER},
            "labels": {"gantry.dev/provisioner": "local-path"},
        },
        "spec": {
            "capacity": {"storage": storage},
            "accessModes": spec.get("accessModes") or ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Delete",
            "storageClassName": spec.get("storageClassName") or STORAGE_CLASS,
            "volumeMode": spec.get("volumeMode") or "Filesystem",
            "hostPath": {"path": str(claim_dir(state_dir, ns, name)), "type": "DirectoryOrCreate"},
            "claimRef": {
                "apiVersion": "v1",
                "kind": "PersistentVolumeClaim",
                "namespace": ns,
                "name": name,
                "uid": meta["uid"],
            },
        },
    }


def is_released_ours(volume: Obj) -> bool:
    meta, spec = volume.get("metadata") or {}, volume.get("spec") or {}
    return (
        (meta.get("annotations") or {}).get("pv.kubernetes.io/provisioned-by") == PROVISIONER
        and spec.get("persistentVolumeReclaimPolicy") == "Delete"
        and (volume.get("status") or {}).get("phase") in ("Released", "Failed")
    )


class LocalProvisioner:
    def __init__(self, client: APIClient, pvcs: Informer, pvs: Informer, state_dir: Path) -> None:
        self.client = client
        self.pvcs = pvcs
        self.pvs = pvs
        self.state_dir = state_dir

    async def reconcile(self) -> None:
        existing = {str(pv["metadata"]["name"]) for pv in self.pvs.items()}
        for claim in self.pvcs.items():
            if not wants_volume(claim):
                continue
            volume = volume_for(claim, self.state_dir)
            if volume["metadata"]["name"] in existing:
                continue
            Path(volume["spec"]["hostPath"]["path"]).mkdir(parents=True, exist_ok=True)
            try:
                self.pvs.upsert(await self.client.create(k8s.PVS, None, volume))
            except APIError as exc:
                if exc.status != 409:
                    raise
        for volume in self.pvs.items():
            if is_released_ours(volume):
                await self._delete(volume)

    async def _delete(self, volume: Obj) -> None:
        path = Path(str((volume["spec"].get("hostPath") or {}).get("path", "")))
        root = (self.state_dir / "pvc").resolve()
        if path.is_absolute() and path.resolve().is_relative_to(root):
            shutil.rmtree(path, ignore_errors=True)
        try:
            await self.client.delete(k8s.PVS, None, volume["metadata"]["name"])
        except APIError as exc:
            if exc.status != 404:
                raise
