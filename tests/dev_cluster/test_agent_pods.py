"""The dev node under a real control plane: what users see of pods, Jobs, Deployments,
Services, claims and GPUs (kube-scheduler binds, kube-controller-manager drives the
workloads, the dev kubelet runs real processes)."""

from __future__ import annotations

import os
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client, watch
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from dev_cluster.agent.ips import can_add_addresses
from dev_cluster.cluster import DevCluster
from tests.conftest import wait_for
from tests.dev_cluster.devkit import (
    NODE,
    PY,
    claim_manifest,
    container_pid,
    gone,
    is_ready,
    job_condition,
    phase,
    process_alive,
    python_pod,
    server_pod,
)

pytestmark = pytest.mark.slow


def test_indexed_job_shares_a_provisioned_claim(
    cluster: DevCluster, api: ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    batch = client.BatchV1Api(api)
    core.create_namespaced_persistent_volume_claim(ns, claim_manifest("shared", "ReadWriteMany"))
    code = (
        "import os; i = os.environ['JOB_COMPLETION_INDEX']\n"
        "open(f'/data/{i}', 'w').write(os.uname().nodename)"
    )
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
    batch.create_namespaced_job(ns, job)

    done = wait_for(
        lambda: job_condition(batch, ns, "idx", "Complete"), 120, "the Indexed Job to complete"
    )
    assert done is not None
    finished = batch.read_namespaced_job_status("idx", ns).status
    assert (finished.succeeded, finished.completed_indexes) == (3, "0-2")
    pods = core.list_namespaced_pod(ns, label_selector="job-name=idx").items
    indexes = sorted(
        p.metadata.annotations["batch.kubernetes.io/job-completion-index"] for p in pods
    )
    assert indexes == ["0", "1", "2"]
    assert {p.spec.node_name for p in pods} == {NODE}

    claim = core.read_namespaced_persistent_volume_claim("shared", ns)
    assert claim.status.phase == "Bound"
    volume = core.read_persistent_volume(claim.spec.volume_name)
    assert volume.spec.storage_class_name == "gantry-local"
    assert volume.spec.claim_ref.name == "shared" and volume.spec.claim_ref.namespace == ns
    data = Path(volume.spec.host_path.path)
    assert data == cluster.state_dir / "pvc" / ns / "shared"
    # each index wrote its own file; the pod's hostname is <job>-<index>
    assert {p.name: p.read_text() for p in data.iterdir()} == {
        "0": "idx-0",
        "1": "idx-1",
        "2": "idx-2",
    }

    batch.delete_namespaced_job("idx", ns, propagation_policy="Foreground")
    wait_for(lambda: not core.list_namespaced_pod(ns).items, 120, "the Job's pods to go")
    core.delete_namespaced_persistent_volume_claim("shared", ns)

    def volume_gone() -> bool:
        try:
            core.read_persistent_volume(volume.metadata.name)
        except ApiException as err:
            return err.status == 404
        return False

    wait_for(volume_gone, 120, "the released volume to be deleted")
    wait_for(lambda: not data.exists(), 30, "the volume's directory to be removed")


def test_failed_pods_count_towards_a_jobs_backoff_limit(api: ApiClient, ns: str) -> None:
    batch = client.BatchV1Api(api)
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "flaky"},
        "spec": {"backoffLimit": 1, "template": {"spec": {"restartPolicy": "Never", "containers": [
            {"name": "w", "image": PY, "command": ["python", "-c", "raise SystemExit(3)"]}]}}},
    }  # fmt: skip
    batch.create_namespaced_job(ns, job)
    failed = wait_for(lambda: job_condition(batch, ns, "flaky", "Failed"), 120, "the Job to fail")
    assert failed.reason == "BackoffLimitExceeded"
    assert batch.read_namespaced_job_status("flaky", ns).status.failed == 2


