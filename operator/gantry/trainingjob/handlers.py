"""kopf wiring for TrainingJobs: a short per-object timer runs one level-triggered reconcile.

Each tick reads the job and its children, asks the pure `state.reconcile` what should
exist, applies that, and writes status only when it changed. Reading the job fresh
(rather than trusting the timer's cached body) keeps `status.attempts` exact across ticks.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

import kopf

from gantry.config import OperatorConfig
from gantry.controller.connection import kube_client
from gantry.controller.metrics import observe_reconcile
from gantry.controller.settings import operator_config, reconcile_interval
from gantry.k8s.client import KubeClient
from gantry.k8s.errors import ApiError
from gantry.k8s.events import event
from gantry.trainingjob import naming
from gantry.trainingjob.logs import FETCH_LINES
from gantry.trainingjob.observe import lost_worker_note
from gantry.trainingjob.state import (
    Observed,
    Plan,
    failed_pods_needing_logs,
    reconcile,
    ttl_expired,
)
from gantry.trainingjob.workers import CONTAINER, suspend_patch

log = logging.getLogger(__name__)

GROUP, VERSION = naming.API.split("/")
STATUS_KEYS = (
    "observedGeneration",
    "phase",
    "conditions",
    "workers",
    "attempts",
    "startTime",
    "completionTime",
    "model",
    "message",
)


def observe(client: KubeClient, body: Mapping[str, Any]) -> Observed:
    """Read the job's Jobs and pods (by label) and the logs of freshly failed workers."""
    meta = body["metadata"]
    namespace, selector = meta["namespace"], f"{naming.LABEL_JOB}={meta['name']}"
    jobs = client.list("batch/v1", "jobs", namespace, label_selector=selector)
    pods = client.list("v1", "pods", namespace, label_selector=selector)
    observed = Observed(jobs=jobs, pods=pods)
    logs: dict[str, str] = {}
    for pod in failed_pods_needing_logs(body, observed):
        try:
            logs[pod] = client.pod_log(namespace, pod, container=CONTAINER, tail_lines=FETCH_LINES)
        except ApiError as err:
            log.info("no log for failed worker %s/%s: %s", namespace, pod, err.message)
    return Observed(jobs=jobs, pods=pods, logs=logs)


def _apply_job(client: KubeClient, desired: Mapping[str, Any], jobs: list[Any]) -> None:
    """Create the attempt's Job, or reconcile its `suspend` (see `suspend_patch`)."""
    name = desired["metadata"]["name"]
    current = next((j for j in jobs if j["metadata"]["name"] == name), None)
    if current is None:
        client.create(desired)
        return
    patch = suspend_patch(current, desired)
    if patch is not None:
        client.patch("batch/v1", "jobs", name, current["metadata"]["namespace"], patch)


def status_changes(current: Mapping[str, Any], wanted: Mapping[str, Any]) -> dict[str, Any]:
    """The status keys whose values differ (progress is never touched)."""
    return {k: wanted[k] for k in STATUS_KEYS if k in wanted and current.get(k) != wanted[k]}


# When each job's Service and RBAC were last checked (uid → monotonic seconds): they are
# created once and rarely touched, so re-reading them every tick would only add load.
_children_checked: dict[str, float] = {}
CHILDREN_RECHECK_SECONDS = 30.0
# Failed jobs whose workers are all stopped.
_cleaned_up: set[str] = set()


def apply_plan(client: KubeClient, body: Mapping[str, Any], plan: Plan, jobs: list[Any]) -> None:
    meta = body["metadata"]
    namespace, uid = meta["namespace"], str(meta.get("uid"))
    # Status first: `attempts` must name the new attempt before the old one is deleted or
    # the new one created, so a failure half-way never makes an attempt run twice.
    changes = status_changes(body.get("status") or {}, plan.status)
    if changes:
        client.patch(
            naming.API,
            naming.PLURAL,
            meta["name"],
            namespace,
            {"status": changes},
            subresource="status",
        )
    for name in plan.delete_jobs:
        client.delete("batch/v1", "jobs", name, namespace, propagation="Background")
    creating_job = any(
        c["kind"] == "Job" and all(j["metadata"]["name"] != c["metadata"]["name"] for j in jobs)
        for c in plan.apply
    )
    checked = _children_checked.get(uid)
    recheck = creating_job or checked is None
    recheck = recheck or time.monotonic() - (checked or 0.0) >= CHILDREN_RECHECK_SECONDS
    others = [c for c in plan.apply if c["kind"] != "Job"]
    if recheck and others:
        for child in others:
            client.apply(child)
        _children_checked[uid] = time.monotonic()
    for child in plan.apply:  # the Job last: its pods need the Service and account
        if child["kind"] == "Job":
            _apply_job(client, child, jobs)
    for ev in plan.events:
        event(client, body, ev.reason, ev.message, ev.type)


def reconcile_once(
    client: KubeClient,
    namespace: str,
    name: str,
    *,
    config: OperatorConfig,
    now: datetime | None = None,
) -> Plan | None:
    """One level-triggered pass for one job; None when it is gone or was deleted for TTL."""
    body = client.get(naming.API, naming.PLURAL, name, namespace)
    if body is None or body["metadata"].get("deletionTimestamp"):
        return None
    moment = now or datetime.now(UTC)
    if ttl_expired(body, moment):
        log.info("deleting TrainingJob %s/%s: ttlSecondsAfterFinished has passed", namespace, name)
        client.delete(naming.API, naming.PLURAL, name, namespace, propagation="Background")
        return None
    phase = (body.get("status") or {}).get("phase")
    uid = str(body["metadata"].get("uid"))
    if phase == "Succeeded" or (phase == "Failed" and uid in _cleaned_up):
        _children_checked.pop(uid, None)
        return Plan()
    observed = observe(client, body)
    plan = reconcile(body, observed, config, now=moment)
    apply_plan(client, body, plan, list(observed.jobs))
    if phase == "Failed" and not plan.delete_jobs:
        _cleaned_up.add(uid)  # every worker is stopped: nothing left to read each tick
    return plan


@kopf.on.event("v1", "pods", labels={naming.LABEL_JOB: kopf.PRESENT})
def worker_pod_event(
    type: str | None, body: Mapping[str, Any], namespace: str | None, **_: Any
) -> None:
    """A worker pod deleted mid-run fails its attempt, even if the Job replaced it at once.

    The per-job timer may never see such a pod (the Job controller recreates it within
    a tick), so its deletion is noted on the attempt's Job for the next reconcile.
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


@kopf.timer(GROUP, VERSION, naming.PLURAL, interval=reconcile_interval(), sharp=False)
def trainingjob_timer(
    name: str | None,
    namespace: str | None,
    uid: str | None,
    spec: Mapping[str, Any],
    status: Mapping[str, Any],
    **_: Any,
) -> None:
    """Reconcile one TrainingJob; API errors are logged and retried on the next tick."""
    if not name or not namespace:
        return
    phase = status.get("phase")
    settled = phase == "Succeeded" or (phase == "Failed" and uid in _cleaned_up)
    if settled and spec.get("ttlSecondsAfterFinished") is None:
        return  # nothing left to do, and no need to read it every tick
    try:
        with observe_reconcile(naming.KIND):
            reconcile_once(
                kube_client(),
                namespace,
                name,
                config=operator_config(),
            )
    except ApiError as err:  # counted by observe_reconcile
        log.warning("TrainingJob %s/%s: %s (retrying)", namespace, name, err)
