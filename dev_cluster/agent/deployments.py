"""The Deployment and ReplicaSet controllers (apps/v1).

Rolling updates follow the real controller: the new ReplicaSet grows while the total
stays within replicas + maxSurge, old ReplicaSets shrink only while at least
replicas - maxUnavailable pods stay available (maxSurge rounds up, maxUnavailable
rounds down, both default 25 %; when both come to 0, maxUnavailable is 1).
"""

from __future__ import annotations

import copy
import hashlib
import json
import math
from typing import Any

from . import api as k8s
from .api import APIClient, APIError
from .events import Recorder
from .informer import Informer
from .podstatus import is_ready
from .selectors import labels_of, owned_by, owner_ref
from .workloads import (
    deletion_order,
    is_active,
    is_available,
    pod_from_template,
    set_condition,
)

Obj = dict[str, Any]
HASH_LABEL = "pod-template-hash"
REVISION = "deployment.kubernetes.io/revision"
_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"


def template_hash(template: Obj) -> str:
    """A short, label-safe hash of a pod template (stable across runs)."""
    digest = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).digest()
    return "".join(_ALPHABET[b % len(_ALPHABET)] for b in digest[:10])


def scaled_value(value: object, total: int, round_up: bool, default: str) -> int:
    """An int-or-percent field against `total` (percentages round as Kubernetes does)."""
    if value is None:
        value = default
    if isinstance(value, int):
        return value
    text = str(value)
    if text.endswith("%"):
        fraction = int(text[:-1]) * total / 100
        return math.ceil(fraction) if round_up else math.floor(fraction)
    return int(text)


def surge_and_unavailable(deployment: Obj) -> tuple[int, int]:
    spec = deployment.get("spec") or {}
    replicas = int(spec.get("replicas", 1))
    rolling = ((spec.get("strategy") or {}).get("rollingUpdate")) or {}
    surge = scaled_value(rolling.get("maxSurge"), replicas, True, "25%")
    unavailable = scaled_value(rolling.get("maxUnavailable"), replicas, False, "25%")
    if surge == 0 and unavailable == 0:
        unavailable = 1
    return surge, unavailable


def rolling_targets(
    replicas: int,
    surge: int,
    unavailable: int,
    new_spec: int,
    new_available: int,
    olds: list[tuple[int, int]],
) -> tuple[int, list[int]]:
    """One rolling-update step: (new RS replicas, old RS replicas oldest first).

    `olds` holds (spec replicas, available pods) per old ReplicaSet, oldest first."""
    total = new_spec + sum(s for s, _ in olds)
    if new_spec > replicas:
        new_spec = replicas
    elif new_spec < replicas and total < replicas + surge:
        new_spec += min(replicas + surge - total, replicas - new_spec)
    old_specs = [s for s, _ in olds]
    if sum(old_specs) == 0:
        return new_spec, old_specs
    all_pods = new_spec + sum(old_specs)
    min_available = replicas - unavailable
    new_unavailable = max(new_spec - new_available, 0)
    budget = all_pods - min_available - new_unavailable
    if budget <= 0:
        return new_spec, old_specs
    # first drop old pods that are not available anyway
    for i, (_spec, available) in enumerate(olds):
        if budget <= 0:
            break
        unhealthy = max(old_specs[i] - available, 0)
        cut = min(unhealthy, budget)
        old_specs[i] -= cut
        budget -= cut
    available_total = new_available + sum(min(a, old_specs[i]) for i, (_, a) in enumerate(olds))
    allowed = available_total - min_available
    for i in range(len(old_specs)):
        if allowed <= 0:
            break
        cut = min(old_specs[i], allowed)
        old_specs[i] -= cut
        allowed -= cut
    return new_spec, old_specs


