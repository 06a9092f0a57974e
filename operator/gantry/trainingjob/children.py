"""The per-job objects beside the worker Job: rendezvous Service and progress RBAC (pure)."""

from __future__ import annotations

from typing import Any

from gantry.trainingjob import naming


def workers_service(name: str, port: int) -> dict[str, Any]:
    """Headless Service giving worker pods DNS names before they are Ready (rendezvous)."""
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": naming.service_name(name)},
        "spec": {
            "clusterIP": "None",
            "publishNotReadyAddresses": True,
            "selector": {naming.LABEL_JOB: name},
            "ports": [{"name": "rendezvous", "port": port, "targetPort": port}],
        },
    }


def trainer_rbac(name: str) -> list[dict[str, Any]]:
    """ServiceAccount + Role + RoleBinding: rank 0 may patch this job's status only."""
    account = naming.trainer_name(name)
    return [
        {"apiVersion": "v1", "kind": "ServiceAccount", "metadata": {"name": account}},
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": {"name": account},
            "rules": [
                {
                    "apiGroups": ["gantry.dev"],
                    "resources": ["trainingjobs/status"],
                    "resourceNames": [name],
                    "verbs": ["get", "patch"],
                },
                {
                    "apiGroups": ["gantry.dev"],
                    "resources": ["trainingjobs"],
                    "resourceNames": [name],
                    "verbs": ["get"],
                },
            ],
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": {"name": account},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": account,
            },
            "subjects": [{"kind": "ServiceAccount", "name": account}],
        },
    ]
