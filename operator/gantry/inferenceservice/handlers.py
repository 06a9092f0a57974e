"""kopf wiring for InferenceServices: one reconcile loop per service, woken by watch events.

A pass computes the plan from the watch caches (the service, its optimize Jobs and pods,
Deployment, PDB, Triton pods, the TrainingJob it serves, the namespace's claims) and
writes only what differs. The loop sleeps until the service, a child or that TrainingJob
changes, or until the slow resync.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import kopf

from gantry.config import OperatorConfig
from gantry.controller.object_loop import reconcile_object
from gantry.controller.reconcile_loop import WAKEUPS, LatestBody, OwnerKey, in_thread
from gantry.controller.watch_cache import INFERENCESERVICE, TRAININGJOB, ClusterView
from gantry.inferenceservice.apply import apply_plan, plan_pass, training_job_ref
from gantry.k8s.client import KubeClient

log = logging.getLogger(__name__)

KIND = INFERENCESERVICE


async def reconcile_pass(
    client: KubeClient,
    view: ClusterView,
    body: Mapping[str, Any],
    config: OperatorConfig,
    latest: LatestBody,
) -> float | None:
    """One pass for one service; it has no time-based work, so never asks for a wake-up."""
    isvc = latest.pick(body)
    meta = isvc.get("metadata") or {}
    if not meta.get("name") or meta.get("deletionTimestamp"):
        return None
    namespace, name = str(meta.get("namespace") or "default"), str(meta["name"])
    ref = training_job_ref(isvc)
    WAKEUPS.depend(
        OwnerKey(KIND, namespace, name),
        [OwnerKey(TRAININGJOB, namespace, ref)] if ref else [],
    )
    plan, current, _foreign = plan_pass(view, isvc, config)
    written = await in_thread(apply_plan, client, isvc, plan, current)
    if written is not None:
        latest.remember(isvc, written)
    return None


@kopf.daemon(
    "gantry.dev",
    "v1alpha1",
    "inferenceservices",
    id="inferenceservice-loop",
    cancellation_timeout=1.0,
)
async def inferenceservice_loop(
    name: str | None,
    namespace: str | None,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    **kwargs: Any,
) -> None:
    """Reconcile one InferenceService on every change until it is deleted."""
    await reconcile_object(KIND, name, namespace, body, stopped, kwargs, reconcile_pass)
