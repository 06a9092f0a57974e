"""kopf wiring for TrainingJobs: one reconcile loop per job, woken by watch events.

A pass reads the job and its children from the watch caches (`gantry.controller.
watch_cache`), asks the pure `state.reconcile` what should exist, and writes only what
differs: the status when it changed (guarded by the resourceVersion it was computed
from), children when they differ from their cached copies. The loop sleeps until a child
or the job changes, until the job's deadline or TTL is due, or until the slow resync.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from dataclasses import replace
from datetime import UTC, datetime
from typing import Any

import kopf

from gantry.api.trainingjob import TrainingJobStatus
from gantry.config import OperatorConfig
from gantry.controller.connection import kube_client
from gantry.controller.object_loop import reconcile_object
from gantry.controller.reconcile_loop import LatestBody, OwnerKey, in_thread
from gantry.controller.watch_cache import TRAININGJOB, ApiView, ClusterView, current_children
from gantry.k8s.children import (
    CONFLICT_CONDITION,
    ForeignObject,
    conflict_message,
    controlled_by,
    foreign_objects,
    log_outcome,
    with_conflict_condition,
    write_child,
)
from gantry.k8s.client import KubeClient
from gantry.k8s.conditions import rfc3339
from gantry.k8s.errors import ApiError
from gantry.k8s.events import event
from gantry.k8s.plan import Event, status_patch, with_fields
from gantry.trainingjob import naming
from gantry.trainingjob.logs import FETCH_LINES
from gantry.trainingjob.observe import lost_worker_note
from gantry.trainingjob.state import (
    NO_PODS_GRACE_SECONDS,
    Observed,
    TrainingJobPlan,
    failed_pods_needing_logs,
    job_without_pods,
    next_due,
    podless_recheck_in,
    reconcile,
    ttl_expired,
)
from gantry.trainingjob.workers import CONTAINER, suspend_patch

log = logging.getLogger(__name__)

GROUP, VERSION = naming.API.split("/")


def observe(view: ClusterView, body: Mapping[str, Any]) -> Observed:
    """The job's Jobs and pods, from the watch caches."""
    meta = body["metadata"]
    owner = OwnerKey(TRAININGJOB, str(meta["namespace"]), str(meta["name"]))
    return Observed(jobs=view.owned("Job", owner), pods=view.owned("Pod", owner))


def fetch_logs(client: KubeClient, body: Mapping[str, Any], observed: Observed) -> Observed:
    """`observed` plus the last log lines of freshly failed workers (the Failed message)."""
    namespace = str(body["metadata"]["namespace"])
    logs: dict[str, str] = {}
    for pod in failed_pods_needing_logs(body, observed):
        try:
            logs[pod] = client.pod_log(namespace, pod, container=CONTAINER, tail_lines=FETCH_LINES)
        except ApiError as err:
            log.info("no log for failed worker %s/%s: %s", namespace, pod, err.message)
    if not logs:
        return observed
    return Observed(jobs=observed.jobs, pods=observed.pods, logs=logs)


def fetch_creation_failure(
    client: KubeClient, namespace: str, job: str, observed: Observed
) -> Observed:
    """`observed` plus the newest FailedCreate Event message of `job`, if any."""
    selector = f"involvedObject.kind=Job,involvedObject.name={job},reason=FailedCreate"
    try:
        found = client.list("v1", "events", namespace, field_selector=selector)
    except ApiError as err:
        log.info("cannot read the Events of Job %s/%s: %s", namespace, job, err.message)
        return observed
    if not found:
        return observed
    newest = max(found, key=lambda e: str(e.get("lastTimestamp") or e.get("eventTime") or ""))
    return replace(observed, creation_failure=str(newest.get("message") or "FailedCreate"))


def without_foreign(
    body: Mapping[str, Any], plan: TrainingJobPlan, foreign: list[ForeignObject], now: datetime
) -> TrainingJobPlan:
    """The plan minus children whose names others hold, with `ResourceConflict` reported."""
    taken = {(f.kind, f.name) for f in foreign}
    plan.apply = [c for c in plan.apply if (c["kind"], c["metadata"]["name"]) not in taken]
    before = (body.get("status") or {}).get("conditions") or []
    if foreign and not any(c.get("type") == CONFLICT_CONDITION for c in before):
        plan.events.append(
            Event(CONFLICT_CONDITION, conflict_message(foreign, TRAININGJOB), "Warning")
        )
    decided = plan.wire_status()
    if "conditions" in decided or foreign:
        conditions = with_conflict_condition(
            list(decided.get("conditions") or before),
            foreign,
            TRAININGJOB,
            now=rfc3339(now),
            generation=(body.get("metadata") or {}).get("generation"),
        )
        plan.status = with_fields(plan.status or TrainingJobStatus(), conditions=conditions)
    return plan


