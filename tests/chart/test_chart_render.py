"""The chart lints clean and renders manifests that Kubernetes 1.33 accepts, in every mode."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_testkit import (
    CHART,
    NAMESPACE,
    Render,
    of_kind,
    one,
    run_helm,
    template,
    write_values,
)

KUBERNETES_VERSION = "1.33.0"

_SELECTOR = {
    "type": "object",
    "additionalProperties": False,
    "properties": {
        "matchLabels": {"type": "object", "additionalProperties": {"type": "string"}},
        "matchExpressions": {"type": "array", "items": {"type": "object"}},
    },
}
_METADATA = {
    "type": "object",
    "required": ["name", "namespace"],
    "properties": {"name": {"type": "string"}, "namespace": {"type": "string"}},
}
_ENDPOINT = {
    "type": "object",
    "additionalProperties": False,
    "required": ["port"],
    "properties": {
        "port": {"type": "string"},
        "path": {"type": "string"},
        "interval": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h)$"},
    },
}


def _monitor_schema(kind: str, endpoints_key: str) -> dict[str, Any]:
    """The subset of the Prometheus Operator's schema the chart uses (its CRDs are not here)."""
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["apiVersion", "kind", "metadata", "spec"],
        "properties": {
            "apiVersion": {"const": "monitoring.coreos.com/v1"},
            "kind": {"const": kind},
            "metadata": _METADATA,
            "spec": {
                "type": "object",
                "additionalProperties": False,
                "required": ["selector", endpoints_key],
                "properties": {
                    "selector": _SELECTOR,
                    "namespaceSelector": {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "any": {"type": "boolean"},
                            "matchNames": {"type": "array", "items": {"type": "string"}},
                        },
                    },
                    endpoints_key: {"type": "array", "minItems": 1, "items": _ENDPOINT},
                },
            },
        },
    }


CUSTOM_SCHEMAS = {
    "ServiceMonitor": _monitor_schema("ServiceMonitor", "endpoints"),
    "PodMonitor": _monitor_schema("PodMonitor", "podMetricsEndpoints"),
}

VARIANTS: dict[str, dict[str, Any]] = {
    "defaults": {},
    "namespace-list": {"config": {"watchNamespaces": ["ml", "team-a"]}},
    "ha": {"replicaCount": 2},
    "ha-namespace-list": {"replicaCount": 2, "config": {"watchNamespaces": ["ml"]}},
    "monitoring-networkpolicy-adapter": {
        "monitoring": {
            "serviceMonitor": {"enabled": True, "labels": {"release": "prometheus"}},
            "tritonPodMonitor": {"enabled": True},
            "prometheusAdapter": {"enabled": True},
        },
        "networkPolicy": {"enabled": True},
    },
    "everything": {
        "replicaCount": 3,
        "image": {"tag": "0.1.1", "pullPolicy": "Always"},
        "imagePullSecrets": [{"name": "regcred"}],
        "priorityClassName": "system-cluster-critical",
        "nodeSelector": {"kubernetes.io/os": "linux"},
        "tolerations": [{"key": "dedicated", "operator": "Equal", "value": "ml"}],
        "affinity": {"nodeAffinity": {}},
        "podAnnotations": {"example.com/team": "ml"},
        "podLabels": {"team": "ml"},
        "extraEnv": [{"name": "GANTRY_PROMETHEUS_URL", "value": "http://prom:9090"}],
        "serviceAccount": {"annotations": {"iam.example.com/role": "gantry"}},
        "crds": {"keep": False},
        "config": {
            "watchNamespaces": ["ml", "team-a"],
            "tritonBackends": ["onnxruntime_onnx", "python"],
            "engineCacheClaim": "engines",
            "scrapeIntervalSeconds": 2.5,
        },
        "monitoring": {
            "serviceMonitor": {"enabled": True},
            "tritonPodMonitor": {"enabled": True, "interval": "5s"},
            "prometheusAdapter": {"enabled": True},
        },
        "networkPolicy": {
            "enabled": True,
            "clientPodSelector": {"matchLabels": {"role": "client"}},
            "extraClientPeers": [{"namespaceSelector": {"matchLabels": {"ingress": "yes"}}}],
        },
        "metrics": {"enabled": False},
    },
}


