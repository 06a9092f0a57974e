"""TrainingJobs end to end on the dev cluster: real torchrun workers as local processes.

One dev cluster serves the whole module, with the operator installed by the chart (its
Deployment's pod, under the chart's RBAC); every scenario's TrainingJob is submitted up
front so they run side by side, and a recorder thread keeps each job's status history (to
see progress reported *during* the run). Workers report progress in-cluster, as their
trainer ServiceAccount.
"""

from __future__ import annotations

import os
import re
import signal
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from dev_cluster import cluster as cluster_mod
from gantry.k8s.client import KubeClient
from gantry.k8s.conditions import parse_time
from tests.conftest import claim_manifest, wait_for

pytestmark = pytest.mark.slow

API, PLURAL, NS = "gantry.dev/v1alpha1", "trainingjobs", "default"
SMALL = {"requests": {"cpu": "100m", "memory": "128Mi"}}
DIGITS = ["python", "-m", "training_jobs.examples.digits"]
SLEEPER = ["python", "-c", "import time; time.sleep(600)"]
FAILING = [
    "python",
    "-c",
    "import sys; print('loading shard 7'); print('ValueError: corrupt shard 7'); sys.exit(3)",
]


def training_job(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"resources": SMALL, **spec},
    }


def claim(name: str) -> dict[str, Any]:
    return claim_manifest(name, NS)


def checkpoint(claim_name: str) -> dict[str, Any]:
    return {"volume": {"persistentVolumeClaim": {"claimName": claim_name}}}


SCENARIOS = {
    "digits": training_job(
        "digits",
        command=DIGITS,
        args=["--epochs", "12", "--lr", "0.01"],
        workers=2,
        gpusPerWorker=0,
        checkpoint=checkpoint("ckpt-digits"),
        output={"storageUri": "pvc://models/digits/v1"},
    ),
    "resume": training_job(
        "resume",
        command=DIGITS,
        args=["--epochs", "4", "--fail-at-epoch", "3", "--epoch-sleep", "0.5"],
        workers=2,
        backoffLimit=2,
        checkpoint=checkpoint("ckpt-resume"),
    ),
    "broken": training_job("broken", command=FAILING, backoffLimit=0, ttlSecondsAfterFinished=3),
    "deadline": training_job("deadline", command=SLEEPER, activeDeadlineSeconds=4),
    "held": training_job("held", command=SLEEPER, suspend=True),
    "gpu": training_job("gpu", command=SLEEPER, gpusPerWorker=1),
    "lost": training_job("lost", command=SLEEPER, workers=2, backoffLimit=1),
}


@dataclass
class Recorder:
    """Polls every scenario's TrainingJob and keeps each distinct status it saw."""

    client: KubeClient
    operator_logs: Callable[[], str]
    history: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            for name in SCENARIOS:
                obj = self.client.get(API, PLURAL, name, NS)
                status = (obj or {}).get("status") or {}
                seen = self.history.setdefault(name, [])
                if status and (not seen or seen[-1] != status):
                    seen.append(status)
            self.stop.wait(0.3)

    def wait_for(
        self, name: str, test: Callable[[dict[str, Any]], bool], timeout: float
    ) -> dict[str, Any]:
        """The first status `name` reached that passes `test` (statuses seen so far count)."""

        def seen() -> dict[str, Any] | None:
            return next((s for s in list(self.history.get(name, [])) if test(s)), None)

        def last() -> str:
            return f"last status {(self.history.get(name) or [{}])[-1]}\n{self.operator_logs()}"

        found: dict[str, Any] = wait_for(seen, timeout, f"{name}'s status", 0.3, on_timeout=last)
        return found


def operator_view(cluster: Any, client: KubeClient) -> str:
    """The operator's log tail and the events of its namespace (restarts, probes)."""
    events = [
        f"{e.get('reason')}: {e['involvedObject'].get('name')}: {e.get('message')}"
        for e in client.list("v1", "events", "gantry-system")
    ]
    return "operator log:\n" + cluster.operator_logs() + "\nevents:\n" + "\n".join(events)


@dataclass
class Env:
    cluster: Any
    client: KubeClient
    recorder: Recorder
    state: Path


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Env]:
    state = tmp_path_factory.mktemp("devcluster")
    with cluster_mod.DevCluster(state, operator=True) as cluster:
        client = KubeClient.for_kubeconfig(cluster.kubeconfig)
        for name in ("models", "ckpt-digits", "ckpt-resume", "ckpt-killed"):
            client.create(claim(name))
        recorder = Recorder(client, lambda: operator_view(cluster, client))
        poller = threading.Thread(target=recorder.run, daemon=True)
        poller.start()
        try:
            for body in SCENARIOS.values():
                client.create(body)
            yield Env(cluster, client, recorder, state)
        finally:
            recorder.stop.set()
            poller.join(5)
            for name in SCENARIOS:
                client.delete(API, PLURAL, name, NS)
            client.close()


