"""The scaling decision: (policy, what was observed, recent desires) → replicas and why (pure).

Per target the desire is proportional, as the Kubernetes HPA computes it:
latency and queue time → ceil(current × observed / target); throughput →
ceil(total requests per second / target per replica). The largest desire wins, so every
target is met. Around it:

- rejections (requests Triton's bounded queue timed out, counted as failures with
  reason REJECTED) are demand: above 1 % of the requests, as many replicas as serve all
  requests at the rate the current ones served (at least one more), whatever the
  targets say — a rejected request's short latency must not read as a healthy service;
- tolerance: a ratio within ±10 % of the target keeps the current count (noise);
- no decision without a full picture: while the pods of our last scale step are not all
  Ready yet (its effect is not measurable, and deciding again would count it twice) —
  for at most `ready_grace_seconds` (120 s), after which pods that never became Ready
  (crash loop, no room on the nodes) no longer freeze the service — while a Ready pod has
  only its first sample, or while fewer than half the pods could be scraped. Pods that
  failed to scrape are left out; the throughput of those that answered is extrapolated
  to all replicas (they sit behind the same load balancer);
- stabilization: scale-up follows the *lowest* desire of its window (default 0 s: at
  once); scale-down follows the *highest* desire of its window and only once the window
  is covered by observations, so only consistently lower desire shrinks the service
  (the HPA's rule; after an operator restart the first scale-down waits a full window);
- step limits per direction, then the [minReplicas, maxReplicas] clamp.

Every decision carries a reason in words, which ends up in the status and Events.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from gantry.api.inferenceservice import AutoscalingSpec
from gantry.autoscaler.rates import ServiceMetrics

Direction = Literal["up", "down", "hold"]
DEFAULT_TOLERANCE = 0.1
DEFAULT_READY_GRACE = 120.0


@dataclass(frozen=True)
class ScalingRule:
    stabilization_seconds: float = 0.0
    max_replicas_per_step: int = 4


@dataclass(frozen=True)
class Policy:
    """The numbers of an `AutoscalingSpec` the decision needs."""

    min_replicas: int
    max_replicas: int
    latency_p95_ms: float | None = None
    requests_per_second_per_replica: float | None = None
    queue_time_ms: float | None = None
    scale_up: ScalingRule = ScalingRule(0.0, 4)
    scale_down: ScalingRule = ScalingRule(60.0, 1)
    tolerance: float = DEFAULT_TOLERANCE
    ready_grace_seconds: float = DEFAULT_READY_GRACE

    def __post_init__(self) -> None:
        if not 1 <= self.min_replicas <= self.max_replicas:
            raise ValueError(
                f"need 1 ≤ minReplicas ({self.min_replicas}) ≤ maxReplicas ({self.max_replicas})"
            )
        if (
            self.latency_p95_ms is None
            and self.requests_per_second_per_replica is None
            and self.queue_time_ms is None
        ):
            raise ValueError("a policy needs at least one target")

    @classmethod
    def from_spec(cls, spec: AutoscalingSpec) -> Policy:
        up, down = spec.behavior.scale_up, spec.behavior.scale_down
        return cls(
            min_replicas=spec.min_replicas,
            max_replicas=spec.max_replicas,
            latency_p95_ms=spec.targets.latency_p95_ms,
            requests_per_second_per_replica=spec.targets.requests_per_second_per_replica,
            queue_time_ms=spec.targets.queue_time_ms,
            scale_up=ScalingRule(up.stabilization_seconds, up.max_replicas_per_step),
            scale_down=ScalingRule(down.stabilization_seconds, down.max_replicas_per_step),
        )

    @property
    def longest_window(self) -> float:
        return max(self.scale_up.stabilization_seconds, self.scale_down.stabilization_seconds)


@dataclass(frozen=True)
class Observation:
    """What the service looks like now."""

    at: float  # monotonic seconds
    current_replicas: int  # Deployment spec.replicas
    ready_replicas: int  # Ready Triton pods (ready endpoints)
    metrics: ServiceMetrics | None
    last_scale_at: float | None = None  # when this autoscaler last changed the replicas


@dataclass(frozen=True)
class Recommendation:
    at: float
    replicas: int


@dataclass(frozen=True)
class Decision:
    replicas: int  # the count to set
    desired: int | None  # the raw desire of this round (clamped), None when not computed
    direction: Direction
    reason: str
    history: tuple[Recommendation, ...]  # feed back into the next call


# Rejections below this fraction of the requests are noise (a single late request).
REJECTED_NOISE = 0.01


def _fmt(value: float) -> str:
    return f"{value:.1f}" if abs(value) < 1000 else f"{value:.0f}"


def _proportional(
    name: str, observed: float, target: float, unit: str, current: int, tolerance: float
) -> tuple[int, str]:
    ratio = observed / target
    if abs(ratio - 1) <= tolerance:
        return (
            current,
            f"{name} {_fmt(observed)} {unit} within {tolerance:.0%} of target "
            f"{_fmt(target)} {unit}",
        )
    sign = ">" if ratio > 1 else "<"
    return (
        max(1, math.ceil(current * ratio - 1e-9)),
        f"{name} {_fmt(observed)} {unit} {sign} target {_fmt(target)} {unit}",
    )


def target_desires(policy: Policy, current: int, metrics: ServiceMetrics) -> list[tuple[int, str]]:
    """(desired replicas, what was seen) per configured target."""
    sampled = max(metrics.sampled_pods, 1)
    # Pods that could not be scraped are assumed to carry the average of the others.
    rps = metrics.requests_per_second * max(current, sampled) / sampled
    desires: list[tuple[int, str]] = []
    idle = rps <= 0
    for name, observed, target in (
        ("p95", metrics.latency_p95_ms, policy.latency_p95_ms),
        ("queue time", metrics.queue_time_ms, policy.queue_time_ms),
    ):
        if target is None:
            continue
        if observed is None or idle:
            desires.append((policy.min_replicas, f"no requests ({name} target {_fmt(target)} ms)"))
        else:
            desires.append(_proportional(name, observed, target, "ms", current, policy.tolerance))
    rejected = metrics.rejected_per_second * max(current, sampled) / sampled
    if rejected > REJECTED_NOISE * rps and rps > 0:
        # Rejections are demand the replicas could not serve in time: as many replicas as
        # serve everything at the rate the current ones managed (at least one more).
        served = max(rps - rejected, 0.0)
        wanted = math.ceil(current * rps / served - 1e-9) if served > 0 else 2 * current
        desires.append(
            (
                max(current + 1, wanted),
                f"{_fmt(rejected)} of {_fmt(rps)} req/s rejected by Triton's queue timeout",
            )
        )
    per_replica = policy.requests_per_second_per_replica
    if per_replica is not None:
        usage = rps / (current * per_replica) if current else math.inf
        text = f"{_fmt(rps)} req/s vs {_fmt(per_replica)} req/s per replica"
        if abs(usage - 1) <= policy.tolerance:
            desires.append((current, f"{text} within {policy.tolerance:.0%}"))
        else:
            desires.append((max(1, math.ceil(rps / per_replica - 1e-9)), text))
    return desires


def _prune(history: Sequence[Recommendation], at: float, keep: float) -> tuple[Recommendation, ...]:
    """Entries inside the longest window, plus the newest one before it (window coverage)."""
    inside = [r for r in history if r.at >= at - keep]
    before = [r for r in history if r.at < at - keep]
    return tuple(([before[-1]] if before else []) + inside)


def _clamp(policy: Policy, replicas: int) -> int:
    return min(policy.max_replicas, max(policy.min_replicas, replicas))


def decide(
    policy: Policy, observation: Observation, history: Sequence[Recommendation] = ()
) -> Decision:
    """What to do now; `history` is the previous decision's `history` (or empty)."""
    current = observation.current_replicas
    at = observation.at
    history = tuple(r for r in history if r.at <= at)

    def hold(
        reason: str, desired: int | None = None, hist: Sequence[Recommendation] = history
    ) -> Decision:
        return Decision(current, desired, "hold", reason, tuple(hist))

    bounded = _clamp(policy, current)
    if bounded != current:
        direction: Direction = "up" if bounded > current else "down"
        bound = "minReplicas" if bounded == policy.min_replicas else "maxReplicas"
        return Decision(
            bounded,
            bounded,
            direction,
            f"{current} replicas outside [{policy.min_replicas}, {policy.max_replicas}] → "
            f"{bounded} ({bound})",
            (),
        )
    since = observation.last_scale_at
    in_progress = since is not None and at - since < policy.ready_grace_seconds
    if observation.ready_replicas < current and in_progress:
        return hold(
            f"waiting for {current - observation.ready_replicas} of {current} replicas to "
            "become Ready before deciding again"
        )
    if observation.ready_replicas > current and in_progress:
        return hold(f"waiting for the scale-down to {current} replicas to finish")
    metrics = observation.metrics
    if metrics is None or metrics.sampled_pods == 0:
        return hold("no metrics yet (each pod needs two samples)")
    if metrics.new_pods:
        return hold(f"waiting for a second sample of {', '.join(metrics.new_pods)}")
    if metrics.sampled_pods * 2 < current:
        return hold(
            f"too few samples: {metrics.sampled_pods} of {current} pods scraped "
            f"({len(metrics.failed_pods)} failed)"
        )

    desires = target_desires(policy, current, metrics)
    raw, why = max(desires, key=lambda d: d[0])
    desired = _clamp(policy, raw)
    history = _prune((*history, Recommendation(at, desired)), at, policy.longest_window)
    prefix = f"{why} at {current} replicas"

    if desired > current:
        rule = policy.scale_up
        window = [r.replicas for r in history if r.at >= at - rule.stabilization_seconds]
        stable = min(window)
        if stable <= current:
            return hold(
                f"{prefix}: scale-up to {desired} held by {rule.stabilization_seconds:g} s "
                f"stabilization (lowest desire {stable})",
                desired,
                history,
            )
        new = min(stable, current + rule.max_replicas_per_step)
        note = f" (scale-up limited to +{rule.max_replicas_per_step})" if new < stable else ""
        if raw > desired:
            note += f" (maxReplicas {policy.max_replicas})"
        return Decision(new, desired, "up", f"{prefix} → {new}{note}", history)

    if desired < current:
        rule = policy.scale_down
        seconds = rule.stabilization_seconds
        covered = seconds == 0 or any(r.at <= at - seconds for r in history)
        if not covered:
            return hold(
                f"{prefix}: scale-down to {desired} waits for {seconds:g} s of lower desire",
                desired,
                history,
            )
        stable = max(r.replicas for r in history if r.at >= at - seconds)
        if stable >= current:
            return hold(
                f"{prefix}: scale-down held by {seconds:g} s stabilization "
                f"(highest desire {stable})",
                desired,
                history,
            )
        new = max(stable, current - rule.max_replicas_per_step)
        note = f" (scale-down limited to -{rule.max_replicas_per_step})" if new > stable else ""
        if raw < desired:
            note += f" (minReplicas {policy.min_replicas})"
        return Decision(new, desired, "down", f"{prefix} → {new}{note}", history)

    return hold(f"{prefix}: keep {current}", desired, history)