class ReplicaSetController:
    def __init__(self, client: APIClient, replicasets: Informer, pods: Informer) -> None:
        self.client = client
        self.replicasets = replicasets
        self.pods = pods
        self.record = Recorder(client, "replicaset-controller")

    async def reconcile(self) -> None:
        for rs in self.replicasets.items():
            if not rs["metadata"].get("deletionTimestamp"):
                await self.sync(rs)

    async def sync(self, rs: Obj) -> None:
        meta, spec = rs["metadata"], rs.get("spec") or {}
        ns, uid = str(meta.get("namespace") or "default"), str(meta["uid"])
        pods = [p for p in self.pods.items(ns) if owned_by(p, uid)]
        active = [p for p in pods if is_active(p)]
        wanted = int(spec.get("replicas", 1))
        if len(active) < wanted:
            for _ in range(wanted - len(active)):
                pod = pod_from_template(rs, spec.get("template") or {}, f"{meta['name']}-")
                answer = await self.client.create(k8s.PODS, ns, pod)
                self.pods.upsert(answer)
                active.append(answer)
                self.record(
                    rs,
                    "ReplicaSet",
                    "SuccessfulCreate",
                    f"Created pod: {answer['metadata']['name']}",
                )
        elif len(active) > wanted:
            victims = sorted(active, key=deletion_order)[: len(active) - wanted]
            for pod in victims:
                await self._delete(pod)
                active.remove(pod)
                self.record(
                    rs, "ReplicaSet", "SuccessfulDelete", f"Deleted pod: {pod['metadata']['name']}"
                )
        min_ready = int(spec.get("minReadySeconds") or 0)
        selector = (spec.get("selector") or {}).get("matchLabels") or {}
        status = {
            "replicas": len(active),
            "fullyLabeledReplicas": len(
                [p for p in active if all(labels_of(p).get(k) == v for k, v in selector.items())]
            ),
            "readyReplicas": len([p for p in active if is_ready(p)]),
            "availableReplicas": len([p for p in active if is_available(p, min_ready)]),
            "observedGeneration": meta.get("generation", 1),
        }
        current = rs.get("status") or {}
        if any(current.get(k, 0) != v for k, v in status.items()):
            answer = await self.client.patch(
                k8s.REPLICASETS, ns, meta["name"], {"status": status}, sub="status"
            )
            self.replicasets.upsert(answer)

    async def _delete(self, pod: Obj) -> None:
        meta = pod["metadata"]
        try:
            answer = await self.client.delete(k8s.PODS, meta.get("namespace"), meta["name"])
        except APIError as exc:
            if exc.status != 404:
                raise
            answer = {}
        if answer.get("kind") == "Pod" and answer["metadata"].get("deletionTimestamp"):
            self.pods.upsert(answer)
        else:
            self.pods.remove(pod)