def apply_plan(
    client: KubeClient,
    body: Mapping[str, Any],
    plan: TrainingJobPlan,
    observed: Observed,
    current: Mapping[tuple[str, str], Mapping[str, Any] | None],
    foreign: list[ForeignObject],
) -> dict[str, Any] | None:
    """Write the plan; the job as written when its status changed, else None."""
    meta = body["metadata"]
    namespace, uid = str(meta["namespace"]), str(meta.get("uid"))
    written = None
    # Status first: `attempts` must name the new attempt before the old one is deleted or
    # the new one created, so a failure half-way never makes an attempt run twice. The
    # resourceVersion makes the write fail (409) if the job changed since it was read.
    changes = status_patch(body.get("status") or {}, plan.status)
    if changes:
        written = client.patch(
            naming.API,
            naming.PLURAL,
            meta["name"],
            namespace,
            {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": changes},
            subresource="status",
        )
    jobs = {str(j["metadata"]["name"]): j for j in observed.jobs}
    for ref in plan.delete:
        job = jobs.get(ref.name)
        if job is not None and controlled_by(job, uid):
            client.delete(ref.api_version, ref.plural, ref.name, namespace)
    for child in plan.apply:  # the Job last: its pods need the Service and account
        if child["kind"] != "Job":
            key = (child["kind"], child["metadata"]["name"])
            log_outcome(write_child(client, child, current.get(key)), child)
    for child in plan.apply:
        if child["kind"] == "Job":
            _apply_job(client, child, jobs.get(str(child["metadata"]["name"])))
    for ev in plan.events:
        event(client, body, ev.reason, ev.message, ev.type)
    return written


def _apply_job(
    client: KubeClient, desired: Mapping[str, Any], current: Mapping[str, Any] | None
) -> None:
    """Create the attempt's Job, or reconcile its `suspend` (see `suspend_patch`)."""
    if current is None:
        log_outcome(write_child(client, desired, None), desired)
        return
    patch = suspend_patch(current, desired)
    if patch is not None:
        name = desired["metadata"]["name"]
        client.patch("batch/v1", "jobs", name, current["metadata"]["namespace"], patch)


async def reconcile_pass(
    client: KubeClient,
    view: ClusterView,
    body: Mapping[str, Any],
    config: OperatorConfig,
    latest: LatestBody,
    *,
    now: datetime | None = None,
) -> float | None:
    """One pass for one job; seconds until time alone makes another one due (or None)."""
    body = latest.pick(body)
    meta = body.get("metadata") or {}
    if not meta.get("name") or meta.get("deletionTimestamp"):
        return None
    moment = now or datetime.now(UTC)
    namespace, name = str(meta["namespace"]), str(meta["name"])
    if ttl_expired(body, moment):
        log.info("deleting TrainingJob %s/%s: ttlSecondsAfterFinished has passed", namespace, name)
        await in_thread(
            client.delete, naming.API, naming.PLURAL, name, namespace, propagation="Background"
        )
        return None
    phase = (body.get("status") or {}).get("phase")
    if phase != "Succeeded":
        observed = observe(view, body)
        if failed_pods_needing_logs(body, observed):
            observed = await in_thread(fetch_logs, client, body, observed)
        podless = job_without_pods(observed, body, moment)
        if podless is not None and podless[1] >= NO_PODS_GRACE_SECONDS:
            observed = await in_thread(
                fetch_creation_failure, client, namespace, podless[0], observed
            )
        plan = reconcile(body, observed, config, now=moment)
        current = current_children(view, namespace, plan.apply)
        foreign = foreign_objects(plan.apply, current, str(meta.get("uid")))
        plan = without_foreign(body, plan, foreign, moment)
        written = await in_thread(apply_plan, client, body, plan, observed, current, foreign)
        if written is not None:
            latest.remember(body, written)
            body = written
    due = next_due(body, moment)
    seconds = None if due is None else (due - moment).total_seconds()
    podless = job_without_pods(observed, body, moment) if phase != "Succeeded" else None
    if podless is not None:
        # No watch event says why pods do not appear (the Job controller only posts
        # FailedCreate Events): look again after the grace period, then every few seconds.
        again = podless_recheck_in(podless[1])
        seconds = again if seconds is None else min(seconds, again)
    return seconds


def reconcile_once(
    client: KubeClient,
    namespace: str,
    name: str,
    *,
    config: OperatorConfig,
    now: datetime | None = None,
) -> float | None:
    """One pass outside the operator, its view read by LIST calls (tools, tests).

    The same planning and writing as the operator's loop; only the cache differs.
    """
    body = client.get(naming.API, naming.PLURAL, name, namespace)
    if body is None:
        return None
    view = ApiView(client, namespace)
    return asyncio.run(reconcile_pass(client, view, body, config, LatestBody(), now=now))


@kopf.daemon(GROUP, VERSION, naming.PLURAL, id="trainingjob-loop", cancellation_timeout=1.0)
async def trainingjob_loop(
    name: str | None,
    namespace: str | None,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    """Reconcile one TrainingJob on every change until it is deleted."""
    await reconcile_object(TRAININGJOB, name, namespace, body, stopped, kwargs, reconcile_pass)


@kopf.on.event("v1", "pods", labels={naming.LABEL_JOB: kopf.PRESENT})
def worker_pod_event(
    type: str | None, body: Mapping[str, Any], namespace: str | None, **_: Any
) -> None:
    """A worker pod deleted mid-run fails its attempt, even if the Job replaced it at once.

    The replacement may appear before the job's next pass, so the deletion is noted on
    the attempt's Job, where that pass reads it.
    """
    if type != "DELETED" or not namespace:
        return
    labels = (body.get("metadata") or {}).get("labels") or {}
    owner, attempt = labels.get(naming.LABEL_JOB), labels.get(naming.LABEL_ATTEMPT)
    if not owner or not attempt or not attempt.isdigit():
        return
    client = kube_client()
    job_name = naming.job_name(owner, int(attempt))
    try:
        job = client.get("batch/v1", "jobs", job_name, namespace)
        note = lost_worker_note(body, job)
        if note is not None:
            log.warning("TrainingJob %s/%s: worker %s", namespace, owner, note)
            annotations = {naming.ANNOTATION_WORKER_LOST: note}
            client.patch(
                "batch/v1", "jobs", job_name, namespace, {"metadata": {"annotations": annotations}}
            )
    except ApiError as err:
        log.info("could not note the lost worker of %s/%s: %s", namespace, job_name, err)
