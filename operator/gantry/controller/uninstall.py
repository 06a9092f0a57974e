"""`python -m gantry.controller.uninstall`: remove every Gantry resource before the operator.

The chart runs this as a `pre-delete` hook, while the operator still runs: each
TrainingJob and InferenceService in the watched namespaces is deleted, the operator's
handlers remove their finalizers, and the garbage collector removes the children. So
`helm uninstall` followed by deleting the CRDs never hangs on a finalizer nobody is left
to remove. Should the operator not remove a finalizer within `--timeout` seconds (it is
scaled to zero, say), the finalizers are removed here, as the operator would have.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence

from gantry.api.common import API_VERSION
from gantry.controller.connection import kube_client
from gantry.k8s.client import KubeClient

PLURALS = ("inferenceservices", "trainingjobs")


def remaining(client: KubeClient, namespaces: Sequence[str | None]) -> list[tuple[str, str, str]]:
    """(plural, namespace, name) of every Gantry resource still present."""
    found: list[tuple[str, str, str]] = []
    for namespace in namespaces:
        for plural in PLURALS:
            for item in client.list(API_VERSION, plural, namespace):
                meta = item.get("metadata") or {}
                found.append((plural, str(meta.get("namespace")), str(meta.get("name"))))
    return found


def uninstall(
    client: KubeClient, namespaces: Sequence[str | None], timeout: float, every: float = 1.0
) -> int:
    """Delete, wait for the operator to finish them, then clear what is left; exit code."""
    for plural, namespace, name in remaining(client, namespaces):
        client.delete(API_VERSION, plural, name, namespace)
        print(f"deleted {plural}/{name} in {namespace}", flush=True)
    deadline = time.monotonic() + timeout
    while (left := remaining(client, namespaces)) and time.monotonic() < deadline:
        time.sleep(every)
    for plural, namespace, name in left:
        print(f"{plural}/{name} in {namespace}: finalizers removed", flush=True)
        client.patch(API_VERSION, plural, name, namespace, {"metadata": {"finalizers": None}})
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m gantry.controller.uninstall")
    parser.add_argument(
        "--namespaces", default="", help="comma-separated watched namespaces; empty: all"
    )
    parser.add_argument("--timeout", type=float, default=120.0, help="seconds to wait")
    args = parser.parse_args(argv)
    names = [n.strip() for n in str(args.namespaces).split(",") if n.strip()]
    namespaces: list[str | None] = list(names) if names else [None]
    return uninstall(kube_client(), namespaces, args.timeout)


if __name__ == "__main__":
    sys.exit(main())
