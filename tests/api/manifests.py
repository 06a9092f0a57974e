"""The contract manifests from the TrainingJob and InferenceService issues, and broken ones."""

from __future__ import annotations

import copy
from typing import Any

TRAINING_JOB: dict[str, Any] = {
    "apiVersion": "gantry.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "digits-cnn", "namespace": "ml"},
    "spec": {
        "image": "ghcr.io/example/digits-trainer:1.0",
        "command": ["python", "-m", "digits_train"],
        "args": ["--epochs", "12", "--lr", "0.01"],
        "env": [{"name": "DATA_DIR", "value": "/data"}],
        "volumes": [{"name": "data", "persistentVolumeClaim": {"claimName": "ml-data"}}],
        "volumeMounts": [{"name": "data", "mountPath": "/data"}],
        "workers": 2,
        "gpusPerWorker": 1,
        "resources": {"requests": {"cpu": "4", "memory": "16Gi"}},
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
        "checkpoint": {"volume": {"persistentVolumeClaim": {"claimName": "ml-checkpoints"}}},
        "output": {"storageUri": "pvc://ml-models/digits-cnn"},
        "backoffLimit": 3,
        "activeDeadlineSeconds": 7200,
        "ttlSecondsAfterFinished": 86400,
        "suspend": False,
    },
}

INFERENCE_SERVICE: dict[str, Any] = {
    "apiVersion": "gantry.dev/v1alpha1",
    "kind": "InferenceService",
    "metadata": {"name": "digits", "namespace": "ml"},
    "spec": {
        "model": {"trainingJobRef": {"name": "digits-cnn"}},
        "optimization": {
            "precision": "fp16",
            "maxBatchSize": 64,
            "tensorrt": {"enabled": True},
            "accuracy": {"maxAbsDiff": 0.01, "minTop1Agreement": 0.99, "samples": 256},
        },
        "triton": {
            "image": "nvcr.io/nvidia/tritonserver:24.08-py3",
            "dynamicBatching": {"preferredBatchSizes": [8, 16], "maxQueueDelayMicroseconds": 500},
            "instancesPerReplica": 1,
        },
        "resources": {"limits": {"nvidia.com/gpu": 1}},
        "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"},
        "autoscaling": {
            "minReplicas": 1,
            "maxReplicas": 8,
            "targets": {"latencyP95Ms": 50, "requestsPerSecondPerReplica": 400},
            "behavior": {
                "scaleUp": {"stabilizationSeconds": 0, "maxReplicasPerStep": 4},
                "scaleDown": {"stabilizationSeconds": 60, "maxReplicasPerStep": 1},
            },
            "mode": "builtin",
        },
    },
}


def cpu_training_job() -> dict[str, Any]:
    """The contract TrainingJob as the dev cluster runs it: CPU, no GPU scheduling."""
    job = copy.deepcopy(TRAINING_JOB)
    job["spec"]["gpusPerWorker"] = 0
    del job["spec"]["nodeSelector"], job["spec"]["tolerations"]
    return job


def cpu_inference_service() -> dict[str, Any]:
    svc = copy.deepcopy(INFERENCE_SERVICE)
    svc["spec"]["optimization"]["tensorrt"]["enabled"] = False
    del svc["spec"]["resources"], svc["spec"]["nodeSelector"]
    return svc


def with_change(base: dict[str, Any], path: str, value: Any) -> dict[str, Any]:
    """Copy of `base` with the dotted `path` set to `value` (`...` deletes it)."""
    doc = copy.deepcopy(base)
    *parents, leaf = path.split(".")
    node = doc
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node.setdefault(key, {})
    if value is ...:
        del node[leaf]
    elif isinstance(node, list):
        node[int(leaf)] = value
    else:
        node[leaf] = value
    return doc


TJ, ISVC = TRAINING_JOB, INFERENCE_SERVICE

