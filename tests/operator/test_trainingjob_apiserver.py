"""The TrainingJob handler layer against a real control plane, under the chart's RBAC.

`reconcile_once` runs as the operator's own ServiceAccount (`operator_kubeconfig`), so a
permission the chart lacks fails here. The real Job controller creates the worker pods,
the real scheduler binds them and the real garbage collector removes an old attempt's
pods. Only the kubelet is played by the test: it registers a Node (tainted, so that no
other test's pod lands there; the jobs here tolerate it and select it) and writes the
worker pods' status as cluster admin.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gantry.config import OperatorConfig
from gantry.k8s.client import KubeClient
from gantry.trainingjob.handlers import reconcile_once
from tests.conftest import wait_for

if TYPE_CHECKING:
    from dev_cluster.controlplane.threaded import ThreadedControlPlane

API, PLURAL = "gantry.dev/v1alpha1", "trainingjobs"
CONFIG = OperatorConfig()


@pytest.fixture(scope="module")
def admin(control_plane: ThreadedControlPlane, crds: list[dict[str, Any]]) -> Iterator[KubeClient]:
    kube = KubeClient.for_kubeconfig(control_plane.kubeconfig)
    yield kube
    kube.close()


@pytest.fixture(scope="module")
def operator(operator_kubeconfig: Path) -> Iterator[KubeClient]:
    kube = KubeClient.for_kubeconfig(operator_kubeconfig)
    yield kube
    kube.close()


@pytest.fixture(scope="module")
def node(admin: KubeClient) -> Iterator[str]:
    """A Node as a kubelet registers it: Ready, room for the workers; tainted for this module."""
    name = f"tj-node-{uuid.uuid4().hex[:8]}"
    capacity = {"cpu": "32", "memory": "128Gi", "pods": "110"}
    admin.create(
        {
            "apiVersion": "v1",
            "kind": "Node",
            "metadata": {"name": name, "labels": {"kubernetes.io/hostname": name}},
            "spec": {"taints": [{"key": "gantry.dev/test-node", "effect": "NoSchedule"}]},
        }
    )
    now = "2026-01-01T00:00:00Z"
    ready = {
        "type": "Ready",
        "status": "True",
        "reason": "KubeletReady",
        "lastHeartbeatTime": now,
        "lastTransitionTime": now,
    }
    admin.patch(
        "v1",
        "nodes",
        name,
        None,
        {"status": {"capacity": capacity, "allocatable": capacity, "conditions": [ready]}},
        subresource="status",
    )
    yield name
    admin.delete("v1", "nodes", name)


def create_job(admin: KubeClient, namespace: str, name: str, node: str, **spec: Any) -> None:
    body = {
        "command": ["python", "train.py"],
        "workers": 2,
        "backoffLimit": 1,
        "nodeSelector": {"kubernetes.io/hostname": node},
        # Exists tolerates the test taint, and the taints the node lifecycle controller
        # adds once this node's heartbeat is stale (no kubelet renews it).
        "tolerations": [{"operator": "Exists"}],
        **spec,
    }
    admin.create(
        {
            "apiVersion": API,
            "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": namespace},
            "spec": body,
        }
    )


def status_of(admin: KubeClient, namespace: str, name: str) -> dict[str, Any]:
    obj = admin.get(API, PLURAL, name, namespace)
    assert obj is not None
    return dict(obj.get("status") or {})


def worker_pods(admin: KubeClient, namespace: str, job: str, count: int) -> dict[int, str]:
    """Index → name of the pods the Job controller created for `job` (waits for `count`,
    bound to a node by the scheduler)."""

    def probe() -> dict[int, str] | None:
        pods = admin.list(
            "v1", "pods", namespace, label_selector=f"batch.kubernetes.io/job-name={job}"
        )
        live = [p for p in pods if not p["metadata"].get("deletionTimestamp")]
        if len(live) != count or not all(p["spec"].get("nodeName") for p in live):
            return None
        labels = [p["metadata"]["labels"] for p in live]
        assert all(label["gantry.dev/trainingjob"] == job.rsplit("-a", 1)[0] for label in labels)
        return {
            int(p["metadata"]["labels"]["batch.kubernetes.io/job-completion-index"]): p["metadata"][
                "name"
            ]
            for p in live
        }

    return wait_for(probe, 60, f"{count} scheduled worker pods of Job {job}")


def play_kubelet(
    admin: KubeClient, namespace: str, pod: str, phase: str, exit_code: int = 0
) -> None:
    """Write the pod status a kubelet would report for the worker container."""
    state: dict[str, Any] = {"running": {"startedAt": "2026-01-01T00:00:00Z"}}
    if phase in ("Failed", "Succeeded"):
        state = {
            "terminated": {
                "exitCode": exit_code,
                "reason": "Error" if exit_code else "Completed",
                "startedAt": "2026-01-01T00:00:00Z",
                "finishedAt": "2026-01-01T00:00:05Z",
            }
        }
    container = {
        "name": "worker",
        "image": CONFIG.trainer_image,
        "imageID": "",
        "ready": phase == "Running",
        "restartCount": 0,
        "state": state,
    }
    admin.patch(
        "v1",
        "pods",
        pod,
        namespace,
        {"status": {"phase": phase, "containerStatuses": [container]}},
        subresource="status",
    )


def kubelet_stops_deleted_pods(admin: KubeClient, namespace: str, selector: str) -> bool:
    """What the kubelet does for pods being deleted: stop them, report, remove them.

    Returns True once no pod matching `selector` is left.
    """
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    pods = admin.list("v1", "pods", namespace, label_selector=selector)
    for pod in pods:
        if not pod["metadata"].get("deletionTimestamp"):
            continue
        name = pod["metadata"]["name"]
        if pod["status"].get("phase") not in ("Failed", "Succeeded"):
            play_kubelet(admin, namespace, name, "Failed", exit_code=143)
        try:
            client.CoreV1Api(admin.api).delete_namespaced_pod(
                name, namespace, grace_period_seconds=0
            )
        except ApiException as err:
            if err.status != 404:
                raise
    return not pods


def test_first_pass_creates_owned_children_and_status(
    admin: KubeClient, operator: KubeClient, node: str, namespace: str
) -> None:
    create_job(admin, namespace, "first", node)
    reconcile_once(operator, namespace, "first", config=CONFIG)
    status = status_of(admin, namespace, "first")
    assert status["phase"] == "Pending" and status["attempts"] == 1
    job = admin.get("batch/v1", "jobs", "first-a1", namespace)
    assert job is not None and job["spec"]["completionMode"] == "Indexed"
    owner = admin.get(API, PLURAL, "first", namespace)
    assert owner is not None
    for api, plural, name in [
        ("batch/v1", "jobs", "first-a1"),
        ("v1", "services", "first-workers"),
        ("v1", "serviceaccounts", "first-trainer"),
        ("rbac.authorization.k8s.io/v1", "roles", "first-trainer"),
        ("rbac.authorization.k8s.io/v1", "rolebindings", "first-trainer"),
    ]:
        child = admin.get(api, plural, name, namespace)
        assert child is not None, f"{plural}/{name} missing"
        refs = child["metadata"]["ownerReferences"]
        assert refs[0]["uid"] == owner["metadata"]["uid"] and refs[0]["controller"] is True
    events = [
        e["reason"]
        for e in admin.list("v1", "events", namespace)
        if e["involvedObject"].get("name") == "first"
    ]
    assert "Created" in events
    # The real Job controller creates the workers, as the trainer ServiceAccount, and the
    # scheduler binds them; until their containers start they are Pending.
    pods = worker_pods(admin, namespace, "first-a1", 2)
    assert sorted(pods) == [0, 1]
    pod = admin.get("v1", "pods", pods[0], namespace)
    assert pod is not None and pod["spec"]["serviceAccountName"] == "first-trainer"
    assert pod["spec"]["nodeName"] == node
    reconcile_once(operator, namespace, "first", config=CONFIG)
    status = status_of(admin, namespace, "first")
    assert status["phase"] == "Pending"
    scheduled = [c for c in status["conditions"] if c["type"] == "Scheduled"]
    assert scheduled and scheduled[0]["status"] == "True"


def test_a_quiet_pass_writes_nothing(
    admin: KubeClient, operator: KubeClient, node: str, namespace: str
) -> None:
    create_job(admin, namespace, "quiet", node)
    reconcile_once(operator, namespace, "quiet", config=CONFIG)
    for pod in worker_pods(admin, namespace, "quiet-a1", 2).values():
        play_kubelet(admin, namespace, pod, "Running")
    reconcile_once(operator, namespace, "quiet", config=CONFIG)
    assert status_of(admin, namespace, "quiet")["phase"] == "Running"
    children = [
        ("batch/v1", "jobs", "quiet-a1"),
        ("v1", "services", "quiet-workers"),
        ("v1", "serviceaccounts", "quiet-trainer"),
        ("rbac.authorization.k8s.io/v1", "roles", "quiet-trainer"),
        ("rbac.authorization.k8s.io/v1", "rolebindings", "quiet-trainer"),
    ]

    def versions() -> list[str]:
        found = [admin.get(API, PLURAL, "quiet", namespace)]
        found += [admin.get(api, plural, name, namespace) for api, plural, name in children]
        assert all(found)
        return [str(o["metadata"]["resourceVersion"]) for o in found if o]

    before = versions()
    reconcile_once(operator, namespace, "quiet", config=CONFIG)
    assert versions() == before, "the same desired state applied twice wrote again"


def test_failed_worker_restarts_then_fails_and_progress_survives(
    admin: KubeClient, operator: KubeClient, node: str, namespace: str
) -> None:
    create_job(admin, namespace, "flaky", node)
    reconcile_once(operator, namespace, "flaky", config=CONFIG)
    admin.patch(
        API,
        PLURAL,
        "flaky",
        namespace,
        {"status": {"progress": {"epoch": 2}}},
        subresource="status",
    )
    first = worker_pods(admin, namespace, "flaky-a1", 2)
    play_kubelet(admin, namespace, first[0], "Running")
    play_kubelet(admin, namespace, first[1], "Failed", exit_code=1)
    reconcile_once(operator, namespace, "flaky", config=CONFIG)
    status = status_of(admin, namespace, "flaky")
    assert status["phase"] == "Restarting" and status["attempts"] == 2
    assert status["progress"] == {"epoch": 2}, "the runtime's progress is never overwritten"
    job = admin.get("batch/v1", "jobs", "flaky-a1", namespace)
    assert job is None or job["metadata"].get("deletionTimestamp"), "old attempt deleted"

    # The garbage collector deletes the old attempt's pods and the kubelet stops them;
    # only then does attempt 2 start.
    def second_attempt() -> dict[str, Any] | None:
        kubelet_stops_deleted_pods(admin, namespace, "gantry.dev/attempt=1")
        reconcile_once(operator, namespace, "flaky", config=CONFIG)
        return admin.get("batch/v1", "jobs", "flaky-a2", namespace)

    wait_for(second_attempt, 60, "attempt 2's Job")
    assert admin.list("v1", "pods", namespace, label_selector="gantry.dev/attempt=1") == []
    second = worker_pods(admin, namespace, "flaky-a2", 2)
    play_kubelet(admin, namespace, second[0], "Failed", exit_code=7)
    reconcile_once(operator, namespace, "flaky", config=CONFIG)
    status = status_of(admin, namespace, "flaky")
    assert status["phase"] == "Failed"
    assert "attempt 2/2 failed: worker 0" in status["message"]


def test_suspend_then_resume(
    admin: KubeClient, operator: KubeClient, node: str, namespace: str
) -> None:
    create_job(admin, namespace, "paused", node, suspend=True)
    reconcile_once(operator, namespace, "paused", config=CONFIG)
    assert status_of(admin, namespace, "paused")["phase"] == "Suspended"
    assert admin.get("batch/v1", "jobs", "paused-a1", namespace) is None
    admin.patch(API, PLURAL, "paused", namespace, {"spec": {"suspend": False}})
    reconcile_once(operator, namespace, "paused", config=CONFIG)
    job = admin.get("batch/v1", "jobs", "paused-a1", namespace)
    assert job is not None and job["spec"]["suspend"] is False
    worker_pods(admin, namespace, "paused-a1", 2)
    admin.patch(API, PLURAL, "paused", namespace, {"spec": {"suspend": True}})
    reconcile_once(operator, namespace, "paused", config=CONFIG)
    job = admin.get("batch/v1", "jobs", "paused-a1", namespace)
    assert job is not None and job["spec"]["suspend"] is True
    # The Job controller deletes a suspended Job's workers; the kubelet stops them.
    wait_for(
        lambda: kubelet_stops_deleted_pods(
            admin, namespace, "batch.kubernetes.io/job-name=paused-a1"
        ),
        60,
        "the suspended Job's pods to be removed",
    )
    reconcile_once(operator, namespace, "paused", config=CONFIG)
    assert status_of(admin, namespace, "paused")["phase"] == "Suspended"
