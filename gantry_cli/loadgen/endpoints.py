"""Where the load goes: fixed `host:port` targets, or the Ready pods of an InferenceService.

How already-running clients reach a replica that was just added:

- on a real cluster, gRPC clients use `dns:///<name>-headless.<ns>.svc.cluster.local:8001`
  with the `round_robin` policy: the headless Service's DNS answers every Ready pod IP,
  gRPC re-resolves and keeps one sub-channel per pod, so new replicas receive their
  share without reconnecting (a ClusterIP Service balances *connections*, and a
  long-lived gRPC connection stays pinned to the pod it first reached);
- the dev cluster has no cluster DNS on the host, so the load generator does the same by
  hand: it re-reads the Ready Triton pods (what `<name>-headless` selects) every second
  and spreads requests round-robin over their pod IPs, one channel per pod.

Either way the share of requests each pod received is measured and reported.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from gantry.autoscaler.scrape import ready_targets
from gantry.inferenceservice.names import GRPC_PORT, deployment_name, selector_string


@dataclass(frozen=True)
class Endpoint:
    name: str  # the pod name, or the address for fixed targets
    address: str  # host:port for gRPC


class Endpoints(Protocol):
    async def refresh(self) -> list[Endpoint]: ...

    async def replicas(self) -> int | None: ...


class FixedEndpoints:
    """`--url host:port` (may be repeated): no API, no replica count."""

    def __init__(self, addresses: Sequence[str]) -> None:
        if not addresses:
            raise ValueError("at least one host:port is needed")
        self._endpoints = [Endpoint(a, a) for a in addresses]

    async def refresh(self) -> list[Endpoint]:
        return list(self._endpoints)

    async def replicas(self) -> int | None:
        return None


class ServiceEndpoints:
    """Ready pods of an InferenceService, read from the API (a `KubeClient`)."""

    def __init__(self, kube: Any, name: str, namespace: str) -> None:
        self.kube = kube
        self.name = name
        self.namespace = namespace

    async def refresh(self) -> list[Endpoint]:
        pods = await asyncio.to_thread(
            self.kube.list, "v1", "pods", self.namespace, label_selector=selector_string(self.name)
        )
        return [Endpoint(t.pod, f"{t.ip}:{GRPC_PORT}") for t in ready_targets(pods)]

    async def replicas(self) -> int | None:
        """The Deployment's desired replicas (what the autoscaler set)."""
        deployment = await asyncio.to_thread(
            self.kube.get, "apps/v1", "deployments", deployment_name(self.name), self.namespace
        )
        if deployment is None:
            return None
        value = (deployment.get("spec") or {}).get("replicas")
        return int(value) if value is not None else None
