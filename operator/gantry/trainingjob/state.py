"""The TrainingJob state machine: (job, observed children, config, now) → plan (pure).

Level-triggered: every call recomputes everything from what it observes, so a missed
event or an operator restart changes nothing. The only memory is the job's own status:
`attempts` names the current attempt, whose Job is `<name>-a<attempts>`.

Phases: Pending (waiting for workers to be scheduled/started), Running (every worker
runs), Restarting (an attempt failed; the next one is being prepared), Suspended,
Succeeded, Failed.

Conditions (type: meaning when True):
- Created: the first attempt's children exist.
- Scheduled: every worker of the current attempt is placed on a node (False with
  reason Unschedulable and the scheduler's message when one cannot be).
- Running: every worker of the current attempt runs.
- Suspended: spec.suspend holds the job; no worker pods run.
- Succeeded: every worker finished; status.model holds the export.
- Failed: the job gave up (BackoffLimitExceeded, DeadlineExceeded, InvalidSpec,
  Unsupported); the message names the failing worker and its last log lines.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import ValidationError

from gantry.api.common import ALLOWED_VOLUME_SOURCES_CONTEXT
from gantry.api.trainingjob import TrainingJobPhase as Phase
from gantry.api.trainingjob import TrainingJobSpec
from gantry.config import OperatorConfig
from gantry.k8s.conditions import get_condition, parse_time, set_condition
from gantry.k8s.ownership import adopt
from gantry.trainingjob import naming
from gantry.trainingjob.children import trainer_rbac, workers_service
from gantry.trainingjob.logs import worker_log_tail
from gantry.trainingjob.observe import (
    WorkerFailure,
    attempt_of,
    condition_true,
    first_failure,
    is_alive,
    is_deleted,
    phase_of,
    stuck_worker,
    terminated_state,
    unschedulable_message,
    worker_index,
)
from gantry.trainingjob.summary import parse_summary
from gantry.trainingjob.workers import UnsupportedSpec, output_dir, worker_job

Obj = Mapping[str, Any]
MAX_MESSAGE = 8000
TERMINAL = (Phase.SUCCEEDED.value, Phase.FAILED.value)


@dataclass(frozen=True)
class Observed:
    """What the handler read before computing: children and, for failed workers, logs."""

    jobs: Sequence[Obj] = ()
    pods: Sequence[Obj] = ()
    logs: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Event:
    reason: str
    message: str
    type: str = "Normal"


@dataclass
class Plan:
    """What to do: children to apply, Jobs to delete, the status to write, events to post."""

    apply: list[dict[str, Any]] = field(default_factory=list)
    delete_jobs: list[str] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


def rfc3339(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def failed_pods_needing_logs(body: Obj, observed: Observed) -> list[str]:
    """Names of failed worker pods of the current attempt (the handler fetches their logs)."""
    status = body.get("status") or {}
    if status.get("phase") in TERMINAL:
        return []
    attempt = int(status.get("attempts") or 0)
    return [
        str(p["metadata"]["name"])
        for p in observed.pods
        if attempt_of(p) == attempt and phase_of(p) == "Failed"
    ][:2]


def ttl_expired(body: Obj, now: datetime) -> bool:
    """True once a finished job has outlived spec.ttlSecondsAfterFinished."""
    status = body.get("status") or {}
    ttl = (body.get("spec") or {}).get("ttlSecondsAfterFinished")
    finished = parse_time(status.get("completionTime"))
    if ttl is None or status.get("phase") not in TERMINAL or finished is None:
        return False
    return (now - finished).total_seconds() >= float(ttl)


def next_due(body: Obj, now: datetime) -> datetime | None:
    """When the passing of time alone changes this job: its deadline, or its TTL.

    The reconcile loop sleeps until then (or until a watch event) instead of polling.
    """
    spec = body.get("spec") or {}
    status = body.get("status") or {}
    phase = status.get("phase")
    if phase in TERMINAL:
        ttl = spec.get("ttlSecondsAfterFinished")
        finished = parse_time(status.get("completionTime"))
        if ttl is None or finished is None:
            return None
        return finished + timedelta(seconds=float(ttl))
    deadline = spec.get("activeDeadlineSeconds")
    started = parse_time(status.get("startTime"))
    if deadline is None or started is None or spec.get("suspend"):
        return None
    return started + timedelta(seconds=float(deadline))


class _Builder:
    """Accumulates one reconcile's status and events (internal to `reconcile`)."""

    def __init__(self, body: Obj, now: datetime) -> None:
        meta = body.get("metadata") or {}
        self.body = body
        self.now = rfc3339(now)
        self.generation = meta.get("generation")
        self.previous: Mapping[str, Any] = body.get("status") or {}
        self.conditions: list[dict[str, Any]] = [
            dict(c) for c in self.previous.get("conditions") or []
        ]
        self.plan = Plan()
        self.status: dict[str, Any] = {
            key: self.previous[key]
            for key in ("attempts", "startTime", "completionTime", "model", "workers")
            if self.previous.get(key) is not None
        }
        self.status["observedGeneration"] = self.generation

    def condition(self, type_: str, status: bool, reason: str, message: str = "") -> None:
        self.conditions = set_condition(
            self.conditions,
            type_,
            status,
            reason,
            message[:MAX_MESSAGE],
            now=self.now,
            generation=self.generation,
        )

    def event(self, reason: str, message: str, type_: str = "Normal") -> None:
        self.plan.events.append(Event(reason, message, type_))

    def finish(self, phase: Phase, message: str) -> Plan:
        if self.previous.get("phase") != phase.value:
            self._transition_event(phase, message)
        self.status["phase"] = phase.value
        self.status["message"] = message[:MAX_MESSAGE]
        self.status["conditions"] = self.conditions
        self.plan.status = self.status
        return self.plan

    def _transition_event(self, phase: Phase, message: str) -> None:
        before = self.previous.get("phase")
        if before == Phase.SUSPENDED.value and phase != Phase.SUSPENDED:
            self.event("Resumed", "spec.suspend is false: the job runs again")
        if phase == Phase.RUNNING:
            self.event("Running", message)
        elif phase == Phase.SUSPENDED:
            self.event("Suspended", message)
        elif phase == Phase.SUCCEEDED:
            self.event("Succeeded", message)
        elif phase == Phase.FAILED:
            self.event("Failed", message, "Warning")
        elif phase == Phase.RESTARTING and before != Phase.RESTARTING.value:
            self.event("Restarting", message, "Warning")

    def fail(self, reason: str, message: str) -> Plan:
        self.condition("Failed", True, reason, message)
        self.condition("Running", False, reason, message)
        self.status.setdefault("completionTime", self.now)
        return self.finish(Phase.FAILED, message)


