"""The optimize Job: exported model → Triton model repository, on the serving hardware.

The Job is named after a digest of everything that shapes its output (model URI and
sha256, the revision annotation, backend, precision, batch size, gate, batching,
instances, GPU type), so a change to any of them is a new Job, a new model version and a
rolling update, while an unchanged spec never rebuilds. It runs with `backoffLimit: 0`:
its failures (missing or corrupt model, failed accuracy gate) are deterministic; set the
`gantry.dev/model-revision` annotation to retry after fixing the cause elsewhere.

Its report (compact JSON from `python -m model_repo.optimize --report`) reaches the
operator as the container's termination message, so the operator never mounts a PVC.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gantry.api.inferenceservice import InferenceServiceSpec
from gantry.config import OperatorConfig, TritonBackend
from gantry.inferenceservice import names
from gantry.inferenceservice.model_source import ResolvedModel
from gantry.inferenceservice.podspec import resources_with_gpus
from gantry.k8s.pods import stuck_pod
from gantry.k8s.security import (
    container_security_context,
    literal,
    pod_security_context,
    scratch_env,
    scratch_mount,
    scratch_volume,
)

CONTAINER = "optimize"
FETCH_CONTAINER = "fetch-model"
TERMINATION_LOG = "/dev/termination-log"
_SECRET_KEYS = (
    ("AWS_ACCESS_KEY_ID", False),
    ("AWS_SECRET_ACCESS_KEY", False),
    ("AWS_SESSION_TOKEN", True),
    ("AWS_ENDPOINT_URL", True),
    ("AWS_REGION", True),
)


# A request that has waited this many p95 targets in Triton's queue is rejected.
QUEUE_TIMEOUT_TARGETS = 4
# Triton 2.51's dynamic batcher with a queue policy and a single model instance leaves a
# request queued behind a busy instance until the next request arrives (measured with
# the Python backend, 3 clients at 15 req/s, 20 ms per request: p50 43 → 222 ms; with
# two instances 23 ms with or without the policy). Services with one instance per
# replica therefore get no queue policy.
MIN_INSTANCES_FOR_QUEUE_POLICY = 2


def queue_policy(spec: InferenceServiceSpec) -> dict[str, int] | None:
    """Triton's queue bound from the service's latency target (None without one).

    A request that has queued for QUEUE_TIMEOUT_TARGETS times the p95 target is far past
    it: Triton rejects it (UNAVAILABLE, a Trailers-Only answer that gRPC retries), and a
    client with the documented retry policy resends it, which round_robin sends to the
    next replica — instead of it waiting seconds behind the backlog a replica builds while
    scale-up help is starting. A wait of a few targets still absorbs a burst without
    retries. The length bound, when a throughput target says what one replica carries, is
    twice what it serves within the timeout: Triton 2.51 counts timeouts as failures
    (reason REJECTED, which the autoscaler reads as demand) but not a full queue's
    refusals, so the timeout must be the bound that acts.
    """
    autoscaling = spec.autoscaling
    target_ms = autoscaling.targets.latency_p95_ms if autoscaling else None
    if autoscaling is None or target_ms is None:
        return None
    if spec.triton.instances_per_replica < MIN_INSTANCES_FOR_QUEUE_POLICY:
        return None
    timeout_ms = target_ms * QUEUE_TIMEOUT_TARGETS
    policy = {"timeoutMicroseconds": max(1, round(timeout_ms * 1000))}
    per_replica = autoscaling.targets.requests_per_second_per_replica
    if per_replica is not None:
        policy["maxQueueSize"] = max(8, math.ceil(2 * per_replica * timeout_ms / 1000))
    return policy


def inputs_digest(
    spec: InferenceServiceSpec,
    model: ResolvedModel,
    backend: TritonBackend,
    config: OperatorConfig,
    revision: str | None,
) -> str:
    """sha256 over everything that changes the optimized model (hex)."""
    batching = spec.triton.dynamic_batching
    material = {
        "uri": model.uri,
        "digest": model.digest,
        "revision": revision,
        "backend": backend.value,
        "optimization": spec.optimization.model_dump(mode="json", by_alias=True),
        "batching": batching.model_dump(mode="json", by_alias=True) if batching else None,
        "instances": spec.triton.instances_per_replica,
        "queue": queue_policy(spec),
        "gpus": spec.gpus(),
        "nodeSelector": dict(sorted(spec.node_selector.items())),
        "image": config.optimizer_image,
        "tensorrt": config.tensorrt_version if backend is TritonBackend.TENSORRT else None,
    }
    encoded = json.dumps(material, sort_keys=True, separators=(",", ":")).encode()
    return hashlib.sha256(encoded).hexdigest()


def _source_mount(
    model: ResolvedModel, config: OperatorConfig
) -> tuple[str, list[dict[str, Any]], list[dict[str, Any]]]:
    """(model dir inside the pod, extra volumes, extra mounts) for the model's location."""
    loc = model.location
    if loc.scheme == "s3":
        return names.FETCH_DIR, [{"name": "fetched", "emptyDir": {}}], []
    if loc.name == names.models_claim(config):
        return f"{names.MODELS_MOUNT}/{loc.path}".rstrip("/"), [], []
    mount = f"{config.pvc_mount_root.rstrip('/')}/{loc.name}"
    volume = {"name": "source", "persistentVolumeClaim": {"claimName": loc.name, "readOnly": True}}
    return (
        f"{mount}/{loc.path}".rstrip("/"),
        [volume],
        [{"name": "source", "mountPath": mount, "readOnly": True}],
    )


