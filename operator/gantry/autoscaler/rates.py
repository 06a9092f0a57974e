"""From cumulative Triton counters to what a service is doing now (pure).

Rates. Two samples of one pod give a window: deltas of every counter over the seconds
between the scrapes. A counter that went down means the Triton process restarted (its
counters start again at zero), so the new value itself is the delta. A pod seen for the
first time has no window yet: it contributes only after its second sample, which keeps a
pod that just became Ready from reporting its whole lifetime as one burst.

Latency. Triton has no request-duration histogram, so the p95 of a service cannot be
computed exactly from Prometheus data. What there is:

- cumulative duration counters: the *mean* latency of a window is exact
  (Δ nv_inference_request_duration_us / Δ requests);
- per-pod *summaries* (`--metrics-config summary_latencies=true`, which Gantry's Triton
  pods enable): quantiles over a sliding window of about a minute kept by the server,
  not over our scrape window, and summaries of different pods cannot be merged.

The estimate used here takes the *shape* of each pod's latency distribution from its
summary and the *level* from the counters: each pod's quantiles are scaled by
(mean of the last window) / (mean over the summary's age, from our own windows), so a
load change shows at once instead of a minute later — at steady load the factor is 1
and the quantiles are Triton's own. The pods are then merged as a request-weighted
*mixture*: each pod's CDF is interpolated through its quantile points, and the service
p95 is the latency at which the weighted sum of CDFs reaches 0.95 (bisection). That is
what a client spread over the pods experiences; it always lies between the smallest and
the largest per-pod p95, and, unlike taking the maximum, one slow pod with a small share
of the traffic does not dominate. Without summaries the p95 falls back to
mean × P95_OVER_MEAN (1.5: the server p95/mean ratio measured for a CPU Triton pod here
was 1.51; light-tailed service times stay below it); so does a pod whose summary holds
fewer than MIN_REQUESTS_FOR_SUMMARY requests, where the "p95" would be its slowest
request, typically a fresh pod's first. Either way it is a *server-side*
latency: gRPC and client time are not in it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

from gantry.autoscaler.triton_metrics import TritonCounters

P95_OVER_MEAN = 1.5
# A pod's summary p95 over fewer requests is little more than its slowest request (often
# the first one a fresh pod served); such pods fall back to the mean-based estimate.
MIN_REQUESTS_FOR_SUMMARY = 20
SUMMARY_AGE_SECONDS = 60.0
P95 = 0.95

P95Source = Literal["summary", "mean-estimate"]


@dataclass(frozen=True)
class PodSample:
    """One scrape of one pod: when (monotonic seconds) and what it said."""

    pod: str
    at: float
    counters: TritonCounters


@dataclass(frozen=True)
class PodWindow:
    """What one pod did between two scrapes."""

    pod: str
    start: float
    end: float
    deltas: Mapping[str, float]
    pending: float
    reset: bool = False
    request_quantiles_us: Mapping[float, float] = field(default_factory=dict)

    @property
    def seconds(self) -> float:
        return self.end - self.start

    @property
    def requests(self) -> float:
        return self.deltas["success"] + self.deltas["failure"]

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.seconds

    @property
    def failures_per_second(self) -> float:
        return self.deltas["failure"] / self.seconds

    @property
    def rejected_per_second(self) -> float:
        return self.deltas.get("rejected", 0.0) / self.seconds

    @property
    def inferences_per_second(self) -> float:
        return self.deltas["inferences"] / self.seconds

    @property
    def mean_latency_ms(self) -> float | None:
        return self.deltas["request_us"] / self.requests / 1000 if self.requests > 0 else None

    @property
    def queue_ms(self) -> float | None:
        return self.deltas["queue_us"] / self.requests / 1000 if self.requests > 0 else None


def pod_window(prev: PodSample, cur: PodSample) -> PodWindow | None:
    """The window between two samples of one pod; None if no time passed between them."""
    if cur.at <= prev.at:
        return None
    before, after = prev.counters.counter_values(), cur.counters.counter_values()
    reset = any(after[name] < before[name] for name in after)
    deltas = after if reset else {name: after[name] - before[name] for name in after}
    return PodWindow(
        pod=cur.pod,
        start=prev.at,
        end=cur.at,
        deltas=deltas,
        pending=cur.counters.pending,
        reset=reset,
        request_quantiles_us=dict(cur.counters.request_quantiles_us),
    )


@dataclass(frozen=True)
class ServiceMetrics:
    """One service over the last scrape window, all pods together."""

    windows: tuple[PodWindow, ...]
    new_pods: tuple[str, ...] = ()
    failed_pods: tuple[str, ...] = ()
    pending_requests: float = 0.0
    latency_p95_ms: float | None = None
    p95_source: P95Source | None = None

    @property
    def sampled_pods(self) -> int:
        return len(self.windows)

    @property
    def requests_per_second(self) -> float:
        return sum(w.requests_per_second for w in self.windows)

    @property
    def failures_per_second(self) -> float:
        return sum(w.failures_per_second for w in self.windows)

    @property
    def rejected_per_second(self) -> float:
        """Requests Triton's queue policy rejected (timed out in the queue): demand that
        the replicas could not serve within the latency target."""
        return sum(w.rejected_per_second for w in self.windows)

    @property
    def latency_mean_ms(self) -> float | None:
        requests = sum(w.requests for w in self.windows)
        total_us = sum(w.deltas["request_us"] for w in self.windows)
        return total_us / requests / 1000 if requests > 0 else None

    @property
    def queue_time_ms(self) -> float | None:
        requests = sum(w.requests for w in self.windows)
        total_us = sum(w.deltas["queue_us"] for w in self.windows)
        return total_us / requests / 1000 if requests > 0 else None

    def request_share(self) -> dict[str, float]:
        """Share of the window's requests each pod served (sums to 1 when any)."""
        total = sum(w.requests for w in self.windows)
        return {w.pod: (w.requests / total if total else 0.0) for w in self.windows}


