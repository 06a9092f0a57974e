"""Observe an InferenceService's children and apply a Plan: the reconciler's only I/O."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping
from typing import Any

from gantry.api.inferenceservice import InferenceServiceSpec
from gantry.config import OperatorConfig
from gantry.inferenceservice import names
from gantry.inferenceservice.reconcile import Observed, Plan, reconcile
from gantry.inferenceservice.status import OWNED_FIELDS
from gantry.k8s.client import KubeClient
from gantry.k8s.conditions import now_rfc3339
from gantry.k8s.errors import Conflict
from gantry.k8s.events import event

log = logging.getLogger(__name__)

API_VERSION = "gantry.dev/v1alpha1"
PLURAL = "inferenceservices"


def observe(client: KubeClient, isvc: Mapping[str, Any]) -> Observed:
    meta = isvc.get("metadata") or {}
    service = str(meta["name"])
    namespace = str(meta.get("namespace") or "default")
    training_job = None
    try:
        spec = InferenceServiceSpec.model_validate(isvc.get("spec") or {})
    except ValueError:
        spec = None
    if spec is not None and spec.model.training_job_ref is not None:
        training_job = client.get(
            API_VERSION, "trainingjobs", spec.model.training_job_ref.name, namespace
        )
    claims = frozenset(
        str(c["metadata"]["name"]) for c in client.list("v1", "persistentvolumeclaims", namespace)
    )
    selector = f"{names.OPTIMIZE_LABEL}={service}"
    jobs = client.list("batch/v1", "jobs", namespace, label_selector=selector)
    pods_by_job: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for pod in client.list("v1", "pods", namespace, label_selector=selector):
        job = ((pod.get("metadata") or {}).get("labels") or {}).get(names.OPTIMIZE_JOB_LABEL)
        if job:
            pods_by_job[str(job)].append(pod)
    return Observed(
        training_job=training_job,
        claims=claims,
        jobs=jobs,
        pods_by_job=dict(pods_by_job),
        deployment=client.get("apps/v1", "deployments", names.deployment_name(service), namespace),
        pdb=client.get("policy/v1", "poddisruptionbudgets", names.pdb_name(service), namespace),
        triton_pods=client.list(
            "v1", "pods", namespace, label_selector=names.selector_string(service)
        ),
    )


def _create_if_absent(client: KubeClient, obj: Mapping[str, Any]) -> None:
    try:
        client.create(obj)
        log.info("created %s %s", obj["kind"], obj["metadata"]["name"])
    except Conflict:
        pass


def replacement_patch(old: Any, new: Any) -> Any:
    """A JSON merge patch that turns `old` into `new` (nulls delete vanished keys)."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = replacement_patch(old[key], value)
    return patch


def status_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any]:
    """The merge patch of the fields this reconciler owns; empty when nothing changed."""
    mine_now = {k: current[k] for k in OWNED_FIELDS if current.get(k) is not None}
    mine_new = {k: v for k, v in desired.items() if v is not None}
    patch = replacement_patch(mine_now, mine_new)
    return patch if isinstance(patch, dict) else {}


def apply_plan(client: KubeClient, isvc: Mapping[str, Any], plan: Plan) -> None:
    namespace = (isvc.get("metadata") or {}).get("namespace")
    for obj in plan.create_if_absent:
        _create_if_absent(client, obj)
    for obj in plan.apply:
        if obj["kind"] == "Job":  # a Job's template is immutable; its name is its content
            if client.get("batch/v1", "jobs", obj["metadata"]["name"], namespace) is None:
                _create_if_absent(client, obj)
            continue
        _, result = client.apply(obj)
        if result != "unchanged":
            log.info("%s %s %s", result, obj["kind"], obj["metadata"]["name"])
    for ref in plan.delete:
        if client.delete(ref.api_version, ref.plural, ref.name, namespace):
            log.info("deleted %s %s", ref.plural, ref.name)
    patch = status_patch(isvc.get("status") or {}, plan.status)
    if patch:
        client.patch(
            API_VERSION,
            PLURAL,
            isvc["metadata"]["name"],
            namespace,
            {"status": patch},
            subresource="status",
        )
    for reason, message, type_ in plan.events:
        event(client, isvc, reason, message, type_)


def reconcile_once(
    client: KubeClient, name: str, namespace: str, config: OperatorConfig
) -> Plan | None:
    """Read the service fresh, compute, apply; None when it no longer exists."""
    isvc = client.get(API_VERSION, PLURAL, name, namespace)
    if isvc is None or (isvc.get("metadata") or {}).get("deletionTimestamp"):
        return None
    plan = reconcile(isvc, observe(client, isvc), config, now=now_rfc3339())
    apply_plan(client, isvc, plan)
    return plan
