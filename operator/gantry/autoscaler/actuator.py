"""One InferenceService's autoscaler round: observe → scrape → decide → actuate → report.

The I/O layer around the pure parts. It talks to the API through the shared
`KubeClient` (synchronous; each call runs in a worker thread so the operator's event
loop stays free) and owns exactly:

- `Deployment <name>-triton` `.spec.replicas` in the builtin mode (patched only when
  the decision changes it, so repeated rounds are idempotent);
- `status.autoscaling` of the InferenceService, written with a merge patch on the status
  subresource that names nothing else (the InferenceService reconciler owns the rest);
- the HPA or ScaledObject of the hpa/keda modes, and deleting the other mode's objects;
- `ScaledUp` / `ScaledDown` Events.

Services without `spec.autoscaling` are scraped too, so `kubectl get` shows their
latency and request rate; nothing is decided for them. In the operator the service,
its Deployment and pods are read from the watch caches (`CachedReads`), and the status is
written only when a figure or decision changed, so a service at rest costs no API calls.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from gantry.api.inferenceservice import (
    AutoscalingMode,
    InferenceServiceSpec,
    InferenceServiceStatus,
)
from gantry.autoscaler import objects
from gantry.autoscaler.collector import ServiceCollector
from gantry.autoscaler.decision import Decision, Observation, Policy, Recommendation, decide
from gantry.autoscaler.rates import ServiceMetrics
from gantry.autoscaler.scrape import PodTarget, ScrapeResult, ready_targets, scrape
from gantry.inferenceservice.names import deployment_name, selector_string
from gantry.k8s.children import controlled_by
from gantry.k8s.client import matches
from gantry.k8s.conditions import now_rfc3339, parse_time
from gantry.k8s.errors import ApiError
from gantry.k8s.events import event
from gantry.k8s.plan import status_patch

log = logging.getLogger(__name__)

ISVC = ("gantry.dev/v1alpha1", "inferenceservices")
DEPLOYMENT = ("apps/v1", "deployments")
PODS = ("v1", "pods")
OBJECTS_RESYNC_SECONDS = 60.0
# When the autoscaler last changed the Deployment's replicas, written with them.
LAST_SCALE_ANNOTATION = "gantry.dev/last-scale-time"


class Kube(Protocol):
    """The part of `gantry.k8s.client.KubeClient` the autoscaler uses."""

    def get(
        self, api_version: str, plural: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None: ...

    def list(
        self,
        api_version: str,
        plural: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]: ...

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]: ...

    def patch(
        self,
        api_version: str,
        plural: str,
        name: str,
        namespace: str | None,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
        patch_type: str = "merge",
    ) -> dict[str, Any]: ...

    def delete(
        self,
        api_version: str,
        plural: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
    ) -> bool: ...

    def apply(self, desired: Mapping[str, Any]) -> tuple[dict[str, Any], str]: ...

    def create_applied(self, desired: Mapping[str, Any]) -> dict[str, Any]: ...

    def server_side_apply(self, desired: Mapping[str, Any]) -> dict[str, Any]: ...


Scraper = Callable[[Sequence[PodTarget], str], Awaitable[ScrapeResult]]


class Reads(Protocol):
    """Where a round reads the service, its Deployment and its Triton pods."""

    async def isvc(self) -> dict[str, Any] | None: ...

    async def deployment(self) -> dict[str, Any] | None: ...

    async def pods(self) -> list[dict[str, Any]]: ...

    def cached(self, kind: str, name: str) -> dict[str, Any] | Unknown | None: ...


class Unknown:
    """`Reads.cached` of a kind no cache holds: the caller must ask the API."""


UNKNOWN = Unknown()


class ApiReads:
    """Reads straight from the API (tests, tools without watch caches)."""

    def __init__(self, kube: Kube, name: str, namespace: str) -> None:
        self.kube, self.name, self.namespace = kube, name, namespace

    async def isvc(self) -> dict[str, Any] | None:
        return await asyncio.to_thread(self.kube.get, *ISVC, self.name, self.namespace)

    async def deployment(self) -> dict[str, Any] | None:
        return await asyncio.to_thread(
            self.kube.get, *DEPLOYMENT, deployment_name(self.name), self.namespace
        )

    async def pods(self) -> list[dict[str, Any]]:
        return await asyncio.to_thread(
            self.kube.list, *PODS, self.namespace, label_selector=selector_string(self.name)
        )

    def cached(self, kind: str, name: str) -> dict[str, Any] | Unknown | None:
        return UNKNOWN


def handed_over(isvc: Mapping[str, Any], spec: InferenceServiceSpec) -> bool:
    """Whether status.autoscaling already names the spec's mode (the switch is reported)."""
    mode = spec.autoscaling.mode if spec.autoscaling is not None else None
    reported_mode = ((isvc.get("status") or {}).get("autoscaling") or {}).get("mode")
    return mode is None or reported_mode == str(mode)