def aggregate(
    windows: Sequence[PodWindow],
    *,
    histories: Mapping[str, Sequence[PodWindow]] | None = None,
    new_pods: Sequence[str] = (),
    failed_pods: Sequence[str] = (),
    new_pod_pending: float = 0.0,
) -> ServiceMetrics:
    """Merge the pods' last windows; `histories` (older windows per pod) level the summaries."""
    histories = histories or {}
    p95, source = estimate_p95_ms(windows, histories)
    return ServiceMetrics(
        windows=tuple(windows),
        new_pods=tuple(new_pods),
        failed_pods=tuple(failed_pods),
        pending_requests=sum(w.pending for w in windows) + new_pod_pending,
        latency_p95_ms=p95,
        p95_source=source,
    )


def estimate_p95_ms(
    windows: Sequence[PodWindow], histories: Mapping[str, Sequence[PodWindow]]
) -> tuple[float | None, P95Source | None]:
    """The service p95 (ms) and how it was estimated; None when no requests finished."""
    busy = [w for w in windows if w.requests > 0]
    if not busy:
        return None, None
    curves: list[tuple[float, list[tuple[float, float]]]] = []
    for w in busy:
        points = _leveled_quantiles(w, histories.get(w.pod, ()))
        if points is None:
            curves = []
            break
        curves.append((w.requests, points))
    if curves:
        return mixture_quantile(curves, P95) / 1000, "summary"
    requests = sum(w.requests for w in busy)
    mean_us = sum(w.deltas["request_us"] for w in busy) / requests
    return mean_us * P95_OVER_MEAN / 1000, "mean-estimate"


def _leveled_quantiles(
    window: PodWindow, history: Sequence[PodWindow]
) -> list[tuple[float, float]] | None:
    """(µs, q) points of the pod's summary scaled to the level of its last window."""
    quantiles = {q: v for q, v in window.request_quantiles_us.items() if v >= 0}
    if not quantiles or max(quantiles) < P95:
        return None
    recent = [h for h in history if h.end > window.end - SUMMARY_AGE_SECONDS] + [window]
    requests = sum(h.requests for h in recent)
    if requests < MIN_REQUESTS_FOR_SUMMARY:
        return None
    long_mean = sum(h.deltas["request_us"] for h in recent) / requests if requests else 0.0
    mean = window.deltas["request_us"] / window.requests
    factor = mean / long_mean if long_mean > 0 else 1.0
    points: list[tuple[float, float]] = []
    highest = 0.0
    for q, value in sorted(quantiles.items()):
        highest = max(highest, value * factor)  # quantiles must not decrease
        points.append((highest, q))
    return points


def _cdf(points: Sequence[tuple[float, float]], x: float) -> float:
    """Piecewise-linear CDF through (0, 0) and the (value, quantile) points; 1 past the last."""
    prev_v, prev_q = 0.0, 0.0
    for value, q in points:
        if x < value:
            span = value - prev_v
            return prev_q + (q - prev_q) * ((x - prev_v) / span if span > 0 else 1.0)
        prev_v, prev_q = value, q
    return 1.0


def mixture_quantile(
    curves: Sequence[tuple[float, Sequence[tuple[float, float]]]], q: float
) -> float:
    """The q-quantile of a weighted mixture of distributions given by quantile points."""
    total = sum(weight for weight, _ in curves)
    if total <= 0 or not curves:
        raise ValueError("a mixture needs a positive total weight")
    low, high = 0.0, max(points[-1][0] for _, points in curves)
    if high <= 0:
        return 0.0
    for _ in range(60):
        mid = (low + high) / 2
        mass = sum(weight * _cdf(points, mid) for weight, points in curves) / total
        if mass < q:
            low = mid
        else:
            high = mid
    return high if math.isfinite(high) else 0.0
