"""Under steady (noisy) load the replica count settles and does not oscillate.

A closed loop over the pure decision function: a simulated service whose p95 rises with
utilisation (a queueing curve with ±15 % noise on latency and ±10 % on the offered rate),
new replicas Ready a few seconds after a scale-up, scraped every 2 s, for two simulated
minutes per case. The contract asks for at most one change of direction in 2 minutes.
"""

from __future__ import annotations

import itertools
import random

import pytest

from gantry.autoscaler.decision import Observation, Policy, Recommendation, ScalingRule, decide
from tests.operator.autoscaler_testkit import metrics

TICK = 2.0
READY_DELAY = 4.0
CAPACITY_RPS = 150.0  # what one replica serves before its queue explodes
SERVICE_MS = 8.0


def p95_ms(rps: float, replicas: int) -> float:
    utilisation = min(rps / replicas / CAPACITY_RPS, 0.98)
    return SERVICE_MS * (1 + 3 * utilisation / (1 - utilisation))


def simulate(policy: Policy, offered_rps: float, seed: int, seconds: float = 120.0) -> list[int]:
    rng = random.Random(seed)
    replicas, ready = policy.min_replicas, policy.min_replicas
    scaled_at: float | None = None
    history: tuple[Recommendation, ...] = ()
    trace = []
    t = 0.0
    while t <= seconds:
        if scaled_at is not None and t - scaled_at >= READY_DELAY:
            ready = replicas
        rps = offered_rps * rng.uniform(0.9, 1.1)
        latency = p95_ms(rps, ready) * rng.uniform(0.85, 1.15)
        observation = Observation(
            at=t,
            current_replicas=replicas,
            ready_replicas=ready,
            metrics=metrics(rps=rps, p95=latency, pods=ready),
            last_scale_at=scaled_at,
        )
        decision = decide(policy, observation, history)
        history = decision.history
        if decision.replicas != replicas:
            if decision.replicas < replicas:
                ready = min(ready, decision.replicas)
            replicas, scaled_at = decision.replicas, t
        trace.append(replicas)
        t += TICK
    return trace


def direction_changes(trace: list[int]) -> int:
    steps = [b - a for a, b in itertools.pairwise(trace) if b != a]
    return sum(1 for a, b in itertools.pairwise(steps) if (a > 0) != (b > 0))


POLICIES = {
    "latency": Policy(min_replicas=1, max_replicas=8, latency_p95_ms=50),
    "throughput": Policy(min_replicas=1, max_replicas=8, requests_per_second_per_replica=100),
    "both-contract-defaults": Policy(
        min_replicas=1,
        max_replicas=8,
        latency_p95_ms=50,
        requests_per_second_per_replica=100,
        scale_up=ScalingRule(0, 4),
        scale_down=ScalingRule(60, 1),
    ),
}


@pytest.mark.parametrize("offered_rps", [60.0, 330.0, 700.0])
@pytest.mark.parametrize("name", sorted(POLICIES))
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_steady_load_does_not_oscillate(name: str, offered_rps: float, seed: int) -> None:
    policy = POLICIES[name]
    trace = simulate(policy, offered_rps, seed)
    assert all(policy.min_replicas <= r <= policy.max_replicas for r in trace)
    assert direction_changes(trace) <= 1, f"{name} at {offered_rps} rps: {trace}"
    settled = trace[len(trace) // 2 :]
    assert max(settled) - min(settled) <= 1, f"not settled: {trace}"


@pytest.mark.parametrize("name", sorted(POLICIES))
def test_steady_load_ends_within_the_target(name: str) -> None:
    policy = POLICIES[name]
    trace = simulate(policy, 330.0, seed=7)
    final = trace[-1]
    if policy.latency_p95_ms is not None:
        assert p95_ms(330.0, final) <= policy.latency_p95_ms
    if policy.requests_per_second_per_replica is not None:
        assert 330.0 / final <= policy.requests_per_second_per_replica * 1.1


def test_the_simulation_does_catch_oscillation() -> None:
    """Control: without tolerance and scale-down stabilization the same loop flaps, so the
    tests above pass because of the policy, not because the simulation cannot flap."""
    naive = Policy(
        min_replicas=1,
        max_replicas=8,
        latency_p95_ms=50,
        scale_down=ScalingRule(0, 4),
        tolerance=0.0,
    )
    assert direction_changes(simulate(naive, 330.0, seed=1)) > 5