def report_patch(isvc: Mapping[str, Any], status: InferenceServiceStatus) -> dict[str, Any]:
    """The status merge patch of a round (pure): empty when its figures and decision equal
    what the status shows — a newer sample time alone is no reason to write."""
    patch = status_patch(isvc.get("status") or {}, status)
    changed = patch.get("autoscaling")
    if isinstance(changed, Mapping) and set(changed) <= {"sampledAt"}:
        return {}
    return {"status": patch} if patch else {}


def _on_decision(direction: str) -> None:
    try:
        from gantry.controller.metrics import record_autoscaler_decision
    except ImportError:  # the operator metrics are optional outside the operator
        return
    record_autoscaler_decision(direction)


def _on_scrape_failures(count: int) -> None:
    try:
        from gantry.controller.metrics import record_scrape_failure
    except ImportError:
        return
    for _ in range(count):
        record_scrape_failure()


def remembered_scale_at(
    isvc: Mapping[str, Any], deployment: Mapping[str, Any], now: float, wall_now: datetime
) -> float | None:
    """The last scale time a previous operator left, on this process's monotonic clock
    (pure), so that a restart keeps the "wait until the new replicas are Ready" guard and
    the step limits instead of starting with no memory.

    The Deployment's annotation is written in the same patch as its replicas, so a process
    killed right after scaling (before `status.autoscaling.lastScaleTime`) leaves it too;
    the later of the two counts.
    """
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    written = (
        ((isvc.get("status") or {}).get("autoscaling") or {}).get("lastScaleTime"),
        annotations.get(LAST_SCALE_ANNOTATION),
    )
    times = [at for w in written if isinstance(w, str) and (at := parse_time(w)) is not None]
    if not times:
        return None
    age = (wall_now - max(times)).total_seconds()
    return now - age if age >= 0 else None


def _round(value: float | None, digits: int = 2) -> float | None:
    return None if value is None else round(value, digits)


def autoscaling_status(
    mode: str | None,
    metrics: ServiceMetrics | None,
    *,
    sampled_at: str,
    previous: Mapping[str, Any] | None = None,
    decision: Decision | None = None,
    current: int | None = None,
    last_scale_time: str | None = None,
) -> InferenceServiceStatus:
    """A round's `status.autoscaling`, the only status field the autoscaler sets (pure).

    Figures and the decision a round did not produce keep their `previous` values while
    the mode stays the same; a new mode starts from an empty report, so nothing from the
    old mode (its desired replicas, its last decision) lingers next to it.
    """
    base = dict(previous or {}) if (previous or {}).get("mode") == mode else {}
    fields: dict[str, Any] = base | {"mode": mode, "sampledAt": sampled_at}
    if metrics is not None:
        fields.update(
            requestsPerSecond=_round(metrics.requests_per_second),
            latencyP95Ms=_round(metrics.latency_p95_ms),
            latencyMeanMs=_round(metrics.latency_mean_ms),
            queueTimeMs=_round(metrics.queue_time_ms, 3),
            pendingRequests=_round(metrics.pending_requests),
        )
    if decision is not None:
        fields.update(
            desiredReplicas=decision.replicas,
            currentReplicas=current,
            lastDecision=decision.reason,
        )
    if last_scale_time is not None:
        fields["lastScaleTime"] = last_scale_time
    return InferenceServiceStatus.model_validate({"autoscaling": fields})


@dataclass
class RoundResult:
    """What one round saw and did (for logs and tests)."""

    metrics: ServiceMetrics | None = None
    decision: Decision | None = None
    scaled_to: int | None = None
    targets: list[PodTarget] = field(default_factory=list)
    failures: dict[str, str] = field(default_factory=dict)


