"""The Triton Deployment `<name>-triton`: one pod per replica serving one model version.

Model staging: an init container copies `config.pbtxt` and exactly the served version's
directory from the models claim (`repos/<name>/<name>/`) into an emptyDir at `/models`.
A copy rather than a read-only subPath mount, because the optimize Job of the next model
version writes into the same directory (a new version, and a new config.pbtxt): a pod
must keep serving the version it was started with until the rollout replaces it.

Rolling updates are safe for in-flight requests: maxSurge 1 / maxUnavailable 0, strict
readiness, and on termination a preStop sleep lets endpoints drop the pod — and, with a
gRPC connection age, lets every client connection age out — before Triton gets SIGTERM,
after which `--exit-timeout-secs` lets running requests finish.

Replicas: `spec.replicas` unless `spec.autoscaling` is builtin, where the autoscaler owns
`Deployment.spec.replicas` and this builder leaves the field out (creation starts at
minReplicas). For the hpa and keda modes the autoscaler scales the InferenceService
through its scale subresource, which moves `spec.replicas`, so it is copied here.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gantry.api.inferenceservice import InferenceServiceSpec
from gantry.config import OperatorConfig
from gantry.inferenceservice import names
from gantry.inferenceservice.podspec import serving_resources, without_gpus
from gantry.k8s.security import (
    container_security_context,
    pod_security_context,
    scratch_env,
    scratch_mount,
    scratch_volume,
)

CONTAINER = "triton"
STAGE_CONTAINER = "stage-model"
PRESTOP_SLEEP_SECONDS = 5  # at least; see prestop_seconds
EXIT_TIMEOUT_SECONDS = 30
GPU_PRODUCT_LABEL = "nvidia.com/gpu.product"  # as NVIDIA GPU feature discovery labels nodes


@dataclass(frozen=True)
class ServedVersion:
    """What a Deployment serves: an optimize Job's result."""

    version: int
    digest: str
    job: str
    report: Mapping[str, Any]


KEEPALIVE_TIMEOUT_MS = 10_000


def prestop_seconds(config: OperatorConfig) -> int:
    """How long a terminating pod keeps serving before Triton gets SIGTERM.

    Long enough for endpoints and DNS to drop the pod, and — with a connection age — for
    every client connection to reach its age (+10 % jitter) and be closed by a GOAWAY:
    a client reconnects to the pods its name now resolves to, so no call is still on this
    pod when Triton unloads its models (then it would answer NOT_FOUND, which no client
    retries).
    """
    age = config.triton_grpc_max_connection_age_seconds
    return max(PRESTOP_SLEEP_SECONDS, math.ceil(age * 1.1) + 2 if age > 0 else 0)


def lifecycle(config: OperatorConfig) -> dict[str, Any]:
    """The Triton container's lifecycle: the preStop drain (`prestop_seconds`)."""
    return {"preStop": {"exec": {"command": ["sleep", str(prestop_seconds(config))]}}}


def termination_grace_seconds(config: OperatorConfig) -> int:
    """preStop + Triton's own drain + a margin for the process to exit."""
    return prestop_seconds(config) + EXIT_TIMEOUT_SECONDS + 10


def grpc_connection_args(config: OperatorConfig) -> list[str]:
    """tritonserver's gRPC connection flags (milliseconds) from the operator configuration.

    A gRPC client re-resolves a name only when a connection drops, so a bounded connection
    age is what lets a long-lived client (a stock `tritonclient` on a `dns:///` headless
    name with round_robin) find replicas added after it connected: Triton sends GOAWAY at
    the age (gRPC adds ±10 % jitter, so a client's connections do not all cycle at once),
    calls in flight get the grace period to finish, new calls go to the other connections
    while the client reconnects. Keepalive pings detect dead peers; the server must accept
    client pings at least as often as clients send them, or it answers with GOAWAY
    (too_many_pings).
    """
    args: list[str] = []
    age_ms = round(config.triton_grpc_max_connection_age_seconds * 1000)
    if age_ms > 0:
        grace_ms = round(config.triton_grpc_max_connection_age_grace_seconds * 1000)
        args += [
            f"--grpc-max-connection-age={age_ms}",
            f"--grpc-max-connection-age-grace={grace_ms}",
        ]
    keepalive_ms = round(config.triton_grpc_keepalive_seconds * 1000)
    if keepalive_ms > 0:
        args += [
            f"--grpc-keepalive-time={keepalive_ms}",
            f"--grpc-keepalive-timeout={KEEPALIVE_TIMEOUT_MS}",
            "--grpc-keepalive-permit-without-calls=1",
            "--grpc-http2-max-pings-without-data=0",
            f"--grpc-http2-min-recv-ping-interval-without-data={keepalive_ms // 2}",
        ]
    return args


