"""The security contexts of every pod Gantry creates: non-root, no privileges, seccomp.

One definition for training workers, optimize Jobs and Triton pods, so hardening changes
in one place (and the chart's operator pod follows the same rules).
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
    """No privilege escalation and no Linux capabilities."""
    return {
        "allowPrivilegeEscalation": False,
        "capabilities": {"drop": ["ALL"]},
        "runAsNonRoot": True,
    }
