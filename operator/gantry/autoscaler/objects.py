"""The HPA and KEDA objects of the `hpa` and `keda` modes, and which should exist (pure).

Both scale the InferenceService itself through its scale subresource (so `kubectl
scale`, the HPA and KEDA all move `spec.replicas`, which the InferenceService reconciler
copies to the Deployment). Their targets mean what the builtin mode's do:

- throughput: per-pod average against `requestsPerSecondPerReplica`
  (desired = ceil(total / target));
- latency and queue time: `Value` (KEDA) / per-pod average (HPA) against the target
  (desired = ceil(current × observed / target)).

Switching modes: `wanted_kinds` says which of the two kinds should exist for a spec;
the handler deletes the others it owns, so no stale autoscaler fights the new one.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from gantry.api.inferenceservice import (
    AutoscalingMode,
    AutoscalingSpec,
    InferenceServiceSpec,
    ScalingRules,
)
from gantry.autoscaler.prometheus_adapter import (
    METRIC_QUEUE_TIME_MS,
    METRIC_REQUEST_P95_MS,
    METRIC_REQUESTS_PER_SECOND,
)
from gantry.k8s.ownership import adopt

HPA = ("autoscaling/v2", "HorizontalPodAutoscaler", "horizontalpodautoscalers")
SCALED_OBJECT = ("keda.sh/v1alpha1", "ScaledObject", "scaledobjects")
AUTOSCALER_KINDS = (HPA, SCALED_OBJECT)

DEFAULT_PROMETHEUS_URL = "http://prometheus-operated.monitoring.svc:9090"
PROMETHEUS_URL_ENV = "GANTRY_PROMETHEUS_URL"
POLICY_PERIOD_SECONDS = 15  # the HPA's sync period: "N replicas per step" ≈ per 15 s
KEDA_POLLING_SECONDS = 5


def prometheus_url(env: Mapping[str, str] | None = None) -> str:
    """Prometheus for KEDA's triggers: the operator configuration's `prometheusUrl`
    (`$GANTRY_PROMETHEUS_URL` overrides it, like every `GANTRY_*` variable)."""
    from gantry.config import load_config

    return load_config(os.environ if env is None else env).prometheus_url


def quantity(value: float) -> str:
    """A Kubernetes quantity for a metric target: whole numbers plain, else milli-units."""
    milli = round(value * 1000)
    return str(milli // 1000) if milli % 1000 == 0 else f"{milli}m"


def wanted_kinds(spec: InferenceServiceSpec) -> set[str]:
    """Kinds of autoscaler objects that should exist for this spec."""
    mode = spec.autoscaling.mode if spec.autoscaling else None
    if mode == AutoscalingMode.HPA:
        return {HPA[1]}
    if mode == AutoscalingMode.KEDA:
        return {SCALED_OBJECT[1]}
    return set()


def stale_kinds(spec: InferenceServiceSpec) -> list[tuple[str, str, str]]:
    """(apiVersion, kind, plural) of autoscaler objects that must not exist for this spec."""
    wanted = wanted_kinds(spec)
    return [kind for kind in AUTOSCALER_KINDS if kind[1] not in wanted]


def _target_ref(name: str) -> dict[str, str]:
    return {"apiVersion": "gantry.dev/v1alpha1", "kind": "InferenceService", "name": name}


def _rules(rules: ScalingRules) -> dict[str, Any]:
    return {
        "stabilizationWindowSeconds": rules.stabilization_seconds,
        "selectPolicy": "Max",
        "policies": [
            {
                "type": "Pods",
                "value": rules.max_replicas_per_step,
                "periodSeconds": POLICY_PERIOD_SECONDS,
            }
        ],
    }


def hpa_behavior(autoscaling: AutoscalingSpec) -> dict[str, Any]:
    return {
        "scaleUp": _rules(autoscaling.behavior.scale_up),
        "scaleDown": _rules(autoscaling.behavior.scale_down),
    }


def _pods_metric(name: str, value: float) -> dict[str, Any]:
    return {
        "type": "Pods",
        "pods": {
            "metric": {"name": name},
            "target": {"type": "AverageValue", "averageValue": quantity(value)},
        },
    }


def build_hpa(isvc: Mapping[str, Any], autoscaling: AutoscalingSpec) -> dict[str, Any]:
    """autoscaling/v2 HPA on prometheus-adapter's Pods metrics, owned by the service."""
    name = str(isvc["metadata"]["name"])
    targets = autoscaling.targets
    metrics = []
    if targets.latency_p95_ms is not None:
        metrics.append(_pods_metric(METRIC_REQUEST_P95_MS, targets.latency_p95_ms))
    if targets.requests_per_second_per_replica is not None:
        metrics.append(
            _pods_metric(METRIC_REQUESTS_PER_SECOND, targets.requests_per_second_per_replica)
        )
    if targets.queue_time_ms is not None:
        metrics.append(_pods_metric(METRIC_QUEUE_TIME_MS, targets.queue_time_ms))
    hpa = {
        "apiVersion": HPA[0],
        "kind": HPA[1],
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": _target_ref(name),
            "minReplicas": autoscaling.min_replicas,
            "maxReplicas": autoscaling.max_replicas,
            "metrics": metrics,
            "behavior": hpa_behavior(autoscaling),
        },
    }
    return adopt(hpa, isvc, labels={"app.kubernetes.io/component": "autoscaler"})


