"""Helpers shared by the workload controllers (pure)."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

from .podstatus import is_ready, ready_since
from .selectors import owner_ref

Obj = dict[str, Any]


def seconds_since(ts: str | None) -> float:
    if not ts:
        return 0.0
    then = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - then).total_seconds()


def is_active(pod: Obj) -> bool:
    """Counts toward a controller's replicas: not terminal, not being deleted."""
    phase = (pod.get("status") or {}).get("phase")
    return phase not in ("Succeeded", "Failed") and not pod["metadata"].get("deletionTimestamp")


def is_available(pod: Obj, min_ready_seconds: int) -> bool:
    if not is_active(pod) or not is_ready(pod):
        return False
    return min_ready_seconds <= 0 or seconds_since(ready_since(pod)) >= min_ready_seconds


def pod_from_template(
    owner: Obj, template: Obj, generate_name: str, extra_labels: dict[str, str] | None = None
) -> Obj:
    """A Pod built from a controller's template, owned by the controller."""
    meta = copy.deepcopy(template.get("metadata") or {})
    labels = dict(meta.get("labels") or {})
    labels.update(extra_labels or {})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "generateName": generate_name,
            "namespace": owner["metadata"].get("namespace") or "default",
            "labels": labels,
            "annotations": dict(meta.get("annotations") or {}),
            "ownerReferences": [owner_ref(owner)],
        },
        "spec": copy.deepcopy(template.get("spec") or {}),
    }


def deletion_order(pod: Obj) -> tuple[int, int, int, str]:
    """Sort key: pods to delete first (unscheduled, pending, not ready, newest)."""
    status = pod.get("status") or {}
    scheduled = 1 if (pod.get("spec") or {}).get("nodeName") else 0
    running = 1 if status.get("phase") == "Running" else 0
    ready = 1 if is_ready(pod) else 0
    created = str(pod["metadata"].get("creationTimestamp") or "")
    inverted = "".join(chr(0x10FFFF - ord(ch)) for ch in created)
    return (scheduled, running, ready, inverted)


def set_condition(
    conditions: list[Obj], kind: str, status: str, reason: str, message: str
) -> list[Obj]:
    """Conditions with one type set (lastTransitionTime kept when the status holds)."""
    now = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    out: list[Obj] = []
    found = False
    for c in conditions:
        if c.get("type") == kind:
            found = True
            changed = c.get("status") != status
            c = {
                **c,
                "status": status,
                "reason": reason,
                "message": message,
                "lastUpdateTime": now
                if changed or c.get("reason") != reason
                else c.get("lastUpdateTime", now),
                "lastTransitionTime": now if changed else c.get("lastTransitionTime", now),
            }
        out.append(c)
    if not found:
        out.append(
            {
                "type": kind,
                "status": status,
                "reason": reason,
                "message": message,
                "lastUpdateTime": now,
                "lastTransitionTime": now,
            }
        )
    return out


def condition_true(obj: Obj, kind: str) -> bool:
    for c in (obj.get("status") or {}).get("conditions") or []:
        if c.get("type") == kind and c.get("status") == "True":
            return True
    return False
