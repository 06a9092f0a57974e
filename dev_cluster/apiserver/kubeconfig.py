"""A kubeconfig pointing at the dev cluster's API server (context ``gantry-dev``)."""

from __future__ import annotations

from pathlib import Path

import yaml

CONTEXT = "gantry-dev"


def write_kubeconfig(path: Path, server_url: str, namespace: str = "default") -> Path:
    """Write a kubeconfig usable by kubectl, kopf and the ``kubernetes`` client.

    The server is plain HTTP and enforces no authentication or RBAC, so the user entry
    carries a placeholder token that clients send and the server ignores.
    """
    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": CONTEXT, "cluster": {"server": server_url}}],
        "users": [{"name": CONTEXT, "user": {"token": "gantry-dev"}}],
        "contexts": [
            {
                "name": CONTEXT,
                "context": {"cluster": CONTEXT, "user": CONTEXT, "namespace": namespace},
            }
        ],
        "current-context": CONTEXT,
        "preferences": {},
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(config, sort_keys=False))
    path.chmod(0o600)
    return path
