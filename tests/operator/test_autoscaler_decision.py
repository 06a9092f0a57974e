"""Table tests of the pure scaling decision."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from gantry.api.inferenceservice import AutoscalingSpec
from gantry.autoscaler.decision import (
    Decision,
    Observation,
    Policy,
    Recommendation,
    ScalingRule,
    decide,
)
from gantry.autoscaler.rates import ServiceMetrics
from tests.operator.autoscaler_testkit import metrics

LATENCY = Policy(min_replicas=1, max_replicas=10, latency_p95_ms=50)
THROUGHPUT = Policy(min_replicas=1, max_replicas=10, requests_per_second_per_replica=100)
SLOW_DOWN = Policy(
    min_replicas=1,
    max_replicas=10,
    latency_p95_ms=50,
    scale_down=ScalingRule(stabilization_seconds=30, max_replicas_per_step=1),
)


@dataclass
class Case:
    id: str
    policy: Policy
    current: int
    metrics: ServiceMetrics | None
    replicas: int
    direction: str
    reason: str
    ready: int | None = None
    last_scale_at: float | None = None
    history: list[Recommendation] = field(default_factory=list)
    at: float = 100.0


CASES = [
    Case(
        "step-up by latency",
        LATENCY,
        2,
        metrics(p95=87.1),
        4,
        "up",
        "p95 87.1 ms > target 50.0 ms at 2 replicas → 4",
    ),
    Case(
        "step limit on the way up",
        LATENCY,
        2,
        metrics(p95=500),
        6,
        "up",
        "(scale-up limited to +4)",
    ),
    Case("max clamp", LATENCY, 8, metrics(p95=100, pods=8), 10, "up", "(maxReplicas 10)"),
    Case(
        "noise inside the tolerance",
        LATENCY,
        3,
        metrics(p95=54, pods=3),
        3,
        "hold",
        "within 10% of target",
    ),
    Case(
        "throughput step-up",
        THROUGHPUT,
        2,
        metrics(rps=450),
        5,
        "up",
        "450.0 req/s vs 100.0 req/s per replica at 2 replicas → 5",
    ),
    Case(
        "throughput inside the tolerance", THROUGHPUT, 2, metrics(rps=210), 2, "hold", "within 10%"
    ),
    Case(
        "largest desire wins",
        Policy(1, 10, latency_p95_ms=50, requests_per_second_per_replica=100),
        2,
        metrics(rps=100, p95=80),
        4,
        "up",
        "p95 80.0",
    ),
    Case(
        "queue time target",
        Policy(1, 10, queue_time_ms=2),
        2,
        metrics(queue=6),
        6,
        "up",
        "queue time 6.0 ms > target 2.0 ms",
    ),
    Case(
        "down at once without stabilization",
        Policy(1, 10, latency_p95_ms=50, scale_down=ScalingRule(0, 4)),
        6,
        metrics(p95=10, pods=6),
        2,
        "down",
        "→ 2",
    ),
    Case(
        "down waits for the window to be covered",
        SLOW_DOWN,
        4,
        metrics(p95=10, pods=4),
        4,
        "hold",
        "waits for 30 s of lower desire",
        history=[Recommendation(90, 1)],
    ),
    Case(
        "down after a window of lower desire, one step",
        SLOW_DOWN,
        4,
        metrics(p95=10, pods=4),
        3,
        "down",
        "(scale-down limited to -1)",
        history=[Recommendation(60, 4), Recommendation(75, 1), Recommendation(90, 1)],
    ),
    Case(
        "down held while the window saw a higher desire",
        SLOW_DOWN,
        4,
        metrics(p95=10, pods=4),
        4,
        "hold",
        "highest desire 5",
        history=[Recommendation(60, 1), Recommendation(80, 5), Recommendation(90, 1)],
    ),
    Case(
        "down uses the highest desire of the window",
        Policy(1, 10, latency_p95_ms=50, scale_down=ScalingRule(30, 10)),
        6,
        metrics(p95=10, pods=6),
        3,
        "down",
        "→ 3",
        history=[Recommendation(60, 6), Recommendation(75, 3), Recommendation(90, 2)],
    ),
    Case(
        "idle goes to minReplicas",
        Policy(2, 10, latency_p95_ms=50, scale_down=ScalingRule(0, 10)),
        5,
        metrics(rps=0, pods=5),
        2,
        "down",
        "no requests",
    ),
    Case(
        "below minReplicas is raised at once",
        Policy(3, 10, latency_p95_ms=50),
        1,
        None,
        3,
        "up",
        "outside [3, 10]",
    ),
    Case("above maxReplicas is lowered at once", LATENCY, 12, None, 10, "down", "(maxReplicas)"),
    Case(
        "pods not Ready: scale-up in progress",
        LATENCY,
        4,
        metrics(p95=200),
        4,
        "hold",
        "waiting for 2 of 4 replicas to become Ready",
        ready=2,
        last_scale_at=95,
    ),
    Case(
        "pods that never become Ready do not freeze the service",
        LATENCY,
        4,
        metrics(p95=200),
        8,
        "up",
        "p95 200.0 ms > target 50.0 ms at 4 replicas → 8",
        ready=2,
        last_scale_at=100 - 121,
    ),
    Case(
        "unready pods not caused by us: decide on the Ready ones",
        SLOW_DOWN,
        3,
        metrics(p95=10),
        2,
        "down",
        "→ 2",
        ready=2,
        history=[Recommendation(60, 1)],
    ),
    Case(
        "a new pod has one sample",
        LATENCY,
        3,
        metrics(p95=200, new=("p2",)),
        3,
        "hold",
        "waiting for a second sample of p2",
        ready=3,
    ),
    Case("no metrics yet", LATENCY, 2, None, 2, "hold", "no metrics yet"),
    Case(
        "missing scrapes: too few pods answered",
        LATENCY,
        4,
        metrics(p95=200, pods=1, failed=("p1", "p2", "p3")),
        4,
        "hold",
        "1 of 4 pods scraped",
        ready=4,
    ),
    Case(
        "partial scrapes: the rest decide, throughput extrapolated",
        THROUGHPUT,
        4,
        metrics(rps=300, pods=3, failed=("p3",)),
        4,
        "hold",
        "400.0 req/s",
        ready=4,
    ),
    Case(
        "partial scrapes still scale up",
        THROUGHPUT,
        4,
        metrics(rps=600, pods=3, failed=("p3",)),
        8,
        "up",
        "800.0 req/s",
        ready=4,
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_decision_table(case: Case) -> None:
    ready = case.current if case.ready is None else case.ready
    decision = decide(
        case.policy,
        Observation(case.at, case.current, ready, case.metrics, case.last_scale_at),
        case.history,
    )
    assert (decision.replicas, decision.direction) == (case.replicas, case.direction), (
        decision.reason
    )
    assert case.reason in decision.reason
    assert case.policy.min_replicas <= decision.replicas <= case.policy.max_replicas or (
        decision.direction == "hold"
    )


def run(policy: Policy, steps: list[tuple[float, int, ServiceMetrics]]) -> list[Decision]:
    """Feed observations through decide() the way the actuator does."""
    history: tuple[Recommendation, ...] = ()
    out = []
    for at, current, m in steps:
        d = decide(policy, Observation(at, current, current, m), history)
        history = d.history
        out.append(d)
    return out


def test_scale_down_only_after_consistently_lower_desire() -> None:
    # high load until t=20, then low: the window (30 s) must pass before scaling down
    steps = [(t, 4, metrics(p95=50 if t <= 20 else 10, pods=4)) for t in range(0, 60, 5)]
    decisions = run(SLOW_DOWN, steps)
    downs = [steps[i][0] for i, d in enumerate(decisions) if d.direction == "down"]
    assert downs and downs[0] >= 20 + 30


def test_noise_around_target_never_scales() -> None:
    values = [46, 54, 49, 52, 47, 53, 50, 45.5, 54.9]
    steps = [(float(i * 5), 3, metrics(p95=v, pods=3)) for i, v in enumerate(values)]
    assert all(d.direction == "hold" for d in run(LATENCY, steps))


def test_policy_from_spec_and_bad_policies() -> None:
    spec = AutoscalingSpec.model_validate(
        {
            "minReplicas": 1,
            "maxReplicas": 5,
            "targets": {"latencyP95Ms": 40},
            "behavior": {"scaleDown": {"stabilizationSeconds": 10, "maxReplicasPerStep": 2}},
        }
    )
    policy = Policy.from_spec(spec)
    assert policy.latency_p95_ms == 40
    assert policy.scale_down == ScalingRule(10, 2)
    assert policy.scale_up == ScalingRule(0, 4)
    with pytest.raises(ValueError, match="minReplicas"):
        Policy(min_replicas=3, max_replicas=2, latency_p95_ms=1)
    with pytest.raises(ValueError, match="at least one target"):
        Policy(min_replicas=1, max_replicas=2)