def _storage_volumes(config: OperatorConfig) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes = [
        {"name": "models", "persistentVolumeClaim": {"claimName": names.models_claim(config)}}
    ]
    mounts = [{"name": "models", "mountPath": names.MODELS_MOUNT}]
    if names.cache_claim(config) != names.models_claim(config):
        volumes.append(
            {"name": "cache", "persistentVolumeClaim": {"claimName": names.cache_claim(config)}}
        )
        mounts.append({"name": "cache", "mountPath": names.CACHE_MOUNT})
    return volumes, mounts


def cache_dir(config: OperatorConfig) -> str:
    root = (
        names.CACHE_MOUNT
        if names.cache_claim(config) != names.models_claim(config)
        else (names.MODELS_MOUNT)
    )
    return f"{root}/{names.CACHE_DIR}"


def optimize_args(
    service: str,
    spec: InferenceServiceSpec,
    backend: TritonBackend,
    model_dir: str,
    config: OperatorConfig,
) -> list[str]:
    """Arguments of `python -m model_repo.optimize` (pure, so tests read them directly)."""
    opt = spec.optimization
    args = [
        "-m",
        "model_repo.optimize",
        "--model-dir",
        literal(model_dir),
        "--repository",
        f"{names.MODELS_MOUNT}/{names.repository_dir(service)}",
        "--name",
        service,
        "--precision",
        str(opt.precision),
        "--max-batch-size",
        str(opt.max_batch_size),
        "--backend",
        backend.value,
        "--cache-dir",
        cache_dir(config),
        "--max-abs-diff",
        repr(opt.accuracy.max_abs_diff),
        "--min-top1-agreement",
        repr(opt.accuracy.min_top1_agreement),
        "--samples",
        str(opt.accuracy.samples),
        "--instances",
        str(spec.triton.instances_per_replica),
        "--kind",
        "gpu" if spec.gpus() > 0 else "cpu",
        "--report",
        TERMINATION_LOG,
    ]
    if backend is TritonBackend.TENSORRT:  # a plan loads only on the TensorRT that built it
        args += ["--tensorrt-version", config.tensorrt_version]
    batching = spec.triton.dynamic_batching
    if batching is not None:
        encoded = json.dumps(batching.model_dump(mode="json", by_alias=True), sort_keys=True)
        args += ["--dynamic-batching-json", encoded]
    queue = queue_policy(spec)
    if queue is not None:
        args += ["--queue-policy-json", json.dumps(queue, sort_keys=True)]
    return args