def triton_args(spec: InferenceServiceSpec, config: OperatorConfig | None = None) -> list[str]:
    """tritonserver flags: bind the pod IP (correct everywhere, required on the dev cluster)."""
    return [
        f"--model-repository={names.TRITON_REPOSITORY}",
        "--model-control-mode=none",
        "--strict-readiness=true",
        f"--exit-timeout-secs={EXIT_TIMEOUT_SECONDS}",
        "--http-address=$(POD_IP)",
        "--grpc-address=$(POD_IP)",
        "--metrics-address=$(POD_IP)",
        f"--http-port={names.HTTP_PORT}",
        f"--grpc-port={names.GRPC_PORT}",
        f"--metrics-port={names.METRICS_PORT}",
        f"--allow-gpu-metrics={'true' if spec.gpus() > 0 else 'false'}",
        "--metrics-config=summary_latencies=true",
        *grpc_connection_args(config or OperatorConfig()),
    ]


def stage_script(service: str, version: int) -> str:
    """Shell that copies one model version from the claim into Triton's repository."""
    src = f"{names.MODELS_MOUNT}/{names.repository_dir(service)}/{service}"
    dst = f"{names.TRITON_REPOSITORY}/{service}"
    return (
        "set -eu; "
        f'src="{src}"; dst="{dst}"; '
        f'test -d "$src/{version}" || {{ echo "model version {version} missing in $src" >&2; '
        "exit 1; }; "
        'mkdir -p "$dst"; '
        'for f in "$src"/*; do if [ -f "$f" ]; then cp "$f" "$dst/"; fi; done; '
        f'rm -f "$dst/versions.json"; cp -R "$src/{version}" "$dst/"'
    )


def _probe(path: str, period: int, failures: int, timeout: int) -> dict[str, Any]:
    return {
        "httpGet": {"path": path, "port": names.HTTP_PORT},
        "periodSeconds": period,
        "failureThreshold": failures,
        "timeoutSeconds": timeout,
    }


def probes() -> dict[str, Any]:
    """Startup, readiness and liveness probes of the Triton container."""
    return {
        # Model loading may take minutes (large engines): the startup probe allows 10.
        "startupProbe": _probe("/v2/health/ready", 1, 600, 2),
        "readinessProbe": _probe("/v2/health/ready", 2, 2, 2),
        "livenessProbe": _probe("/v2/health/live", 10, 3, 5),
    }


def placement(node_selector: Mapping[str, str], report: Mapping[str, Any]) -> dict[str, str]:
    """The spec's nodeSelector, plus the GPU product the engine was built on if it names none.

    A TensorRT engine is tuned for (and only guaranteed on) the GPU product of the node its
    optimize Job ran on, which the optimizer reports as `nodeSelector`; Triton pods follow
    it unless the service chose a product itself (then the Job ran there too).
    """
    selector = dict(node_selector)
    built = report.get("nodeSelector")
    product = built.get(GPU_PRODUCT_LABEL) if isinstance(built, Mapping) else None
    if isinstance(product, str) and product and GPU_PRODUCT_LABEL not in selector:
        selector[GPU_PRODUCT_LABEL] = product
    return selector


