"""Windows, counter resets, pods joining/leaving/failing, and the cross-pod p95 estimate."""

from __future__ import annotations

from dataclasses import replace

import pytest

from gantry.autoscaler.collector import ServiceCollector
from gantry.autoscaler.rates import (
    P95_OVER_MEAN,
    PodSample,
    mixture_quantile,
    pod_window,
)
from gantry.autoscaler.triton_metrics import TritonCounters

QUANTILES = (0.5, 0.9, 0.95, 0.99, 0.999)


def counters(
    requests: float, mean_ms: float, *, p95_ms: float | None = None, pending: float = 0
) -> TritonCounters:
    """Cumulative counters after `requests` requests of `mean_ms` each."""
    quantiles = {}
    if p95_ms is not None:
        quantiles = {
            q: p95_ms * 1000 * f for q, f in zip(QUANTILES, (0.6, 0.9, 1, 1.3, 1.6), strict=True)
        }
    return TritonCounters(
        success=requests,
        inferences=requests,
        executions=requests,
        request_us=requests * mean_ms * 1000,
        queue_us=requests * mean_ms * 100,
        pending=pending,
        request_quantiles_us=quantiles,
    )


def test_window_rates() -> None:
    w = pod_window(PodSample("a", 10, counters(100, 2)), PodSample("a", 15, counters(600, 4)))
    assert w is not None and not w.reset
    assert w.requests_per_second == pytest.approx(100)
    # (500 requests: 600*4 - 100*2 = 2200 ms in total) → 4.4 ms mean
    assert w.mean_latency_ms == pytest.approx(4.4)
    assert w.queue_ms == pytest.approx(0.44)


def test_counter_reset_counts_new_value_as_delta() -> None:
    w = pod_window(PodSample("a", 10, counters(5000, 2)), PodSample("a", 15, counters(50, 3)))
    assert w is not None and w.reset
    assert w.requests == 50
    assert w.mean_latency_ms == pytest.approx(3)


def test_no_time_between_samples_gives_no_window() -> None:
    assert (
        pod_window(PodSample("a", 10, counters(1, 1)), PodSample("a", 10, counters(2, 1))) is None
    )


def test_new_pod_needs_two_samples_and_left_pods_are_forgotten() -> None:
    c = ServiceCollector()
    first = c.observe({"a": counters(0, 1)}, at=0)
    assert first.sampled_pods == 0 and first.new_pods == ("a",)
    second = c.observe({"a": counters(50, 2), "b": counters(0, 1)}, at=5)
    assert second.sampled_pods == 1 and second.new_pods == ("b",)
    assert second.requests_per_second == pytest.approx(10)
    third = c.observe({"b": counters(100, 2)}, at=10)
    assert [w.pod for w in third.windows] == ["b"]
    assert c.known_pods == {"b"}
    # a comes back: it is new again, its old counters are not reused
    fourth = c.observe({"a": counters(500, 2), "b": counters(150, 2)}, at=15)
    assert fourth.new_pods == ("a",)


def test_failed_pod_is_left_out_and_keeps_its_last_sample() -> None:
    c = ServiceCollector()
    c.observe({"a": counters(0, 1), "b": counters(0, 1)}, at=0)
    m = c.observe({"a": counters(50, 2)}, failed=["b"], at=5)
    assert m.failed_pods == ("b",)
    assert [w.pod for w in m.windows] == ["a"]
    # b answers again: one 10-second window from its sample at t=0
    m = c.observe({"a": counters(100, 2), "b": counters(100, 2)}, at=10)
    b = next(w for w in m.windows if w.pod == "b")
    assert b.seconds == 10 and b.requests_per_second == pytest.approx(10)


def test_restarted_pod_counts_once_not_negative() -> None:
    c = ServiceCollector()
    c.observe({"a": counters(1000, 1)}, at=0)
    m = c.observe({"a": counters(20, 1)}, at=5)
    assert m.requests_per_second == pytest.approx(4)
    assert m.windows[0].reset


