"""The body of each reconciler's kopf daemon: one object's loop, wired to caches and metrics."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from gantry.config import OperatorConfig
from gantry.controller.connection import kube_client
from gantry.controller.metrics import observe_reconcile
from gantry.controller.reconcile_loop import LatestBody, OwnerKey, Stopped, run_loop
from gantry.controller.settings import operator_config
from gantry.controller.watch_cache import ClusterView
from gantry.k8s.client import KubeClient

ReconcilePass = Callable[
    [KubeClient, ClusterView, Mapping[str, Any], OperatorConfig, LatestBody],
    Awaitable[float | None],
]


async def reconcile_object(
    kind: str,
    name: str | None,
    namespace: str | None,
    body: Mapping[str, Any],
    stopped: Stopped,
    indexes: Mapping[str, Any],
    reconcile_pass: ReconcilePass,
) -> None:
    """Run `reconcile_pass` for one object on every change until it is deleted.

    `body` is kopf's live view of the object (kept current by the watch) and `indexes`
    the daemon's kwargs holding the watch caches.
    """
    if not name or not namespace:
        return
    view, config, latest = ClusterView(indexes), operator_config(), LatestBody()

    async def one_pass() -> float | None:
        with observe_reconcile(kind):
            return await reconcile_pass(kube_client(), view, body, config, latest)

    await run_loop(
        OwnerKey(kind, namespace, name), stopped, one_pass, resync=lambda: config.resync_seconds
    )
