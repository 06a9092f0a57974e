"""Operator-wide settings: configuration, kopf tuning and how kopf is started.

Every setting lives in `gantry.config.OperatorConfig` (the chart's `config:` values,
overridable by `GANTRY_<FIELD>` variables): resync interval, API timeouts, ports,
liveness and peering included. Nothing else reads the environment for settings.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
from typing import Any

import kopf

from gantry.config import OperatorConfig, load_config
from gantry.controller.reconcile_loop import configure_workers

log = logging.getLogger(__name__)

STORAGE_NAME = "kopf"
TOUCH_ANNOTATION = "gantry.dev/kopf-touch"


@functools.cache
def operator_config() -> OperatorConfig:
    """The configuration, loaded once per process (a bad one fails startup loudly)."""
    return load_config()


def operator_kwargs(config: OperatorConfig) -> dict[str, Any]:
    """kopf.run/kopf.operator arguments: scope and peering."""
    peering = config.peering
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
    config = operator_config()
    configure_workers(config.reconcile_workers)
    settings.peering.mandatory = config.peering is not None
    # The pod's own name (downward API): kopf's identity among peers, not a setting.
    settings.peering.priority = peering_priority(os.environ.get("POD_ID", ""))
    settings.watching.server_timeout = 300
    settings.watching.client_timeout = 330
    settings.watching.connect_timeout = 30
    # Every API call kopf makes (patches, events, peering) gives up after this long.
    settings.networking.request_timeout = config.api_timeout_seconds
    settings.networking.connect_timeout = 10
    scope = ", ".join(config.watch_namespaces) or "all namespaces"
    log.info("gantry operator configured: watching %s", scope)
