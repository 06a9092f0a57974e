"""The operator's liveness: red while the Kubernetes API cannot be reached.

kopf serves `/healthz` (the chart's liveness and readiness probes) from its probe
handlers, re-run at most every 10 s. A probe that fails answers 500: an operator cut off
from its API server (stopped, frozen, a broken network path) reports it instead of
looking healthy while it reconciles nothing; it turns green again once a call succeeds.

The probe's errors are permanent for kopf: with its default (temporary errors, retried
after 60 s within the same activity) a failing probe held the /healthz request open for a
minute at a time instead of answering 500, and every request behind it waited too.
"""

from __future__ import annotations

from typing import Any

import kopf

from gantry.controller.connection import kube_client
from gantry.controller.reconcile_loop import in_thread

PROBE_TIMEOUT_SECONDS = 5.0


@kopf.on.probe(id="api", errors=kopf.ErrorsMode.PERMANENT)
async def api_reachable(**_: Any) -> str:
    """The API server's version; raises (so `/healthz` answers 500) when it cannot be read."""
    version = await in_thread(kube_client().version, PROBE_TIMEOUT_SECONDS)
    return str(version.get("gitVersion") or "reachable")
