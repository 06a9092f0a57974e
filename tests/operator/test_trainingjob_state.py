"""The pure TrainingJob state machine: observed Job/pods → phase, conditions, next action."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gantry.config import OperatorConfig
from gantry.k8s.conditions import get_condition, rfc3339
from gantry.trainingjob import naming
from gantry.trainingjob.state import (
    Observed,
    TrainingJobPlan,
    failed_pods_needing_logs,
    job_without_pods,
    podless_recheck_in,
    reconcile,
    ttl_expired,
)

NOW = datetime(2026, 1, 1, 12, 0, 0, tzinfo=UTC)
CONFIG = OperatorConfig()


def tj(status: dict[str, Any] | None = None, **spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"command": ["python", "train.py"], "workers": 2}
    base.update(spec)
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "t", "namespace": "ml", "uid": "u", "generation": 1},
        "spec": base,
        "status": status or {},
    }


def running_status(attempts: int = 1, **extra: Any) -> dict[str, Any]:
    return {"phase": "Running", "attempts": attempts, "startTime": rfc3339(NOW), **extra}


def job(
    attempt: int = 1, *conditions: str, suspend: bool = False, failed: int = 0
) -> dict[str, Any]:
    return {
        "metadata": {"name": f"t-a{attempt}", "labels": {naming.LABEL_ATTEMPT: str(attempt)}},
        "spec": {"suspend": suspend},
        "status": {
            "failed": failed,
            "conditions": [
                {"type": c, "status": "True", "reason": "R", "message": "m"} for c in conditions
            ],
        },
    }


def pod(
    index: int,
    phase: str = "Running",
    attempt: int = 1,
    *,
    exit_code: int | None = None,
    message: str | None = None,
    finished: str | None = None,
    deleted: str | None = None,
    unschedulable: str | None = None,
    waiting: tuple[str, str] | None = None,
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if waiting is not None:
        reason, why = waiting
        status["containerStatuses"] = [
            {"name": "worker", "state": {"waiting": {"reason": reason, "message": why}}}
        ]
    if exit_code is not None:
        terminated: dict[str, Any] = {"exitCode": exit_code, "finishedAt": finished or "T"}
        if message is not None:
            terminated["message"] = message
        status["containerStatuses"] = [{"name": "worker", "state": {"terminated": terminated}}]
    if unschedulable:
        status["conditions"] = [
            {
                "type": "PodScheduled",
                "status": "False",
                "reason": "Unschedulable",
                "message": unschedulable,
            }
        ]
    meta: dict[str, Any] = {
        "name": f"t-a{attempt}-{index}-x",
        "labels": {naming.LABEL_ATTEMPT: str(attempt), naming.LABEL_INDEX: str(index)},
    }
    if deleted:
        meta["deletionTimestamp"] = deleted
    spec = {} if unschedulable else {"nodeName": "dev-node"}
    return {"metadata": meta, "spec": spec, "status": status}


def run(
    body: dict[str, Any],
    *jobs: dict[str, Any],
    pods: tuple[Any, ...] = (),
    logs: dict[str, str] | None = None,
    now: datetime = NOW,
) -> TrainingJobPlan:
    return reconcile(body, Observed(jobs=jobs, pods=pods, logs=logs or {}), CONFIG, now=now)


def cond(plan: TrainingJobPlan, type_: str) -> dict[str, Any]:
    found = get_condition(plan.wire_status()["conditions"], type_)
    assert found is not None, f"no {type_} condition"
    return dict(found)


def kinds(plan: TrainingJobPlan) -> list[str]:
    return sorted(c["kind"] for c in plan.apply)


def reasons(plan: TrainingJobPlan) -> list[str]:
    return [e.reason for e in plan.events]


def test_new_job_starts_attempt_one_with_all_children() -> None:
    plan = run(tj())
    assert plan.wire_status()["phase"] == "Pending" and plan.wire_status()["attempts"] == 1
    assert plan.wire_status()["startTime"] == rfc3339(NOW)
    assert kinds(plan) == ["Job", "Role", "RoleBinding", "Service", "ServiceAccount"]
    job_obj = next(c for c in plan.apply if c["kind"] == "Job")
    assert job_obj["metadata"]["name"] == "t-a1"
    owner = job_obj["metadata"]["ownerReferences"][0]
    assert owner["uid"] == "u" and owner["controller"] is True
    assert all(c["metadata"]["ownerReferences"] for c in plan.apply)
    assert cond(plan, "Created")["status"] == "True"
    assert reasons(plan) == ["Created"]
    assert plan.wire_status()["observedGeneration"] == 1


def test_all_workers_running_is_running_with_an_event_once() -> None:
    body = tj({"phase": "Pending", "attempts": 1, "startTime": rfc3339(NOW)})
    plan = run(body, job(), pods=(pod(0), pod(1)))
    assert plan.wire_status()["phase"] == "Running"
    assert plan.wire_status()["workers"] == {"active": 2, "succeeded": 0, "failed": 0}
    assert cond(plan, "Running")["status"] == "True" and reasons(plan) == ["Running"]
    again = run(tj(plan.wire_status()), job(), pods=(pod(0), pod(1)))
    assert again.events == [] and again.wire_status()["phase"] == "Running"


def test_partially_started_attempt_is_pending() -> None:
    plan = run(tj(running_status(phase="Pending")), job(), pods=(pod(0), pod(1, "Pending")))
    assert plan.wire_status()["phase"] == "Pending"


def test_unschedulable_worker_keeps_the_job_pending_with_the_scheduler_message() -> None:
    msg = "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    plan = run(
        tj(running_status(phase="Pending")),
        job(),
        pods=(pod(0, "Pending", unschedulable=msg), pod(1, "Pending", unschedulable=msg)),
    )
    assert plan.wire_status()["phase"] == "Pending"
    scheduled = cond(plan, "Scheduled")
    assert scheduled["status"] == "False" and scheduled["reason"] == "Unschedulable"
    assert scheduled["message"] == msg and msg in plan.wire_status()["message"]
    assert "Unschedulable" in reasons(plan)


def test_failed_worker_starts_a_new_attempt_with_its_log_in_the_message() -> None:
    pods = (
        pod(0, "Failed", exit_code=1, finished="2026-01-01T12:00:05Z"),
        pod(1, "Failed", exit_code=1, finished="2026-01-01T12:00:01Z"),
    )
    logs = {"t-a1-1-x": "epoch 2\nRuntimeError: injected failure\n"}
    body = tj(running_status(), backoffLimit=2)
    assert failed_pods_needing_logs(body, Observed(pods=pods)) == ["t-a1-0-x", "t-a1-1-x"]
    plan = run(body, job(1, "Failed"), pods=pods, logs=logs)
    assert plan.wire_status()["phase"] == "Restarting" and plan.wire_status()["attempts"] == 2
    assert "worker 1 (pod t-a1-1-x) exited with code 1" in plan.wire_status()["message"]
    assert "RuntimeError: injected failure" in plan.wire_status()["message"]
    assert [r.name for r in plan.delete] == ["t-a1"]
    assert "Job" not in kinds(plan), "no new attempt while old pods may run"
    assert reasons(plan) == ["Restarting"]
    assert cond(plan, "Running")["reason"] == "AttemptFailed"


def test_next_attempt_waits_for_old_pods_then_starts() -> None:
    body = tj(running_status(attempts=2, phase="Restarting"), backoffLimit=2)
    waiting = run(
        body, job(1), pods=(pod(0, "Running", attempt=1, deleted="2026-01-01T12:00:00Z"),)
    )
    assert waiting.wire_status()["phase"] == "Restarting" and "Job" not in kinds(waiting)
    assert [r.name for r in waiting.delete] == ["t-a1"]
    started = run(body, pods=(pod(1, "Failed", attempt=1, exit_code=1),))
    job_obj = next(c for c in started.apply if c["kind"] == "Job")
    assert job_obj["metadata"]["name"] == "t-a2"
    env = {
        e["name"]: e.get("value")
        for e in job_obj["spec"]["template"]["spec"]["containers"][0]["env"]
    }
    assert env["GANTRY_ATTEMPT"] == "2"
    assert started.wire_status()["phase"] == "Restarting"


def test_backoff_limit_exhausted_fails_with_the_log_lines() -> None:
    pods = (pod(0, "Failed", exit_code=2, message="fallback log line"),)
    plan = run(tj(running_status(attempts=1), backoffLimit=0), job(1, "Failed"), pods=pods)
    assert plan.wire_status()["phase"] == "Failed"
    failed = cond(plan, "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert "exited with code 2" in failed["message"] and "fallback log line" in failed["message"]
    assert plan.wire_status()["completionTime"] == rfc3339(NOW)
    assert [r.name for r in plan.delete] == ["t-a1"]
    assert reasons(plan) == ["Failed"] and plan.events[0].type == "Warning"


def test_deleted_worker_fails_the_attempt() -> None:
    pods = (pod(0), pod(1, deleted="2026-01-01T12:00:00Z"))
    plan = run(tj(running_status(), backoffLimit=1), job(), pods=pods)
    assert plan.wire_status()["phase"] == "Restarting"
    assert "worker 1 (pod t-a1-1-x) was deleted" in plan.wire_status()["message"]


def test_evicted_worker_fails_the_attempt() -> None:
    evicted = pod(1, "Failed")
    evicted["status"].update(reason="Evicted", message="node low on memory")
    plan = run(tj(running_status(), backoffLimit=1), job(), pods=(pod(0), evicted))
    assert "was evicted: node low on memory" in plan.wire_status()["message"]


def test_deadline_exceeded_fails_and_kills_the_workers() -> None:
    start = NOW - timedelta(seconds=30)
    body = tj(running_status() | {"startTime": rfc3339(start)}, activeDeadlineSeconds=20)
    plan = run(body, job(), pods=(pod(0), pod(1)))
    assert plan.wire_status()["phase"] == "Failed"
    assert cond(plan, "Failed")["reason"] == "DeadlineExceeded"
    assert [r.name for r in plan.delete] == ["t-a1"]
    assert reasons(plan) == ["DeadlineExceeded", "Failed"]
    within = run(tj(running_status(), activeDeadlineSeconds=20), job(), pods=(pod(0), pod(1)))
    assert within.wire_status()["phase"] == "Running"


def test_suspended_before_start_creates_no_job() -> None:
    plan = run(tj(suspend=True))
    assert plan.wire_status()["phase"] == "Suspended" and "Job" not in kinds(plan)
    assert plan.wire_status().get("attempts") is None
    assert cond(plan, "Suspended")["status"] == "True" and reasons(plan) == ["Suspended"]


def test_suspending_a_running_job_suspends_its_job_and_resuming_runs_it() -> None:
    plan = run(tj(running_status(), suspend=True), job(), pods=(pod(0), pod(1)))
    assert plan.wire_status()["phase"] == "Suspended"
    job_obj = next(c for c in plan.apply if c["kind"] == "Job")
    assert job_obj["spec"]["suspend"] is True
    resumed_body = tj(plan.wire_status() | {"attempts": 1}, suspend=False)
    resumed = run(resumed_body, job(suspend=True), now=NOW + timedelta(seconds=5))
    assert next(c for c in resumed.apply if c["kind"] == "Job")["spec"]["suspend"] is False
    assert cond(resumed, "Suspended")["status"] == "False"
    assert "Resumed" in reasons(resumed)
    assert resumed.wire_status()["startTime"] == rfc3339(NOW + timedelta(seconds=5))


def test_pods_stopped_by_a_suspension_are_not_failures() -> None:
    resumed_status = running_status(phase="Pending") | {
        "conditions": [
            {
                "type": "Suspended",
                "status": "False",
                "reason": "Resumed",
                "lastTransitionTime": "2026-01-01T12:00:10Z",
            }
        ]
    }
    stopping = pod(0, deleted="2026-01-01T12:00:02Z")
    plan = run(tj(resumed_status), job(), pods=(stopping,))
    assert plan.wire_status()["phase"] == "Pending"


def test_success_reads_the_model_summary_of_worker_zero() -> None:
    summary = (
        '{"gantrySummary":1,"files":{"model.onnx":"' + "a" * 64 + '"},'
        '"metrics":{"test_accuracy":0.97}}'
    )
    pods = (pod(0, "Succeeded", exit_code=0, message=summary), pod(1, "Succeeded", exit_code=0))
    body = tj(running_status(), output={"storageUri": "pvc://models/digits"})
    plan = run(body, job(1, "Complete"), pods=pods)
    assert plan.wire_status()["phase"] == "Succeeded"
    assert plan.wire_status()["model"]["uri"] == "pvc://models/digits"
    assert plan.wire_status()["model"]["metrics"] == {"test_accuracy": 0.97}
    assert plan.wire_status()["model"]["formats"] == ["onnx"]
    assert "test_accuracy=0.97" in plan.wire_status()["message"]
    assert plan.wire_status()["workers"] == {"active": 0, "succeeded": 2, "failed": 0}
    assert cond(plan, "Succeeded")["status"] == "True" and reasons(plan) == ["Succeeded"]


def test_terminal_jobs_are_left_alone_but_progress_is_never_written() -> None:
    body = tj({"phase": "Succeeded", "progress": {"epoch": 3}, "attempts": 1})
    plan = run(body, job(1, "Complete"))
    assert plan.apply == [] and plan.delete == [] and plan.events == []
    assert "progress" not in plan.wire_status()
    running = run(tj(running_status(progress={"epoch": 1})), job(), pods=(pod(0), pod(1)))
    assert "progress" not in running.status


@pytest.mark.parametrize(
    ("spec", "reason", "text"),
    [
        ({"output": {"storageUri": "s3://bucket/m"}}, "Unsupported", "not supported yet"),
        ({"workers": 0}, "InvalidSpec", "workers"),
    ],
)
def test_bad_specs_fail_with_a_clear_condition(
    spec: dict[str, Any], reason: str, text: str
) -> None:
    plan = run(tj(**spec))
    assert plan.wire_status()["phase"] == "Failed"
    assert cond(plan, "Failed")["reason"] == reason and text in plan.wire_status()["message"]
    assert plan.apply == []


def test_ttl_after_finished() -> None:
    done = {"phase": "Succeeded", "completionTime": rfc3339(NOW)}
    assert not ttl_expired(tj(done, ttlSecondsAfterFinished=10), NOW + timedelta(seconds=5))
    assert ttl_expired(tj(done, ttlSecondsAfterFinished=10), NOW + timedelta(seconds=10))
    assert not ttl_expired(tj(done), NOW + timedelta(days=9))
    assert not ttl_expired(tj(running_status(), ttlSecondsAfterFinished=0), NOW)


def test_a_worker_noted_lost_on_the_job_fails_the_attempt() -> None:
    lost_job = job()
    lost_job["metadata"]["annotations"] = {
        naming.ANNOTATION_WORKER_LOST: "t-a1-1-abcde was deleted while it ran"
    }
    plan = run(tj(running_status(), backoffLimit=1), lost_job, pods=(pod(0), pod(1)))
    assert plan.wire_status()["phase"] == "Restarting" and plan.wire_status()["attempts"] == 2
    assert "worker 1 (pod t-a1-1-abcde) was deleted while it ran" in plan.wire_status()["message"]


def test_which_pod_deletions_count_as_lost_workers() -> None:
    from gantry.trainingjob.observe import lost_worker_note

    running = pod(1)
    assert lost_worker_note(running, job()) == "t-a1-1-x was deleted while it ran"
    assert lost_worker_note(running, None) is None, "the Job itself is gone"
    assert lost_worker_note(running, job(suspend=True)) is None, "stopped by a suspension"
    assert lost_worker_note(running, job(1, "Complete")) is None
    assert lost_worker_note(running, job(1, "Failed")) is None
    assert lost_worker_note(pod(1, "Succeeded"), job()) is None
    deleting = job()
    deleting["metadata"]["deletionTimestamp"] = "T"
    assert lost_worker_note(running, deleting) is None


@pytest.mark.parametrize(
    ("reason", "why"),
    [
        ("ImagePullBackOff", 'Back-off pulling image "registry.invalid/trainer:1"'),
        ("ErrImagePull", "pull access denied"),
        ("CreateContainerConfigError", 'secret "s3-creds" not found'),
    ],
)
def test_a_worker_that_cannot_start_is_explained_with_the_kubelets_reason(
    reason: str, why: str
) -> None:
    body = tj(running_status(phase="Pending"))
    plan = run(body, job(), pods=(pod(0, "Pending", waiting=(reason, why)), pod(1, "Pending")))
    assert plan.wire_status()["phase"] == "Pending"
    running = cond(plan, "Running")
    assert running["status"] == "False" and running["reason"] == reason
    assert why in running["message"] and "t-a1-0-x" in running["message"]
    assert reasons(plan) == [reason]
    again = run(tj(plan.wire_status()), job(), pods=(pod(0, "Pending", waiting=(reason, why)),))
    assert again.events == []  # the Warning is sent once, not on every pass


def test_a_container_that_is_merely_creating_is_not_a_stall() -> None:
    plan = run(
        tj(running_status(phase="Pending")),
        job(),
        pods=(pod(0, "Pending", waiting=("ContainerCreating", "")), pod(1, "Pending")),
    )
    assert plan.wire_status()["phase"] == "Pending"
    running = get_condition(plan.wire_status()["conditions"], "Running")
    assert running is None or running["reason"] != "ContainerCreating"
    assert plan.events == []


def test_a_deleted_worker_that_the_kubelet_marked_failed_is_reported_as_deleted() -> None:
    """The kubelet stops a deleted pod (SIGTERM → exit 143) and marks it Failed before it goes."""
    plan = run(
        tj(running_status()),
        job(),
        pods=(pod(0), pod(1, "Failed", exit_code=143, deleted="2026-01-01T00:00:00Z")),
    )
    assert plan.wire_status()["phase"] == "Restarting"
    assert "was deleted while running (stopped with code 143)" in plan.wire_status()["message"]


def test_a_job_whose_pods_cannot_be_created_says_why() -> None:
    """Quota or admission: the Job controller's FailedCreate becomes the Running reason."""
    created = job()
    created["metadata"]["creationTimestamp"] = rfc3339(NOW - timedelta(seconds=1))
    body = tj(running_status(phase="Pending"))
    young = job_without_pods(Observed(jobs=[created]), body, NOW)
    assert young is not None and young[0] == "t-a1"
    assert podless_recheck_in(young[1]) == pytest.approx(2.0), "asked once the grace is over"
    later = NOW + timedelta(seconds=30)
    old = job_without_pods(Observed(jobs=[created]), body, later)
    assert old is not None and podless_recheck_in(old[1]) == 10.0
    assert job_without_pods(Observed(jobs=[created], pods=[pod(0)]), body, later) is None
    quota = (
        'pods "t-a1-0-x" is forbidden: exceeded quota: compute, requested: pods=1, used: '
        "pods=0, limited: pods=0"
    )
    observed = Observed(jobs=[created], creation_failure=quota)
    plan = reconcile(body, observed, CONFIG, now=later)
    running = cond(plan, "Running")
    assert (running["status"], running["reason"]) == ("False", "QuotaExceeded")
    assert "exceeded quota" in running["message"] and plan.wire_status()["phase"] == "Pending"
    assert reasons(plan) == ["QuotaExceeded"] and plan.events[0].type == "Warning"
    again = reconcile(tj({**body["status"], **plan.wire_status()}), observed, CONFIG, now=later)
    assert again.events == [], "the Warning is posted once"
    denied = Observed(jobs=[created], creation_failure="admission webhook denied the request")
    assert cond(reconcile(body, denied, CONFIG, now=later), "Running")["reason"] == "FailedCreate"
