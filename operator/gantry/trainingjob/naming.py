"""Names, labels and the master port of a TrainingJob's children (pure).

One Job per attempt, named `<job>-a<attempt>`: attempts stay distinguishable in
`kubectl get jobs`, a failed attempt's Job can be deleted (killing its pods) while the
next one is prepared, and no pod of an old attempt can be mistaken for a new one because
pods carry the attempt label. The Indexed Job gives each worker the hostname
`<job>-a<attempt>-<index>`, which resolves through the headless Service `<job>-workers`.
"""

from __future__ import annotations

import hashlib

from gantry.api.common import API_VERSION

API = API_VERSION
KIND = "TrainingJob"
PLURAL = "trainingjobs"

LABEL_JOB = "gantry.dev/trainingjob"
LABEL_ATTEMPT = "gantry.dev/attempt"
LABEL_INDEX = "batch.kubernetes.io/job-completion-index"
ANNOTATION_WORKER_LOST = "gantry.dev/worker-lost"
KUEUE_QUEUE_LABEL = "kueue.x-k8s.io/queue-name"

# `<name>-a<attempt>-<index>` must stay a DNS label (63): attempts ≤ 101, index ≤ 1023.
MAX_NAME_LENGTH = 52


def job_name(name: str, attempt: int) -> str:
    return f"{name}-a{attempt}"


def service_name(name: str) -> str:
    return f"{name}-workers"


def trainer_name(name: str) -> str:
    """ServiceAccount, Role and RoleBinding that let rank 0 report progress."""
    return f"{name}-trainer"


def master_address(name: str, attempt: int, namespace: str) -> str:
    """DNS name of worker 0 of an attempt: hostname.subdomain.namespace.svc."""
    return f"{job_name(name, attempt)}-0.{service_name(name)}.{namespace}.svc"


def master_port(uid: str, port_range: tuple[int, int]) -> int:
    """A port derived from the job's uid, stable across attempts and restarts.

    torch's TCPStore listens on every address, so two jobs sharing one network (the dev
    cluster) must not share a port; hashing the uid spreads them over the range.
    """
    low, high = port_range
    if not 0 < low <= high < 65536:
        raise ValueError(f"invalid master port range {port_range}")
    digest = int.from_bytes(hashlib.sha256(uid.encode()).digest()[:8], "big")
    return low + digest % (high - low + 1)


def check_name(name: str) -> None:
    if len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"TrainingJob names are limited to {MAX_NAME_LENGTH} characters so that worker "
            f"hostnames (<name>-a<attempt>-<index>) stay valid DNS labels; '{name}' has "
            f"{len(name)}"
        )
