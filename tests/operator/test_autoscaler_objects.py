"""HPA / KEDA objects render and validate; switching modes leaves no stale autoscaler."""

from __future__ import annotations

from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from gantry.api.inferenceservice import InferenceServiceSpec
from gantry.autoscaler import objects
from gantry.autoscaler.prometheus_adapter import RULES_YAML

# The fields of KEDA's ScaledObject CRD (keda.sh/v1alpha1, KEDA 2.x) that Gantry sets.
SCALED_OBJECT_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "properties": {
        "apiVersion": {"const": "keda.sh/v1alpha1"},
        "kind": {"const": "ScaledObject"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "required": ["scaleTargetRef", "triggers"],
            "additionalProperties": False,
            "properties": {
                "scaleTargetRef": {
                    "type": "object",
                    "required": ["name"],
                    "additionalProperties": False,
                    "properties": {
                        "apiVersion": {"type": "string"},
                        "kind": {"type": "string"},
                        "name": {"type": "string"},
                        "envSourceContainerName": {"type": "string"},
                    },
                },
                "pollingInterval": {"type": "integer", "minimum": 0},
                "cooldownPeriod": {"type": "integer", "minimum": 0},
                "initialCooldownPeriod": {"type": "integer", "minimum": 0},
                "idleReplicaCount": {"type": "integer", "minimum": 0},
                "minReplicaCount": {"type": "integer", "minimum": 0},
                "maxReplicaCount": {"type": "integer", "minimum": 0},
                "fallback": {"type": "object"},
                "advanced": {
                    "type": "object",
                    "additionalProperties": False,
                    "properties": {
                        "restoreToOriginalReplicaCount": {"type": "boolean"},
                        "scalingModifiers": {"type": "object"},
                        "horizontalPodAutoscalerConfig": {
                            "type": "object",
                            "additionalProperties": False,
                            "properties": {
                                "name": {"type": "string"},
                                "behavior": {"type": "object"},
                            },
                        },
                    },
                },
                "triggers": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["type", "metadata"],
                        "additionalProperties": False,
                        "properties": {
                            "type": {"type": "string"},
                            "name": {"type": "string"},
                            "metadata": {
                                "type": "object",
                                "additionalProperties": {"type": "string"},
                            },
                            "authenticationRef": {"type": "object"},
                            "metricType": {"enum": ["AverageValue", "Value", "Utilization"]},
                            "useCachedMetrics": {"type": "boolean"},
                        },
                    },
                },
            },
        },
    },
}


def isvc(mode: str | None, **targets: float) -> tuple[dict[str, Any], InferenceServiceSpec]:
    spec: dict[str, Any] = {"model": {"storageUri": "pvc://models/digits"}}
    if mode is not None:
        spec["autoscaling"] = {
            "minReplicas": 1,
            "maxReplicas": 6,
            "mode": mode,
            "targets": targets or {"latencyP95Ms": 50, "requestsPerSecondPerReplica": 80},
            "behavior": {"scaleDown": {"stabilizationSeconds": 120, "maxReplicasPerStep": 2}},
        }
    body = {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "digits", "namespace": "ml", "uid": "u-1", "generation": 1},
        "spec": spec,
    }
    return body, InferenceServiceSpec.model_validate(spec)


def test_hpa_renders_and_validates_against_kubernetes_1_33() -> None:
    body, spec = isvc("hpa", latencyP95Ms=37.5, requestsPerSecondPerReplica=80, queueTimeMs=2)
    (hpa,) = objects.desired_objects(body, spec, prometheus="http://p:9090")
    kubernetes_validate.validate(hpa, "1.33.0", strict=True)
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "InferenceService",
        "name": "digits",
    }
    targets = {
        m["pods"]["metric"]["name"]: m["pods"]["target"]["averageValue"]
        for m in hpa["spec"]["metrics"]
    }
    assert targets == {
        "gantry_triton_request_p95_ms": "37500m",
        "gantry_triton_requests_per_second": "80",
        "gantry_triton_queue_time_ms": "2",
    }
    down = hpa["spec"]["behavior"]["scaleDown"]
    assert down["stabilizationWindowSeconds"] == 120
    assert down["policies"][0] == {"type": "Pods", "value": 2, "periodSeconds": 15}
    assert hpa["metadata"]["ownerReferences"][0]["uid"] == "u-1"
    assert hpa["metadata"]["namespace"] == "ml"