def _selector(name: str, namespace: str) -> str:
    return f'model="{name}",namespace="{namespace}"'


def keda_queries(name: str, namespace: str) -> dict[str, str]:
    """PromQL for each target over the service's Triton pods (by model and namespace)."""
    sel = _selector(name, namespace)
    rate = (
        f"sum(rate(nv_inference_request_success{{{sel}}}[1m])) + "
        f"sum(rate(nv_inference_request_failure{{{sel}}}[1m]))"
    )
    return {
        "rps": f"({rate}) or vector(0)",
        "p95": f'max(nv_inference_request_summary_us{{{sel},quantile="0.95"}}) / 1000 or vector(0)',
        "queue": (
            f"sum(rate(nv_inference_queue_duration_us{{{sel}}}[1m])) / "
            f"clamp_min(sum(rate(nv_inference_request_success{{{sel}}}[1m])), 1e-9) / 1000 "
            "or vector(0)"
        ),
    }


def _trigger(
    name: str, server: str, query: str, threshold: float, metric_type: str
) -> dict[str, Any]:
    return {
        "type": "prometheus",
        "name": name,
        "metricType": metric_type,
        "metadata": {"serverAddress": server, "query": query, "threshold": f"{threshold:g}"},
    }


def build_scaled_object(
    isvc: Mapping[str, Any], autoscaling: AutoscalingSpec, *, server: str
) -> dict[str, Any]:
    """KEDA ScaledObject with Prometheus triggers for the same targets, owned by the service."""
    meta = isvc["metadata"]
    name, namespace = str(meta["name"]), str(meta.get("namespace") or "default")
    queries = keda_queries(name, namespace)
    targets = autoscaling.targets
    triggers = []
    if targets.latency_p95_ms is not None:
        triggers.append(
            _trigger("latency-p95", server, queries["p95"], targets.latency_p95_ms, "Value")
        )
    if targets.requests_per_second_per_replica is not None:
        triggers.append(
            _trigger(
                "requests-per-second",
                server,
                queries["rps"],
                targets.requests_per_second_per_replica,
                "AverageValue",
            )
        )
    if targets.queue_time_ms is not None:
        triggers.append(
            _trigger("queue-time", server, queries["queue"], targets.queue_time_ms, "Value")
        )
    scaled = {
        "apiVersion": SCALED_OBJECT[0],
        "kind": SCALED_OBJECT[1],
        "metadata": {"name": name},
        "spec": {
            "scaleTargetRef": _target_ref(name),
            "pollingInterval": KEDA_POLLING_SECONDS,
            "cooldownPeriod": max(autoscaling.behavior.scale_down.stabilization_seconds, 1),
            "minReplicaCount": autoscaling.min_replicas,
            "maxReplicaCount": autoscaling.max_replicas,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "name": f"keda-hpa-{name}",
                    "behavior": hpa_behavior(autoscaling),
                }
            },
            "triggers": triggers,
        },
    }
    return adopt(scaled, isvc, labels={"app.kubernetes.io/component": "autoscaler"})


def desired_objects(
    isvc: Mapping[str, Any], spec: InferenceServiceSpec, *, prometheus: str
) -> list[dict[str, Any]]:
    """The autoscaler objects this service should have (empty for builtin and none)."""
    autoscaling = spec.autoscaling
    if autoscaling is None:
        return []
    if autoscaling.mode == AutoscalingMode.HPA:
        return [build_hpa(isvc, autoscaling)]
    if autoscaling.mode == AutoscalingMode.KEDA:
        return [build_scaled_object(isvc, autoscaling, server=prometheus)]
    return []
