"""The control plane's fault hooks: one component stopped and started again.

`ControlPlane.stop_component` / `start_component` / `restart_component` are what the
fault suite uses to take kube-apiserver away and to restart etcd under a running story;
here they are checked on their own: the API is refused while kube-apiserver is down,
and objects written before a stop or an etcd restart are there afterwards.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Coroutine, Iterator
from pathlib import Path
from typing import Any

import pytest

from dev_cluster.controlplane.threaded import ThreadedControlPlane
from gantry.k8s.client import KubeClient, RetryPolicy
from gantry.k8s.errors import ApiError
from tests.conftest import require_control_plane, wait_for

pytestmark = pytest.mark.slow


def on_loop(cp: ThreadedControlPlane, coro: Coroutine[Any, Any, None]) -> None:
    """Run a coroutine on the control plane's own event loop (its processes live there)."""
    asyncio.run_coroutine_threadsafe(coro, cp._loop).result(180)


@pytest.fixture(scope="module")
def cp(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedControlPlane]:
    """A control plane whose controllers run (kube-controller-manager exits, as it would
    in any cluster, when the API server goes away while it is still building them)."""
    require_control_plane()
    with ThreadedControlPlane(Path(tmp_path_factory.mktemp("cp-faults"))) as running:
        kube = KubeClient.for_kubeconfig(running.kubeconfig)
        wait_for(
            lambda: kube.get("v1", "serviceaccounts", "default", "default"),
            60,
            "the ServiceAccount controller to create default/default",
        )
        kube.close()
        yield running


def configmap(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": name, "namespace": "default"},
        "data": {"k": name},
    }


def test_apiserver_stopped_refuses_then_serves_what_was_written(cp: ThreadedControlPlane) -> None:
    kube = KubeClient.for_kubeconfig(cp.kubeconfig)
    kube.retry = RetryPolicy(connect_timeout=2, read_timeout=5, attempts=1)
    name = f"before-{uuid.uuid4().hex[:6]}"
    kube.create(configmap(name))
    old_pid = cp.control_plane.pids()["kube-apiserver"]
    order = [p.name for p in cp.control_plane.processes]

    on_loop(cp, cp.control_plane.stop_component("kube-apiserver"))
    with pytest.raises(ApiError) as refused:
        kube.version(timeout=2)
    assert refused.value.status == 0  # no answer at all, not an HTTP error

    on_loop(cp, cp.control_plane.start_component("kube-apiserver"))
    assert cp.control_plane.pids()["kube-apiserver"] != old_pid
    assert [p.name for p in cp.control_plane.processes] == order  # same stop order
    got = kube.get("v1", "configmaps", name, "default")
    assert got is not None and got["data"] == {"k": name}
    kube.close()


def test_etcd_restart_keeps_objects_and_the_apiserver_recovers(cp: ThreadedControlPlane) -> None:
    kube = KubeClient.for_kubeconfig(cp.kubeconfig)
    name = f"kept-{uuid.uuid4().hex[:6]}"
    kube.create(configmap(name))
    old_pid = cp.control_plane.pids()["etcd"]

    on_loop(cp, cp.control_plane.restart_component("etcd"))
    assert cp.control_plane.pids()["etcd"] != old_pid

    def written_after() -> bool:
        try:
            kube.create(configmap(f"after-{uuid.uuid4().hex[:6]}"))
        except ApiError:
            return False
        return True

    wait_for(written_after, 60, "a write through kube-apiserver after etcd restarted")
    got = kube.get("v1", "configmaps", name, "default")
    assert got is not None and got["data"] == {"k": name}
    kube.close()


def test_an_unknown_or_running_component_is_refused(cp: ThreadedControlPlane) -> None:
    from dev_cluster.controlplane.launcher import ControlPlaneError

    with pytest.raises(ControlPlaneError, match="no control-plane component"):
        on_loop(cp, cp.control_plane.stop_component("kubelet"))
    with pytest.raises(ControlPlaneError, match="is running"):
        on_loop(cp, cp.control_plane.start_component("kube-scheduler"))


def test_version_asks_a_frozen_apiserver_once(
    cp: ThreadedControlPlane, caplog: pytest.LogCaptureFixture
) -> None:
    """The liveness probe's call: one attempt, no urllib3 retries behind it."""
    import os
    import signal

    kube = KubeClient.for_kubeconfig(cp.kubeconfig)
    assert kube.version()["gitVersion"].startswith("v1.")
    pid = cp.control_plane.pids()["kube-apiserver"]
    caplog.set_level("WARNING", logger="urllib3")
    os.killpg(pid, signal.SIGSTOP)
    try:
        with pytest.raises(ApiError) as frozen:
            kube.version(timeout=1)
    finally:
        os.killpg(pid, signal.SIGCONT)
    assert frozen.value.status == 0
    assert not [r for r in caplog.records if "Retrying" in r.getMessage()], caplog.text
    wait_for(lambda: kube.version().get("gitVersion"), 30, "the thawed API server")
    kube.close()