def test_scaled_object_renders_and_validates() -> None:
    body, spec = isvc("keda")
    (so,) = objects.desired_objects(body, spec, prometheus="http://prom:9090")
    jsonschema.validate(so, SCALED_OBJECT_SCHEMA)
    triggers = {t["name"]: t for t in so["spec"]["triggers"]}
    assert triggers["latency-p95"]["metricType"] == "Value"
    assert triggers["latency-p95"]["metadata"]["threshold"] == "50"
    assert 'model="digits",namespace="ml"' in triggers["latency-p95"]["metadata"]["query"]
    assert triggers["requests-per-second"]["metricType"] == "AverageValue"
    assert all(t["metadata"]["serverAddress"] == "http://prom:9090" for t in triggers.values())
    assert so["spec"]["minReplicaCount"] == 1 and so["spec"]["maxReplicaCount"] == 6
    assert so["spec"]["cooldownPeriod"] == 120
    kubernetes_validate.validate(
        {
            "apiVersion": "autoscaling/v2",
            "kind": "HorizontalPodAutoscaler",
            "metadata": {"name": "x"},
            "spec": {
                "scaleTargetRef": {"kind": "InferenceService", "name": "x"},
                "maxReplicas": 2,
                "behavior": so["spec"]["advanced"]["horizontalPodAutoscalerConfig"]["behavior"],
            },
        },
        "1.33.0",
        strict=True,
    )


def test_prometheus_url_from_env() -> None:
    assert objects.prometheus_url({}) == "http://prometheus-operated.monitoring.svc:9090"
    assert objects.prometheus_url({"GANTRY_PROMETHEUS_URL": "http://x:1"}) == "http://x:1"


@pytest.mark.parametrize(
    ("mode", "wanted", "stale"),
    [
        (None, set(), {"HorizontalPodAutoscaler", "ScaledObject"}),
        ("builtin", set(), {"HorizontalPodAutoscaler", "ScaledObject"}),
        ("hpa", {"HorizontalPodAutoscaler"}, {"ScaledObject"}),
        ("keda", {"ScaledObject"}, {"HorizontalPodAutoscaler"}),
    ],
)
def test_mode_switch_leaves_exactly_one_kind(
    mode: str | None, wanted: set[str], stale: set[str]
) -> None:
    body, spec = isvc(mode)
    assert objects.wanted_kinds(spec) == wanted
    assert {k[1] for k in objects.stale_kinds(spec)} == stale
    assert {o["kind"] for o in objects.desired_objects(body, spec, prometheus="p")} == wanted


def test_prometheus_adapter_rules_name_the_hpa_metrics() -> None:
    rules = yaml.safe_load(RULES_YAML)["rules"]
    names = {r["name"]["as"] for r in rules}
    body, spec = isvc("hpa", latencyP95Ms=1, requestsPerSecondPerReplica=1, queueTimeMs=1)
    (hpa,) = objects.desired_objects(body, spec, prometheus="p")
    assert {m["pods"]["metric"]["name"] for m in hpa["spec"]["metrics"]} == names
    assert all("<<.LabelMatchers>>" in r["metricsQuery"] for r in rules)


@pytest.mark.parametrize(("value", "text"), [(50, "50"), (0.5, "500m"), (12.25, "12250m")])
def test_quantity(value: float, text: str) -> None:
    assert objects.quantity(value) == text
