"""Helpers for the dev-node tests: pod manifests and the questions tests ask of the API.

Every test talks to kube-apiserver; pods are bound by kube-scheduler and Jobs,
Deployments and EndpointSlices are driven by kube-controller-manager. Only the node (the
dev kubelet) is Gantry's, and that is what these tests exercise.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kubernetes import client

PY = "python:3.12"
NODE = "dev-node"


def python_container(code: str, name: str = "main", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": PY, "command": ["python", "-c", code], **extra}


def pod_manifest(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    labels = spec.pop("labels", {"test": name})
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": labels},
        "spec": {"containers": list(containers), **spec},
    }


def python_pod(name: str, code: str, **spec: Any) -> dict[str, Any]:
    """A one-container pod running `python -c code`; `container=` adds container fields."""
    return pod_manifest(name, python_container(code, **spec.pop("container", {})), **spec)


def server_pod(name: str, ready: bool = True, **spec: Any) -> dict[str, Any]:
    """`python -m http.server` on the pod's IP; never Ready when `ready` is False."""
    probe = {"httpGet": {"path": "/", "port": 18080}} if ready else {"exec": {"command": ["false"]}}
    container = {
        "name": "main",
        "image": PY,
        "command": ["python", "-m", "http.server", "18080", "--bind", "$(POD_IP)"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "http", "containerPort": 18080}],
        "readinessProbe": {**probe, "periodSeconds": 1},
    }
    return pod_manifest(name, container, **spec)


def phase(core: client.CoreV1Api, ns: str, name: str, *wanted: str) -> Any:
    """The pod when its phase is one of `wanted`, else None (for `wait_for`)."""
    pod = core.read_namespaced_pod(name, ns)
    return pod if pod.status.phase in wanted else None


def is_ready(pod: Any) -> bool:
    return any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])


def gone(core: client.CoreV1Api, ns: str, name: str) -> bool:
    return name not in {p.metadata.name for p in core.list_namespaced_pod(ns).items}


def container_pid(pod: Any, index: int = 0) -> int:
    """The host pid of a running container (the dev node's containerID is `dev://<pid>`)."""
    return int(pod.status.container_statuses[index].container_id.removeprefix("dev://"))


def job_condition(batch: client.BatchV1Api, ns: str, name: str, kind: str) -> Any:
    job = batch.read_namespaced_job_status(name, ns)
    conditions = job.status.conditions or []
    return next((c for c in conditions if c.type == kind and c.status == "True"), None)


def claim_manifest(name: str, mode: str = "ReadWriteOnce") -> dict[str, Any]:
    """A claim of the default StorageClass (the dev cluster's local-path provisioner)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name},
        "spec": {"accessModes": [mode], "resources": {"requests": {"storage": "1Gi"}}},
    }


def process_alive(pid: int) -> bool:
    """Whether `pid` is a live (not zombie) process."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"
