"""PodDisruptionBudget status (the disruption controller's bookkeeping)."""

from __future__ import annotations

import math
from typing import Any

from . import api as k8s
from .api import APIClient
from .informer import Informer
from .podstatus import is_ready
from .selectors import labels_of, matches
from .workloads import is_active, set_condition

Obj = dict[str, Any]


def _amount(value: object, total: int) -> int:
    text = str(value)
    if text.endswith("%"):
        return math.ceil(int(text[:-1]) * total / 100)
    return int(text)


def pdb_numbers(pdb: Obj, pods: list[Obj]) -> dict[str, int]:
    """expectedPods, currentHealthy, desiredHealthy, disruptionsAllowed."""
    spec = pdb.get("spec") or {}
    selected = [p for p in pods if is_active(p) and matches(spec.get("selector"), labels_of(p))]
    expected = len(selected)
    healthy = len([p for p in selected if is_ready(p)])
    if spec.get("minAvailable") is not None:
        desired = _amount(spec["minAvailable"], expected)
    elif spec.get("maxUnavailable") is not None:
        desired = max(expected - _amount(spec["maxUnavailable"], expected), 0)
    else:
        desired = expected
    return {
        "expectedPods": expected,
        "currentHealthy": healthy,
        "desiredHealthy": desired,
        "disruptionsAllowed": max(healthy - desired, 0),
    }


class DisruptionController:
    def __init__(self, client: APIClient, pdbs: Informer, pods: Informer) -> None:
        self.client = client
        self.pdbs = pdbs
        self.pods = pods

    async def reconcile(self) -> None:
        for pdb in self.pdbs.items():
            meta = pdb["metadata"]
            ns = str(meta.get("namespace") or "default")
            numbers = pdb_numbers(pdb, list(self.pods.items(ns)))
            current = pdb.get("status") or {}
            status: Obj = {**numbers, "observedGeneration": meta.get("generation", 1)}
            if all(current.get(k) == v for k, v in status.items()):
                continue
            allowed = numbers["disruptionsAllowed"] > 0
            status["conditions"] = set_condition(
                list(current.get("conditions") or []),
                "DisruptionAllowed",
                "True" if allowed else "False",
                "SufficientPods" if allowed else "InsufficientPods",
                "",
            )
            status["disruptedPods"] = current.get("disruptedPods") or {}
            answer = await self.client.patch(
                k8s.PDBS, ns, meta["name"], {"status": status}, sub="status"
            )
            self.pdbs.upsert(answer)
