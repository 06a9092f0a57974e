"""kopf wiring: a short per-object timer drives the level-triggered reconcile.

The timer fires at once when an InferenceService appears and then every
`GANTRY_RECONCILE_INTERVAL` seconds (default 1): each pass reads the object and its
children afresh, so spec edits, Job completions, pod readiness and TrainingJob progress
are all picked up without watching every child kind. Passes of one object never overlap.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from gantry.controller.connection import kube_client
from gantry.controller.metrics import observe_reconcile
from gantry.controller.settings import operator_config, reconcile_interval
from gantry.inferenceservice.apply import reconcile_once
from gantry.k8s.errors import ApiError

log = logging.getLogger(__name__)

KIND = "InferenceService"


@kopf.timer("gantry.dev", "v1alpha1", "inferenceservices", interval=reconcile_interval())
def reconcile_inferenceservice(*, name: str, namespace: str | None, **_: Any) -> None:
    with observe_reconcile(KIND):
        try:
            reconcile_once(kube_client(), name, namespace or "default", operator_config())
        except ApiError as err:
            # Transient API trouble: retried shortly; the operator keeps running.
            raise kopf.TemporaryError(f"API error while reconciling: {err}", delay=2) from err
