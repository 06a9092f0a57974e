"""The node agent against the emulated API: pods, jobs, deployments, services (real processes)."""

from __future__ import annotations

import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client, watch

from dev_cluster.cluster import DevCluster

pytestmark = pytest.mark.slow
T = TypeVar("T")
NS = "default"
PY = "python:3.12"


def wait_for(probe: Callable[[], T | None], timeout: float = 60, what: str = "condition") -> T:
    """Poll until probe() returns something truthy; fail with `what` after the deadline."""
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    with DevCluster(tmp_path_factory.mktemp("dev"), backoff_base=0.2) as c:
        yield c


@pytest.fixture(scope="module")
def core(cluster: DevCluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api_client())


def pod_manifest(name: str, code: str, **spec: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "main", "image": PY, "command": ["python", "-c", code]}
    container.update(spec.pop("container", {}))
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": spec.pop("labels", {"test": name})},
        "spec": {"containers": [container], **spec},
    }


def phase(core: client.CoreV1Api, name: str, *wanted: str) -> Any:
    pod = core.read_namespaced_pod(name, NS)
    return pod if pod.status.phase in wanted else None


def test_indexed_job_runs_each_index_once_on_a_shared_claim(
    cluster: DevCluster, core: client.CoreV1Api
) -> None:
    batch = client.BatchV1Api(cluster.api_client())
    core.create_namespaced_persistent_volume_claim(NS, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "shared"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip
    code = "import os; i = os.environ['JOB_COMPLETION_INDEX']; open(f'/data/{i}', 'w').write(os.uname().nodename)"
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "idx"},
        "spec": {
            "completions": 3, "parallelism": 3, "completionMode": "Indexed",
            "template": {"spec": {
                "restartPolicy": "Never",
                "containers": [{"name": "w", "image": PY, "command": ["python", "-c", code],
                                "volumeMounts": [{"name": "d", "mountPath": "/data"}]}],
                "volumes": [{"name": "d", "persistentVolumeClaim": {"claimName": "shared"}}],
            }},
        },
    }  # fmt: skip
    batch.create_namespaced_job(NS, job)

    def complete() -> Any:
        j = batch.read_namespaced_job_status("idx", NS)
        return (
            j
            if any(c.type == "Complete" and c.status == "True" for c in j.status.conditions or [])
            else None
        )

    done = wait_for(complete, what="the Indexed Job to complete")
    assert done.status.succeeded == 3 and done.status.completed_indexes == "0-2"
    claim = core.read_namespaced_persistent_volume_claim("shared", NS)
    assert claim.status.phase == "Bound"
    data = cluster.state_dir / "pvc" / NS / "shared"
    assert {p.name: p.read_text() for p in data.iterdir()} == {
        "0": "idx-0",
        "1": "idx-1",
        "2": "idx-2",
    }


def test_failing_job_stops_at_backoff_limit(cluster: DevCluster) -> None:
    batch = client.BatchV1Api(cluster.api_client())
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "flaky"},
        "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "w", "image": PY, "command": ["python", "-c", "raise SystemExit(3)"]}]}}},
    }  # fmt: skip
    batch.create_namespaced_job(NS, job)

    def failed() -> Any:
        j = batch.read_namespaced_job_status("flaky", NS)
        return next(
            (c for c in j.status.conditions or [] if c.type == "Failed" and c.status == "True"),
            None,
        )

    cond = wait_for(failed, what="the Job to fail")
    assert cond.reason == "BackoffLimitExceeded"
    assert batch.read_namespaced_job_status("flaky", NS).status.failed == 2


