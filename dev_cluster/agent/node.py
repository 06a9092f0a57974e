"""The dev node's Node object (registration and heartbeat)."""

from __future__ import annotations

import os
import platform
import socket
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from .podstatus import now
from .quantity import format_cpu, format_memory

Obj = dict[str, Any]
NODE_NAME = "dev-node"


@dataclass(frozen=True)
class NodeCapacity:
    cpu: Decimal
    memory: Decimal
    gpus: int = 0
    pods: int = 110

    def as_strings(self) -> dict[str, str]:
        return {
            "cpu": format_cpu(self.cpu),
            "memory": format_memory(self.memory),
            "pods": str(self.pods),
            "nvidia.com/gpu": str(self.gpus),
            "ephemeral-storage": "100Gi",
        }

    def as_numbers(self) -> dict[str, Decimal]:
        return {
            "cpu": self.cpu,
            "memory": self.memory,
            "pods": Decimal(self.pods),
            "nvidia.com/gpu": Decimal(self.gpus),
        }


def host_capacity(gpus: int = 0) -> NodeCapacity:
    """The host's CPUs and memory."""
    memory = Decimal(os.sysconf("SC_PAGE_SIZE")) * Decimal(os.sysconf("SC_PHYS_PAGES"))
    return NodeCapacity(cpu=Decimal(os.cpu_count() or 1), memory=memory, gpus=gpus)


def node_labels(name: str, gpus: int) -> dict[str, str]:
    labels = {
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64"
        if platform.machine() in ("x86_64", "AMD64")
        else platform.machine(),
    }
    if gpus:
        labels["nvidia.com/gpu.present"] = "true"
    return labels


def node_object(name: str, capacity: NodeCapacity) -> Obj:
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {"name": name, "labels": node_labels(name, capacity.gpus)},
        "spec": {},
    }


def node_status(
    capacity: NodeCapacity,
    previous: Obj | None = None,
    kubelet_port: int = 0,
    kubelet_version: str = "v0.0.0",
) -> Obj:
    stamp = now()
    prior = {c.get("type"): c for c in ((previous or {}).get("conditions") or [])}

    def cond(kind: str, status: str, reason: str, message: str) -> Obj:
        old = prior.get(kind) or {}
        return {
            "type": kind,
            "status": status,
            "reason": reason,
            "message": message,
            "lastHeartbeatTime": stamp,
            "lastTransitionTime": old.get("lastTransitionTime")
            if old.get("status") == status
            else stamp,
        }

    return {
        "capacity": capacity.as_strings(),
        "allocatable": capacity.as_strings(),
        "conditions": [
            cond(
                "MemoryPressure",
                "False",
                "KubeletHasSufficientMemory",
                "kubelet has sufficient memory available",
            ),
            cond(
                "DiskPressure", "False", "KubeletHasNoDiskPressure", "kubelet has no disk pressure"
            ),
            cond(
                "PIDPressure",
                "False",
                "KubeletHasSufficientPID",
                "kubelet has sufficient PID available",
            ),
            cond("Ready", "True", "KubeletReady", "kubelet is posting ready status"),
        ],
        "addresses": [
            {"type": "InternalIP", "address": "127.0.0.1"},
            {"type": "Hostname", "address": socket.gethostname()},
        ],
        "daemonEndpoints": {"kubeletEndpoint": {"Port": kubelet_port}},
        "nodeInfo": {
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
            "kernelVersion": platform.release(),
            "osImage": "Gantry dev node",
            "containerRuntimeVersion": "gantry-dev://local-processes",
            "kubeletVersion": kubelet_version,
            "kubeProxyVersion": "",
            "operatingSystem": "linux",
            "architecture": node_labels("", 0)["kubernetes.io/arch"],
        },
    }
