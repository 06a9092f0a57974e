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
from datetime import datetime, timedelta
from typing import Any

from pydantic import ValidationError

from gantry.api.common import ALLOWED_VOLUME_SOURCES_CONTEXT
from gantry.api.trainingjob import TrainingJobPhase as Phase
from gantry.api.trainingjob import TrainingJobSpec, TrainingJobStatus
from gantry.config import OperatorConfig
from gantry.k8s.conditions import get_condition, parse_time, rfc3339, set_condition
from gantry.k8s.ownership import adopt
from gantry.k8s.plan import Event, ObjectRef, Plan
from gantry.k8s.pods import (
    creation_failure_reason,
    is_deleted,
    phase_of,
    stuck_pod,
    unschedulable_message,
)
from gantry.trainingjob import naming
from gantry.trainingjob.children import trainer_rbac, workers_service
from gantry.trainingjob.logs import worker_log_tail
from gantry.trainingjob.observe import (
    WorkerFailure,
    attempt_of,
    condition_true,
    first_failure,
    is_alive,
    terminated_state,
    worker_index,
)
from gantry.trainingjob.summary import parse_summary
from gantry.trainingjob.workers import UnsupportedSpec, output_dir, worker_job

Obj = Mapping[str, Any]
MAX_MESSAGE = 8000
TERMINAL = (Phase.SUCCEEDED.value, Phase.FAILED.value)

TrainingJobPlan = Plan[TrainingJobStatus]


@dataclass(frozen=True)
class Observed:
    """What the handler read before computing: children and, for failed workers, logs."""

    jobs: Sequence[Obj] = ()
    pods: Sequence[Obj] = ()
    logs: Mapping[str, str] = field(default_factory=dict)
    # The Job controller's latest FailedCreate message for the current attempt's Job
    # (an admission rejection, an exhausted quota), read only while it has no pods.
    creation_failure: str | None = None


# A Job this old without a single pod is worth asking why (its FailedCreate Events).
NO_PODS_GRACE_SECONDS = 3.0
NO_PODS_RECHECK_SECONDS = 10.0


def podless_recheck_in(age: float) -> float:
    """Seconds until a pod-less Job's FailedCreate Events are read (again)."""
    if age < NO_PODS_GRACE_SECONDS:
        return NO_PODS_GRACE_SECONDS - age
    return NO_PODS_RECHECK_SECONDS


def job_without_pods(observed: Observed, body: Obj, now: datetime) -> tuple[str, float] | None:
    """(name, age in seconds) of the current attempt's Job while it has no pod at all."""
    status = body.get("status") or {}
    attempt = int(status.get("attempts") or 0)
    if status.get("phase") in TERMINAL or attempt == 0 or (body.get("spec") or {}).get("suspend"):
        return None
    name = naming.job_name(str((body.get("metadata") or {}).get("name")), attempt)
    job = next((j for j in observed.jobs if j["metadata"].get("name") == name), None)
    if job is None or any(attempt_of(p) == attempt for p in observed.pods):
        return None
    created = parse_time(job["metadata"].get("creationTimestamp"))
    return name, (now - created).total_seconds() if created is not None else 0.0


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
        self.plan = TrainingJobPlan()
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

    def finish(self, phase: Phase, message: str) -> TrainingJobPlan:
        if self.previous.get("phase") != phase.value:
            self._transition_event(phase, message)
        self.status["phase"] = phase.value
        self.status["message"] = message[:MAX_MESSAGE]
        self.status["conditions"] = self.conditions
        self.plan.status = TrainingJobStatus.model_validate(self.status)
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

    def fail(self, reason: str, message: str) -> TrainingJobPlan:
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


