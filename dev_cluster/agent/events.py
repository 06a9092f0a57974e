"""core/v1 Events from the node's components, so `kubectl describe` tells the story.

Events are best effort, as on a real cluster: a failed write is dropped, never retried.
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from typing import Any

import aiohttp

from . import api as k8s
from .api import APIClient, APIError
from .podstatus import now

log = logging.getLogger(__name__)
Obj = dict[str, Any]
API_VERSIONS = {"Job": "batch/v1", "Deployment": "apps/v1", "ReplicaSet": "apps/v1"}


def event_body(obj: Obj, kind: str, reason: str, message: str, component: str, type_: str) -> Obj:
    meta = obj.get("metadata") or {}
    ns = str(meta.get("namespace") or "default")
    stamp = now()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta.get('name')}.{uuid.uuid4().hex[:16]}", "namespace": ns},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion") or API_VERSIONS.get(kind, "v1"),
            "kind": kind,
            "name": meta.get("name"),
            "namespace": ns,
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": component, "host": "dev-node"},
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": 1,
        "reportingComponent": component,
        "reportingInstance": "dev-node",
    }


class Recorder:
    """Posts Events in the background; keeps task references until they finish."""

    def __init__(self, client: APIClient, component: str) -> None:
        self.client = client
        self.component = component
        self._pending: set[asyncio.Task[None]] = set()

    def __call__(
        self, obj: Obj, kind: str, reason: str, message: str, warning: bool = False
    ) -> None:
        body = event_body(
            obj, kind, reason, message, self.component, "Warning" if warning else "Normal"
        )
        task = asyncio.create_task(self._post(body))
        self._pending.add(task)
        task.add_done_callback(self._pending.discard)

    async def _post(self, body: Obj) -> None:
        try:
            await self.client.create(k8s.EVENTS, body["metadata"]["namespace"], body)
        except (APIError, aiohttp.ClientError, OSError) as exc:
            log.debug("event %s dropped: %s", body["reason"], exc)