def phase(*phases: str) -> Callable[[dict[str, Any]], bool]:
    return lambda status: status.get("phase") in phases


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next(c for c in status.get("conditions") or [] if c["type"] == type_)


def pods_of(env: Env, name: str) -> list[dict[str, Any]]:
    return env.client.list("v1", "pods", NS, label_selector=f"gantry.dev/trainingjob={name}")


def test_gpu_job_on_a_gpu_less_cluster_is_pending_unschedulable(env: Env) -> None:
    status = env.recorder.wait_for(
        "gpu",
        lambda s: any(
            c["type"] == "Scheduled" and c["reason"] == "Unschedulable"
            for c in s.get("conditions") or []
        ),
        timeout=60,
    )
    assert status["phase"] == "Pending"
    assert "nvidia.com/gpu" in condition(status, "Scheduled")["message"]


def test_failing_command_without_retries_fails_with_its_log_lines(env: Env) -> None:
    status = env.recorder.wait_for("broken", phase("Failed"), timeout=120)
    failed = condition(status, "Failed")
    assert failed["reason"] == "BackoffLimitExceeded"
    assert "exited with code 3" in failed["message"], failed["message"]
    assert "ValueError: corrupt shard 7" in failed["message"]
    assert status["attempts"] == 1


def test_ttl_fires_at_its_due_time_not_at_a_resync(env: Env) -> None:
    """The dev cluster's resync is an hour: only the loop's timed wake-up deletes it."""
    failed = env.recorder.wait_for("broken", phase("Failed"), timeout=120)
    finished = parse_time(failed["completionTime"])
    assert finished is not None
    wait_for(
        lambda: env.client.get(API, PLURAL, "broken", NS) is None,
        60,
        "the TTL to delete the job",
        on_timeout=env.recorder.operator_logs,
    )
    gone_at = datetime.now(UTC)
    assert gone_at >= finished + timedelta(seconds=3), "deleted before its TTL"


def _wait(probe: Callable[[], Any], what: str, timeout: float, env: Env) -> Any:
    return wait_for(probe, timeout, what, on_timeout=env.recorder.operator_logs)


def test_a_deleted_child_is_recreated_by_its_watch_event(env: Env) -> None:
    """Deleting the rendezvous Service wakes its TrainingJob (resync is an hour here)."""
    env.client.create(training_job("evented", command=SLEEPER, suspend=True))
    first = _wait(
        lambda: env.client.get("v1", "services", "evented-workers", NS), "the Service", 60, env
    )
    env.client.delete("v1", "services", "evented-workers", NS)

    def recreated() -> dict[str, Any] | None:
        again = env.client.get("v1", "services", "evented-workers", NS)
        return again if again and again["metadata"]["uid"] != first["metadata"]["uid"] else None

    again = _wait(recreated, "the Service to come back", 30, env)
    assert again["metadata"]["ownerReferences"][0]["kind"] == "TrainingJob"
    env.client.delete(API, PLURAL, "evented", NS)


def test_objects_under_child_names_that_gantry_does_not_own_are_left_alone(env: Env) -> None:
    """A user's ServiceAccount and Service named like the job's children: untouched."""
    account = env.client.create(
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": {"name": "taken-trainer", "namespace": NS, "labels": {"team": "a"}},
        }
    )
    service = env.client.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "taken-workers", "namespace": NS},
            "spec": {"selector": {"app": "mine"}, "ports": [{"port": 8080}]},
        }
    )
    env.client.create(training_job("taken", command=SLEEPER, suspend=True))

    def conflict() -> dict[str, Any] | None:
        status = ((env.client.get(API, PLURAL, "taken", NS) or {}).get("status")) or {}
        found = [c for c in status.get("conditions") or [] if c["type"] == "ResourceConflict"]
        return found[0] if found else None

    reported = _wait(conflict, "a ResourceConflict condition", 60, env)
    assert reported["status"] == "True"
    assert "ServiceAccount 'taken-trainer'" in reported["message"]
    assert "Service 'taken-workers'" in reported["message"]

    def conflict_events() -> list[dict[str, Any]]:
        return [
            e
            for e in env.client.list("v1", "events", NS)
            if e["involvedObject"].get("name") == "taken" and e["reason"] == "ResourceConflict"
        ]

    events = _wait(conflict_events, "a ResourceConflict Event", 30, env)
    assert events[0]["type"] == "Warning"
    for before in (account, service):
        plural = "serviceaccounts" if before["kind"] == "ServiceAccount" else "services"
        after = env.client.get("v1", plural, before["metadata"]["name"], NS)
        assert after is not None, f"{plural} deleted"
        assert after["metadata"]["resourceVersion"] == before["metadata"]["resourceVersion"]
        assert not after["metadata"].get("ownerReferences"), "adopted"
    # Deleting the TrainingJob must not take the user's objects with it.
    env.client.delete(API, PLURAL, "taken", NS)
    _wait(lambda: env.client.get(API, PLURAL, "taken", NS) is None, "deletion", 60, env)
    assert env.client.get("v1", "serviceaccounts", "taken-trainer", NS) is not None
    assert env.client.get("v1", "services", "taken-workers", NS) is not None


