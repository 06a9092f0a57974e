"""Observe an InferenceService's children from the watch caches and write a Plan's changes."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from gantry.api.inferenceservice import InferenceServiceSpec, InferenceServiceStatus
from gantry.config import OperatorConfig
from gantry.controller.reconcile_loop import OwnerKey
from gantry.controller.watch_cache import INFERENCESERVICE, ClusterView, current_children
from gantry.inferenceservice import names
from gantry.inferenceservice.reconcile import InferenceServicePlan, Observed, reconcile
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
from gantry.k8s.conditions import now_rfc3339, set_condition
from gantry.k8s.errors import Conflict
from gantry.k8s.events import event
from gantry.k8s.plan import Event, status_patch, with_fields

log = logging.getLogger(__name__)

API_VERSION = "gantry.dev/v1alpha1"
PLURAL = "inferenceservices"


def observe(view: ClusterView, isvc: Mapping[str, Any]) -> Observed:
    """The service's children and neighbours, from the watch caches.

    A Deployment or PDB under the child's name that this service does not control is left
    out (it is someone else's, reported as `ResourceConflict`).
    """
    meta = isvc.get("metadata") or {}
    service = str(meta["name"])
    namespace = str(meta.get("namespace") or "default")
    uid = str(meta.get("uid"))
    training_job = None
    ref = training_job_ref(isvc)
    if ref is not None:
        training_job = view.training_job(namespace, ref)
    owner = OwnerKey(INFERENCESERVICE, namespace, service)
    pods = view.owned("Pod", owner)
    pods_by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    triton_pods = []
    for pod in pods:
        labels = (pod.get("metadata") or {}).get("labels") or {}
        job = labels.get(names.OPTIMIZE_JOB_LABEL)
        if labels.get(names.OPTIMIZE_LABEL) == service and job:
            pods_by_job[str(job)].append(pod)
        if labels.get(names.SERVICE_LABEL) == service:
            triton_pods.append(pod)
    deployment = view.named("Deployment", namespace, names.deployment_name(service))
    pdb = view.named("PodDisruptionBudget", namespace, names.pdb_name(service))
    return Observed(
        training_job=training_job,
        claims=view.claims(namespace),
        jobs=[j for j in view.owned("Job", owner) if controlled_by(j, uid)],
        pods_by_job=dict(pods_by_job),
        deployment=deployment if deployment and controlled_by(deployment, uid) else None,
        pdb=pdb if pdb and controlled_by(pdb, uid) else None,
        triton_pods=triton_pods,
    )


def training_job_ref(isvc: Mapping[str, Any]) -> str | None:
    """The TrainingJob whose model the service serves, when it names one."""
    try:
        spec = InferenceServiceSpec.model_validate(isvc.get("spec") or {})
    except ValueError:
        return None
    ref = spec.model.training_job_ref
    return ref.name if ref is not None else None


def _create_if_absent(client: KubeClient, obj: Mapping[str, Any]) -> None:
    try:
        client.create(obj)
        log.info("created %s %s", obj["kind"], obj["metadata"]["name"])
    except Conflict:
        pass


_DELETABLE_KINDS = {"jobs": "Job", "poddisruptionbudgets": "PodDisruptionBudget"}


def without_foreign(
    isvc: Mapping[str, Any], plan: InferenceServicePlan, foreign: list[ForeignObject], now: str
) -> InferenceServicePlan:
    """The plan minus children whose names others hold; `ResourceConflict` reported."""
    taken = {(f.kind, f.name) for f in foreign}
    plan.apply = [c for c in plan.apply if (c["kind"], c["metadata"]["name"]) not in taken]
    generation = (isvc.get("metadata") or {}).get("generation")
    conditions = with_conflict_condition(
        list(plan.wire_status().get("conditions") or []),
        foreign,
        INFERENCESERVICE,
        now=now,
        generation=generation,
    )
    if foreign:
        before = (isvc.get("status") or {}).get("conditions") or []
        if not any(c.get("type") == CONFLICT_CONDITION for c in before):
            message = conflict_message(foreign, INFERENCESERVICE)
            plan.events.append(Event(CONFLICT_CONDITION, message, "Warning"))
        conditions = set_condition(
            conditions,
            "Ready",
            False,
            CONFLICT_CONDITION,
            conflict_message(foreign, INFERENCESERVICE),
            now=now,
            generation=generation,
        )
    plan.status = with_fields(plan.status or InferenceServiceStatus(), conditions=conditions)
    return plan


def apply_plan(
    client: KubeClient,
    isvc: Mapping[str, Any],
    plan: InferenceServicePlan,
    view_of: Mapping[tuple[str, str], Mapping[str, Any] | None],
) -> dict[str, Any] | None:
    """Write what differs; the service as written when its status changed, else None.

    `view_of` holds the cached object under each planned child's and deletion's
    (kind, name): children equal to it are not written, and nothing is deleted that
    this service does not control.
    """
    meta = isvc.get("metadata") or {}
    namespace, uid = meta.get("namespace"), str(meta.get("uid"))
    for obj in plan.create_if_absent:
        _create_if_absent(client, obj)
    for obj in plan.apply:
        current = view_of.get((obj["kind"], obj["metadata"]["name"]))
        if obj["kind"] == "Job" and current is not None:
            continue  # a Job's template is immutable; its name is its content
        log_outcome(write_child(client, obj, current), obj)
    for ref in plan.delete:
        current = view_of.get((_DELETABLE_KINDS.get(ref.plural, ""), ref.name))
        mine = current is not None and controlled_by(current, uid)
        if mine and client.delete(ref.api_version, ref.plural, ref.name, namespace):
            log.info("deleted %s %s", ref.plural, ref.name)
    written = None
    patch = status_patch(isvc.get("status") or {}, plan.status)
    if patch:
        # The resourceVersion makes the write fail (409) if the service changed meanwhile.
        written = client.patch(
            API_VERSION,
            PLURAL,
            meta["name"],
            namespace,
            {"metadata": {"resourceVersion": meta.get("resourceVersion")}, "status": patch},
            subresource="status",
        )
    for ev in plan.events:
        event(client, isvc, ev.reason, ev.message, ev.type)
    return written


def children_view(
    view: ClusterView, namespace: str, plan: InferenceServicePlan
) -> dict[tuple[str, str], dict[str, Any] | None]:
    """The cached objects under the names the plan writes or deletes."""
    current = current_children(view, namespace, plan.apply)
    for ref in plan.delete:
        kind = _DELETABLE_KINDS.get(ref.plural)
        if kind is not None:
            current[(kind, ref.name)] = view.named(kind, namespace, ref.name)
    return current


def plan_pass(
    view: ClusterView, isvc: Mapping[str, Any], config: OperatorConfig
) -> tuple[InferenceServicePlan, dict[tuple[str, str], dict[str, Any] | None], list[ForeignObject]]:
    """Observe from the caches and compute (pure but for the cache reads)."""
    meta = isvc.get("metadata") or {}
    namespace = str(meta.get("namespace") or "default")
    now = now_rfc3339()
    plan = reconcile(isvc, observe(view, isvc), config, now=now)
    current = children_view(view, namespace, plan)
    foreign = foreign_objects(plan.apply, current, str(meta.get("uid")))
    return without_foreign(isvc, plan, foreign, now), current, foreign
