"""The Services and the PodDisruptionBudget in front of the Triton pods.

`<name>` is a ClusterIP Service for simple clients. `<name>-headless` (clusterIP None)
resolves to every ready pod, for client-side gRPC balancing: gRPC keeps one HTTP/2
connection per target, so through a ClusterIP all of a client's requests stick to one
pod; a channel on `dns:///<name>-headless.<ns>.svc.cluster.local:8001` with the
`round_robin` load-balancing policy spreads them over all replicas, new ones included.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from gantry.inferenceservice import names


def _ports() -> list[dict[str, Any]]:
    return [
        {
            "name": "grpc",
            "port": names.GRPC_PORT,
            "targetPort": "grpc",
            "protocol": "TCP",
            "appProtocol": "grpc",
        },
        {"name": "http", "port": names.HTTP_PORT, "targetPort": "http", "protocol": "TCP"},
        {"name": "metrics", "port": names.METRICS_PORT, "targetPort": "metrics", "protocol": "TCP"},
    ]


def _service(isvc: Mapping[str, Any], name: str, headless: bool) -> dict[str, Any]:
    meta = isvc["metadata"]
    service = meta["name"]
    spec: dict[str, Any] = {
        "type": "ClusterIP",
        "selector": names.selector_labels(service),
        "ports": _ports(),
    }
    if headless:
        spec["clusterIP"] = "None"
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": name,
            "namespace": meta.get("namespace"),
            "labels": names.triton_labels(service),
        },
        "spec": spec,
    }


def build_services(isvc: Mapping[str, Any]) -> list[dict[str, Any]]:
    """[ClusterIP `<name>`, headless `<name>-headless`]."""
    service = isvc["metadata"]["name"]
    return [
        _service(isvc, service, headless=False),
        _service(isvc, names.headless_name(service), headless=True),
    ]


def build_pdb(isvc: Mapping[str, Any]) -> dict[str, Any]:
    """At most one Triton pod voluntarily disrupted at a time (used when replicas > 1)."""
    meta = isvc["metadata"]
    service = meta["name"]
    return {
        "apiVersion": "policy/v1",
        "kind": "PodDisruptionBudget",
        "metadata": {
            "name": names.pdb_name(service),
            "namespace": meta.get("namespace"),
            "labels": names.triton_labels(service),
        },
        "spec": {
            "maxUnavailable": 1,
            "selector": {"matchLabels": names.selector_labels(service)},
        },
    }