def test_a_job_over_its_namespaces_quota_says_so(env: Env) -> None:
    """The Job controller cannot create the workers (pods quota 0): the reason shows."""
    env.client.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": "capped"}})
    env.client.create(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "no-pods", "namespace": "capped"},
            "spec": {"hard": {"pods": "0"}},
        }
    )
    body = training_job("over", command=SLEEPER)
    body["metadata"]["namespace"] = "capped"
    env.client.create(body)

    def quota_reason() -> dict[str, Any] | None:
        status = ((env.client.get(API, PLURAL, "over", "capped") or {}).get("status")) or {}
        running = [c for c in status.get("conditions") or [] if c["type"] == "Running"]
        return status if running and running[0]["reason"] == "QuotaExceeded" else None

    status = _wait(quota_reason, "the QuotaExceeded reason", 90, env)
    assert status["phase"] == "Pending"
    assert "exceeded quota: no-pods" in condition(status, "Running")["message"]
    env.client.delete(API, PLURAL, "over", "capped")


def test_deadline_exceeded_stops_the_workers(env: Env) -> None:
    """The deadline fires at its due time (a timed wake-up: the resync here is an hour)."""
    status = env.recorder.wait_for("deadline", phase("Failed"), timeout=120)
    assert condition(status, "Failed")["reason"] == "DeadlineExceeded"
    started, ended = parse_time(status["startTime"]), parse_time(status["completionTime"])
    assert started is not None and ended is not None
    assert ended - started >= timedelta(seconds=4), "failed before activeDeadlineSeconds"
    _wait(
        lambda: (
            not any(
                p["status"].get("phase") in ("Pending", "Running") for p in pods_of(env, "deadline")
            )
        ),
        "the deadline's workers to stop",
        60,
        env,
    )


def test_suspended_job_has_no_pods_until_resumed(env: Env) -> None:
    env.recorder.wait_for("held", phase("Suspended"), timeout=60)
    assert pods_of(env, "held") == []
    assert (
        env.client.list("batch/v1", "jobs", NS, label_selector="gantry.dev/trainingjob=held") == []
    )
    env.client.patch(API, PLURAL, "held", NS, {"spec": {"suspend": False}})
    status = env.recorder.wait_for("held", phase("Running"), timeout=120)
    assert status["attempts"] == 1
    assert [p["status"]["phase"] for p in pods_of(env, "held")] == ["Running"]
    env.client.patch(API, PLURAL, "held", NS, {"spec": {"suspend": True}})
    env.recorder.wait_for("held", phase("Suspended"), timeout=60)
    _wait(
        lambda: not any(p["status"].get("phase") == "Running" for p in pods_of(env, "held")),
        "the suspended workers to stop",
        60,
        env,
    )


def test_deleting_a_worker_pod_restarts_every_worker(env: Env) -> None:
    env.recorder.wait_for("lost", phase("Running"), timeout=180)
    first = {p["metadata"]["name"] for p in pods_of(env, "lost")}
    victim = sorted(first)[-1]
    env.client.delete("v1", "pods", victim, NS)
    status = env.recorder.wait_for(
        "lost", lambda s: s.get("attempts") == 2 and s.get("phase") == "Running", timeout=240
    )
    # The Restarting phase may pass too quickly for the recorder; its Event stays.
    restarts = [
        e.get("message") or ""
        for e in env.client.list("v1", "events", NS)
        if e["involvedObject"].get("name") == "lost" and e["reason"] == "Restarting"
    ]
    assert any("was deleted" in m for m in restarts), restarts
    running = [p for p in pods_of(env, "lost") if p["status"].get("phase") == "Running"]
    assert len(running) == 2 and all(p["metadata"]["name"] not in first for p in running)
    assert status["workers"]["active"] == 2