def test_container_restarts_or_fails_by_restart_policy(core: client.CoreV1Api) -> None:
    sleeper = "import time; print('up', flush=True); time.sleep(600)"
    core.create_namespaced_pod(NS, pod_manifest("always", sleeper, restartPolicy="Always"))
    core.create_namespaced_pod(NS, pod_manifest("never", sleeper, restartPolicy="Never"))
    for name in ("always", "never"):
        pod = wait_for(lambda n=name: phase(core, n, "Running"), what=f"{name} running")  # type: ignore[misc]
        pid = int(pod.status.container_statuses[0].container_id.removeprefix("dev://"))
        wait_for(lambda n=name: core.read_namespaced_pod_log(n, NS) == "up\n", what="output")  # type: ignore[misc]
        os.kill(pid, signal.SIGKILL)

    def restarted() -> Any:
        s = core.read_namespaced_pod("always", NS).status.container_statuses[0]
        return s if s.restart_count == 1 and s.state.running else None

    status = wait_for(restarted, what="the container to restart")
    assert status.last_state.terminated.exit_code == 137
    assert core.read_namespaced_pod_log("always", NS, previous=True) == "up\n"
    failed = wait_for(lambda: phase(core, "never", "Failed"), what="the Never pod to fail")
    assert failed.status.container_statuses[0].state.terminated.exit_code == 137
    # graceful deletion: the kubelet stops the process and removes the pod
    pid = int(core.read_namespaced_pod("always", NS).status.container_statuses[0].container_id[6:])
    core.delete_namespaced_pod("always", NS, grace_period_seconds=5)
    wait_for(
        lambda: "always" not in {p.metadata.name for p in core.list_namespaced_pod(NS).items},
        what="deletion",
    )
    assert not Path(f"/proc/{pid}").exists()


def test_termination_message_and_logs(core: client.CoreV1Api) -> None:
    code = "print('hello from the pod'); open('/dev/termination-log', 'w').write('all done')"
    core.create_namespaced_pod(NS, pod_manifest("msg", code, restartPolicy="Never"))
    crash = "import sys; print('boom: bad config', file=sys.stderr); sys.exit(2)"
    core.create_namespaced_pod(NS, pod_manifest(
        "crash", crash, restartPolicy="Never", container={"terminationMessagePolicy": "FallbackToLogsOnError"}))  # fmt: skip
    done = wait_for(lambda: phase(core, "msg", "Succeeded"), what="msg to finish")
    assert done.status.container_statuses[0].state.terminated.message == "all done"
    assert core.read_namespaced_pod_log("msg", NS) == "hello from the pod\n"
    crashed = wait_for(lambda: phase(core, "crash", "Failed"), what="crash to fail")
    term = crashed.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason, term.message) == (2, "Error", "boom: bad config")


def test_two_pods_share_a_claim(core: client.CoreV1Api) -> None:
    core.create_namespaced_persistent_volume_claim(NS, {
        "apiVersion": "v1", "kind": "PersistentVolumeClaim", "metadata": {"name": "pair"},
        "spec": {"accessModes": ["ReadWriteMany"], "resources": {"requests": {"storage": "1Gi"}}},
    })  # fmt: skip
    code = (
        "import os, sys, time; me, other = sys.argv[1:]; open(f'/shared/{me}', 'w').write(me)\n"
        "deadline = time.time() + 60\n"
        "while not os.path.exists(f'/shared/{other}'):\n"
        "    assert time.time() < deadline; time.sleep(0.1)\n"
        "print(open(f'/shared/{other}').read())"
    )
    for me, other in (("a", "b"), ("b", "a")):
        core.create_namespaced_pod(NS, pod_manifest(
            f"pvc-{me}", code, restartPolicy="Never",
            container={"args": [me, other], "volumeMounts": [{"name": "v", "mountPath": "/shared"}]},
            volumes=[{"name": "v", "persistentVolumeClaim": {"claimName": "pair"}}],
        ))  # fmt: skip
    for me, other in (("a", "b"), ("b", "a")):
        wait_for(lambda m=me: phase(core, f"pvc-{m}", "Succeeded", "Failed"), what=f"pvc-{me}")  # type: ignore[misc]
        assert core.read_namespaced_pod(f"pvc-{me}", NS).status.phase == "Succeeded"
        assert core.read_namespaced_pod_log(f"pvc-{me}", NS).strip() == other


