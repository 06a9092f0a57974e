"""Stock-client load as pods: manifests, results from their logs, and a summary (pure parts).

Used by the end-to-end tests and `bench/autoscale.py --stock-clients K`: K pods each run
`python -m gantry_cli.loadgen.stock_client` on the headless Service's DNS name, so name
resolution, load balancing and reconnection are gRPC's own inside a pod, as in a cluster.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gantry_cli.grpc_client import service_url
from gantry_cli.loadgen.stock_client import RESULT_PREFIX

LABEL = "gantry.dev/stock-client"


def stock_client_pod(
    name: str,
    namespace: str,
    *,
    service: str,
    model: str,
    profile: str,
    clients: int,
    start_at: float,
    inputs: Sequence[str],
    image: str = "python:3.12-slim",
    python: str = "python",
    stop_file: str | None = None,
) -> dict[str, Any]:
    """One client pod; `inputs` as NAME:DATATYPE:DIMxDIM (the batch dimension included)."""
    args = [
        "-m",
        "gantry_cli.loadgen.stock_client",
        "--url",
        service_url(service, namespace),
        "--model",
        model,
        "--profile",
        profile,
        "--clients",
        str(clients),
        "--start-at",
        repr(start_at),
    ]
    for spec in inputs:
        args += ["--input", spec]
    if stop_file:
        args += ["--stop-file", stop_file]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "namespace": namespace, "labels": {LABEL: service}},
        "spec": {
            "restartPolicy": "Never",
            "automountServiceAccountToken": False,
            "containers": [{"name": "client", "image": image, "command": [python], "args": args}],
        },
    }


def parse_result(log: str) -> dict[str, Any] | None:
    """The result line a client printed last, or None."""
    for line in reversed(log.splitlines()):
        if line.startswith(RESULT_PREFIX):
            parsed = json.loads(line[len(RESULT_PREFIX) :])
            return parsed if isinstance(parsed, dict) else None
    return None


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..1); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[max(0, math.ceil(q * len(ordered)) - 1)]


@dataclass(frozen=True)
class StockSummary:
    clients: int
    sent: int
    ok: int
    errors: dict[str, int]
    p95_ms: float | None
    window_p95_ms: float | None  # requests sent within [window_start, window_end)

    @property
    def failed(self) -> int:
        return sum(self.errors.values())

    def as_dict(self) -> dict[str, Any]:
        return {
            "clients": self.clients,
            "sent": self.sent,
            "ok": self.ok,
            "failed": self.failed,
            "errors": self.errors,
            "p95_ms": self.p95_ms,
            "window_p95_ms": self.window_p95_ms,
        }


def summarize(
    results: Iterable[Mapping[str, Any]], window: tuple[float, float] = (0.0, math.inf)
) -> StockSummary:
    """All clients together; failed requests count at their deadline, not as fast ones."""
    results = list(results)
    errors: dict[str, int] = {}
    latencies: list[float] = []
    in_window: list[float] = []
    for result in results:
        for message, count in (result.get("errors") or {}).items():
            errors[message] = errors.get(message, 0) + int(count)
        for sent, ms in result.get("samples") or []:
            latencies.append(float(ms))
            if window[0] <= float(sent) < window[1]:
                in_window.append(float(ms))
    return StockSummary(
        clients=len(results),
        sent=sum(int(r.get("sent", 0)) for r in results),
        ok=sum(int(r.get("ok", 0)) for r in results),
        errors=errors,
        p95_ms=percentile(latencies, 0.95),
        window_p95_ms=percentile(in_window, 0.95),
    )


def served_shares(before: Mapping[str, float], after: Mapping[str, float]) -> dict[str, float]:
    """Each pod's share of the requests its Triton counted between two readings."""
    deltas = {pod: max(0.0, after[pod] - before.get(pod, 0.0)) for pod in after}
    total = sum(deltas.values())
    return {pod: (d / total if total else 0.0) for pod, d in sorted(deltas.items())}
