"""kopf wiring: one daemon per InferenceService runs `ServiceAutoscaler` rounds.

A daemon (not a timer) because the autoscaler keeps memory between rounds: each pod's
previous counters and the recent desires of the stabilization windows. The interval is
`scrape_interval_seconds` of the operator configuration, at most 5 s. A failed round is
logged and the next one tries again; the daemon ends when the object is deleted.
"""

from __future__ import annotations

import logging
from typing import Any

import kopf

from gantry.autoscaler.actuator import ServiceAutoscaler
from gantry.controller.connection import kube_client
from gantry.controller.settings import operator_config

MAX_INTERVAL_SECONDS = 5.0


def interval_seconds() -> float:
    return min(operator_config().scrape_interval_seconds, MAX_INTERVAL_SECONDS)


@kopf.daemon("gantry.dev", "v1alpha1", "inferenceservices", cancellation_timeout=5.0)
async def autoscale(
    *,
    name: str,
    namespace: str | None,
    stopped: kopf.DaemonStopped,
    logger: logging.Logger | logging.LoggerAdapter[Any],
    **_: Any,
) -> None:
    """Scrape, decide and actuate every interval until the service goes away."""
    interval = interval_seconds()
    autoscaler = ServiceAutoscaler(kube_client(), name, namespace or "default")
    while not stopped:
        try:
            await autoscaler.run_round()
        except Exception as err:  # one bad round must not end the daemon
            logger.warning("autoscaler round failed: %s", err)
        await stopped.wait(interval)