def server_pod(name: str, ready: bool = True, **spec: Any) -> dict[str, Any]:
    probe = {"httpGet": {"path": "/", "port": 18080}} if ready else {"exec": {"command": ["false"]}}
    manifest = pod_manifest(name, "", container={
        "command": ["python", "-m", "http.server", "18080", "--bind", "$(POD_IP)"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "http", "containerPort": 18080}],
        "readinessProbe": {**probe, "periodSeconds": 1},
    }, **spec)  # fmt: skip
    return manifest


def test_services_endpoints_and_dns(cluster: DevCluster, core: client.CoreV1Api) -> None:
    discovery = client.DiscoveryV1Api(cluster.api_client())
    core.create_namespaced_pod(NS, server_pod("web-ready", labels={"app": "web"}))
    core.create_namespaced_pod(NS, server_pod("web-unready", ready=False, labels={"app": "web"}))
    core.create_namespaced_pod(
        NS, server_pod("peer-pod", labels={"app": "peer"}, hostname="peer", subdomain="sub")
    )
    for name, port_name in (("web", "http"), ("sub", None)):
        core.create_namespaced_service(NS, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": "web" if name == "web" else "peer"},
                     "clusterIP": None if name == "web" else "None",
                     "ports": [{"port": 80, "targetPort": port_name or 18080, **({"name": port_name} if port_name else {})}]},
        })  # fmt: skip

    def slice_ready() -> Any:
        slices = discovery.list_namespaced_endpoint_slice(
            NS, label_selector="kubernetes.io/service-name=web"
        ).items
        eps = slices[0].endpoints or [] if slices else []
        return (
            {e.target_ref.name: e.conditions.ready for e in eps}
            if len(eps) == 2 and any(e.conditions.ready for e in eps)
            else None
        )

    assert wait_for(slice_ready, what="the EndpointSlice") == {
        "web-ready": True,
        "web-unready": False,
    }
    ready_ip = core.read_namespaced_pod("web-ready", NS).status.pod_ip
    peer_ip = wait_for(lambda: phase(core, "peer-pod", "Running"), what="peer").status.pod_ip
    svc = core.read_namespaced_service("web", NS)
    assert svc.spec.cluster_ip.startswith("10.")
    code = (
        "import socket, time, urllib.request\n"
        "deadline = time.time() + 60\n"
        "while True:\n"
        "    try:\n"
        "        out = [socket.gethostbyname(n) for n in ('web', 'web.default.svc.cluster.local', 'peer.sub', 'peer.sub.default.svc')]\n"
        "        body = urllib.request.urlopen('http://peer.sub:18080/', timeout=5).status\n"
        "        break\n"
        "    except OSError:\n"
        "        assert time.time() < deadline; time.sleep(0.2)\n"
        "print(' '.join(out), body)"
    )
    core.create_namespaced_pod(NS, pod_manifest("resolver", code, restartPolicy="Never"))
    wait_for(lambda: phase(core, "resolver", "Succeeded", "Failed"), what="resolver")
    assert core.read_namespaced_pod_log("resolver", NS).split() == [
        ready_ip,
        ready_ip,
        peer_ip,
        peer_ip,
        "200",
    ]
    host_side = (cluster.state_dir / "hosts").read_text()
    assert f"{peer_ip}\tpeer.sub.default.svc.cluster.local" in host_side


def _deployment(replicas: int, version: str) -> dict[str, Any]:
    pod = server_pod("unused", labels={"app": "roll"})
    pod["spec"]["containers"][0]["env"].append({"name": "VERSION", "value": version})
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "roll"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "roll"}},
                 "template": {"metadata": {"labels": {"app": "roll"}}, "spec": pod["spec"]}},
    }  # fmt: skip


