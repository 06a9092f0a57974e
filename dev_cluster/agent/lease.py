"""The node's heartbeat: its Lease in `kube-node-lease`, renewed every 10 s.

kube-controller-manager's node lifecycle controller reads the Lease; a node whose Lease
is not renewed within the grace period is marked NotReady, tainted, and its pods evicted.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime

import aiohttp

from . import api as k8s
from .api import APIClient, APIError

log = logging.getLogger(__name__)
NAMESPACE = "kube-node-lease"
DURATION_S = 40
RENEW_EVERY_S = 10.0


def micro_time() -> str:
    """The API's MicroTime format."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


class NodeLease:
    def __init__(self, client: APIClient, node: str) -> None:
        self.client = client
        self.node = node

    def body(self) -> k8s.Obj:
        return {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.node, "namespace": NAMESPACE},
            "spec": {
                "holderIdentity": self.node,
                "leaseDurationSeconds": DURATION_S,
                "renewTime": micro_time(),
            },
        }

    async def renew(self) -> None:
        """Create the Lease, or move its renewTime forward."""
        try:
            await self.client.patch(k8s.LEASES, NAMESPACE, self.node, {"spec": self.body()["spec"]})
        except APIError as exc:
            if exc.status != 404:
                raise
            await self.client.create(k8s.LEASES, NAMESPACE, self.body())

    async def run(self) -> None:
        while True:
            await asyncio.sleep(RENEW_EVERY_S)
            try:
                await self.renew()
            except (APIError, aiohttp.ClientError, OSError) as exc:
                log.warning("node lease renewal failed: %s", exc)
