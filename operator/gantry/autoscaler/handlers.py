"""kopf wiring: one daemon per InferenceService runs `ServiceAutoscaler` rounds.

A daemon (not a timer) because the autoscaler keeps memory between rounds: each pod's
previous counters and the recent desires of the stabilization windows. While the service
has Ready Triton pods, a round runs every `scrapeIntervalSeconds` of the operator
configuration (exactly as configured); without any, there is nothing to scrape, so the
daemon sleeps until the service or its pods change (watch events) or the slow resync.
A failed round is logged and the next one tries again; the daemon ends with the object.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from gantry.autoscaler.actuator import UNKNOWN, ServiceAutoscaler, Unknown
from gantry.controller.connection import kube_client
from gantry.controller.reconcile_loop import WAKEUPS, OwnerKey, wait_for_wake
from gantry.controller.settings import operator_config
from gantry.controller.watch_cache import INFERENCESERVICE, KIND_INDEX, ClusterView
from gantry.inferenceservice.names import SERVICE_LABEL, deployment_name


class CachedReads:
    """The autoscaler's reads, served by the watch caches and the daemon's live body."""

    def __init__(self, view: ClusterView, body: kopf.Body, name: str, namespace: str) -> None:
        self.view, self.body, self.name, self.namespace = view, body, name, namespace
        self.owner = OwnerKey(INFERENCESERVICE, namespace, name)

    async def isvc(self) -> dict[str, Any] | None:
        meta = self.body.get("metadata") or {}
        return None if meta.get("deletionTimestamp") else dict(self.body)

    async def deployment(self) -> dict[str, Any] | None:
        return self.view.named("Deployment", self.namespace, deployment_name(self.name))

    async def pods(self) -> list[dict[str, Any]]:
        return [
            p
            for p in self.view.owned("Pod", self.owner)
            if ((p.get("metadata") or {}).get("labels") or {}).get(SERVICE_LABEL) == self.name
        ]

    def cached(self, kind: str, name: str) -> dict[str, Any] | Unknown | None:
        if kind not in KIND_INDEX:
            return UNKNOWN
        return self.view.named(kind, self.namespace, name)


@kopf.daemon("gantry.dev", "v1alpha1", "inferenceservices", cancellation_timeout=5.0)
async def autoscale(
    *,
    name: str,
    namespace: str | None,
    body: kopf.Body,
    stopped: kopf.DaemonStopped,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **kwargs: Any,
) -> None:
    """Scrape, decide and actuate every interval while there is something to scrape."""
    config = operator_config()
    namespace = namespace or "default"
    reads = CachedReads(ClusterView(kwargs), body, name, namespace)
    autoscaler = ServiceAutoscaler(
        kube_client(), name, namespace, reads=reads, resync=config.resync_seconds
    )
    key = OwnerKey(INFERENCESERVICE, namespace, name)
    wake = WAKEUPS.register(key)
    try:
        while not stopped:
            wake.clear()
            busy = True
            try:
                result = await autoscaler.run_round()
                busy = bool(result.targets)
            except Exception as err:  # one bad round must not end the daemon
                logger.warning("autoscaler round failed: %s", err)
            if busy:
                await stopped.wait(config.scrape_interval_seconds)
            else:
                await wait_for_wake(wake, stopped, config.resync_seconds)
    finally:
        WAKEUPS.unregister(key, wake)
