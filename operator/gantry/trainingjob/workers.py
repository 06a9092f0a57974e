"""The worker Job of one attempt: torchrun with static rendezvous on worker 0 (pure).

Each worker pod runs a small POSIX shell wrapper around torchrun. It forwards SIGTERM to
torchrun (so deleting a pod stops training promptly) and, on worker 0 after a successful
run, writes the model summary (see `summary`) to the termination message.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from gantry.api.common import parse_storage_uri
from gantry.api.trainingjob import TrainingJobSpec
from gantry.config import OperatorConfig
from gantry.k8s.resources import resource_requirements
from gantry.k8s.security import (
    container_security_context,
    literal,
    pod_security_context,
    scratch_env,
    scratch_mount,
    scratch_volume,
)
from gantry.trainingjob import naming
from gantry.trainingjob.summary import SUMMARY_SCRIPT

OUTPUT_MOUNT = "/gantry/output-volume"
CHECKPOINT_VOLUME = "gantry-checkpoint"
OUTPUT_VOLUME = "gantry-output"
SHM_VOLUME = "dshm"
CONTAINER = "worker"
TERMINATION_LOG = "/dev/termination-log"

WRAPPER = """\
summary="$1"; shift
# The output directory exists before the user's code runs: a plain script (or PyTorch's
# own exporter, which writes temporary files beside its output) may assume it does.
if [ -n "${GANTRY_OUTPUT_DIR:-}" ]; then mkdir -p "$GANTRY_OUTPUT_DIR"; fi
"$@" &
pid=$!
trap 'kill -TERM "$pid" 2>/dev/null' TERM INT
wait "$pid"; code=$?
while kill -0 "$pid" 2>/dev/null; do wait "$pid"; code=$?; done
if [ "$code" = 0 ] && [ "${JOB_COMPLETION_INDEX:-0}" = 0 ] && [ -n "${GANTRY_OUTPUT_DIR:-}" ]; then
  "$GANTRY_PYTHON" -c "$summary" "$GANTRY_OUTPUT_DIR" TERMINATION_LOG \\
    || echo "gantry: no model summary" >&2