def test_deployment_scales_and_rolls_without_losing_readiness(
    cluster: DevCluster, core: client.CoreV1Api
) -> None:
    apps = client.AppsV1Api(cluster.api_client())
    apps.create_namespaced_deployment(NS, _deployment(1, "v1"))

    def ready_replicas(n: int) -> Callable[[], Any]:
        def probe() -> Any:
            d = apps.read_namespaced_deployment_status("roll", NS)
            s = d.status
            ok = (
                (s.ready_replicas or 0) == n
                and (s.replicas or 0) == n
                and s.observed_generation == d.metadata.generation
            )
            return d if ok else None

        return probe

    wait_for(ready_replicas(1), what="1 ready replica")
    apps.patch_namespaced_deployment_scale("roll", NS, {"spec": {"replicas": 3}})
    wait_for(ready_replicas(3), what="3 ready replicas")
    apps.patch_namespaced_deployment_scale("roll", NS, {"spec": {"replicas": 1}})
    wait_for(ready_replicas(1), what="back to 1 replica")
    wait_for(
        lambda: len(core.list_namespaced_pod(NS, label_selector="app=roll").items) == 1,
        what="pods gone",
    )

    before = core.list_namespaced_pod(NS, label_selector="app=roll")
    old_names = {p.metadata.name for p in before.items}
    apps.patch_namespaced_deployment("roll", NS, {"spec": {"template": {"spec": {"containers": [
        {**_deployment(1, "v2")["spec"]["template"]["spec"]["containers"][0]}]}}}})  # fmt: skip
    ready = {
        p.metadata.name
        for p in before.items
        if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
    }
    lowest = len(ready)
    w = watch.Watch()
    for event in w.stream(core.list_namespaced_pod, NS, label_selector="app=roll",
                          resource_version=before.metadata.resource_version, timeout_seconds=90):  # fmt: skip
        pod = event["object"]
        name = pod.metadata.name
        is_ready = (
            event["type"] != "DELETED"
            and not pod.metadata.deletion_timestamp
            and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
        )
        (ready.add if is_ready else ready.discard)(name)
        lowest = min(lowest, len(ready))
        if ready and not ready & old_names and event["type"] == "DELETED" and name in old_names:
            w.stop()
    assert lowest >= 1
    d = wait_for(ready_replicas(1), what="the rollout to finish")
    assert d.status.updated_replicas == 1
    rs = client.AppsV1Api(cluster.api_client()).list_namespaced_replica_set(NS).items
    assert sorted(r.spec.replicas for r in rs if r.metadata.owner_references[0].name == "roll") == [
        0,
        1,
    ]


def test_gpu_pod_waits_for_a_gpu_node(core: client.CoreV1Api, tmp_path: Path) -> None:
    gpu_pod = pod_manifest("cuda", "print('ok')", restartPolicy="Never",
                           container={"resources": {"limits": {"nvidia.com/gpu": "1"}}})  # fmt: skip
    core.create_namespaced_pod(NS, gpu_pod)

    def unschedulable() -> Any:
        conds = core.read_namespaced_pod("cuda", NS).status.conditions or []
        return next((c for c in conds if c.type == "PodScheduled" and c.status == "False"), None)

    cond = wait_for(unschedulable, what="PodScheduled=False")
    assert cond.reason == "Unschedulable"
    assert cond.message == "0/1 nodes are available: 1 Insufficient nvidia.com/gpu."
    assert core.read_namespaced_pod("cuda", NS).status.phase == "Pending"
    with DevCluster(tmp_path / "gpu", gpus=1) as gpu_cluster:
        gpu_core = client.CoreV1Api(gpu_cluster.api_client())
        node = gpu_core.read_node("dev-node")
        assert node.status.allocatable["nvidia.com/gpu"] == "1"
        gpu_core.create_namespaced_pod(NS, gpu_pod)
        done = wait_for(lambda: phase(gpu_core, "cuda", "Succeeded"), what="the GPU pod to run")
        assert done.spec.node_name == "dev-node"


if __name__ == "__main__":
    sys.exit(pytest.main([__file__, "-x", "-q"]))
