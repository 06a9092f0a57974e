"""Kubeconfig files with the certificates embedded, so they work from any directory."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import yaml

from .pki import Pair

CLUSTER = "gantry-dev"


def _b64(path: Path) -> str:
    return base64.b64encode(path.read_bytes()).decode()


def kubeconfig(server: str, ca: Path, client: Pair, user: str = "admin") -> dict[str, Any]:
    """A one-context kubeconfig for `server` authenticating with `client`."""
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {
                "name": CLUSTER,
                "cluster": {"server": server, "certificate-authority-data": _b64(ca)},
            }
        ],
        "users": [
            {
                "name": user,
                "user": {
                    "client-certificate-data": _b64(client.cert),
                    "client-key-data": _b64(client.key),
                },
            }
        ],
        "contexts": [{"name": CLUSTER, "context": {"cluster": CLUSTER, "user": user}}],
        "current-context": CLUSTER,
        "preferences": {},
    }


def write_kubeconfig(path: Path, server: str, ca: Path, client: Pair, user: str = "admin") -> Path:
    """Write a kubeconfig readable only by its owner (it holds a private key)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(yaml.safe_dump(kubeconfig(server, ca, client, user), sort_keys=False))
    tmp.chmod(0o600)
    tmp.replace(path)
    return path