def validate(docs: list[dict[str, Any]]) -> None:
    crds = {
        d["spec"]["names"]["kind"]: d["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
        for d in of_kind(docs, "CustomResourceDefinition")
    }
    for doc in docs:
        kind = doc["kind"]
        if kind in CUSTOM_SCHEMAS:
            jsonschema.validate(doc, CUSTOM_SCHEMAS[kind])
        elif kind in crds:
            jsonschema.validate(doc, crds[kind])
        else:
            kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_helm_lint_is_clean(helm: str) -> None:
    for extra in ([], ["--strict"]):
        result = run_helm(helm, "lint", str(CHART), *extra)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "[WARNING]" not in result.stdout
        assert "[ERROR]" not in result.stdout


def test_helm_lint_strict_with_every_option(helm: str, tmp_path: Path) -> None:
    values = write_values(tmp_path / "v.yaml", VARIANTS["everything"])
    result = run_helm(helm, "lint", "--strict", str(CHART), "--values", str(values))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("variant", sorted(VARIANTS))
def test_rendered_manifests_validate_against_kubernetes_1_33(render: Render, variant: str) -> None:
    docs = render(VARIANTS[variant])
    validate(docs)
    one(docs, "Deployment")


def test_defaults_install_operator_crds_and_namespaced_rbac(render: Render) -> None:
    docs = render()
    kinds = sorted(d["kind"] for d in docs)
    assert kinds == sorted(
        [
            "ClusterRole",  # the operator's: CRD and namespace discovery only
            "ClusterRole",  # <release>-edit, aggregated into admin/edit
            "ClusterRole",  # <release>-view, aggregated into view
            "ClusterRoleBinding",
            "Role",  # the operator's, in the release namespace: the only one watched
            "RoleBinding",
            "ConfigMap",
            "CustomResourceDefinition",
            "CustomResourceDefinition",
            "Deployment",
            "Job",  # the pre-delete hook that removes Gantry's resources first
            "Service",
            "ServiceAccount",
            "ValidatingAdmissionPolicy",  # the operator's ServiceAccount
            "ValidatingAdmissionPolicy",  # the trainers' status writes
            "ValidatingAdmissionPolicyBinding",
            "ValidatingAdmissionPolicyBinding",
        ]
    )
    (role,) = of_kind(docs, "Role")
    assert role["metadata"]["namespace"] == NAMESPACE
    crds = {d["metadata"]["name"] for d in of_kind(docs, "CustomResourceDefinition")}
    assert crds == {"trainingjobs.gantry.dev", "inferenceservices.gantry.dev"}
    for crd in of_kind(docs, "CustomResourceDefinition"):
        assert crd["metadata"]["annotations"] == {"helm.sh/resource-policy": "keep"}


def test_crds_can_be_left_out_or_dropped_on_uninstall(render: Render) -> None:
    assert of_kind(render({"crds": {"enabled": False}}), "CustomResourceDefinition") == []
    for crd in of_kind(render({"crds": {"keep": False}}), "CustomResourceDefinition"):
        assert "annotations" not in crd["metadata"]


def test_operator_pod_is_locked_down(render: Render) -> None:
    deployment = one(render(), "Deployment")
    pod = deployment["spec"]["template"]["spec"]
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == 1000
    assert pod["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    (container,) = pod["containers"]
    security = container["securityContext"]
    assert security["readOnlyRootFilesystem"] is True
    assert security["allowPrivilegeEscalation"] is False
    assert security["capabilities"] == {"drop": ["ALL"]}
    mounts = {m["mountPath"]: m["name"] for m in container["volumeMounts"]}
    assert mounts["/run/gantry"] == "tmp"
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert "emptyDir" in volumes["tmp"]
    assert container["image"] == "ghcr.io/gantry-dev/gantry-operator:0.1.0"


def test_operator_runs_the_controller_with_kopf_health_probes(render: Render) -> None:
    pod = one(render(), "Deployment")["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["python", "-m", "gantry.controller"]
    assert "--liveness=http://$(POD_IP):8080/healthz" in container["args"]
    ports = {p["name"]: p["containerPort"] for p in container["ports"]}
    assert ports == {"health": 8080, "metrics": 8081}
    for probe in ("livenessProbe", "readinessProbe"):
        assert container[probe]["httpGet"] == {"path": "/healthz", "port": "health"}
    env = {e["name"]: e for e in container["env"]}
    assert env["GANTRY_CONFIG"]["value"] == "/etc/gantry/config.yaml"
    assert env["POD_IP"]["valueFrom"]["fieldRef"]["fieldPath"] == "status.podIP"
    assert "GANTRY_PEERING" not in env


def test_configuration_change_rolls_the_deployment(render: Render) -> None:
    def checksum(values: dict[str, Any]) -> str:
        deployment = one(render(values), "Deployment")
        return str(deployment["spec"]["template"]["metadata"]["annotations"]["checksum/config"])

    assert checksum({}) == checksum({"replicaCount": 1})
    assert checksum({}) != checksum({"config": {"scrapeIntervalSeconds": 2}})


def test_high_availability_uses_kopf_peering_and_a_budget(render: Render) -> None:
    docs = render({"replicaCount": 2, "clusterWide": True})
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["replicas"] == 2
    env = {e["name"]: e for e in deployment["spec"]["template"]["spec"]["containers"][0]["env"]}
    assert env["GANTRY_PEERING"]["value"] == "gantry"
    assert env["POD_ID"]["valueFrom"]["fieldRef"]["fieldPath"] == "metadata.name"
    pdb = one(docs, "PodDisruptionBudget")
    assert pdb["spec"]["minAvailable"] == 1
    assert pdb["spec"]["selector"]["matchLabels"] == deployment["spec"]["selector"]["matchLabels"]
    crds = {d["metadata"]["name"] for d in of_kind(docs, "CustomResourceDefinition")}
    assert {"clusterkopfpeerings.kopf.dev", "kopfpeerings.kopf.dev"} <= crds
    peering = one(docs, "ClusterKopfPeering")
    assert peering["metadata"]["name"] == "gantry"
    assert "post-install" in peering["metadata"]["annotations"]["helm.sh/hook"]


def test_high_availability_in_namespace_mode_peers_in_each_namespace(render: Render) -> None:
    docs = render({"replicaCount": 2, "config": {"watchNamespaces": ["ml", "team-a"]}})
    assert of_kind(docs, "ClusterKopfPeering") == []
    peerings = {
        (d["metadata"]["namespace"], d["metadata"]["name"]) for d in of_kind(docs, "KopfPeering")
    }
    assert peerings == {("ml", "gantry"), ("team-a", "gantry")}


def test_single_replica_has_no_budget_nor_peering(render: Render) -> None:
    docs = render()
    assert of_kind(docs, "PodDisruptionBudget") == []
    assert of_kind(docs, "ClusterKopfPeering") == []


def test_pod_scheduling_knobs_reach_the_operator_pod(render: Render) -> None:
    values = VARIANTS["everything"]
    pod_template = one(render(values), "Deployment")["spec"]["template"]
    pod = pod_template["spec"]
    assert pod["imagePullSecrets"] == [{"name": "regcred"}]
    assert pod["priorityClassName"] == "system-cluster-critical"
    assert pod["nodeSelector"] == {"kubernetes.io/os": "linux"}
    assert pod["tolerations"] == values["tolerations"]
    assert pod["affinity"] == {"nodeAffinity": {}}
    assert pod_template["metadata"]["labels"]["team"] == "ml"
    assert pod_template["metadata"]["annotations"]["example.com/team"] == "ml"
    container = pod["containers"][0]
    assert container["image"] == "ghcr.io/gantry-dev/gantry-operator:0.1.1"
    env = {e["name"]: e for e in container["env"]}
    assert env["GANTRY_PROMETHEUS_URL"]["value"] == "http://prom:9090"
    assert env["GANTRY_METRICS_PORT"]["value"] == "0"


def test_network_policy_admits_clients_and_scrapers_only(render: Render) -> None:
    docs = render({"networkPolicy": {"enabled": True}, "config": {"watchNamespaces": ["ml", "b"]}})
    policies = of_kind(docs, "NetworkPolicy")
    assert sorted(p["metadata"]["namespace"] for p in policies) == ["b", "ml"]
    serving, metrics = policies[0]["spec"]["ingress"]
    assert {p["port"] for p in serving["ports"]} == {8000, 8001}
    assert serving["from"] == [{"podSelector": {}}]
    assert [p["port"] for p in metrics["ports"]] == [8002]
    operator_peer = metrics["from"][0]
    assert operator_peer["namespaceSelector"]["matchLabels"] == {
        "kubernetes.io/metadata.name": NAMESPACE
    }
    assert operator_peer["podSelector"]["matchLabels"]["app.kubernetes.io/component"] == "operator"


def test_prometheus_adapter_rules_define_the_hpa_metrics(render: Render) -> None:
    docs = render({"monitoring": {"prometheusAdapter": {"enabled": True}}})
    (config_map,) = [
        d for d in of_kind(docs, "ConfigMap") if "prometheus-adapter" in d["metadata"]["name"]
    ]
    rules = yaml.safe_load(config_map["data"]["config.yaml"])["rules"]
    names = {r["name"]["as"] for r in rules}
    assert names == {
        "gantry_triton_request_p95_ms",
        "gantry_triton_requests_per_second",
        "gantry_triton_queue_time_ms",
    }
    for rule in rules:
        assert rule["seriesQuery"].startswith("nv_inference_")
        assert "<<.LabelMatchers>>" in rule["metricsQuery"]


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"replicaCout": 2}, "replicaCout"),
        ({"config": {"tritonImge": "x"}}, "tritonImge"),
        ({"replicaCount": "two"}, "replicaCount"),
        ({"config": {"scrapeIntervalSeconds": 0}}, "scrapeIntervalSeconds"),
        ({"config": {"tritonBackends": ["tensorrt"]}}, "tritonBackends"),
        ({"monitoring": {"serviceMonitor": {"enable": True}}}, "enable"),
        ({"networkPolicy": {"metricsPeers": [{"podSelectr": {}}]}}, "podSelectr"),
    ],
)
def test_invalid_values_fail_with_the_schema_error(
    helm: str, tmp_path: Path, values: dict[str, Any], message: str
) -> None:
    result = template(helm, write_values(tmp_path / "bad.yaml", values))
    assert result.returncode != 0
    assert "values don't meet the specifications of the schema" in result.stderr
    assert message in result.stderr