def test_container_restarts_or_fails_by_restart_policy(core: client.CoreV1Api, ns: str) -> None:
    sleeper = "import time; print('up', flush=True); time.sleep(600)"
    core.create_namespaced_pod(ns, python_pod("always", sleeper, restartPolicy="Always"))
    core.create_namespaced_pod(ns, python_pod("never", sleeper, restartPolicy="Never"))
    for name in ("always", "never"):
        pod = wait_for(lambda n=name: phase(core, ns, n, "Running"), 90, f"{name} running")  # type: ignore[misc]
        wait_for(
            lambda n=name: core.read_namespaced_pod_log(n, ns) == "up\n",  # type: ignore[misc]
            60,
            f"{name}'s output",
        )
        os.kill(container_pid(pod), signal.SIGKILL)

    def restarted() -> Any:
        s = core.read_namespaced_pod("always", ns).status.container_statuses[0]
        return s if s.restart_count == 1 and s.state.running else None

    status = wait_for(restarted, 90, "the container to restart")
    assert status.last_state.terminated.exit_code == 137
    assert core.read_namespaced_pod_log("always", ns, previous=True) == "up\n"
    failed = wait_for(lambda: phase(core, ns, "never", "Failed"), 90, "the Never pod to fail")
    assert failed.status.container_statuses[0].state.terminated.exit_code == 137
    assert failed.status.container_statuses[0].restart_count == 0

    # graceful deletion: the kubelet stops the process, then the pod goes from the API
    pid = container_pid(core.read_namespaced_pod("always", ns))
    core.delete_namespaced_pod("always", ns, grace_period_seconds=5)
    wait_for(lambda: gone(core, ns, "always"), 90, "the deletion to finish")
    assert not process_alive(pid)


def test_termination_message_and_logs(core: client.CoreV1Api, ns: str) -> None:
    code = "print('hello from the pod'); open('/dev/termination-log', 'w').write('all done')"
    core.create_namespaced_pod(ns, python_pod("msg", code, restartPolicy="Never"))
    crash = "import sys; print('boom: bad config', file=sys.stderr); sys.exit(2)"
    core.create_namespaced_pod(ns, python_pod(
        "crash", crash, restartPolicy="Never",
        container={"terminationMessagePolicy": "FallbackToLogsOnError"},
    ))  # fmt: skip
    done = wait_for(lambda: phase(core, ns, "msg", "Succeeded"), 90, "msg to finish")
    terminated = done.status.container_statuses[0].state.terminated
    assert (terminated.exit_code, terminated.reason, terminated.message) == (
        0,
        "Completed",
        "all done",
    )
    assert core.read_namespaced_pod_log("msg", ns) == "hello from the pod\n"
    crashed = wait_for(lambda: phase(core, ns, "crash", "Failed"), 90, "crash to fail")
    term = crashed.status.container_statuses[0].state.terminated
    assert (term.exit_code, term.reason, term.message) == (2, "Error", "boom: bad config")


def _web_services(core: client.CoreV1Api, ns: str) -> None:
    """Two `web` pods (one never Ready) behind Service `web`; `peer.sub` behind headless `sub`."""
    core.create_namespaced_pod(ns, server_pod("web-ready", labels={"app": "web"}))
    core.create_namespaced_pod(ns, server_pod("web-unready", ready=False, labels={"app": "web"}))
    core.create_namespaced_pod(
        ns, server_pod("peer-pod", labels={"app": "peer"}, hostname="peer", subdomain="sub")
    )
    for name, selector, cluster_ip in (("web", "web", None), ("sub", "peer", "None")):
        core.create_namespaced_service(ns, {
            "apiVersion": "v1", "kind": "Service", "metadata": {"name": name},
            "spec": {"selector": {"app": selector}, "clusterIP": cluster_ip,
                     "ports": [{"name": "http", "port": 80, "targetPort": 18080}]},
        })  # fmt: skip