def pod_template(
    service: str, spec: InferenceServiceSpec, served: ServedVersion, config: OperatorConfig
) -> dict[str, Any]:
    image = spec.triton.image or config.triton_image
    resources = serving_resources(spec.resources, config.triton_resources)
    container = {
        "name": CONTAINER,
        "image": image,
        "command": ["tritonserver"],
        "args": triton_args(spec, config),
        "env": [
            {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
            *scratch_env(),
        ],
        "ports": [
            {"name": "http", "containerPort": names.HTTP_PORT, "protocol": "TCP"},
            {"name": "grpc", "containerPort": names.GRPC_PORT, "protocol": "TCP"},
            {"name": "metrics", "containerPort": names.METRICS_PORT, "protocol": "TCP"},
        ],
        **probes(),
        "lifecycle": lifecycle(config),
        "resources": resources,
        "volumeMounts": [
            {"name": "model-repository", "mountPath": names.TRITON_REPOSITORY, "readOnly": True},
            {"name": "dshm", "mountPath": "/dev/shm"},
            scratch_mount(),
        ],
        "securityContext": container_security_context(),
    }
    stage = {
        "name": STAGE_CONTAINER,
        "image": image,
        "command": ["sh", "-c", stage_script(service, served.version)],
        "resources": without_gpus(resources),
        "volumeMounts": [
            {"name": "models", "mountPath": names.MODELS_MOUNT, "readOnly": True},
            {"name": "model-repository", "mountPath": names.TRITON_REPOSITORY},
        ],
        "securityContext": container_security_context(),
    }
    pod_spec: dict[str, Any] = {
        "automountServiceAccountToken": False,  # Triton never calls the Kubernetes API
        "securityContext": pod_security_context(config),
        "terminationGracePeriodSeconds": termination_grace_seconds(config),
        "initContainers": [stage],
        "containers": [container],
        "volumes": [
            {
                "name": "models",
                "persistentVolumeClaim": {
                    "claimName": names.models_claim(config),
                    "readOnly": True,
                },
            },
            {"name": "model-repository", "emptyDir": {}},
            {"name": "dshm", "emptyDir": {"medium": "Memory", "sizeLimit": "1Gi"}},
            scratch_volume(),
        ],
    }
    # Explicit nulls when empty: the Deployment is merge-patched, and a null is what
    # removes a nodeSelector or tolerations the spec no longer has.
    pod_spec["nodeSelector"] = placement(spec.node_selector, served.report) or None
    pod_spec["tolerations"] = [
        t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in spec.tolerations
    ] or None
    return {
        "metadata": {
            "labels": names.triton_labels(service),
            "annotations": {
                names.MODEL_VERSION_ANNOTATION: str(served.version),
                names.MODEL_DIGEST_ANNOTATION: served.digest,
                names.OPTIMIZE_JOB_ANNOTATION: served.job,
            },
        },
        "spec": pod_spec,
    }


def build_deployment(
    isvc: Mapping[str, Any],
    spec: InferenceServiceSpec,
    served: ServedVersion,
    replicas: int | None,
    config: OperatorConfig,
) -> dict[str, Any]:
    """The apps/v1 Deployment; `replicas` None leaves the field to the autoscaler."""
    meta = isvc["metadata"]
    service = meta["name"]
    deployment_spec: dict[str, Any] = {
        "selector": {"matchLabels": names.selector_labels(service)},
        "strategy": {
            "type": "RollingUpdate",
            "rollingUpdate": {"maxSurge": 1, "maxUnavailable": 0},
        },
        "revisionHistoryLimit": 3,
        "template": pod_template(service, spec, served, config),
    }
    if replicas is not None:
        deployment_spec["replicas"] = replicas
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {
            "name": names.deployment_name(service),
            "namespace": meta.get("namespace"),
            "labels": names.triton_labels(service),
            "annotations": {
                names.OPTIMIZE_JOB_ANNOTATION: served.job,
                names.OPTIMIZE_REPORT_ANNOTATION: json.dumps(
                    dict(served.report), sort_keys=True, separators=(",", ":")
                ),
            },
        },
        "spec": deployment_spec,
    }


def served_from_deployment(deployment: Mapping[str, Any] | None) -> ServedVersion | None:
    """What an existing Deployment serves, from its annotations (None if unreadable)."""
    if not deployment:
        return None
    annotations = (deployment.get("metadata") or {}).get("annotations") or {}
    job = annotations.get(names.OPTIMIZE_JOB_ANNOTATION)
    raw = annotations.get(names.OPTIMIZE_REPORT_ANNOTATION)
    if not job or not raw:
        return None
    try:
        report = json.loads(raw)
    except ValueError:
        return None
    if not isinstance(report, dict):
        return None
    version = report_version(report)
    if version is None:
        return None
    template = ((deployment.get("spec") or {}).get("template") or {}).get("metadata") or {}
    digest = report.get("digest") or (template.get("annotations") or {}).get(
        names.MODEL_DIGEST_ANNOTATION
    )
    return ServedVersion(version, str(digest or ""), str(job), report)


def report_version(report: Mapping[str, Any]) -> int | None:
    try:
        version = int(report.get("version"))  # type: ignore[arg-type]
    except (TypeError, ValueError):
        return None
    return version if version >= 1 else None
