"""The operator's liveness: red while the Kubernetes API cannot be reached.

kopf serves `/healthz` (the chart's liveness and readiness probes) from its probe
handlers, re-run at most every 10 s. A probe that fails answers 500: an operator cut off
from its API server (stopped, frozen, a broken network path) reports it instead of
looking healthy while it reconciles nothing; it turns green again once a call succeeds.

The probe's errors are permanent for kopf: with its default (temporary errors, retried
after 60 s within the same activity) a failing probe held the /healthz request open for a
minute at a time instead of answering 500, and every request behind it waited too.
kopf runs one probe at a time and caches only successes, so against a frozen server
(each check waits out its timeout) requests from the kubelet's two probes queued up
behind each other; a failure is therefore remembered for `FAILURE_HOLD_SECONDS` and
answered at once meanwhile, and one check waits at most `PROBE_TIMEOUT_SECONDS`.
"""

from __future__ import annotations

import time
from typing import Any

import kopf

from gantry.controller.connection import kube_client
from gantry.controller.reconcile_loop import in_thread

PROBE_TIMEOUT_SECONDS = 3.0
FAILURE_HOLD_SECONDS = 5.0

_last_failure: tuple[float, str] | None = None  # (monotonic time, why)


@kopf.on.probe(id="api", errors=kopf.ErrorsMode.PERMANENT)
async def api_reachable(**_: Any) -> str:
    """The API server's version; raises (so `/healthz` answers 500) when it cannot be read."""
    global _last_failure
    if _last_failure is not None and time.monotonic() - _last_failure[0] < FAILURE_HOLD_SECONDS:
        raise kopf.PermanentError(f"the API server was unreachable just now: {_last_failure[1]}")
    try:
        version = await in_thread(kube_client().version, PROBE_TIMEOUT_SECONDS)
    except Exception as err:
        _last_failure = (time.monotonic(), str(err))
        raise
    _last_failure = None
    return str(version.get("gitVersion") or "reachable")