@pytest.mark.skipif(
    not can_add_addresses(),
    reason="pod IPs fall back to loopback addresses here, which EndpointSlices refuse "
    "(adding pod addresses to lo needs root or CAP_NET_ADMIN; see dev_cluster.agent.ips)",
)
def test_endpoint_slices_list_pods_with_their_readiness(
    api: ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    discovery = client.DiscoveryV1Api(api)
    _web_services(core, ns)

    def endpoints() -> dict[str, tuple[bool, str]] | None:
        slices = discovery.list_namespaced_endpoint_slice(
            ns, label_selector="kubernetes.io/service-name=web"
        ).items
        found = {
            e.target_ref.name: (bool(e.conditions.ready), e.addresses[0])
            for s in slices
            for e in s.endpoints or []
        }
        return found if found.get("web-ready", (False,))[0] and "web-unready" in found else None

    published = wait_for(endpoints, 120, "the EndpointSlice controller to publish both pods")
    pods = {p.metadata.name: p.status.pod_ip for p in core.list_namespaced_pod(ns).items}
    assert published == {
        "web-ready": (True, pods["web-ready"]),
        "web-unready": (False, pods["web-unready"]),
    }


def test_service_names_resolve_to_ready_pods_inside_pods(
    cluster: DevCluster, core: client.CoreV1Api, ns: str
) -> None:
    _web_services(core, ns)

    def web_ready() -> Any:
        pod = core.read_namespaced_pod("web-ready", ns)
        return pod if is_ready(pod) else None

    ready_ip = wait_for(web_ready, 90, "web-ready to be Ready").status.pod_ip
    peer_ip = wait_for(lambda: phase(core, ns, "peer-pod", "Running"), 90, "peer").status.pod_ip
    assert core.read_namespaced_service("web", ns).spec.cluster_ip.startswith("10.96.")

    names = ("web", f"web.{ns}.svc.cluster.local", "peer.sub", f"peer.sub.{ns}.svc")
    code = (
        "import socket, sys, time, urllib.request\n"
        "deadline = time.time() + 90\n"
        "while True:\n"
        "    try:\n"
        f"        out = [socket.gethostbyname(n) for n in {names!r}]\n"
        "        status = urllib.request.urlopen('http://peer.sub:18080/', timeout=5).status\n"
        "        break\n"
        "    except OSError:\n"
        "        assert time.time() < deadline; time.sleep(0.2)\n"
        "print(' '.join(out), status)"
    )
    core.create_namespaced_pod(ns, python_pod("resolver", code, restartPolicy="Never"))
    done = wait_for(lambda: phase(core, ns, "resolver", "Succeeded", "Failed"), 150, "resolver")
    log = core.read_namespaced_pod_log("resolver", ns)
    assert done.status.phase == "Succeeded", log
    assert log.split() == [ready_ip, ready_ip, peer_ip, peer_ip, "200"]
    host_side = (cluster.state_dir / "hosts").read_text()
    assert f"{peer_ip}\tpeer.sub.{ns}.svc.cluster.local" in host_side


def _deployment(replicas: int, version: str) -> dict[str, Any]:
    pod = server_pod("unused", labels={"app": "roll"})
    pod["spec"]["containers"][0]["env"].append({"name": "VERSION", "value": version})
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": {"name": "roll"},
        "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "roll"}},
                 "template": {"metadata": {"labels": {"app": "roll"}}, "spec": pod["spec"]}},
    }  # fmt: skip