@dataclass(frozen=True)
class _Run:
    """What every phase of one pass reads: the job, its valid spec and the current attempt."""

    body: Obj
    spec: TrainingJobSpec
    config: OperatorConfig
    observed: Observed
    name: str
    attempt: int
    now: datetime

    @property
    def limit(self) -> int:
        return self.spec.backoff_limit + 1

    @property
    def current_job(self) -> Obj | None:
        wanted = naming.job_name(self.name, self.attempt)
        return next((j for j in self.observed.jobs if j["metadata"].get("name") == wanted), None)

    @property
    def pods(self) -> list[Obj]:
        """The current attempt's worker pods."""
        return [p for p in self.observed.pods if attempt_of(p) == self.attempt]

    def job_for(self, attempt: int) -> dict[str, Any]:
        job = worker_job(self.body, self.spec, self.config, attempt=attempt)
        return adopt(job, self.body, labels=job["metadata"]["labels"])


def reconcile(
    body: Obj,
    observed: Observed,
    config: OperatorConfig,
    *,
    now: datetime,
) -> TrainingJobPlan:
    """Compute the children, deletions, status and events for one TrainingJob.

    The phases below run in order; the first that decides the job's state ends the pass.
    """
    build = _Builder(body, now)
    if build.previous.get("phase") in TERMINAL:
        return _finished(build, observed)
    spec = _valid_spec(build, body, config)
    if isinstance(spec, Plan):
        return spec
    meta = body.get("metadata") or {}
    run = _Run(
        body,
        spec,
        config,
        observed,
        str(meta.get("name")),
        int(build.previous.get("attempts") or 0),
        now,
    )
    port = naming.master_port(str(meta.get("uid")), config.master_port_range)
    build.plan.apply = _children(body, port)
    build.plan.delete = [
        ObjectRef.job(str(j["metadata"]["name"]))
        for j in observed.jobs
        if attempt_of(j) != run.attempt and not j["metadata"].get("deletionTimestamp")
    ]
    return (
        _suspended(build, run)
        or _first_attempt(build, run)
        or _deadline_exceeded(build, run)
        or _previous_attempt_stopping(build, run)
        or _current_attempt(build, run)
    )


def _finished(build: _Builder, observed: Observed) -> TrainingJobPlan:
    """Succeeded or Failed: nothing changes any more, but a failed job's workers stop."""
    build.status["phase"] = build.previous["phase"]
    build.plan.status = TrainingJobStatus.model_validate(build.status)
    if build.previous["phase"] == Phase.FAILED.value:
        build.plan.delete = [
            ObjectRef.job(str(j["metadata"]["name"]))
            for j in observed.jobs
            if not j["metadata"].get("deletionTimestamp")
            and any(is_alive(p) and attempt_of(p) == attempt_of(j) for p in observed.pods)
        ]
    return build.plan


def _valid_spec(
    build: _Builder, body: Obj, config: OperatorConfig
) -> TrainingJobSpec | TrainingJobPlan:
    """The spec, or a Failed plan saying why it cannot run."""
    try:
        spec = TrainingJobSpec.model_validate(
            body.get("spec") or {},
            context={ALLOWED_VOLUME_SOURCES_CONTEXT: config.allowed_volume_sources},
        )
        naming.check_name(str((body.get("metadata") or {}).get("name")))
        output_dir(spec)
    except UnsupportedSpec as err:
        return build.fail("Unsupported", str(err))
    except (ValidationError, ValueError) as err:
        return build.fail("InvalidSpec", f"invalid spec: {err}")
    return spec


def _suspended(build: _Builder, run: _Run) -> TrainingJobPlan | None:
    """Suspension: no pods; the current attempt's Job (if any) is suspended, not deleted."""
    if run.spec.suspend:
        if run.current_job is not None:
            build.plan.apply.append(run.job_for(run.attempt))
        alive = [p for p in run.pods if is_alive(p)]
        build.status["workers"] = {"active": len(alive), "succeeded": 0, "failed": 0}
        build.condition("Suspended", True, "Suspended", "spec.suspend is true")
        build.condition("Running", False, "Suspended", "spec.suspend is true")
        message = "suspended" + (f": stopping {len(alive)} worker(s)" if alive else "")
        return build.finish(Phase.SUSPENDED, message)
    if condition_true({"status": {"conditions": build.conditions}}, "Suspended"):
        build.condition("Suspended", False, "Resumed", "spec.suspend is false")
        if build.previous.get("phase") == Phase.SUSPENDED.value and run.attempt > 0:
            build.status["startTime"] = build.now  # like batch/v1: the deadline restarts
    return None


