"""Reading pod states: phases, deletion, pods that cannot start or be placed (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gantry.k8s.conditions import get_condition

Obj = Mapping[str, Any]


def phase_of(pod: Obj) -> str:
    return str((pod.get("status") or {}).get("phase") or "Pending")


def is_deleted(pod: Obj) -> bool:
    return bool((pod.get("metadata") or {}).get("deletionTimestamp"))


def creation_failure_reason(failure: str) -> str:
    """The reason for pods a controller cannot create: QuotaExceeded when a ResourceQuota
    refused them, else FailedCreate (admission, PodSecurity, a taken name, …)."""
    return "QuotaExceeded" if "exceeded quota" in failure else "FailedCreate"


def unschedulable_message(pods: Sequence[Obj]) -> str | None:
    """The scheduler's message for the first pod it could not place, if any."""
    for pod in pods:
        cond = get_condition((pod.get("status") or {}).get("conditions") or [], "PodScheduled")
        if cond and cond.get("status") == "False" and cond.get("reason") == "Unschedulable":
            return str(cond.get("message") or "the scheduler cannot place the pod")
    return None


# Waiting reasons that will not resolve by themselves: the image cannot be pulled, or the
# container's configuration (a missing Secret/ConfigMap key, a bad mount) is wrong.
STUCK_REASONS = frozenset(
    {
        "ErrImagePull",
        "ImagePullBackOff",
        "InvalidImageName",
        "ErrImageNeverPull",
        "CreateContainerConfigError",
        "CreateContainerError",
        "RunContainerError",
    }
)


@dataclass(frozen=True)
class StuckPod:
    """A pod whose container cannot start, and the kubelet's reason for it."""

    pod: str
    reason: str
    message: str


def stuck_pod(pods: Sequence[Obj]) -> StuckPod | None:
    """The first pod whose container waits for something that will not come."""
    for pod in pods:
        if is_deleted(pod) or phase_of(pod) != "Pending":
            continue
        statuses = [
            *((pod.get("status") or {}).get("initContainerStatuses") or []),
            *((pod.get("status") or {}).get("containerStatuses") or []),
        ]
        for status in statuses:
            waiting = (status.get("state") or {}).get("waiting") or {}
            reason = str(waiting.get("reason") or "")
            if reason in STUCK_REASONS:
                message = str(waiting.get("message") or reason)
                return StuckPod(str((pod.get("metadata") or {}).get("name")), reason, message)
    return None