def test_deployment_scales_and_rolls_without_losing_readiness(
    api: ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(ns, _deployment(1, "v1"))

    def ready_replicas(n: int) -> Callable[[], Any]:
        def probe() -> Any:
            d = apps.read_namespaced_deployment_status("roll", ns)
            s = d.status
            settled = (
                (s.ready_replicas or 0) == n
                and (s.replicas or 0) == n
                and (s.updated_replicas or 0) == n
                and s.observed_generation == d.metadata.generation
            )
            return d if settled else None

        return probe

    def live_pods() -> list[Any]:
        pods = core.list_namespaced_pod(ns, label_selector="app=roll").items
        return [p for p in pods if not p.metadata.deletion_timestamp]

    wait_for(ready_replicas(1), 120, "1 ready replica")
    apps.patch_namespaced_deployment_scale("roll", ns, {"spec": {"replicas": 3}})
    wait_for(ready_replicas(3), 120, "3 ready replicas")
    assert len({p.status.pod_ip for p in live_pods()}) == 3
    apps.patch_namespaced_deployment_scale("roll", ns, {"spec": {"replicas": 1}})
    wait_for(ready_replicas(1), 120, "back to 1 replica")
    wait_for(
        lambda: len(core.list_namespaced_pod(ns, label_selector="app=roll").items) == 1,
        120,
        "the scaled-down pods to go",
    )

    before = core.list_namespaced_pod(ns, label_selector="app=roll")
    old_names = {p.metadata.name for p in before.items}
    ready = {p.metadata.name for p in before.items if is_ready(p)}
    assert ready == old_names
    template = _deployment(1, "v2")["spec"]["template"]
    apps.patch_namespaced_deployment("roll", ns, {"spec": {"template": template}})
    lowest = len(ready)
    stream = watch.Watch()
    for event in stream.stream(
        core.list_namespaced_pod, ns, label_selector="app=roll",
        resource_version=before.metadata.resource_version, timeout_seconds=150,
    ):  # fmt: skip
        pod = event["object"]
        name = pod.metadata.name
        counts = event["type"] != "DELETED" and not pod.metadata.deletion_timestamp
        (ready.add if counts and is_ready(pod) else ready.discard)(name)
        lowest = min(lowest, len(ready))
        if ready and not ready & old_names and event["type"] == "DELETED" and name in old_names:
            stream.stop()
    assert lowest >= 1
    rolled = wait_for(ready_replicas(1), 120, "the rollout to finish")
    assert rolled.status.updated_replicas == 1
    sets = apps.list_namespaced_replica_set(ns).items
    assert sorted(r.spec.replicas for r in sets) == [0, 1]
    (pod,) = live_pods()
    assert pod.metadata.name not in old_names
    assert {"name": "VERSION", "value": "v2"} in [
        {"name": e.name, "value": e.value} for e in pod.spec.containers[0].env
    ]


def test_gpu_pod_waits_for_a_gpu_node(core: client.CoreV1Api, ns: str, tmp_path: Path) -> None:
    def gpu_pod() -> dict[str, Any]:
        return python_pod(
            "cuda", "print('ok')", restartPolicy="Never",
            container={"resources": {"limits": {"nvidia.com/gpu": "1"}}},
        )  # fmt: skip

    core.create_namespaced_pod(ns, gpu_pod())

    def unschedulable() -> Any:
        conditions = core.read_namespaced_pod("cuda", ns).status.conditions or []
        return next(
            (c for c in conditions if c.type == "PodScheduled" and c.status == "False"), None
        )

    cond = wait_for(unschedulable, 90, "PodScheduled=False")
    assert cond.reason == "Unschedulable"
    assert cond.message.startswith("0/1 nodes are available: 1 Insufficient nvidia.com/gpu.")
    pending = core.read_namespaced_pod("cuda", ns)
    assert pending.status.phase == "Pending" and pending.spec.node_name is None

    with DevCluster(tmp_path / "gpu", gpus=1) as gpu_cluster:
        gpu_api = gpu_cluster.api_client()
        try:
            gpu_core = client.CoreV1Api(gpu_api)
            node = gpu_core.read_node(NODE)
            assert node.status.allocatable["nvidia.com/gpu"] == "1"
            assert node.metadata.labels["nvidia.com/gpu.present"] == "true"
            gpu_core.create_namespaced_pod("default", gpu_pod())
            done = wait_for(
                lambda: phase(gpu_core, "default", "cuda", "Succeeded", "Failed"),
                120,
                "the GPU pod to run",
            )
            assert done.status.phase == "Succeeded"
            assert done.spec.node_name == NODE
            assert gpu_core.read_namespaced_pod_log("cuda", "default") == "ok\n"
        finally:
            gpu_api.close()


def test_a_pods_token_authenticates_as_its_service_account(
    api: ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    """The kubelet mounts a TokenRequest token: RBAC answers for the ServiceAccount."""
    code = (
        "import os, ssl, urllib.error, urllib.request\n"
        "d = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "token, ns = open(f'{d}/token').read(), open(f'{d}/namespace').read()\n"
        "ctx = ssl.create_default_context(cafile=f'{d}/ca.crt')\n"
        "host, port = os.environ['KUBERNETES_SERVICE_HOST'], os.environ['KUBERNETES_SERVICE_PORT']\n"
        "url = f'https://{host}:{port}/api/v1/namespaces/{ns}/pods'\n"
        "request = urllib.request.Request(url, headers={'Authorization': f'Bearer {token}'})\n"
        "try:\n"
        "    print(urllib.request.urlopen(request, context=ctx).status)\n"
        "except urllib.error.HTTPError as err:\n"
        "    print(err.code, err.read().decode())\n"
    )

    def call_api(name: str) -> str:
        core.create_namespaced_pod(ns, python_pod(name, code, restartPolicy="Never"))
        done = wait_for(
            lambda: phase(core, ns, name, "Succeeded", "Failed"), 90, f"{name} to finish"
        )
        log = core.read_namespaced_pod_log(name, ns)
        assert done.status.phase == "Succeeded", log
        return log

    denied = call_api("before")
    assert denied.startswith("403 "), denied
    assert (
        f'User \\"system:serviceaccount:{ns}:default\\" cannot list resource \\"pods\\"' in denied
    )

    client.RbacAuthorizationV1Api(api).create_namespaced_role_binding(ns, {
        "apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
        "metadata": {"name": "default-view"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole", "name": "view"},
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": ns}],
    })  # fmt: skip
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{ns}:default",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{ns}"],
            resource_attributes=client.V1ResourceAttributes(
                namespace=ns, verb="list", resource="pods"
            ),
        )
    )
    authorization = client.AuthorizationV1Api(api)
    wait_for(
        lambda: authorization.create_subject_access_review(review).status.allowed,
        60,
        "RBAC to grant view",
    )
    assert call_api("after").strip() == "200"