def _first_attempt(build: _Builder, run: _Run) -> TrainingJobPlan | None:
    if run.attempt != 0:
        return None
    workers = run.spec.workers
    build.status["attempts"] = 1
    build.status["startTime"] = build.now
    build.plan.apply.append(run.job_for(1))
    build.condition("Created", True, "Created", f"attempt 1 with {workers} worker(s)")
    build.event("Created", f"started attempt 1 with {workers} worker(s)")
    build.status["workers"] = {"active": 0, "succeeded": 0, "failed": 0}
    return build.finish(Phase.PENDING, f"attempt 1: starting {workers} worker(s)")


def _deadline_exceeded(build: _Builder, run: _Run) -> TrainingJobPlan | None:
    """The deadline covers the whole job, every attempt included."""
    started = parse_time(build.status.get("startTime"))
    deadline = run.spec.active_deadline_seconds
    if deadline is None or not started or (run.now - started).total_seconds() < deadline:
        return None
    build.plan.delete = [ObjectRef.job(str(j["metadata"]["name"])) for j in run.observed.jobs]
    message = f"the job ran longer than activeDeadlineSeconds={deadline}: workers stopped"
    build.event("DeadlineExceeded", message, "Warning")
    return build.fail("DeadlineExceeded", message)


def _previous_attempt_stopping(build: _Builder, run: _Run) -> TrainingJobPlan | None:
    """An older attempt's pods must be gone before the next attempt's pods start."""
    lingering = [p for p in run.observed.pods if attempt_of(p) != run.attempt and is_alive(p)]
    if not lingering:
        return None
    build.status["workers"] = {"active": 0, "succeeded": 0, "failed": 0}
    return build.finish(
        Phase.RESTARTING,
        f"attempt {run.attempt}: waiting for {len(lingering)} pod(s) of the previous attempt "
        "to stop",
    )


def _current_attempt(build: _Builder, run: _Run) -> TrainingJobPlan:
    """The attempt's Job exists: it failed, finished, is stuck, unschedulable or running."""
    build.plan.apply.append(run.job_for(run.attempt))
    pods = run.pods
    running = [p for p in pods if phase_of(p) == "Running" and not is_deleted(p)]
    succeeded = [p for p in pods if phase_of(p) == "Succeeded"]
    failed = [p for p in pods if phase_of(p) == "Failed"]
    build.status["workers"] = {
        "active": len(running),
        "succeeded": len(succeeded),
        "failed": len(failed),
    }
    done = {worker_index(p) for p in succeeded}
    job = run.current_job
    return (
        _attempt_failed(build, run)
        or (
            _succeed(build, run.spec, succeeded)
            if job is not None
            and (condition_true(job, "Complete") or len(done) >= run.spec.workers)
            else None
        )
        or _pods_not_created(build, run)
        or _workers_stuck(build, run)
        or _workers_unschedulable(build, run)
        or _running_or_starting(build, run, len(running))
    )


def _attempt_failed(build: _Builder, run: _Run) -> TrainingJobPlan | None:
    """A worker failed: restart every worker in a new attempt, or fail past the limit."""
    suspended = get_condition(build.conditions, "Suspended")
    resumed_at = str(suspended.get("lastTransitionTime")) if suspended else None
    failure = first_failure(run.current_job, run.pods, resumed_at=resumed_at)
    if failure is None:
        return None
    attempt, limit = run.attempt, run.limit
    message = _failure_message(attempt, limit, failure, run.observed, run.pods)
    build.plan.delete.append(ObjectRef.job(naming.job_name(run.name, attempt)))
    build.plan.apply = [c for c in build.plan.apply if c["kind"] != "Job"]
    if attempt < limit:
        build.status["attempts"] = attempt + 1
        build.condition("Running", False, "AttemptFailed", message)
        return build.finish(Phase.RESTARTING, message + f"\nstarting attempt {attempt + 1}/{limit}")
    return build.fail("BackoffLimitExceeded", message)