def _children(body: Obj, port: int) -> list[dict[str, Any]]:
    name = str(body["metadata"]["name"])
    labels = {naming.LABEL_JOB: name}
    return [
        adopt(c, body, labels=labels) for c in [*trainer_rbac(name), workers_service(name, port)]
    ]


def _failure_message(
    attempt: int, limit: int, failure: WorkerFailure, observed: Observed, pods: Sequence[Obj]
) -> str:
    who = failure.pod
    if failure.index is not None:
        who = f"worker {failure.index} (pod {failure.pod})"
    log = observed.logs.get(failure.pod)
    if not log:
        pod = next((p for p in pods if p["metadata"].get("name") == failure.pod), None)
        log = str(terminated_state(pod).get("message") or "") if pod else ""
    tail = worker_log_tail(log)
    what = failure.what
    if tail.child_exit_code is not None:
        what = f"failed: its training process (local rank {tail.local_rank}) exited with code "
        what += str(tail.child_exit_code)
    text = f"attempt {attempt}/{limit} failed: {who} {what}"
    if tail.lines:
        text += "; last log lines:\n" + "\n".join(tail.lines)
    return text


def reconcile(
    body: Obj,
    observed: Observed,
    config: OperatorConfig,
    *,
    now: datetime,
) -> Plan:
    """Compute the children, deletions, status and events for one TrainingJob."""
    b = _Builder(body, now)
    meta = body.get("metadata") or {}
    name = str(meta.get("name"))
    if b.previous.get("phase") in TERMINAL:
        b.status["phase"] = b.previous["phase"]
        b.plan.status = b.status
        if b.previous["phase"] == Phase.FAILED.value:
            b.plan.delete_jobs = [
                str(j["metadata"]["name"])
                for j in observed.jobs
                if not j["metadata"].get("deletionTimestamp")
                and any(is_alive(p) and attempt_of(p) == attempt_of(j) for p in observed.pods)
            ]
        return b.plan

    try:
        spec = TrainingJobSpec.model_validate(
            body.get("spec") or {},
            context={ALLOWED_VOLUME_SOURCES_CONTEXT: config.allowed_volume_sources},
        )
        naming.check_name(name)
        output_dir(spec)
    except UnsupportedSpec as err:
        return b.fail("Unsupported", str(err))
    except (ValidationError, ValueError) as err:
        return b.fail("InvalidSpec", f"invalid spec: {err}")

    port = naming.master_port(str(meta.get("uid")), config.master_port_range)
    b.plan.apply = _children(body, port)
    attempt = int(b.previous.get("attempts") or 0)
    limit = spec.backoff_limit + 1
    current_job = next(
        (j for j in observed.jobs if j["metadata"].get("name") == naming.job_name(name, attempt)),
        None,
    )
    pods = [p for p in observed.pods if attempt_of(p) == attempt]
    stale = [j for j in observed.jobs if attempt_of(j) != attempt]
    b.plan.delete_jobs = [
        str(j["metadata"]["name"]) for j in stale if not j["metadata"].get("deletionTimestamp")
    ]

    def job_for(this_attempt: int) -> dict[str, Any]:
        job = worker_job(body, spec, config, attempt=this_attempt)
        return adopt(job, body, labels=job["metadata"]["labels"])

    # Suspension: no pods; the current attempt's Job (if any) is suspended, not deleted.
    if spec.suspend:
        if current_job is not None:
            b.plan.apply.append(job_for(attempt))
        alive = [p for p in pods if is_alive(p)]
        b.status["workers"] = {"active": len(alive), "succeeded": 0, "failed": 0}
        b.condition("Suspended", True, "Suspended", "spec.suspend is true")
        b.condition("Running", False, "Suspended", "spec.suspend is true")
        message = "suspended" + (f": stopping {len(alive)} worker(s)" if alive else "")
        return b.finish(Phase.SUSPENDED, message)
    if condition_true({"status": {"conditions": b.conditions}}, "Suspended"):
        b.condition("Suspended", False, "Resumed", "spec.suspend is false")
        if b.previous.get("phase") == Phase.SUSPENDED.value and attempt > 0:
            b.status["startTime"] = b.now  # like batch/v1: the deadline restarts on resume

    # The first attempt.
    if attempt == 0:
        attempt = 1
        b.status["attempts"] = 1
        b.status["startTime"] = b.now
        b.plan.apply.append(job_for(1))
        b.condition("Created", True, "Created", f"attempt 1 with {spec.workers} worker(s)")
        b.event("Created", f"started attempt 1 with {spec.workers} worker(s)")
        b.status["workers"] = {"active": 0, "succeeded": 0, "failed": 0}
        return b.finish(Phase.PENDING, f"attempt 1: starting {spec.workers} worker(s)")

    # The deadline covers the whole job, every attempt included.
    started = parse_time(b.status.get("startTime"))
    deadline = spec.active_deadline_seconds
    if deadline is not None and started and (now - started).total_seconds() >= deadline:
        b.plan.delete_jobs = [str(j["metadata"]["name"]) for j in observed.jobs]
        message = f"the job ran longer than activeDeadlineSeconds={deadline}: workers stopped"
        b.event("DeadlineExceeded", message, "Warning")
        return b.fail("DeadlineExceeded", message)

    # An older attempt's pods must be gone before the next attempt's pods start.
    lingering = [p for p in observed.pods if attempt_of(p) != attempt and is_alive(p)]
    if lingering:
        b.status["workers"] = {"active": 0, "succeeded": 0, "failed": 0}
        return b.finish(
            Phase.RESTARTING,
            f"attempt {attempt}: waiting for {len(lingering)} pod(s) of the previous attempt "
            "to stop",
        )
    b.plan.apply.append(job_for(attempt))

    running = [p for p in pods if phase_of(p) == "Running" and not is_deleted(p)]
    succeeded = [p for p in pods if phase_of(p) == "Succeeded"]
    failed = [p for p in pods if phase_of(p) == "Failed"]
    b.status["workers"] = {
        "active": len(running),
        "succeeded": len(succeeded),
        "failed": len(failed),
    }

    suspended = get_condition(b.conditions, "Suspended")
    resumed_at = str(suspended.get("lastTransitionTime")) if suspended else None
    failure = first_failure(current_job, pods, resumed_at=resumed_at)
    if failure is not None:
        message = _failure_message(attempt, limit, failure, observed, pods)
        b.plan.delete_jobs.append(naming.job_name(name, attempt))
        b.plan.apply = [c for c in b.plan.apply if c["kind"] != "Job"]
        if attempt < limit:
            b.status["attempts"] = attempt + 1
            b.condition("Running", False, "AttemptFailed", message)
            return b.finish(Phase.RESTARTING, message + f"\nstarting attempt {attempt + 1}/{limit}")
        return b.fail("BackoffLimitExceeded", message)

    done = {worker_index(p) for p in succeeded}
    complete = current_job is not None and (
        condition_true(current_job, "Complete") or len(done) >= spec.workers
    )
    if complete:
        return _succeed(b, spec, succeeded)

    stuck = stuck_worker(pods)
    if stuck is not None:
        message = (
            f"attempt {attempt}: worker {stuck.pod} cannot start: {stuck.reason}: {stuck.message}"
        )
        if _condition_reason(b.conditions, "Running") != stuck.reason:
            b.event(stuck.reason, message, "Warning")
        b.condition("Running", False, stuck.reason, message)
        return b.finish(Phase.RESTARTING if attempt > 1 else Phase.PENDING, message)
    unschedulable = unschedulable_message(pods)
    if unschedulable is not None:
        if not condition_true({"status": {"conditions": b.conditions}}, "Scheduled") and (
            _condition_reason(b.conditions, "Scheduled") != "Unschedulable"
        ):
            b.event("Unschedulable", unschedulable, "Warning")
        b.condition("Scheduled", False, "Unschedulable", unschedulable)
        b.condition("Running", False, "Unschedulable", unschedulable)
        return b.finish(
            Phase.PENDING, f"attempt {attempt}: workers cannot be scheduled: {unschedulable}"
        )
    if pods and all((p.get("spec") or {}).get("nodeName") for p in pods):
        b.condition("Scheduled", True, "Scheduled", "every worker is placed on a node")
    if len(running) >= spec.workers:
        b.condition(
            "Running", True, "Running", f"attempt {attempt}: {len(running)} worker(s) running"
        )
        return b.finish(Phase.RUNNING, f"attempt {attempt}: {len(running)} worker(s) running")
    waiting = f"attempt {attempt}: {len(running)}/{spec.workers} worker(s) running"
    return b.finish(Phase.RESTARTING if attempt > 1 else Phase.PENDING, waiting)


def _condition_reason(conditions: Sequence[Obj], type_: str) -> str | None:
    for cond in conditions:
        if cond.get("type") == type_:
            return str(cond.get("reason"))
    return None


def _succeed(b: _Builder, spec: TrainingJobSpec, succeeded: Sequence[Obj]) -> Plan:
    rank0 = next((p for p in succeeded if worker_index(p) == 0), None)
    model = None
    if spec.output is not None and rank0 is not None:
        model = parse_summary(terminated_state(rank0).get("message"), spec.output.storage_uri)
    message = "training finished"
    if model is not None:
        b.status["model"] = model
        if model["metrics"]:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(model["metrics"].items()))
            message += f": {shown}"
    elif spec.output is not None:
        message += "; worker 0 left no model summary (see its log)"
    b.status["completionTime"] = b.now
    b.condition("Succeeded", True, "Completed", message)
    b.condition("Running", False, "Completed", message)
    return b.finish(Phase.SUCCEEDED, message)