def _fetch_container(
    spec: InferenceServiceSpec, model: ResolvedModel, config: OperatorConfig
) -> dict[str, Any]:
    """Init step for s3:// models; credentials come from the Secret, never from the spec."""
    env: list[dict[str, Any]] = []
    secret = spec.model.storage_secret_ref
    if secret is not None:
        env = [
            {
                "name": key,
                "valueFrom": {
                    "secretKeyRef": {"name": secret.name, "key": key, "optional": optional}
                },
            }
            for key, optional in _SECRET_KEYS
        ]
    return {
        "name": FETCH_CONTAINER,
        "image": config.optimizer_image,
        "command": [config.python],
        "args": ["-m", "model_repo.fetch", "--uri", literal(model.uri), "--dest", names.FETCH_DIR],
        "env": [*env, *scratch_env()],
        "volumeMounts": [{"name": "fetched", "mountPath": names.FETCH_DIR}, scratch_mount()],
        "resources": resources_with_gpus(config.optimizer_resources, 0),
        "securityContext": container_security_context(),
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }


def build_optimize_job(
    isvc: Mapping[str, Any],
    spec: InferenceServiceSpec,
    model: ResolvedModel,
    backend: TritonBackend,
    digest: str,
    config: OperatorConfig,
) -> dict[str, Any]:
    """The batch/v1 Job (without ownerReferences; the reconciler adopts it)."""
    meta = isvc["metadata"]
    service = meta["name"]
    job_name = names.optimize_job_name(service, digest)
    model_dir, source_volumes, source_mounts = _source_mount(model, config)
    storage_volumes, storage_mounts = _storage_volumes(config)
    labels = {names.OPTIMIZE_LABEL: service, names.OPTIMIZE_JOB_LABEL: job_name}
    container = {
        "name": CONTAINER,
        "image": config.optimizer_image,
        "command": [config.python],
        "args": [
            *optimize_args(service, spec, backend, model_dir, config),
            # the file must be the one its TrainingJob exported (digest from its status)
            *(["--expect-sha256", literal(model.digest)] if model.digest else []),
        ],
        "env": scratch_env(),
        "resources": resources_with_gpus(config.optimizer_resources, spec.gpus()),
        "volumeMounts": [*storage_mounts, scratch_mount()]
        + source_mounts
        + (
            [{"name": "fetched", "mountPath": names.FETCH_DIR, "readOnly": True}]
            if model.location.scheme == "s3"
            else []
        ),
        "securityContext": container_security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "automountServiceAccountToken": False,  # reports through its termination message
        "securityContext": pod_security_context(config),
        "containers": [container],
        "volumes": [*storage_volumes, scratch_volume(), *source_volumes],
    }
    if model.location.scheme == "s3":
        pod_spec["initContainers"] = [_fetch_container(spec, model, config)]
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [
            t.model_dump(mode="json", by_alias=True, exclude_none=True) for t in spec.tolerations
        ]
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {
            "name": job_name,
            "namespace": meta.get("namespace"),
            "labels": labels,
            "annotations": {"gantry.dev/model-uri": model.uri},
        },
        "spec": {
            "backoffLimit": 0,
            "activeDeadlineSeconds": config.optimize_deadline_seconds,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


# --- reading the outcome -------------------------------------------------------------


@dataclass(frozen=True)
class OptimizeOutcome:
    """What became of an optimize Job: `state` is running, succeeded or failed."""

    state: str
    report: Mapping[str, Any] = field(default_factory=dict)
    reason: str = ""
    message: str = ""


def _condition_true(job: Mapping[str, Any], type_: str) -> Mapping[str, Any] | None:
    for condition in (job.get("status") or {}).get("conditions") or []:
        if condition.get("type") == type_ and condition.get("status") == "True":
            return dict(condition)
    return None


def _terminated(pod: Mapping[str, Any], name: str) -> Mapping[str, Any] | None:
    status = pod.get("status") or {}
    for key in ("containerStatuses", "initContainerStatuses"):
        for cs in status.get(key) or []:
            if cs.get("name") == name:
                term = (cs.get("state") or {}).get("terminated")
                if term:
                    return dict(term)
    return None


def _parse_report(message: str | None) -> dict[str, Any] | None:
    if not message:
        return None
    try:
        parsed = json.loads(message)
    except ValueError:
        return None
    return parsed if isinstance(parsed, dict) else None


def _tail(text: str, lines: int = 8) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def _pending_reason(pods: Sequence[Mapping[str, Any]]) -> tuple[str, str]:
    """(reason, message) of an optimize pod that cannot start or be placed; ("", "") else."""
    stuck = stuck_pod(pods)
    if stuck is not None:
        return stuck.reason, f"optimize pod {stuck.pod} cannot start: {stuck.message}"
    for pod in pods:
        for condition in (pod.get("status") or {}).get("conditions") or []:
            if condition.get("type") == "PodScheduled" and condition.get("status") == "False":
                detail = condition.get("message") or ""
                return "Unschedulable", f"optimize pod cannot be scheduled: {detail}"
    return "", ""


def job_outcome(job: Mapping[str, Any], pods: Sequence[Mapping[str, Any]]) -> OptimizeOutcome:
    """Read an optimize Job and its pods into an outcome (pure)."""
    ordered = sorted(
        pods, key=lambda p: str((p.get("metadata") or {}).get("creationTimestamp") or "")
    )
    complete = _condition_true(job, "Complete")
    failed = _condition_true(job, "Failed")
    if complete is None and failed is None:
        reason, message = _pending_reason(ordered)
        return OptimizeOutcome("running", reason=reason, message=message)
    if failed is not None and failed.get("reason") == "DeadlineExceeded":
        deadline = (job.get("spec") or {}).get("activeDeadlineSeconds")
        return OptimizeOutcome(
            "failed",
            reason="DeadlineExceeded",
            message=f"the optimize Job ran longer than its deadline of {deadline} s "
            "(optimizeDeadlineSeconds) and was stopped",
        )
    for pod in reversed(ordered):
        fetch = _terminated(pod, FETCH_CONTAINER)
        if failed and fetch and fetch.get("exitCode"):
            fetched = _parse_report(fetch.get("message")) or {}
            return OptimizeOutcome(
                "failed",
                reason=str(fetched.get("reason") or "StorageError"),
                message="fetching the model failed: "
                + str(fetched.get("error") or _tail(str(fetch.get("message") or "no output"))),
            )
        term = _terminated(pod, CONTAINER)
        if term is None:
            continue
        report = _parse_report(term.get("message"))
        if complete is not None and term.get("exitCode") == 0:
            if report is None or "error" in report:
                return OptimizeOutcome(
                    "failed",
                    reason="UnreadableReport",
                    message="the optimize Job succeeded but its report is not JSON: "
                    + _tail(str(term.get("message") or "(empty)")),
                )
            return OptimizeOutcome("succeeded", report=report)
        if report is not None and report.get("error"):
            return OptimizeOutcome(
                "failed",
                reason=str(report.get("reason") or "OptimizeFailed"),
                message=str(report["error"]),
            )
        detail = _tail(str(term.get("message") or "")) or f"exit code {term.get('exitCode')}"
        return OptimizeOutcome("failed", reason="OptimizeFailed", message=detail)
    if complete is not None:
        return OptimizeOutcome(
            "failed",
            reason="UnreadableReport",
            message="the optimize Job succeeded but its pod (and report) is gone",
        )
    assert failed is not None
    return OptimizeOutcome(
        "failed",
        reason=str(failed.get("reason") or "OptimizeFailed"),
        message=str(failed.get("message") or "the optimize Job failed"),
    )