def test_notes_tell_what_to_apply_next(helm: str, tmp_path: Path) -> None:
    values = write_values(tmp_path / "v.yaml", {"config": {"watchNamespaces": ["ml"]}})
    result = run_helm(
        helm,
        "install",
        "gantry",
        str(CHART),
        "-n",
        NAMESPACE,
        "--dry-run=client",
        "-f",
        str(values),
    )
    assert result.returncode == 0, result.stderr
    notes = result.stdout.split("NOTES:", 1)[1]
    assert "watches TrainingJobs and InferenceServices in: ml" in notes
    for line in (
        "kubectl -n ml apply -f examples/trainingjob-digits.yaml",
        "kubectl -n ml apply -f examples/inferenceservice-digits.yaml",
        "kubectl -n ml get tj,infsvc",
        "digits.ml.svc:8001",
    ):
        assert line in notes


def test_monitoring_and_policies_select_the_triton_pods_gantry_builds(render: Render) -> None:
    from gantry.inferenceservice import names

    docs = render(VARIANTS["monitoring-networkpolicy-adapter"])
    monitor = one(docs, "PodMonitor")
    (expression,) = monitor["spec"]["selector"]["matchExpressions"]
    assert expression == {"key": names.SERVICE_LABEL, "operator": "Exists"}
    assert names.SERVICE_LABEL in names.triton_labels("digits")
    assert monitor["spec"]["podMetricsEndpoints"][0]["port"] == "metrics"
    policy = one(docs, "NetworkPolicy")
    assert policy["spec"]["podSelector"] == monitor["spec"]["selector"]
    serving, metrics = policy["spec"]["ingress"]
    assert {p["port"] for p in serving["ports"]} == {names.HTTP_PORT, names.GRPC_PORT}
    assert [p["port"] for p in metrics["ports"]] == [names.METRICS_PORT]
