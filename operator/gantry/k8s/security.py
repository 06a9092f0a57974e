"""The security contexts of every pod Gantry creates: non-root, no privileges, seccomp.

One definition for training workers, optimize Jobs and Triton pods, so hardening changes
in one place (and the chart's operator pod follows the same rules). Root filesystems are
read-only; each pod gets an emptyDir scratch directory (`TMPDIR`). Not /tmp: where pods
are local processes (the dev cluster), a volume over /tmp would hide a checkout of Gantry
that lives under /tmp.

`literal` is how every user string reaches a container's command, args or env: the
kubelet expands `$(VAR)` there (with the container's environment, Secrets included), and
`$$` is its escape for a literal `$`.
"""

from __future__ import annotations

from typing import Any

from gantry.config import OperatorConfig


def pod_security_context(config: OperatorConfig) -> dict[str, Any]:
    """Non-root with a group that can write the claims (fsGroup)."""
    return {
        "runAsNonRoot": True,
        "runAsUser": config.run_as_user,
        "runAsGroup": config.run_as_user,
        "fsGroup": config.run_as_user,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def container_security_context() -> dict[str, Any]:
    """No privilege escalation, no Linux capabilities, a read-only root filesystem."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": True,
        "runAsNonRoot": True,
    }


SCRATCH_VOLUME = "gantry-tmp"
SCRATCH_DIR = "/run/gantry"


def scratch_volume() -> dict[str, Any]:
    return {"name": SCRATCH_VOLUME, "emptyDir": {}}


def scratch_mount() -> dict[str, Any]:
    return {"name": SCRATCH_VOLUME, "mountPath": SCRATCH_DIR}


def scratch_env() -> list[dict[str, Any]]:
    return [{"name": "TMPDIR", "value": SCRATCH_DIR}]


def literal(value: str) -> str:
    """`value` as the kubelet must receive it to pass it on unchanged (`$` → `$$`)."""
    return value.replace("$", "$$")