class ServiceAutoscaler:
    """State and rounds for one InferenceService; call `run_round` every scrape interval."""

    def __init__(
        self,
        kube: Kube,
        name: str,
        namespace: str,
        *,
        scraper: Scraper | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        prometheus: str | None = None,
        reads: Reads | None = None,
        resync: float = OBJECTS_RESYNC_SECONDS,
    ) -> None:
        self.kube = kube
        self.reads: Reads = reads or ApiReads(kube, name, namespace)
        self.resync = resync
        self.name = name
        self.namespace = namespace
        self.scraper: Scraper = scraper or (lambda targets, model: scrape(targets, model))
        self.clock = clock
        self.wall_clock = wall_clock
        self.prometheus = prometheus or objects.prometheus_url()
        self.collector = ServiceCollector()
        self.history: tuple[Recommendation, ...] = ()
        self.last_scale_at: float | None = None
        self._remembered = False  # seeded from the last scale time left after a restart
        self._objects_synced: tuple[int | None, float] | None = None

    async def _call(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        return await asyncio.to_thread(fn, *args, **kwargs)

    async def run_round(self) -> RoundResult:
        """One full round; API errors propagate (the daemon logs them and tries again)."""
        isvc = await self.reads.isvc()
        if isvc is None:
            return RoundResult()
        try:
            spec = InferenceServiceSpec.model_validate(isvc.get("spec") or {})
        except ValidationError as err:  # the InferenceService reconciler reports it
            log.debug("%s/%s: invalid spec, not autoscaling: %s", self.namespace, self.name, err)
            return RoundResult()
        await self._sync_objects(isvc, spec)

        targets = ready_targets(await self.reads.pods())
        scraped = await self.scraper(targets, self.name)
        if scraped.failures:
            _on_scrape_failures(len(scraped.failures))
            log.info(
                "%s/%s: scrape failed for %s",
                self.namespace,
                self.name,
                "; ".join(f"{pod}: {why}" for pod, why in sorted(scraped.failures.items())),
            )
        now = self.clock()
        metrics = self.collector.observe(scraped.samples, failed=scraped.failures, at=now)
        result = RoundResult(metrics=metrics, targets=targets, failures=scraped.failures)
        autoscaling = spec.autoscaling
        mode = str(autoscaling.mode) if autoscaling else None
        sampled_at = now_rfc3339()
        previous = (isvc.get("status") or {}).get("autoscaling")
        if autoscaling is None or autoscaling.mode != AutoscalingMode.BUILTIN:
            self.history = ()
            report = autoscaling_status(mode, metrics, sampled_at=sampled_at, previous=previous)
        else:
            current, last_scale = await self._builtin(
                isvc, Policy.from_spec(autoscaling), metrics, now, result
            )
            report = autoscaling_status(
                mode,
                metrics,
                sampled_at=sampled_at,
                previous=previous,
                decision=result.decision,
                current=current,
                last_scale_time=last_scale,
            )
        patch = report_patch(isvc, report)
        if patch:
            await self._call(
                self.kube.patch, *ISVC, self.name, self.namespace, patch, subresource="status"
            )
        return result

    async def _builtin(
        self,
        isvc: Mapping[str, Any],
        policy: Policy,
        metrics: ServiceMetrics,
        now: float,
        result: RoundResult,
    ) -> tuple[int | None, str | None]:
        """Decide and set the Deployment's replicas; (replicas before, scale time if scaled)."""
        deployment = await self.reads.deployment()
        if deployment is None:  # not created yet by the InferenceService reconciler
            return None, None
        if not self._remembered:
            self._remembered = True
            self.last_scale_at = remembered_scale_at(
                isvc, deployment, self.clock(), self.wall_clock()
            )
        spec_replicas = (deployment.get("spec") or {}).get("replicas")
        current = int(spec_replicas) if spec_replicas is not None else 1
        observation = Observation(
            at=now,
            current_replicas=current,
            ready_replicas=len(result.targets),
            metrics=metrics,
            last_scale_at=self.last_scale_at,
        )
        decision = decide(policy, observation, self.history)
        self.history = decision.history
        result.decision = decision
        _on_decision(decision.direction)
        if decision.replicas == current:
            return current, None
        scaled_at = now_rfc3339()
        await self._call(
            self.kube.patch,
            *DEPLOYMENT,
            deployment_name(self.name),
            self.namespace,
            {
                "metadata": {"annotations": {LAST_SCALE_ANNOTATION: scaled_at}},
                "spec": {"replicas": decision.replicas},
            },
        )
        result.scaled_to = decision.replicas
        self.last_scale_at = now
        reason = "ScaledUp" if decision.replicas > current else "ScaledDown"
        log.info("%s/%s: %s: %s", self.namespace, self.name, reason, decision.reason)
        await self._call(event, self.kube, isvc, reason, decision.reason)
        return current, scaled_at

    async def _sync_objects(self, isvc: Mapping[str, Any], spec: InferenceServiceSpec) -> None:
        """Create/update this mode's HPA or ScaledObject; delete the other modes' (owned) ones.

        Kinds in the watch cache (HPA) are compared every round at no cost. KEDA's
        ScaledObject (maybe not even installed) is not watched: this mode's is re-applied
        when the spec changes and at the slow resync; another mode's is looked for only
        when the spec changes, so a service at rest costs no request.
        """
        generation = (isvc.get("metadata") or {}).get("generation")
        now = self.clock()
        changed = self._objects_synced is None or self._objects_synced[0] != generation
        resync = changed or now - (self._objects_synced or (None, now))[1] >= self.resync
        uid = str((isvc.get("metadata") or {}).get("uid"))
        desired_objects = objects.desired_objects(isvc, spec, prometheus=self.prometheus)
        if desired_objects and not handed_over(isvc, spec):
            await self._hand_over(isvc)
        for desired in desired_objects:
            current = self.reads.cached(str(desired["kind"]), self.name)
            if isinstance(current, Unknown) and not resync:
                continue
            try:
                await self._apply_object(desired, current, uid)
            except ApiError as err:
                log.warning(
                    "%s/%s: cannot apply %s (is its API installed?): %s",
                    self.namespace,
                    self.name,
                    desired["kind"],
                    err,
                )
        for api_version, kind, plural in objects.stale_kinds(spec):
            found = self.reads.cached(kind, self.name)
            if isinstance(found, Unknown):
                if not changed:
                    continue
                try:
                    found = await self._call(
                        self.kube.get, api_version, plural, self.name, self.namespace
                    )
                except ApiError:  # e.g. KEDA's API is not installed: nothing to delete
                    continue
            if found is not None and controlled_by(found, uid):
                log.info("%s/%s: deleting stale %s", self.namespace, self.name, kind)
                await self._call(self.kube.delete, api_version, plural, self.name, self.namespace)
        if resync:
            self._objects_synced = (generation, now)

    async def _hand_over(self, isvc: Mapping[str, Any]) -> None:
        """Before an HPA or ScaledObject takes over, make `spec.replicas` what runs now.

        They scale the InferenceService through its scale subresource, starting from
        `spec.replicas`; after the builtin autoscaler (or none) it may be far from the
        running count, and a switch must not drop replicas at once.
        """
        deployment = await self.reads.deployment()
        running = ((deployment or {}).get("spec") or {}).get("replicas")
        declared = (isvc.get("spec") or {}).get("replicas")
        if running is None or running == declared:
            return
        log.info(
            "%s/%s: handing %s running replicas over to the new autoscaling mode",
            self.namespace,
            self.name,
            running,
        )
        await self._call(
            self.kube.patch, *ISVC, self.name, self.namespace, {"spec": {"replicas": running}}
        )

    async def _apply_object(
        self, desired: Mapping[str, Any], current: dict[str, Any] | Unknown | None, uid: str
    ) -> None:
        if isinstance(current, Unknown):
            await self._call(self.kube.apply, desired)
        elif current is not None and not controlled_by(current, uid):
            log.warning(
                "%s/%s: %s %s exists and is not this service's: left alone",
                self.namespace,
                self.name,
                desired["kind"],
                self.name,
            )
        elif current is None:
            await self._call(self.kube.create_applied, desired)
        elif not matches(current, desired):
            await self._call(self.kube.server_side_apply, desired)
