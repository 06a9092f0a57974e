"""Names, labels, ports and paths of everything an InferenceService owns.

One place for them, because the builders, the status computation, the autoscaler and
the `gantry predict` client must all agree on them.
"""

from __future__ import annotations

from gantry.config import OperatorConfig

SERVICE_LABEL = "gantry.dev/inferenceservice"
OPTIMIZE_LABEL = "gantry.dev/optimize-for"
OPTIMIZE_JOB_LABEL = "gantry.dev/optimize-job"
COMPONENT_LABEL = "app.kubernetes.io/component"

# Annotations that carry what a Deployment serves; a change rolls the pods.
MODEL_VERSION_ANNOTATION = "gantry.dev/model-version"
MODEL_DIGEST_ANNOTATION = "gantry.dev/model-digest"
OPTIMIZE_JOB_ANNOTATION = "gantry.dev/optimize-job"
OPTIMIZE_REPORT_ANNOTATION = "gantry.dev/optimize-report"
# Set by users on the InferenceService to rebuild from an unchanged URI (or to retry).
MODEL_REVISION_ANNOTATION = "gantry.dev/model-revision"

HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PORT = 8002

DEFAULT_MODELS_CLAIM = "gantry-models"
MODELS_MOUNT = "/gantry/models"  # the models claim inside optimize Jobs and init containers
CACHE_MOUNT = "/gantry/cache"  # the engine-cache claim when it is a separate claim
FETCH_DIR = "/gantry/fetched"  # s3:// models are downloaded here (emptyDir)
TRITON_REPOSITORY = "/models"  # Triton's --model-repository inside the serving pods
REPOS_DIR = "repos"  # <models claim>/repos/<service>/<service>/{config.pbtxt,<version>/}
CACHE_DIR = "cache"  # <cache claim>/cache/<key>/


def deployment_name(service: str) -> str:
    return f"{service}-triton"


def headless_name(service: str) -> str:
    return f"{service}-headless"


def pdb_name(service: str) -> str:
    return f"{service}-triton"


def optimize_job_name(service: str, inputs_digest: str) -> str:
    """`<service>-optimize-<8 hex>`: at most 63 characters for a 45-character service name."""
    return f"{service}-optimize-{inputs_digest[:8]}"


def selector_labels(service: str) -> dict[str, str]:
    """Labels that select exactly the Triton pods of one service."""
    return {SERVICE_LABEL: service}


def selector_string(service: str) -> str:
    """The label selector as a string, the form the scale subresource reports."""
    return ",".join(f"{k}={v}" for k, v in selector_labels(service).items())


def triton_labels(service: str) -> dict[str, str]:
    return {
        **selector_labels(service),
        "app.kubernetes.io/name": "triton",
        "app.kubernetes.io/instance": service,
        COMPONENT_LABEL: "inference-server",
    }


def models_claim(config: OperatorConfig) -> str:
    """The claim holding model repositories (and the engine cache unless it has its own)."""
    return config.model_repository_claim or config.engine_cache_claim or DEFAULT_MODELS_CLAIM


def cache_claim(config: OperatorConfig) -> str:
    return config.engine_cache_claim or models_claim(config)


def repository_dir(service: str) -> str:
    """The service's repository on the models claim (relative to the claim's root)."""
    return f"{REPOS_DIR}/{service}"


def grpc_endpoint(service: str, namespace: str) -> str:
    return f"{service}.{namespace}.svc:{GRPC_PORT}"


def http_endpoint(service: str, namespace: str) -> str:
    return f"http://{service}.{namespace}.svc:{HTTP_PORT}"


def headless_grpc_target(service: str, namespace: str) -> str:
    """gRPC target for client-side balancing (use with the `round_robin` policy)."""
    return f"dns:///{headless_name(service)}.{namespace}.svc.cluster.local:{GRPC_PORT}"
