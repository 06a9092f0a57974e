"""Per-request records → per-second timeline and summary (pure)."""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Record:
    sent: float  # seconds since the start of the run
    latency_ms: float
    ok: bool
    pod: str


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (q in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[rank - 1]


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


def timeline(
    records: Sequence[Record],
    seconds: int,
    *,
    target_load: Sequence[float],
    replicas: Mapping[int, int | None],
) -> list[dict[str, Any]]:
    """One row per second of sending: sent, ok, errors, p50/p95 of ok requests, pods."""
    buckets: list[list[Record]] = [[] for _ in range(seconds)]
    for record in records:
        second = int(record.sent)
        if 0 <= second < seconds:
            buckets[second].append(record)
    rows = []
    for second, bucket in enumerate(buckets):
        latencies = [r.latency_ms for r in bucket if r.ok]
        rows.append(
            {
                "t": second,
                "target_load": round(target_load[second], 3) if second < len(target_load) else 0,
                "sent": len(bucket),
                "ok": len(latencies),
                "errors": len(bucket) - len(latencies),
                "p50_ms": _r(percentile(latencies, 50)),
                "p95_ms": _r(percentile(latencies, 95)),
                "replicas": replicas.get(second),
                "pods": dict(Counter(r.pod for r in bucket if r.ok)),
            }
        )
    return rows


def summary(records: Sequence[Record], duration: float) -> dict[str, Any]:
    latencies = [r.latency_ms for r in records if r.ok]
    ok = len(latencies)
    return {
        "duration_s": round(duration, 3),
        "sent": len(records),
        "ok": ok,
        "errors": len(records) - ok,
        "ok_per_second": round(ok / duration, 3) if duration > 0 else 0.0,
        "p50_ms": _r(percentile(latencies, 50)),
        "p95_ms": _r(percentile(latencies, 95)),
        "p99_ms": _r(percentile(latencies, 99)),
    }


def pod_share(records: Sequence[Record]) -> dict[str, float]:
    """Share of successful requests each pod answered."""
    counts = Counter(r.pod for r in records if r.ok)
    total = sum(counts.values())
    return {pod: round(n / total, 4) for pod, n in sorted(counts.items())} if total else {}
