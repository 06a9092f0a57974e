"""Operator-wide settings: configuration, kopf tuning and how kopf is started.

Environment (beside `gantry.config`'s GANTRY_* fields):
- GANTRY_PEERING: name of a KopfPeering (namespaced) / ClusterKopfPeering object; set it
  to run several replicas with one active (kopf peering). Unset: standalone.
- GANTRY_METRICS_PORT: Prometheus /metrics port (default 8081; 0 turns it off).
- GANTRY_LIVENESS: liveness URL (default http://0.0.0.0:8080/healthz; empty turns it off).
- GANTRY_RECONCILE_INTERVAL: seconds between level-triggered reconciles (default 1).
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from typing import Any

import kopf

from gantry.config import OperatorConfig, load_config

log = logging.getLogger(__name__)

DEFAULT_LIVENESS = "http://0.0.0.0:8080/healthz"
DEFAULT_METRICS_PORT = 8081
STORAGE_NAME = "kopf"
TOUCH_ANNOTATION = "gantry.dev/kopf-touch"


@functools.cache
def operator_config() -> OperatorConfig:
    """The configuration, loaded once per process (a bad one fails startup loudly)."""
    return load_config()


def reconcile_interval() -> float:
    raw = os.environ.get("GANTRY_RECONCILE_INTERVAL", "1")
    try:
        value = float(raw)
    except ValueError:
        raise ValueError(f"GANTRY_RECONCILE_INTERVAL={raw!r} is not a number of seconds") from None
    if not 0.1 <= value <= 300:
        raise ValueError(f"GANTRY_RECONCILE_INTERVAL={raw!r} must be between 0.1 and 300")
    return value


def metrics_port() -> int:
    raw = os.environ.get("GANTRY_METRICS_PORT", str(DEFAULT_METRICS_PORT))
    try:
        port = int(raw)
    except ValueError:
        raise ValueError(f"GANTRY_METRICS_PORT={raw!r} is not a port number") from None
    if not 0 <= port < 65536:
        raise ValueError(f"GANTRY_METRICS_PORT={raw!r} is out of range")
    return port


def liveness_endpoint() -> str | None:
    return os.environ.get("GANTRY_LIVENESS", DEFAULT_LIVENESS) or None


def operator_kwargs(config: OperatorConfig) -> dict[str, Any]:
    """kopf.run/kopf.operator arguments: scope and peering."""
    peering = os.environ.get("GANTRY_PEERING") or None
    namespaces = list(config.watch_namespaces)
    return {
        "clusterwide": not namespaces,
        "namespaces": namespaces,
        "standalone": peering is None,
        "peering_name": peering,
    }


def peering_priority(pod_id: str) -> int:
    """A priority unique to this replica, derived from its pod name.

    kopf pauses *every* operator when peers share the highest priority, and all replicas
    of one Deployment get identical settings; hashing the pod name gives each replica its
    own priority, so exactly one is active and the others stand by.
    """
    if not pod_id:
        return 0
    return int.from_bytes(hashlib.sha256(pod_id.encode()).digest()[:3], "big") + 1


@kopf.on.startup()
def configure(settings: kopf.OperatorSettings, **_: Any) -> None:
    """kopf's state in status (fewer writes than annotations), events only for warnings.

    kopf also "touches" objects through the progress storage to wake itself (e.g. to
    drop its finalizer once a timer has stopped). That touch is an annotation, not
    `status.kopf.dummy`: an API server prunes status fields its CRD schema does not
    declare, and a pruned touch would leave a deleted object waiting for minutes.
    """
    settings.persistence.diffbase_storage = kopf.StatusDiffBaseStorage(name=STORAGE_NAME)
    settings.persistence.progress_storage = kopf.StatusProgressStorage(
        name=STORAGE_NAME, touch_field=("metadata", "annotations", TOUCH_ANNOTATION)
    )
    # A timer may itself delete its object (TTL): let kopf notice within a second or two
    # that it ended, rather than after the default minute, before dropping its finalizer.
    settings.background.instant_exit_timeout = 1.0
    settings.background.cancellation_polling = 2.0
    settings.posting.enabled = True
    settings.posting.level = logging.WARNING
    settings.peering.mandatory = bool(os.environ.get("GANTRY_PEERING"))
    settings.peering.priority = peering_priority(os.environ.get("POD_ID", ""))
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    config = operator_config()
    scope = ", ".join(config.watch_namespaces) or "all namespaces"
    log.info("gantry operator configured: watching %s", scope)
