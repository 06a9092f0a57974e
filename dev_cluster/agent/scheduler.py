"""Scheduling decisions for the single dev node (pure functions).

A pod fits when its requests fit in what the node has left (limits stand in for
missing requests, as in the real scheduler), its nodeSelector and required node
affinity match the node's labels, and it tolerates the node's NoSchedule/NoExecute
taints. A pod that does not fit gets the real scheduler's message, e.g.
`0/1 nodes are available: 1 Insufficient nvidia.com/gpu.`
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from decimal import Decimal
from typing import Any

from .quantity import parse_quantity

Obj = dict[str, Any]
RESOURCES = ("cpu", "memory", "nvidia.com/gpu")


def container_requests(container: Mapping[str, Any]) -> dict[str, Decimal]:
    res = container.get("resources") or {}
    requests = dict(res.get("requests") or {})
    for name, value in (res.get("limits") or {}).items():
        requests.setdefault(name, value)
    return {name: parse_quantity(v) for name, v in requests.items()}


def pod_requests(pod: Obj) -> dict[str, Decimal]:
    """Effective requests: max(any init container, sum of containers) + overhead."""
    spec = pod.get("spec") or {}
    total: dict[str, Decimal] = {}
    for c in spec.get("containers") or []:
        for name, q in container_requests(c).items():
            total[name] = total.get(name, Decimal(0)) + q
    for c in spec.get("initContainers") or []:
        for name, q in container_requests(c).items():
            total[name] = max(total.get(name, Decimal(0)), q)
    for name, value in (spec.get("overhead") or {}).items():
        total[name] = total.get(name, Decimal(0)) + parse_quantity(value)
    return total


def _match_expression(labels: Mapping[str, str], expr: Mapping[str, Any]) -> bool:
    key, op, values = expr.get("key", ""), expr.get("operator", ""), expr.get("values") or []
    present = key in labels
    if op == "In":
        return present and labels[key] in values
    if op == "NotIn":
        return not present or labels[key] not in values
    if op == "Exists":
        return present
    if op == "DoesNotExist":
        return not present
    if op in ("Gt", "Lt") and present and values:
        try:
            a, b = int(labels[key]), int(values[0])
        except ValueError:
            return False
        return a > b if op == "Gt" else a < b
    return False


def matches_node(pod: Obj, labels: Mapping[str, str]) -> bool:
    spec = pod.get("spec") or {}
    for k, v in (spec.get("nodeSelector") or {}).items():
        if labels.get(k) != v:
            return False
    required = ((spec.get("affinity") or {}).get("nodeAffinity") or {}).get(
        "requiredDuringSchedulingIgnoredDuringExecution"
    ) or {}
    terms = required.get("nodeSelectorTerms") or []
    if terms:
        return any(
            all(_match_expression(labels, e) for e in term.get("matchExpressions") or [])
            for term in terms
        )
    return True


def _tolerates(tolerations: Iterable[Mapping[str, Any]], taint: Mapping[str, Any]) -> bool:
    for tol in tolerations:
        if tol.get("effect") and tol.get("effect") != taint.get("effect"):
            continue
        if tol.get("operator") == "Exists":
            if not tol.get("key") or tol.get("key") == taint.get("key"):
                return True
        elif tol.get("key") == taint.get("key") and tol.get("value", "") == taint.get("value", ""):
            return True
    return False


def untolerated_taint(pod: Obj, taints: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    tolerations = (pod.get("spec") or {}).get("tolerations") or []
    for taint in taints:
        if taint.get("effect") in ("NoSchedule", "NoExecute") and not _tolerates(
            tolerations, taint
        ):
            return taint
    return None


def unschedulable_reasons(
    pod: Obj,
    allocatable: Mapping[str, Decimal],
    used: Mapping[str, Decimal],
    pod_count: int,
    labels: Mapping[str, str],
    taints: Iterable[Mapping[str, Any]] = (),
) -> list[str]:
    """Why the pod does not fit on the node, in the real scheduler's words ([] = fits)."""
    reasons: list[str] = []
    if not matches_node(pod, labels):
        reasons.append("node(s) didn't match Pod's node affinity/selector")
    taint = untolerated_taint(pod, taints)
    if taint is not None:
        shown = (
            f"{taint.get('key')}: {taint.get('value')}" if taint.get("value") else taint.get("key")
        )
        reasons.append(f"node(s) had untolerated taint {{{shown}}}")
    if pod_count + 1 > allocatable.get("pods", Decimal(110)):
        reasons.append("Too many pods")
    for name, amount in sorted(pod_requests(pod).items()):
        if amount <= 0:
            continue
        if used.get(name, Decimal(0)) + amount > allocatable.get(name, Decimal(0)):
            reasons.append(f"Insufficient {name}")
    return reasons


def unschedulable_message(reasons: list[str]) -> str:
    return "0/1 nodes are available: " + ", ".join(f"1 {r}" for r in reasons) + "."


def is_terminal(pod: Obj) -> bool:
    return (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
