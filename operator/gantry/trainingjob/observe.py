"""Reading observed children: which pods belong to which attempt, how each worker ended (pure)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gantry.k8s.conditions import get_condition, parse_time
from gantry.k8s.pods import phase_of
from gantry.trainingjob import naming

Obj = Mapping[str, Any]


def attempt_of(obj: Obj) -> int | None:
    raw = ((obj.get("metadata") or {}).get("labels") or {}).get(naming.LABEL_ATTEMPT)
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def worker_index(pod: Obj) -> int | None:
    meta = pod.get("metadata") or {}
    raw = (meta.get("labels") or {}).get(naming.LABEL_INDEX) or (meta.get("annotations") or {}).get(
        naming.LABEL_INDEX
    )
    try:
        return int(raw) if raw is not None else None
    except ValueError:
        return None


def is_alive(pod: Obj) -> bool:
    """A pod whose processes may still run (so a new attempt must not start yet)."""
    return phase_of(pod) in ("Pending", "Running", "Unknown")


def condition_true(obj: Obj, type_: str) -> bool:
    cond = get_condition((obj.get("status") or {}).get("conditions") or [], type_)
    return cond is not None and cond.get("status") == "True"


def terminated_state(pod: Obj) -> Mapping[str, Any]:
    """The `terminated` state of the worker container (empty when it has not ended)."""
    for status in (pod.get("status") or {}).get("containerStatuses") or []:
        terminated = (status.get("state") or {}).get("terminated")
        if terminated:
            return dict(terminated)
        last = (status.get("lastState") or {}).get("terminated")
        if last:
            return dict(last)
    return {}


@dataclass(frozen=True)
class WorkerFailure:
    """Why an attempt failed: the worker that failed first and what happened to it."""

    pod: str
    index: int | None
    what: str


def first_failure(
    job: Obj | None, pods: Sequence[Obj], *, resumed_at: str | None = None
) -> WorkerFailure | None:
    """The failure that ends this attempt, or None while it is healthy.

    A worker that exited non-zero (or was evicted), a worker pod deleted while it ran,
    or a Job the controller marked Failed all fail the attempt. Pods deleted before
    `resumed_at` were stopped by a suspension, not lost.
    """
    resumed = parse_time(resumed_at)

    def deleted_since_resume(pod: Obj) -> bool:
        deleted = parse_time((pod.get("metadata") or {}).get("deletionTimestamp"))
        return deleted is not None and (resumed is None or deleted > resumed)

    failed = [p for p in pods if phase_of(p) == "Failed"]
    if failed:
        failed.sort(
            key=lambda p: (str(terminated_state(p).get("finishedAt") or "~"), worker_index(p) or 0)
        )
        pod = failed[0]
        state = terminated_state(pod)
        status = pod.get("status") or {}
        if deleted_since_resume(pod):
            # the kubelet stops a deleted pod's containers and marks it Failed before it
            # goes: the deletion, not the exit code it caused, is what happened
            code = state.get("exitCode")
            stopped = f" (stopped with code {code})" if code is not None else ""
            return WorkerFailure(
                _name(pod), worker_index(pod), f"was deleted while running{stopped}"
            )
        if status.get("reason") == "Evicted":
            what = f"was evicted: {status.get('message') or 'no reason given'}"
        elif state.get("exitCode") is not None:
            reason = f" ({state['reason']})" if state.get("reason") else ""
            what = f"exited with code {state['exitCode']}{reason}"
        else:
            what = f"failed: {status.get('reason') or status.get('message') or 'unknown reason'}"
        return WorkerFailure(_name(pod), worker_index(pod), what)
    for pod in pods:
        if phase_of(pod) != "Succeeded" and deleted_since_resume(pod):
            return WorkerFailure(_name(pod), worker_index(pod), "was deleted while running")
    job_meta = (job or {}).get("metadata") or {}
    lost = (job_meta.get("annotations") or {}).get(naming.ANNOTATION_WORKER_LOST)
    if job is not None and lost:
        pod_name, _, what = str(lost).partition(" ")
        lost_pod = next((p for p in pods if _name(p) == pod_name), None)
        index = worker_index(lost_pod) if lost_pod else _index_from_name(pod_name, _name(job))
        return WorkerFailure(pod_name, index, what or "was lost")
    if job is not None and condition_true(job, "Failed"):
        cond = get_condition((job.get("status") or {}).get("conditions") or [], "Failed") or {}
        return WorkerFailure(
            _name(job), None, f"Job failed: {cond.get('reason')}: {cond.get('message', '')}"
        )
    if job is not None and int((job.get("status") or {}).get("failed") or 0) > 0:
        return WorkerFailure(_name(job), None, "Job reports a failed worker")
    return None


def _index_from_name(pod: str, job: str) -> int | None:
    """`<job>-<index>-<suffix>` → index (pods of Indexed Jobs are named so)."""
    rest = pod.removeprefix(f"{job}-").split("-", 1)[0]
    return int(rest) if rest.isdigit() and pod.startswith(f"{job}-") else None


def lost_worker_note(pod: Obj, job: Obj | None) -> str | None:
    """The annotation to leave on the attempt's Job when a worker pod was deleted, or None.

    Pods stopped because the Job finished, was suspended or is itself being deleted are
    not lost; nor are pods that already ended (their phase tells the story).
    """
    if job is None or phase_of(pod) in ("Succeeded", "Failed"):
        return None
    job_meta = job.get("metadata") or {}
    if job_meta.get("deletionTimestamp") or (job.get("spec") or {}).get("suspend"):
        return None
    if condition_true(job, "Complete") or condition_true(job, "Failed"):
        return None
    if (job_meta.get("annotations") or {}).get(naming.ANNOTATION_WORKER_LOST):
        return None
    return f"{_name(pod)} was deleted while it ran"


def _name(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("name") or "?")