def test_summary_p95_at_steady_load_is_tritons_own() -> None:
    c = ServiceCollector()
    c.observe({"a": counters(0, 5, p95_ms=8)}, at=0)
    m = c.observe({"a": counters(100, 5, p95_ms=8)}, at=5)
    assert m.p95_source == "summary"
    assert m.latency_p95_ms == pytest.approx(8, rel=1e-3)


def test_summary_p95_follows_a_level_change_at_once() -> None:
    """The summary still remembers slow requests; the counters show they are gone."""
    c = ServiceCollector()
    c.observe({"a": counters(0, 20, p95_ms=40)}, at=0)
    c.observe({"a": counters(100, 20, p95_ms=40)}, at=5)
    # next window: mean fell to 5 ms (total 100*20 + 100*5 ms), summary still says 40
    fast = replace(counters(200, 1, p95_ms=40), request_us=2_500_000, queue_us=250_000)
    m = c.observe({"a": fast}, at=10)
    # level factor = 5 ms / 12.5 ms (mean over both windows) → p95 16 ms instead of 40
    assert m.latency_p95_ms == pytest.approx(16, rel=1e-3)
    assert m.latency_mean_ms == pytest.approx(5)


def test_mixture_p95_lies_between_pods_and_weights_by_requests() -> None:
    c = ServiceCollector()
    c.observe({"a": counters(0, 5, p95_ms=10), "b": counters(0, 50, p95_ms=100)}, at=0)
    m = c.observe({"a": counters(980, 5, p95_ms=10), "b": counters(20, 50, p95_ms=100)}, at=5)
    assert m.p95_source == "summary"
    assert m.latency_p95_ms is not None
    # 2 % of traffic on the slow pod barely moves the service p95 (max would say 100)
    assert 10 <= m.latency_p95_ms < 15
    even = ServiceCollector()
    even.observe({"a": counters(0, 5, p95_ms=10), "b": counters(0, 50, p95_ms=100)}, at=0)
    m2 = even.observe({"a": counters(500, 5, p95_ms=10), "b": counters(500, 50, p95_ms=100)}, at=5)
    assert m2.latency_p95_ms is not None and 10 < m2.latency_p95_ms <= 100
    assert m2.latency_p95_ms > m.latency_p95_ms
    assert m2.request_share() == {"a": 0.5, "b": 0.5}


def test_without_summaries_p95_is_mean_times_factor() -> None:
    c = ServiceCollector()
    c.observe({"a": counters(0, 4)}, at=0)
    m = c.observe({"a": counters(100, 4)}, at=5)
    assert m.p95_source == "mean-estimate"
    assert m.latency_p95_ms == pytest.approx(4 * P95_OVER_MEAN)


def test_idle_service_has_no_latency() -> None:
    c = ServiceCollector()
    c.observe({"a": counters(10, 4, pending=0)}, at=0)
    m = c.observe({"a": counters(10, 4, pending=3)}, at=5)
    assert m.requests_per_second == 0
    assert m.latency_p95_ms is None and m.latency_mean_ms is None
    assert m.pending_requests == 3


def test_mixture_of_one_distribution_is_its_quantile() -> None:
    points = [(1.0, 0.5), (2.0, 0.9), (3.0, 0.95), (5.0, 0.99)]
    assert mixture_quantile([(1.0, points)], 0.95) == pytest.approx(3.0, rel=1e-6)
    assert mixture_quantile([(2.0, points), (7.0, points)], 0.9) == pytest.approx(2.0, rel=1e-6)
    with pytest.raises(ValueError, match="positive total weight"):
        mixture_quantile([(0.0, points)], 0.95)


def test_a_summary_over_few_requests_is_not_trusted() -> None:
    """Eleven requests, one slow first one: the summary's "p95" is that one request."""
    c = ServiceCollector()
    c.observe({"a": counters(0, 1)}, at=0)
    m = c.observe({"a": counters(11, 60, p95_ms=400)}, at=1)
    assert m.p95_source == "mean-estimate"
    assert m.latency_p95_ms == pytest.approx(60 * P95_OVER_MEAN)
