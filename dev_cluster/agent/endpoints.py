"""EndpointSlices for Services with a selector (the endpointslice controller's job)."""

from __future__ import annotations

import hashlib
from typing import Any

from . import api as k8s
from .api import APIClient, APIError
from .informer import Informer
from .podstatus import is_ready
from .selectors import labels_of, matches

Obj = dict[str, Any]
MANAGED_BY = "endpointslice-controller.k8s.io"


def slice_name(service: Obj) -> str:
    name = service["metadata"]["name"]
    digest = hashlib.sha256(str(service["metadata"].get("uid")).encode()).hexdigest()[:5]
    return f"{name[:57]}-{digest}"


def _target_port(port: Obj, pods: list[Obj]) -> int | None:
    target = port.get("targetPort", port.get("port"))
    if isinstance(target, int) or (isinstance(target, str) and target.isdigit()):
        return int(target)
    for pod in pods:
        for c in (pod.get("spec") or {}).get("containers") or []:
            for p in c.get("ports") or []:
                if p.get("name") == target:
                    return int(p["containerPort"])
    return None


def desired_slice(service: Obj, pods: list[Obj]) -> Obj:
    """The EndpointSlice for a Service: every selected pod with an IP, ready or not."""
    meta, spec = service["metadata"], service.get("spec") or {}
    ns = str(meta.get("namespace") or "default")
    publish = bool(spec.get("publishNotReadyAddresses"))
    selected = sorted(
        (
            p
            for p in pods
            if (p.get("status") or {}).get("podIP")
            and (p.get("status") or {}).get("phase") not in ("Succeeded", "Failed")
            and matches(spec.get("selector"), labels_of(p))
        ),
        key=lambda p: p["metadata"]["name"],
    )
    endpoints = []
    for pod in selected:
        pmeta, pspec = pod["metadata"], pod.get("spec") or {}
        terminating = bool(pmeta.get("deletionTimestamp"))
        ready = is_ready(pod)
        ep: Obj = {
            "addresses": [pod["status"]["podIP"]],
            "conditions": {
                "ready": (ready or publish) and not terminating,
                "serving": ready or publish,
                "terminating": terminating,
            },
            "targetRef": {
                "kind": "Pod",
                "namespace": ns,
                "name": pmeta["name"],
                "uid": pmeta.get("uid"),
            },
            "nodeName": pspec.get("nodeName"),
        }
        if pspec.get("hostname") and pspec.get("subdomain") == meta["name"]:
            ep["hostname"] = pspec["hostname"]
        endpoints.append(ep)
    ports = []
    for port in spec.get("ports") or []:
        entry: Obj = {"protocol": port.get("protocol", "TCP"), "port": _target_port(port, selected)}
        if port.get("name"):
            entry["name"] = port["name"]
        if port.get("appProtocol"):
            entry["appProtocol"] = port["appProtocol"]
        ports.append(entry)
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": slice_name(service),
            "namespace": ns,
            "labels": {
                "kubernetes.io/service-name": meta["name"],
                "endpointslice.kubernetes.io/managed-by": MANAGED_BY,
            },
            "ownerReferences": [
                {
                    "apiVersion": "v1",
                    "kind": "Service",
                    "name": meta["name"],
                    "uid": meta.get("uid"),
                    "controller": True,
                    "blockOwnerDeletion": True,
                }
            ],
        },
        "addressType": "IPv4",
        "endpoints": endpoints,
        "ports": ports,
    }


def cluster_ip_for(service: Obj) -> str:
    """A stable fake ClusterIP in 10.96.0.0/12 (not routable here: no kube-proxy)."""
    digest = int(hashlib.sha256(str(service["metadata"].get("uid")).encode()).hexdigest(), 16)
    offset = digest % (2**20 - 2) + 1
    return f"10.{96 + (offset >> 16)}.{(offset >> 8) & 255}.{offset & 255}"


class EndpointsController:
    def __init__(
        self, client: APIClient, services: Informer, pods: Informer, slices: Informer
    ) -> None:
        self.client = client
        self.services = services
        self.pods = pods
        self.slices = slices
        self._written: dict[tuple[str, str], Obj] = {}

    async def reconcile(self) -> None:
        for svc in self.services.items():
            meta, spec = svc["metadata"], svc.get("spec") or {}
            ns = str(meta.get("namespace") or "default")
            if not spec.get("clusterIP") and spec.get("type", "ClusterIP") != "ExternalName":
                answer = await self.client.patch(
                    k8s.SERVICES, ns, meta["name"], {"spec": {"clusterIP": cluster_ip_for(svc)}}
                )
                self.services.upsert(answer)
            if not spec.get("selector") or meta.get("deletionTimestamp"):
                continue
            want = desired_slice(svc, list(self.pods.items(ns)))
            current = self.slices.get(ns, want["metadata"]["name"])
            if current is None:
                try:
                    self.slices.upsert(await self.client.create(k8s.ENDPOINTSLICES, ns, want))
                    self._written[(ns, want["metadata"]["name"])] = {
                        "endpoints": want["endpoints"],
                        "ports": want["ports"],
                    }
                except APIError as exc:
                    if exc.status != 409:
                        raise
                continue
            key = (ns, want["metadata"]["name"])
            content = {"endpoints": want["endpoints"], "ports": want["ports"]}
            if self._written.get(key) == content or all(
                (current.get(k) or []) == v for k, v in content.items()
            ):
                self._written[key] = content
                continue
            body = {**current, **content}
            self.slices.upsert(await self.client.replace(k8s.ENDPOINTSLICES, ns, key[1], body))
            self._written[key] = content
