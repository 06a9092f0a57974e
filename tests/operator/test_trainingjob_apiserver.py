"""The thin handler layer against the emulated API server (no pods run: we play kubelet)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from gantry.config import OperatorConfig
from gantry.k8s import ApiError, KubeClient
from gantry.trainingjob.handlers import reconcile_once

testing = pytest.importorskip("dev_cluster.apiserver.testing", reason="no emulated API server")

API, PLURAL, NS = "gantry.dev/v1alpha1", "trainingjobs", "default"
CRDS = Path(__file__).resolve().parents[2] / "crds"
CONFIG = OperatorConfig()


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeClient]:
    with testing.start_in_thread(state_dir=tmp_path_factory.mktemp("api")) as server:
        kube = KubeClient.for_url(server.url)
        for path in sorted(CRDS.glob("*.yaml")):
            for doc in yaml.safe_load_all(path.read_text()):
                kube.apply(doc)
        deadline = time.monotonic() + 30
        while True:  # a new CRD is served once the server has established it
            try:
                kube.list(API, PLURAL, NS)
                break
            except ApiError:
                assert time.monotonic() < deadline, "TrainingJob CRD never became served"
                time.sleep(0.2)
        yield kube
        kube.close()


def create_job(client: KubeClient, name: str, **spec: Any) -> None:
    body = {"command": ["python", "train.py"], "workers": 2, "backoffLimit": 1, **spec}
    client.create(
        {
            "apiVersion": API,
            "kind": "TrainingJob",
            "metadata": {"name": name, "namespace": NS},
            "spec": body,
        }
    )


def status_of(client: KubeClient, name: str) -> dict[str, Any]:
    obj = client.get(API, PLURAL, name, NS)
    assert obj is not None
    return dict(obj.get("status") or {})


def fake_pod(client: KubeClient, job: str, index: int, phase: str, exit_code: int = 0) -> None:
    name = f"{job}-{index}-x"
    client.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": name,
                "namespace": NS,
                "labels": {
                    "gantry.dev/trainingjob": job.rsplit("-a", 1)[0],
                    "gantry.dev/attempt": job.rsplit("-a", 1)[1],
                    "batch.kubernetes.io/job-completion-index": str(index),
                },
            },
            "spec": {"containers": [{"name": "worker", "image": "trainer"}]},
        }
    )
    state: dict[str, Any] = {"running": {}}
    if phase in ("Failed", "Succeeded"):
        state = {"terminated": {"exitCode": exit_code, "finishedAt": f"2026-01-01T00:00:0{index}Z"}}
    client.patch(
        "v1",
        "pods",
        name,
        NS,
        {"status": {"phase": phase, "containerStatuses": [{"name": "worker", "state": state}]}},
        subresource="status",
    )


def test_first_pass_creates_owned_children_and_status(client: KubeClient) -> None:
    create_job(client, "first")
    reconcile_once(client, NS, "first", config=CONFIG)
    status = status_of(client, "first")
    assert status["phase"] == "Pending" and status["attempts"] == 1
    job = client.get("batch/v1", "jobs", "first-a1", NS)
    assert job is not None and job["spec"]["completionMode"] == "Indexed"
    owner = client.get(API, PLURAL, "first", NS)
    assert owner is not None
    for api, plural, name in [
        ("batch/v1", "jobs", "first-a1"),
        ("v1", "services", "first-workers"),
        ("v1", "serviceaccounts", "first-trainer"),
        ("rbac.authorization.k8s.io/v1", "roles", "first-trainer"),
        ("rbac.authorization.k8s.io/v1", "rolebindings", "first-trainer"),
    ]:
        child = client.get(api, plural, name, NS)
        assert child is not None, f"{plural}/{name} missing"
        refs = child["metadata"]["ownerReferences"]
        assert refs[0]["uid"] == owner["metadata"]["uid"]
    events = [
        e["reason"]
        for e in client.list("v1", "events", NS)
        if e["involvedObject"].get("name") == "first"
    ]
    assert "Created" in events


def test_a_quiet_pass_writes_nothing(client: KubeClient) -> None:
    create_job(client, "quiet")
    reconcile_once(client, NS, "quiet", config=CONFIG)
    fake_pod(client, "quiet-a1", 0, "Running")
    fake_pod(client, "quiet-a1", 1, "Running")
    reconcile_once(client, NS, "quiet", config=CONFIG)
    assert status_of(client, "quiet")["phase"] == "Running"
    before = client.get(API, PLURAL, "quiet", NS)
    reconcile_once(client, NS, "quiet", config=CONFIG)
    after = client.get(API, PLURAL, "quiet", NS)
    assert before and after
    assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]


def test_failed_worker_restarts_then_fails_and_progress_survives(client: KubeClient) -> None:
    create_job(client, "flaky")
    reconcile_once(client, NS, "flaky", config=CONFIG)
    client.patch(
        API, PLURAL, "flaky", NS, {"status": {"progress": {"epoch": 2}}}, subresource="status"
    )
    fake_pod(client, "flaky-a1", 0, "Running")
    fake_pod(client, "flaky-a1", 1, "Failed", exit_code=1)
    reconcile_once(client, NS, "flaky", config=CONFIG)
    status = status_of(client, "flaky")
    assert status["phase"] == "Restarting" and status["attempts"] == 2
    assert status["progress"] == {"epoch": 2}, "the runtime's progress is never overwritten"
    job = client.get("batch/v1", "jobs", "flaky-a1", NS)
    assert job is None or job["metadata"].get("deletionTimestamp"), "old attempt deleted"
    # The old pods are gone (as the garbage collector would do), so attempt 2 starts.
    for index in (0, 1):
        client.delete("v1", "pods", f"flaky-a1-{index}-x", NS)
    deadline = time.monotonic() + 10
    while client.get("batch/v1", "jobs", "flaky-a2", NS) is None:
        reconcile_once(client, NS, "flaky", config=CONFIG)
        assert time.monotonic() < deadline, "attempt 2 never started"
    fake_pod(client, "flaky-a2", 0, "Failed", exit_code=7)
    reconcile_once(client, NS, "flaky", config=CONFIG)
    status = status_of(client, "flaky")
    assert status["phase"] == "Failed"
    assert "attempt 2/2 failed: worker 0" in status["message"]


def test_suspend_then_resume(client: KubeClient) -> None:
    create_job(client, "paused", suspend=True)
    reconcile_once(client, NS, "paused", config=CONFIG)
    assert status_of(client, "paused")["phase"] == "Suspended"
    assert client.get("batch/v1", "jobs", "paused-a1", NS) is None
    client.patch(API, PLURAL, "paused", NS, {"spec": {"suspend": False}})
    reconcile_once(client, NS, "paused", config=CONFIG)
    job = client.get("batch/v1", "jobs", "paused-a1", NS)
    assert job is not None and job["spec"]["suspend"] is False
    client.patch(API, PLURAL, "paused", NS, {"spec": {"suspend": True}})
    reconcile_once(client, NS, "paused", config=CONFIG)
    job = client.get("batch/v1", "jobs", "paused-a1", NS)
    assert job is not None and job["spec"]["suspend"] is True
    assert status_of(client, "paused")["phase"] == "Suspended"