def _pods_not_created(build: _Builder, run: _Run) -> TrainingJobPlan | None:
    """The Job controller cannot create the workers: say why (quota, admission)."""
    failure = run.observed.creation_failure
    if failure is None or run.pods:
        return None
    reason = creation_failure_reason(failure)
    message = f"attempt {run.attempt}: the worker pods cannot be created: {failure}"
    if _condition_reason(build.conditions, "Running") != reason:
        build.event(reason, message, "Warning")
    build.condition("Running", False, reason, message)
    return build.finish(_waiting_phase(run), message)


def _waiting_phase(run: _Run) -> Phase:
    return Phase.RESTARTING if run.attempt > 1 else Phase.PENDING


def _workers_stuck(build: _Builder, run: _Run) -> TrainingJobPlan | None:
    """A worker that cannot start (image pull, config error) is named with its reason."""
    stuck = stuck_pod(run.pods)
    if stuck is None:
        return None
    message = (
        f"attempt {run.attempt}: worker {stuck.pod} cannot start: {stuck.reason}: {stuck.message}"
    )
    if _condition_reason(build.conditions, "Running") != stuck.reason:
        build.event(stuck.reason, message, "Warning")
    build.condition("Running", False, stuck.reason, message)
    return build.finish(_waiting_phase(run), message)


def _workers_unschedulable(build: _Builder, run: _Run) -> TrainingJobPlan | None:
    unschedulable = unschedulable_message(run.pods)
    if unschedulable is None:
        return None
    if not condition_true({"status": {"conditions": build.conditions}}, "Scheduled") and (
        _condition_reason(build.conditions, "Scheduled") != "Unschedulable"
    ):
        build.event("Unschedulable", unschedulable, "Warning")
    build.condition("Scheduled", False, "Unschedulable", unschedulable)
    build.condition("Running", False, "Unschedulable", unschedulable)
    return build.finish(
        Phase.PENDING, f"attempt {run.attempt}: workers cannot be scheduled: {unschedulable}"
    )


def _running_or_starting(build: _Builder, run: _Run, running: int) -> TrainingJobPlan:
    pods, attempt = run.pods, run.attempt
    if pods and all((p.get("spec") or {}).get("nodeName") for p in pods):
        build.condition("Scheduled", True, "Scheduled", "every worker is placed on a node")
    if running >= run.spec.workers:
        build.condition(
            "Running", True, "Running", f"attempt {attempt}: {running} worker(s) running"
        )
        return build.finish(Phase.RUNNING, f"attempt {attempt}: {running} worker(s) running")
    waiting = f"attempt {attempt}: {running}/{run.spec.workers} worker(s) running"
    return build.finish(_waiting_phase(run), waiting)


def _condition_reason(conditions: Sequence[Obj], type_: str) -> str | None:
    for cond in conditions:
        if cond.get("type") == type_:
            return str(cond.get("reason"))
    return None


def _succeed(build: _Builder, spec: TrainingJobSpec, succeeded: Sequence[Obj]) -> TrainingJobPlan:
    rank0 = next((p for p in succeeded if worker_index(p) == 0), None)
    model = None
    if spec.output is not None and rank0 is not None:
        model = parse_summary(terminated_state(rank0).get("message"), spec.output.storage_uri)
    message = "training finished"
    if model is not None:
        build.status["model"] = model
        if model["metrics"]:
            shown = ", ".join(f"{k}={v:.4g}" for k, v in sorted(model["metrics"].items()))
            message += f": {shown}"
    elif spec.output is not None:
        message += "; worker 0 left no model summary (see its log)"
    build.status["completionTime"] = build.now
    build.condition("Succeeded", True, "Completed", message)
    build.condition("Running", False, "Completed", message)
    return build.finish(Phase.SUCCEEDED, message)
