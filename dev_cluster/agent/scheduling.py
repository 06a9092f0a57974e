"""The scheduler loop: binds Pending pods to the dev node or marks them Unschedulable."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from . import api as k8s
from .api import APIClient, APIError
from .events import Recorder
from .informer import Informer
from .podstatus import merge_conditions
from .scheduler import is_terminal, pod_requests, unschedulable_message, unschedulable_reasons

Obj = dict[str, Any]


class Scheduler:
    def __init__(self, client: APIClient, pods: Informer, nodes: Informer, node_name: str) -> None:
        self.client = client
        self.pods = pods
        self.nodes = nodes
        self.node_name = node_name
        self.record = Recorder(client, "default-scheduler")

    async def reconcile(self) -> None:
        node = self.nodes.get("", self.node_name)
        if node is None:
            return
        status = node.get("status") or {}
        from .quantity import parse_quantity

        allocatable = {k: parse_quantity(v) for k, v in (status.get("allocatable") or {}).items()}
        labels = dict((node.get("metadata") or {}).get("labels") or {})
        taints = list((node.get("spec") or {}).get("taints") or [])
        if (node.get("spec") or {}).get("unschedulable"):
            taints.append({"key": "node.kubernetes.io/unschedulable", "effect": "NoSchedule"})
        used: dict[str, Decimal] = {}
        count = 0
        pending: list[Obj] = []
        for pod in self.pods.items():
            spec = pod.get("spec") or {}
            if spec.get("nodeName") == self.node_name and not is_terminal(pod):
                count += 1
                for name, q in pod_requests(pod).items():
                    used[name] = used.get(name, Decimal(0)) + q
            elif not spec.get("nodeName") and not pod["metadata"].get("deletionTimestamp"):
                sched = spec.get("schedulerName") or "default-scheduler"
                if sched == "default-scheduler":
                    pending.append(pod)
        pending.sort(
            key=lambda p: (p["metadata"].get("creationTimestamp") or "", p["metadata"]["name"])
        )
        for pod in pending:
            try:
                reasons = unschedulable_reasons(pod, allocatable, used, count, labels, taints)
            except ValueError as exc:
                reasons = [f"invalid resource request: {exc}"]
            if reasons:
                await self._unschedulable(pod, unschedulable_message(reasons))
                continue
            await self._bind(pod)
            count += 1
            for name, q in pod_requests(pod).items():
                used[name] = used.get(name, Decimal(0)) + q

    async def _unschedulable(self, pod: Obj, message: str) -> None:
        conditions = (pod.get("status") or {}).get("conditions") or []
        for c in conditions:
            if c.get("type") == "PodScheduled" and c.get("message") == message:
                return
        cond = merge_conditions([], {"PodScheduled": ("False", "Unschedulable")})[0]
        cond["message"] = message
        others = [c for c in conditions if c.get("type") != "PodScheduled"]
        meta = pod["metadata"]
        answer = await self.client.patch(
            k8s.PODS,
            meta.get("namespace"),
            meta["name"],
            {"status": {"phase": "Pending", "conditions": [*others, cond]}},
            sub="status",
        )
        self.pods.upsert(answer)
        self.record(pod, "Pod", "FailedScheduling", message, warning=True)

    async def _bind(self, pod: Obj) -> None:
        meta = pod["metadata"]
        ns, name = meta.get("namespace"), meta["name"]
        cond = merge_conditions([], {"PodScheduled": ("True", None)})[0]
        # the condition goes first: once bound, the kubelet owns the pod's status
        await self.client.patch(
            k8s.PODS, ns, name, {"status": {"conditions": [cond]}}, sub="status"
        )
        binding = {
            "apiVersion": "v1",
            "kind": "Binding",
            "metadata": {"name": name, "namespace": ns, "uid": meta.get("uid")},
            "target": {"apiVersion": "v1", "kind": "Node", "name": self.node_name},
        }
        try:
            await self.client.request("POST", k8s.PODS.path(ns, name, "binding"), binding)
            answer = await self.client.get(k8s.PODS, ns, name)
        except APIError as exc:
            if exc.status not in (404, 405):
                raise
            # an API without the binding subresource: set the node name directly
            answer = await self.client.patch(
                k8s.PODS, ns, name, {"spec": {"nodeName": self.node_name}}
            )
        self.pods.upsert(answer)
        self.record(
            pod, "Pod", "Scheduled", f"Successfully assigned {ns}/{name} to {self.node_name}"
        )