def test_failed_attempt_resumes_from_the_checkpoint(env: Env) -> None:
    status = env.recorder.wait_for("resume", phase("Succeeded", "Failed"), timeout=400)
    assert status["phase"] == "Succeeded", status.get("message")
    assert status["attempts"] == 2
    history = env.recorder.history["resume"]
    assert any(s.get("phase") == "Restarting" for s in history)
    rank0 = next(
        p
        for p in pods_of(env, "resume")
        if p["metadata"]["labels"].get("gantry.dev/attempt") == "2"
        and p["metadata"]["labels"].get("batch.kubernetes.io/job-completion-index") == "0"
    )
    log = env.client.pod_log(NS, rank0["metadata"]["name"])
    assert "resumed from checkpoint" in log


def _worker_pids(job: str, attempt: str, rank: str) -> list[int]:
    """Training processes (torchrun's children, which carry RANK) of one job's attempt."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        wanted = {f"GANTRY_JOB_NAME={job}", f"GANTRY_ATTEMPT={attempt}", f"RANK={rank}"}
        if wanted <= {e.decode(errors="replace") for e in environ}:
            found.append(int(proc.name))
    return found


def _poll(
    env: Env, name: str, test: Callable[[dict[str, Any]], bool], timeout: float
) -> dict[str, Any]:
    """`name`'s status, read afresh until it passes `test`."""

    def current() -> dict[str, Any] | None:
        status = (env.client.get(API, PLURAL, name, NS) or {}).get("status") or {}
        return status if test(status) else None

    found: dict[str, Any] = wait_for(
        current, timeout, f"{name}'s status", 0.3, on_timeout=env.recorder.operator_logs
    )
    return found


def test_killing_a_worker_process_resumes_from_the_checkpoint(env: Env) -> None:
    # Its own job, created now: the module's scenarios started long before this test runs.
    env.client.create(
        training_job(
            "killed",
            command=DIGITS,
            args=["--epochs", "10", "--epoch-sleep", "2"],
            workers=2,
            backoffLimit=2,
            checkpoint=checkpoint("ckpt-killed"),
        )
    )
    try:
        _poll(env, "killed", lambda s: ((s.get("progress") or {}).get("epoch") or 0) >= 2, 300)
        pids = _worker_pids("killed", "1", "1")
        assert pids, "rank 1's training process of attempt 1 is running"
        for pid in pids:
            os.kill(pid, signal.SIGKILL)
        status = _poll(env, "killed", phase("Succeeded", "Failed"), timeout=400)
        assert status["phase"] == "Succeeded", status.get("conditions")
        assert status["attempts"] == 2
        rank0 = next(
            p
            for p in pods_of(env, "killed")
            if p["metadata"]["labels"].get("gantry.dev/attempt") == "2"
            and p["metadata"]["labels"].get("batch.kubernetes.io/job-completion-index") == "0"
        )
        log = env.client.pod_log(NS, rank0["metadata"]["name"])
        resumed = re.search(r"resumed from checkpoint \S+: starting at epoch (\d+)/10", log)
        assert resumed, log[-2000:]
        assert int(resumed.group(1)) >= 2, "the epochs before the kill are not trained again"
    finally:
        env.client.delete(API, PLURAL, "killed", NS)


def test_digits_ddp_on_two_workers_succeeds_with_an_exported_model(env: Env) -> None:
    status = env.recorder.wait_for("digits", phase("Succeeded", "Failed"), timeout=500)
    assert status["phase"] == "Succeeded", status.get("conditions")
    assert status["attempts"] == 1
    during = [s for s in env.recorder.history["digits"] if s.get("phase") == "Running"]
    assert any((s.get("progress") or {}).get("epoch") for s in during), "progress while running"
    model = status["model"]
    assert model["uri"] == "pvc://models/digits/v1"
    assert model["metrics"]["test_accuracy"] >= 0.90
    assert {"onnx", "torchscript"} <= set(model["formats"])
    out = env.state / "pvc" / NS / "models" / "digits" / "v1"
    assert {"model.onnx", "model.pt", "metadata.json"} <= {p.name for p in out.iterdir()}
    assert condition(status, "Succeeded")["status"] == "True"
    events = [
        e["reason"]
        for e in env.client.list("v1", "events", NS)
        if e["involvedObject"].get("name") == "digits"
        and e["involvedObject"].get("kind") == "TrainingJob"
    ]
    assert {"Created", "Running", "Succeeded"} <= set(events)
