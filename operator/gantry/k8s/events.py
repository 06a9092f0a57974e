"""core/v1 Events for transitions, so `kubectl describe` tells the story of an object."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Protocol

from gantry.k8s.conditions import now_rfc3339

log = logging.getLogger(__name__)

MAX_MESSAGE = 1024
COMPONENT = "gantry-operator"


class _Creates(Protocol):
    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...


def build_event(
    obj: Mapping[str, Any], reason: str, message: str, type_: str = "Normal", *, now: str
) -> dict[str, Any]:
    """The Event object about `obj` (pure)."""
    meta = obj.get("metadata") or {}
    namespace = meta.get("namespace") or "default"
    name = str(meta.get("name", "object"))
    if len(message) > MAX_MESSAGE:
        message = message[: MAX_MESSAGE - 3] + "..."
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{name[:200]}.", "namespace": namespace},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": name,
            "namespace": namespace,
            "uid": meta.get("uid"),
            "resourceVersion": meta.get("resourceVersion"),
        },
        "reason": reason,
        "message": message,
        "type": type_,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": COMPONENT,
        "firstTimestamp": now,
        "lastTimestamp": now,
        "count": 1,
    }


def event(
    client: _Creates, obj: Mapping[str, Any], reason: str, message: str, type_: str = "Normal"
) -> None:
    """Post an Event; a failure is logged, never raised, as events are best effort."""
    try:
        client.create(build_event(obj, reason, message, type_, now=now_rfc3339()))
    except Exception as err:  # events must never break a reconcile
        log.warning("could not post event %s for %s: %s", reason, obj.get("kind"), err)