def test_node_lease_is_renewed_and_the_node_stays_ready(api: ApiClient) -> None:
    coordination = client.CoordinationV1Api(api)
    first = coordination.read_namespaced_lease(NODE, "kube-node-lease")
    assert first.spec.holder_identity == NODE

    def renewed() -> Any:
        lease = coordination.read_namespaced_lease(NODE, "kube-node-lease")
        return lease if lease.spec.renew_time > first.spec.renew_time else None

    wait_for(renewed, 60, "the node's Lease to be renewed")
    node = client.CoreV1Api(api).read_node(NODE)
    assert {c.type: c.status for c in node.status.conditions}["Ready"] == "True"
    assert not [t for t in node.spec.taints or [] if t.key.startswith("node.kubernetes.io/")]


UNPULLABLE = "registry.invalid/trainer:1"


def _pod_events(core: client.CoreV1Api, ns: str, pod: str) -> list[tuple[str, str, str]]:
    events = core.list_namespaced_event(ns, field_selector=f"involvedObject.name={pod}").items
    return [(e.type, e.reason, e.message) for e in events]


def test_an_image_whose_registry_cannot_exist_fails_its_pull_like_a_kubelets(
    core: client.CoreV1Api, ns: str, tmp_path: Path
) -> None:
    """`registry.invalid` never resolves: ErrImagePull, then ImagePullBackOff, Events as
    a kubelet sends them, and no container of the pod ever starts."""
    marker = tmp_path / "started"
    touch = f"open({str(marker)!r}, 'w').close()"
    created = core.create_namespaced_pod(
        ns, python_pod("pull", touch, restartPolicy="Never", container={"image": UNPULLABLE})
    )
    init = python_pod("init-pull", touch, restartPolicy="Never")
    init["spec"]["initContainers"] = [
        {"name": "fetch", "image": UNPULLABLE, "command": ["python", "-c", touch]}
    ]
    core.create_namespaced_pod(ns, init)

    seen: list[tuple[str, str | None, str | None]] = []  # (phase, waiting reason, message)
    started: list[Any] = []
    stream = watch.Watch()
    for event in stream.stream(
        core.list_namespaced_pod, ns, field_selector="metadata.name=pull",
        resource_version=created.metadata.resource_version, timeout_seconds=120,
    ):  # fmt: skip
        pod = event["object"]
        for status in pod.status.container_statuses or []:
            waiting = status.state.waiting
            seen.append((pod.status.phase, waiting and waiting.reason, waiting and waiting.message))
            if status.state.running or status.state.terminated or status.container_id:
                started.append(status)
        if any(reason == "ImagePullBackOff" for _, reason, _ in seen):
            stream.stop()
    reasons = [reason for _, reason, _ in seen]
    assert "ImagePullBackOff" in reasons, seen
    assert "ErrImagePull" in reasons[: reasons.index("ImagePullBackOff")], seen
    messages = dict((reason, message) for _, reason, message in seen)
    assert messages["ErrImagePull"] is not None
    assert f'failed to pull and unpack image "{UNPULLABLE}"' in messages["ErrImagePull"]
    assert "lookup registry.invalid: no such host" in messages["ErrImagePull"]
    assert messages["ImagePullBackOff"] == f'Back-off pulling image "{UNPULLABLE}"'
    assert {phase for phase, _, _ in seen} == {"Pending"}, seen
    assert not started, started

    wanted = {
        ("Normal", "Pulling", f'Pulling image "{UNPULLABLE}"'),
        ("Warning", "Failed", "Error: ErrImagePull"),
        ("Normal", "BackOff", f'Back-off pulling image "{UNPULLABLE}"'),
        ("Warning", "Failed", "Error: ImagePullBackOff"),
    }

    def pull_events() -> list[tuple[str, str, str]] | None:
        events = _pod_events(core, ns, "pull")
        return events if wanted <= set(events) else None

    events = wait_for(
        pull_events,
        60,
        "the kubelet's pull Events",
        on_timeout=lambda: repr(_pod_events(core, ns, "pull")),
    )
    assert any(
        (kind, reason) == ("Warning", "Failed")
        and message.startswith(f'Failed to pull image "{UNPULLABLE}": ')
        for kind, reason, message in events
    ), events

    def init_stuck() -> Any:
        pod = core.read_namespaced_pod("init-pull", ns)
        (fetch,) = pod.status.init_container_statuses or [None]
        waiting = fetch and fetch.state.waiting
        return pod if waiting and waiting.reason in ("ErrImagePull", "ImagePullBackOff") else None

    stuck = wait_for(init_stuck, 60, "the init container's pull to fail")
    assert stuck.status.phase == "Pending"
    assert stuck.status.container_statuses[0].state.waiting.reason == "PodInitializing"
    assert not marker.exists(), "a container ran"

    # a pod stuck pulling is deleted as any other
    for name in ("pull", "init-pull"):
        core.delete_namespaced_pod(name, ns, grace_period_seconds=5)
    wait_for(lambda: gone(core, ns, "pull") and gone(core, ns, "init-pull"), 60, "deletion")
    assert not marker.exists(), "a container ran"