class DeploymentController:
    def __init__(
        self, client: APIClient, deployments: Informer, replicasets: Informer, pods: Informer
    ) -> None:
        self.client = client
        self.deployments = deployments
        self.replicasets = replicasets
        self.pods = pods
        self.record = Recorder(client, "deployment-controller")
        self._owner: dict[str, Obj] = {}

    async def reconcile(self) -> None:
        for d in self.deployments.items():
            if not d["metadata"].get("deletionTimestamp"):
                await self.sync(d)

    def _pods_of(self, rs: Obj) -> list[Obj]:
        ns = rs["metadata"].get("namespace")
        return [p for p in self.pods.items(ns) if owned_by(p, rs["metadata"]["uid"])]

    async def _scale(self, rs: Obj, replicas: int) -> Obj:
        before = int((rs.get("spec") or {}).get("replicas", 1))
        if before == replicas:
            return rs
        meta = rs["metadata"]
        owner = self._owner.get(str(meta.get("uid")))
        if owner is not None:
            verb = "up" if replicas > before else "down"
            message = f"Scaled {verb} replica set {meta['name']} from {before} to {replicas}"
            self.record(owner, "Deployment", "ScalingReplicaSet", message)
        answer = await self.client.patch(
            k8s.REPLICASETS, meta.get("namespace"), meta["name"], {"spec": {"replicas": replicas}}
        )
        self.replicasets.upsert(answer)
        return answer

    async def _new_rs(self, d: Obj, digest: str, revision: int, replicas: int) -> Obj:
        meta, spec = d["metadata"], d["spec"]
        template = copy.deepcopy(spec.get("template") or {})
        template.setdefault("metadata", {}).setdefault("labels", {})[HASH_LABEL] = digest
        selector = copy.deepcopy(spec.get("selector") or {})
        selector.setdefault("matchLabels", {})[HASH_LABEL] = digest
        body: Obj = {
            "apiVersion": "apps/v1",
            "kind": "ReplicaSet",
            "metadata": {
                "name": f"{meta['name']}-{digest}",
                "namespace": meta.get("namespace") or "default",
                "labels": {**(template["metadata"].get("labels") or {})},
                "annotations": {REVISION: str(revision)},
                "ownerReferences": [owner_ref(d)],
            },
            "spec": {
                "replicas": replicas,
                "minReadySeconds": int(spec.get("minReadySeconds") or 0),
                "selector": selector,
                "template": template,
            },
        }
        answer = await self.client.create(k8s.REPLICASETS, body["metadata"]["namespace"], body)
        self.replicasets.upsert(answer)
        return answer

    async def sync(self, d: Obj) -> None:
        meta, spec = d["metadata"], d.get("spec") or {}
        ns, uid = str(meta.get("namespace") or "default"), str(meta["uid"])
        replicas = int(spec.get("replicas", 1))
        min_ready = int(spec.get("minReadySeconds") or 0)
        digest = template_hash(spec.get("template") or {})
        owned = [rs for rs in self.replicasets.items(ns) if owned_by(rs, uid)]
        self._owner.update({str(rs["metadata"].get("uid")): d for rs in owned})
        owned.sort(
            key=lambda rs: (rs["metadata"].get("creationTimestamp") or "", rs["metadata"]["name"])
        )
        new = next((rs for rs in owned if labels_of(rs).get(HASH_LABEL) == digest), None)
        olds = [rs for rs in owned if rs is not new]
        revisions = [
            int((rs["metadata"].get("annotations") or {}).get(REVISION, "0") or 0) for rs in owned
        ]
        if spec.get("paused"):
            await self._status(d, new, owned, min_ready)
            return
        strategy = (spec.get("strategy") or {}).get("type") or "RollingUpdate"
        old_pods = [
            p
            for rs in olds
            for p in self._pods_of(rs)
            if is_active(p) or p["metadata"].get("deletionTimestamp")
        ]
        if new is None:
            start = replicas if not olds or (strategy == "Recreate" and not old_pods) else 0
            try:
                new = await self._new_rs(d, digest, max(revisions, default=0) + 1, start)
            except APIError as exc:
                if exc.status != 409:
                    raise
                return
            owned.append(new)
        elif olds and int((new["metadata"].get("annotations") or {}).get(REVISION, "0") or 0) < max(
            revisions
        ):
            answer = await self.client.patch(
                k8s.REPLICASETS,
                ns,
                new["metadata"]["name"],
                {"metadata": {"annotations": {REVISION: str(max(revisions) + 1)}}},
            )
            self.replicasets.upsert(answer)
        if strategy == "Recreate":
            for rs in olds:
                await self._scale(rs, 0)
            if not old_pods:
                new = await self._scale(new, replicas)
        else:
            surge, unavailable = surge_and_unavailable(d)
            new_available = len([p for p in self._pods_of(new) if is_available(p, min_ready)])
            old_info = [
                (
                    int((rs.get("spec") or {}).get("replicas", 1)),
                    len([p for p in self._pods_of(rs) if is_available(p, min_ready)]),
                )
                for rs in olds
            ]
            new_spec, old_specs = rolling_targets(
                replicas,
                surge,
                unavailable,
                int((new.get("spec") or {}).get("replicas", 0)),
                new_available,
                old_info,
            )
            new = await self._scale(new, new_spec)
            for rs, target in zip(olds, old_specs, strict=True):
                await self._scale(rs, target)
        await self._status(d, new, owned, min_ready)

    async def _status(self, d: Obj, new: Obj | None, owned: list[Obj], min_ready: int) -> None:
        meta, spec = d["metadata"], d.get("spec") or {}
        replicas = int(spec.get("replicas", 1))
        pods = [p for rs in owned for p in self._pods_of(rs) if is_active(p)]
        new_pods = [p for p in self._pods_of(new) if is_active(p)] if new is not None else []
        available = len([p for p in pods if is_available(p, min_ready)])
        ready = len([p for p in pods if is_ready(p)])
        _, unavailable = surge_and_unavailable(d)
        spec_total = sum(int((rs.get("spec") or {}).get("replicas", 1)) for rs in owned)
        conditions = list((d.get("status") or {}).get("conditions") or [])
        if available >= replicas - unavailable:
            conditions = set_condition(
                conditions,
                "Available",
                "True",
                "MinimumReplicasAvailable",
                "Deployment has minimum availability.",
            )
        else:
            conditions = set_condition(
                conditions,
                "Available",
                "False",
                "MinimumReplicasUnavailable",
                "Deployment does not have minimum availability.",
            )
        rs_name = new["metadata"]["name"] if new is not None else meta["name"]
        done = len(new_pods) == replicas and len(pods) == replicas and available >= replicas
        if done:
            conditions = set_condition(
                conditions,
                "Progressing",
                "True",
                "NewReplicaSetAvailable",
                f'ReplicaSet "{rs_name}" has successfully progressed.',
            )
        else:
            conditions = set_condition(
                conditions,
                "Progressing",
                "True",
                "ReplicaSetUpdated",
                f'ReplicaSet "{rs_name}" is progressing.',
            )
        status: Obj = {
            "observedGeneration": meta.get("generation", 1),
            "replicas": len(pods),
            "updatedReplicas": len(new_pods),
            "readyReplicas": ready,
            "availableReplicas": available,
            "unavailableReplicas": max(spec_total - available, 0),
            "conditions": conditions,
        }
        current = d.get("status") or {}
        if all(current.get(k, 0 if k != "conditions" else []) == v for k, v in status.items()):
            return
        answer = await self.client.patch(
            k8s.DEPLOYMENTS, meta.get("namespace"), meta["name"], {"status": status}, sub="status"
        )
        self.deployments.upsert(answer)