fi
exit "$code"
""".replace("TERMINATION_LOG", TERMINATION_LOG)

PYTHONS = frozenset({"python", "python3"})


class UnsupportedSpec(ValueError):
    """The spec is valid but asks for something this operator cannot do yet."""


def user_program(command: Sequence[str], args: Sequence[str]) -> list[str]:
    """What follows torchrun's options for each command shape.

    `[python, -m, mod, ...]` → `-m mod ...`; `[python, script.py, ...]` → `script.py ...`;
    anything else runs as its own program: `--no-python cmd ...`.
    """
    words = [*command, *args]
    head = words[0].rsplit("/", 1)[-1]
    if head in PYTHONS and len(words) >= 3 and words[1] == "-m":
        return ["-m", *words[2:]]
    if head in PYTHONS and len(words) >= 2 and not words[1].startswith("-"):
        return words[1:]
    return ["--no-python", *words]


def torchrun_argv(
    spec: TrainingJobSpec, *, name: str, namespace: str, attempt: int, port: int
) -> list[str]:
    return [
        "torchrun",
        f"--nnodes={spec.workers}",
        f"--nproc-per-node={max(spec.gpus_per_worker, 1)}",
        "--node-rank=$(JOB_COMPLETION_INDEX)",
        f"--master-addr={naming.master_address(name, attempt, namespace)}",
        f"--master-port={port}",
        "--rdzv-backend=static",
        *(literal(word) for word in user_program(spec.command, spec.args)),
    ]


def output_dir(spec: TrainingJobSpec) -> str | None:
    """GANTRY_OUTPUT_DIR inside the workers, or None without an output."""
    if spec.output is None:
        return None
    location = parse_storage_uri(spec.output.storage_uri)
    if location.scheme != "pvc":
        raise UnsupportedSpec(
            f"output {spec.output.storage_uri}: s3:// outputs are not supported yet; "
            "use pvc://claim/path"
        )
    return f"{OUTPUT_MOUNT}/{location.path}".rstrip("/")


def worker_env(
    spec: TrainingJobSpec,
    *,
    name: str,
    namespace: str,
    attempt: int,
    python: str,
) -> list[dict[str, Any]]:
    """Gantry's variables first, then the user's (the API model rejects reserved names)."""
    checkpoint = spec.checkpoint.mount_path if spec.checkpoint else "/gantry/checkpoints"
    env: list[dict[str, Any]] = [
        {"name": "GANTRY_JOB_NAME", "value": name},
        {"name": "GANTRY_JOB_NAMESPACE", "value": namespace},
        {"name": "GANTRY_ATTEMPT", "value": str(attempt)},
        {"name": "GANTRY_CHECKPOINT_DIR", "value": checkpoint},
        {"name": "GANTRY_PYTHON", "value": python},
        {"name": "PYTHONUNBUFFERED", "value": "1"},
        *scratch_env(),
    ]
    out = output_dir(spec)
    if out is not None:
        env.append({"name": "GANTRY_OUTPUT_DIR", "value": out})
    for var in spec.env:  # user values are literal: `$(VAR)` is never expanded
        user = var.model_dump(by_alias=True, exclude_none=True)
        if "value" in user:
            user["value"] = literal(user["value"])
        env.append(user)
    return env


def volumes_and_mounts(spec: TrainingJobSpec) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    volumes: list[dict[str, Any]] = [
        {"name": SHM_VOLUME, "emptyDir": {"medium": "Memory"}},
        scratch_volume(),
    ]
    mounts: list[dict[str, Any]] = [{"name": SHM_VOLUME, "mountPath": "/dev/shm"}, scratch_mount()]
    if spec.checkpoint is not None:
        source = {k: v for k, v in (spec.checkpoint.volume.model_extra or {}).items()}
        source.pop("name", None)
        volumes.append({"name": CHECKPOINT_VOLUME, **source})
        mounts.append({"name": CHECKPOINT_VOLUME, "mountPath": spec.checkpoint.mount_path})
    else:
        volumes.append({"name": CHECKPOINT_VOLUME, "emptyDir": {}})
        mounts.append({"name": CHECKPOINT_VOLUME, "mountPath": "/gantry/checkpoints"})
    if spec.output is not None:
        location = parse_storage_uri(spec.output.storage_uri)
        if location.scheme == "pvc":
            volumes.append(
                {"name": OUTPUT_VOLUME, "persistentVolumeClaim": {"claimName": location.name}}
            )
            mounts.append({"name": OUTPUT_VOLUME, "mountPath": OUTPUT_MOUNT})
    volumes.extend(v.model_dump(by_alias=True, exclude_none=True) for v in spec.volumes)
    mounts.extend(m.model_dump(by_alias=True, exclude_none=True) for m in spec.volume_mounts)
    return volumes, mounts


def worker_resources(spec: TrainingJobSpec, config: OperatorConfig) -> dict[str, Any]:
    if spec.resources is not None:
        requests = dict(spec.resources.requests)
        limits = dict(spec.resources.limits)
    else:
        requests = dict(config.training_resources.requests)
        limits = dict(config.training_resources.limits)
    if spec.gpus_per_worker > 0:
        limits["nvidia.com/gpu"] = spec.gpus_per_worker
    return resource_requirements(requests, limits)


def labels_for(name: str, attempt: int) -> dict[str, str]:
    return {naming.LABEL_JOB: name, naming.LABEL_ATTEMPT: str(attempt)}


def worker_job(
    body: Mapping[str, Any],
    spec: TrainingJobSpec,
    config: OperatorConfig,
    *,
    attempt: int,
) -> dict[str, Any]:
    """The Indexed Job of one attempt (not yet adopted: the caller sets owner and labels)."""
    meta = body.get("metadata") or {}
    name = str(meta["name"])
    namespace = str(meta.get("namespace") or "default")
    port = naming.master_port(str(meta["uid"]), config.master_port_range)
    volumes, mounts = volumes_and_mounts(spec)
    container: dict[str, Any] = {
        "name": CONTAINER,
        "image": spec.image or config.trainer_image,
        "command": ["sh", "-c", WRAPPER, "gantry-worker"],
        "args": [
            SUMMARY_SCRIPT,
            *torchrun_argv(spec, name=name, namespace=namespace, attempt=attempt, port=port),
        ],
        "env": worker_env(
            spec,
            name=name,
            namespace=namespace,
            attempt=attempt,
            python=config.python,
        ),
        "ports": [{"name": "rendezvous", "containerPort": port, "protocol": "TCP"}],
        "volumeMounts": mounts,
        "securityContext": container_security_context(),
        "terminationMessagePath": TERMINATION_LOG,
        "terminationMessagePolicy": "FallbackToLogsOnError",
    }
    resources = worker_resources(spec, config)
    if resources:
        container["resources"] = resources
    pod_spec: dict[str, Any] = {
        "restartPolicy": "Never",
        "subdomain": naming.service_name(name),
        "serviceAccountName": naming.trainer_name(name),
        "securityContext": pod_security_context(config),
        "containers": [container],
        "volumes": volumes,
    }
    if spec.node_selector:
        pod_spec["nodeSelector"] = dict(spec.node_selector)
    if spec.tolerations:
        pod_spec["tolerations"] = [
            t.model_dump(by_alias=True, exclude_none=True) for t in spec.tolerations
        ]
    labels = labels_for(name, attempt)
    job_labels = dict(labels)
    queue = (meta.get("labels") or {}).get(naming.KUEUE_QUEUE_LABEL)
    if queue:
        job_labels[naming.KUEUE_QUEUE_LABEL] = queue
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": naming.job_name(name, attempt), "labels": job_labels},
        "spec": {
            "completionMode": "Indexed",
            "completions": spec.workers,
            "parallelism": spec.workers,
            "backoffLimit": 0,
            "suspend": spec.suspend,
            "template": {"metadata": {"labels": labels}, "spec": pod_spec},
        },
    }


def suspend_patch(current: Mapping[str, Any], desired: Mapping[str, Any]) -> dict[str, Any] | None:
    """The patch that brings an existing Job's `suspend` in line, or None.

    A Job's pod template is immutable, so `suspend` is the only field reconciled after
    creation. A Job queued in Kueue (queue-name label) is unsuspended by Kueue when it is
    admitted, never by us; we only suspend it when the TrainingJob asks.
    """
    want = bool((desired.get("spec") or {}).get("suspend"))
    have = bool((current.get("spec") or {}).get("suspend"))
    if want == have:
        return None
    queued = naming.KUEUE_QUEUE_LABEL in ((current.get("metadata") or {}).get("labels") or {})
    if not want and queued:
        return None
    return {"spec": {"suspend": want}}
