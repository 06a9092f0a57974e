"""Pod phase and conditions from container states (pure; the kubelet's rules)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

Obj = dict[str, Any]


def now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_phase(
    restart_policy: str,
    init_done: bool,
    init_failed: bool,
    main: Sequence[Obj],
    will_restart: Sequence[bool],
) -> str:
    """Pending / Running / Succeeded / Failed, given container statuses."""
    if init_failed:
        return "Failed"
    if not init_done:
        return "Pending"
    states = [c.get("state") or {} for c in main]
    if any("running" in s for s in states):
        return "Running"
    if main and all("terminated" in s for s in states) and not any(will_restart):
        codes = [s["terminated"].get("exitCode", 0) for s in states]
        return "Succeeded" if all(c == 0 for c in codes) else "Failed"
    if any(
        c.get("restartCount", 0) > 0 or "terminated" in (c.get("lastState") or {}) for c in main
    ):
        return "Running"
    if any("terminated" in s for s in states):
        return "Running"
    return "Pending"


def merge_conditions(old: Sequence[Obj], wanted: dict[str, tuple[str, str | None]]) -> list[Obj]:
    """Conditions with lastTransitionTime kept unless the status changed."""
    previous = {c.get("type"): c for c in old}
    out: list[Obj] = []
    for kind, (status, reason) in wanted.items():
        prior = previous.get(kind)
        cond: Obj = {"type": kind, "status": status, "lastProbeTime": None}
        if prior is not None and prior.get("status") == status:
            cond["lastTransitionTime"] = prior.get("lastTransitionTime") or now()
        else:
            cond["lastTransitionTime"] = now()
        if reason:
            cond["reason"] = reason
        out.append(cond)
    return out


def pod_conditions(
    old: Sequence[Obj], phase: str, init_done: bool, containers: Sequence[Obj]
) -> list[Obj]:
    terminal = phase in ("Succeeded", "Failed")
    all_ready = bool(containers) and all(c.get("ready") for c in containers)
    ready = "True" if all_ready and not terminal else "False"
    reason = "PodCompleted" if terminal else (None if ready == "True" else "ContainersNotReady")
    return merge_conditions(
        old,
        {
            "PodReadyToStartContainers": ("True", None),
            # a pod whose init container failed stays not Initialized (`Init:Error`)
            "Initialized": (
                "True" if init_done else "False",
                None if init_done else "ContainersNotInitialized",
            ),
            "Ready": (ready, reason),
            "ContainersReady": (ready, reason),
            "PodScheduled": ("True", None),
        },
    )


def is_ready(pod: Obj) -> bool:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready":
            return bool(cond.get("status") == "True")
    return False


def ready_since(pod: Obj) -> str | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "Ready" and cond.get("status") == "True":
            return str(cond.get("lastTransitionTime") or "")
    return None


def seconds_since(ts: str | None) -> float:
    """Seconds since an RFC 3339 timestamp as the API writes them (0 when unset)."""
    if not ts:
        return 0.0
    then = datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    return (datetime.now(UTC) - then).total_seconds()