# (id, manifest, field the error must name, words the message must contain)
INVALID: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "tj-workers-negative",
        with_change(TJ, "spec.workers", -1),
        "workers",
        "greater than or equal to 1",
    ),
    (
        "tj-workers-zero",
        with_change(TJ, "spec.workers", 0),
        "workers",
        "greater than or equal to 1",
    ),
    ("tj-workers-string", with_change(TJ, "spec.workers", "two"), "workers", "integer"),
    (
        "tj-gpus-negative",
        with_change(TJ, "spec.gpusPerWorker", -1),
        "gpusPerWorker",
        "greater than or equal to 0",
    ),
    ("tj-gpus-fractional", with_change(TJ, "spec.gpusPerWorker", 0.5), "gpusPerWorker", "integer"),
    ("tj-command-missing", with_change(TJ, "spec.command", ...), "command", "required"),
    ("tj-command-empty", with_change(TJ, "spec.command", []), "command", "at least 1"),
    (
        "tj-env-master-addr",
        with_change(TJ, "spec.env", [{"name": "MASTER_ADDR", "value": "x"}]),
        "env",
        "reserved",
    ),
    (
        "tj-env-rank",
        with_change(TJ, "spec.env", [{"name": "RANK", "value": "0"}]),
        "env",
        "reserved",
    ),
    (
        "tj-env-pet-prefix",
        with_change(TJ, "spec.env", [{"name": "PET_NNODES", "value": "2"}]),
        "env",
        "reserved",
    ),
    (
        "tj-env-gantry-dir",
        with_change(TJ, "spec.env", [{"name": "GANTRY_OUTPUT_DIR", "value": "/x"}]),
        "env",
        "reserved",
    ),
    (
        "tj-output-http",
        with_change(TJ, "spec.output.storageUri", "http://models/x"),
        "storageUri",
        "pvc://claim/path or s3://bucket/path",
    ),
    (
        "tj-output-bad-claim",
        with_change(TJ, "spec.output.storageUri", "pvc://Bad_Claim/x"),
        "storageUri",
        "",
    ),
    (
        "tj-backoff-negative",
        with_change(TJ, "spec.backoffLimit", -1),
        "backoffLimit",
        "greater than or equal to 0",
    ),
    (
        "tj-deadline-zero",
        with_change(TJ, "spec.activeDeadlineSeconds", 0),
        "activeDeadlineSeconds",
        "greater than or equal to 1",
    ),
    (
        "tj-ttl-negative",
        with_change(TJ, "spec.ttlSecondsAfterFinished", -5),
        "ttlSecondsAfterFinished",
        "greater than or equal to 0",
    ),
    ("tj-suspend-string", with_change(TJ, "spec.suspend", "maybe"), "suspend", "boolean"),
    (
        "tj-mount-unknown-volume",
        with_change(TJ, "spec.volumeMounts", [{"name": "nope", "mountPath": "/x"}]),
        "volumeMounts",
        "volume",
    ),
    *(
        (
            f"tj-volume-reserved-{name}",
            with_change(
                TJ, "spec.volumes", [*TJ["spec"]["volumes"], {"name": name, "emptyDir": {}}]
            ),
            "volumes",
            f"volume name '{name}' is reserved for Gantry's own volumes",
        )
        for name in ("dshm", "gantry-checkpoint")
    ),
    (
        "tj-gpu-fraction-limit",
        with_change(TJ, "spec.resources", {"limits": {"nvidia.com/gpu": "0.5"}}),
        "nvidia.com/gpu",
        "whole number",
    ),
    (
        "isvc-both-sources",
        with_change(ISVC, "spec.model.storageUri", "pvc://ml-models/digits"),
        "model",
        "exactly one",
    ),
    ("isvc-no-source", with_change(ISVC, "spec.model", {}), "model", "exactly one"),
    (
        "isvc-uri-ftp",
        with_change(ISVC, "spec.model", {"storageUri": "ftp://host/m"}),
        "storageUri",
        "pvc://claim/path or s3://bucket/path",
    ),
    (
        "isvc-precision-int4",
        with_change(ISVC, "spec.optimization.precision", "int4"),
        "precision",
        "fp32",
    ),
    (
        "isvc-batch-zero",
        with_change(ISVC, "spec.optimization.maxBatchSize", 0),
        "maxBatchSize",
        "greater than or equal to 1",
    ),
    (
        "isvc-min-gt-max",
        with_change(ISVC, "spec.autoscaling.minReplicas", 9),
        "autoscaling",
        "minReplicas",
    ),
    (
        "isvc-no-targets",
        with_change(ISVC, "spec.autoscaling.targets", {}),
        "targets",
        "at least one",
    ),
    ("isvc-mode-unknown", with_change(ISVC, "spec.autoscaling.mode", "vpa"), "mode", "builtin"),
    (
        "isvc-replicas-negative",
        with_change(cpu_inference_service(), "spec.replicas", -1),
        "replicas",
        "greater than or equal to 0",
    ),
    (
        "isvc-tensorrt-no-gpu",
        with_change(ISVC, "spec.resources", {"limits": {"cpu": "2"}}),
        "tensorrt",
        "needs a GPU",
    ),
    (
        "isvc-gpu-fractional",
        with_change(ISVC, "spec.resources", {"limits": {"nvidia.com/gpu": "0.5"}}),
        "nvidia.com/gpu",
        "whole number",
    ),
    (
        "isvc-gpu-negative",
        with_change(ISVC, "spec.resources", {"limits": {"nvidia.com/gpu": -1}}),
        "nvidia.com/gpu",
        "whole number",
    ),
    (
        "isvc-batch-sizes-too-big",
        with_change(ISVC, "spec.triton.dynamicBatching.preferredBatchSizes", [8, 128]),
        "preferredBatchSizes",
        "maxBatchSize",
    ),
    (
        "isvc-instances-zero",
        with_change(ISVC, "spec.triton.instancesPerReplica", 0),
        "instancesPerReplica",
        "greater than or equal to 1",
    ),
    (
        "isvc-top1-above-one",
        with_change(ISVC, "spec.optimization.accuracy.minTop1Agreement", 1.5),
        "minTop1Agreement",
        "less than or equal to 1",
    ),
    (
        "isvc-maxdiff-zero",
        with_change(ISVC, "spec.optimization.accuracy.maxAbsDiff", 0),
        "maxAbsDiff",
        "greater than 0",
    ),
    (
        "isvc-jobref-bad-name",
        with_change(ISVC, "spec.model.trainingJobRef.name", "Bad_Name"),
        "name",
        "match",
    ),
    ("isvc-unknown-field", with_change(ISVC, "spec.replica", 3), "replica", "xtra"),
]
