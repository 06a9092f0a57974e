"""Operator metrics (Prometheus): every reconciler reports through these helpers.

Metrics live in one registry owned by this module so tests can read them and so
starting two operators in one process (tests) never registers a name twice.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

RECONCILE_TOTAL = Counter(
    "gantry_reconcile_total",
    "Reconciles by kind and result (ok, error).",
    ["kind", "result"],
    registry=REGISTRY,
)
RECONCILE_ERRORS = Counter(
    "gantry_reconcile_errors_total",
    "Failed reconciles by kind and reason (the exception class or API reason).",
    ["kind", "reason"],
    registry=REGISTRY,
)
RECONCILE_DURATION = Histogram(
    "gantry_reconcile_duration_seconds",
    "Time one reconcile took, by kind.",
    ["kind"],
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
    registry=REGISTRY,
)
AUTOSCALER_DECISIONS = Counter(
    "gantry_autoscaler_decisions_total",
    "Autoscaler decisions by direction (up, down, hold).",
    ["direction"],
    registry=REGISTRY,
)
SCRAPE_FAILURES = Counter(
    "gantry_metrics_scrape_failures_total",
    "Triton metrics scrapes that failed.",
    registry=REGISTRY,
)


def _reason(err: BaseException) -> str:
    reason = getattr(err, "reason", None)
    return str(reason) if isinstance(reason, str) and reason else type(err).__name__


@contextmanager
def observe_reconcile(kind: str) -> Iterator[None]:
    """Time a reconcile and count its result; exceptions are counted and re-raised."""
    started = time.perf_counter()
    try:
        yield
    except BaseException as err:
        RECONCILE_TOTAL.labels(kind=kind, result="error").inc()
        RECONCILE_ERRORS.labels(kind=kind, reason=_reason(err)).inc()
        raise
    else:
        RECONCILE_TOTAL.labels(kind=kind, result="ok").inc()
    finally:
        RECONCILE_DURATION.labels(kind=kind).observe(time.perf_counter() - started)


def record_reconcile_error(kind: str, reason: str) -> None:
    """Count an error a reconciler handled itself (e.g. reported as a condition)."""
    RECONCILE_ERRORS.labels(kind=kind, reason=reason).inc()


def record_autoscaler_decision(direction: str) -> None:
    """Count one autoscaler decision: up, down or hold."""
    AUTOSCALER_DECISIONS.labels(direction=direction).inc()


def record_scrape_failure() -> None:
    """Count one failed metrics scrape of a Triton pod."""
    SCRAPE_FAILURES.inc()


def sample(name: str, **labels: str) -> float:
    """The current value of a sample (0.0 when never observed); for tests and the CLI."""
    value = REGISTRY.get_sample_value(name, labels or None)
    return float(value) if value is not None else 0.0


def serve(port: int, address: str = "0.0.0.0") -> Any | None:
    """Expose /metrics on `port`; 0 turns the endpoint off. Returns the server or None."""
    if port == 0:
        log.info("metrics endpoint disabled (GANTRY_METRICS_PORT=0)")
        return None
    server, _thread = start_http_server(port, addr=address, registry=REGISTRY)
    log.info("metrics on http://%s:%d/metrics", address, port)
    return server
