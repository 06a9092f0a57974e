"""The operator SIGKILLed right after its autoscaler scaled a service up under load.

An autoscaled InferenceService (builtin mode, 10 req/s per replica, 1–4 replicas) takes a
steady 15 req/s, which one replica cannot carry: the autoscaler scales it 1 → 2. The node
has room for one Triton pod only (each requests 2 CPUs of the node's 3), so the new
replica stays Pending — as it does on a cluster while a node is being added — and the one
Ready pod keeps serving all the load. As soon as the Deployment and status.autoscaling
show the scale-up, the operator is SIGKILLed; the node agent restarts it; the load goes on.

The restarted operator must neither shrink the service (dropping the replica it has just
asked for) nor read the one Ready pod's load as a reason to scale up again (15 req/s
extrapolated to the 2 replicas would ask for 3): it remembers the scale-up it wrote to
status.autoscaling and waits for the new replica. The Deployment's replicas are sampled
from the kill until the restarted operator has made several decisions of its own, well
inside the 120 s after which a replica that never became Ready stops holding decisions.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from dev_cluster.cluster import DevCluster
from gantry.k8s.client import KubeClient
from gantry.k8s.conditions import parse_time
from tests.chaos.chaos_testkit import (
    POLL_RETRY,
    healthz,
    kill,
    operator_pid,
    operator_pod_ip,
    operator_restarts,
    report,
)
from tests.conftest import claim_manifest, export_digits_shaped_model, require_triton, wait_for

pytestmark = pytest.mark.slow

NS = "default"
API = "gantry.dev/v1alpha1"
SVC = "digits"
DEPLOYMENT = f"{SVC}-triton"
PER_REPLICA, LOAD = 10, 15  # req/s: one replica is short, two carry it
MAX_REPLICAS = 4
READY_GRACE_S = 120  # gantry.autoscaler.decision.DEFAULT_READY_GRACE
ROUNDS_AFTER_RESTART = 5  # status writes by the restarted operator the window must cover


def inference_service() -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "InferenceService",
        "metadata": {"name": SVC, "namespace": NS},
        "spec": {
            "model": {"storageUri": "pvc://exports/digits/v1"},
            "optimization": {"precision": "fp32", "accuracy": {"samples": 16}},
            # two of these do not fit on the 3-CPU node
            "resources": {"requests": {"cpu": "2", "memory": "512Mi"}},
            "autoscaling": {
                "minReplicas": 1,
                "maxReplicas": MAX_REPLICAS,
                "targets": {"requestsPerSecondPerReplica": PER_REPLICA},
                "behavior": {
                    "scaleUp": {"stabilizationSeconds": 0, "maxReplicasPerStep": 4},
                    "scaleDown": {"stabilizationSeconds": 600, "maxReplicasPerStep": 1},
                },
            },
        },
    }


def autoscaling(kube: KubeClient) -> dict[str, Any]:
    obj = kube.get(API, "inferenceservices", SVC, NS) or {}
    return dict((obj.get("status") or {}).get("autoscaling") or {})


def replicas(kube: KubeClient) -> tuple[int, int]:
    """The Deployment's (spec.replicas, status.readyReplicas)."""
    deployment = kube.get("apps/v1", "deployments", DEPLOYMENT, NS) or {}
    spec = (deployment.get("spec") or {}).get("replicas")
    ready = (deployment.get("status") or {}).get("readyReplicas")
    return int(spec if spec is not None else 0), int(ready or 0)


class Sampler:
    """Polls the Deployment every 0.2 s in a thread: (seconds, replicas, ready)."""

    def __init__(self, kube: KubeClient) -> None:
        self.samples: list[tuple[float, int, int]] = []
        self.failed = 0
        self._stop = threading.Event()
        started = time.monotonic()

        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.samples.append((time.monotonic() - started, *replicas(kube)))
                except Exception:  # an API blip is counted, not fatal
                    self.failed += 1
                self._stop.wait(0.2)

        self._thread = threading.Thread(target=run, name="replica-sampler", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def view(cluster: DevCluster, kube: KubeClient) -> Callable[[], str]:
    def render() -> str:
        obj = kube.get(API, "inferenceservices", SVC, NS) or {}
        lines = [f"InferenceService status: {obj.get('status')}", f"Deployment: {replicas(kube)}"]
        for pod in kube.list("v1", "pods", NS):
            lines.append(f"pod {pod['metadata']['name']}: {(pod.get('status') or {}).get('phase')}")
        lines.append(cluster.operator_logs()[-3000:])
        return "\n".join(lines)

    return render


def test_operator_killed_right_after_a_scale_up_neither_shrinks_nor_overshoots(
    tmp_path: Path,
) -> None:
    require_triton()
    values = {"config": {"scrapeIntervalSeconds": 2}}
    with DevCluster(
        tmp_path / "cluster", operator=True, cpu="3", backoff_base=0.05, operator_values=values
    ) as cluster:
        kube = KubeClient.for_kubeconfig(cluster.kubeconfig)
        kube.retry = POLL_RETRY
        shown = view(cluster, kube)
        kube.create(claim_manifest("exports", NS, access_mode="ReadWriteMany"))
        export_digits_shaped_model(cluster.state_dir / "pvc" / NS / "exports" / "digits" / "v1", 1)
        kube.create(inference_service())

        def ready() -> bool:
            obj = kube.get(API, "inferenceservices", SVC, NS) or {}
            phase = (obj.get("status") or {}).get("phase")
            if phase == "Failed":
                pytest.fail(f"the service failed: {obj.get('status')}")
            return phase == "Ready"

        wait_for(ready, 600, "the service to be Ready", 1, on_timeout=shown)
        assert replicas(kube) == (1, 1)

        command = [
            sys.executable, "-m", "gantry_cli", "bench", "load", SVC, "--namespace", NS,
            "--kubeconfig", str(cluster.kubeconfig), "--profile", f"0:{LOAD}rps,900:0",
            "--output", str(tmp_path / "load.json"), "--quiet",
        ]  # fmt: skip
        load = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        sampler: Sampler | None = None
        try:

            def scaled_up() -> dict[str, Any] | None:
                if load.poll() is not None:
                    out = load.stdout.read().decode(errors="replace") if load.stdout else ""
                    pytest.fail(f"the load generator exited early:\n{out[-2000:]}")
                status = autoscaling(kube)
                shown_in_status = (
                    status.get("lastScaleTime") and (status.get("desiredReplicas") or 0) > 1
                )
                return status if shown_in_status and replicas(kube)[0] > 1 else None

            before = wait_for(scaled_up, 300, "the scale-up", 0.1, on_timeout=shown)
            pid = operator_pid(cluster.state_dir)
            assert pid is not None and kill(pid), "no operator process to kill"
            killed_at = datetime.now(UTC)
            sampler = Sampler(kube)
            scaled_to = replicas(kube)[0]
            assert scaled_to == before["desiredReplicas"], (scaled_to, before)
            last_scale = parse_time(before["lastScaleTime"])
            assert last_scale is not None

            # the node agent restarts the operator; it comes back healthy
            wait_for(
                lambda: (p := operator_pid(cluster.state_dir)) is not None and p != pid,
                120,
                "the operator to restart",
                on_timeout=shown,
            )
            ip = operator_pod_ip(kube)
            assert ip is not None
            wait_for(lambda: healthz(ip) == 200, 120, "the restarted operator to be healthy")
            back_at = datetime.now(UTC)

            # the window: until the restarted operator has written several rounds
            rounds: dict[str, dict[str, Any]] = {}

            def decided() -> bool:
                status = autoscaling(kube)
                at = parse_time(status.get("sampledAt"))
                if at is not None and at > back_at:
                    rounds[str(status["sampledAt"])] = status
                return len(rounds) >= ROUNDS_AFTER_RESTART

            wait_for(decided, 90, "rounds of the restarted operator", 0.5, on_timeout=shown)
            window_end = datetime.now(UTC)
            sampler.stop()
        finally:
            if sampler is not None:
                sampler.stop()
            load.terminate()
            load.wait(30)

        assert operator_restarts(kube) >= 1, "the operator's container did not restart"
        # the window lies inside the grace during which the Pending replica holds decisions
        assert (window_end - last_scale).total_seconds() < READY_GRACE_S, (
            f"the restarted operator took until {window_end} to decide; the scale-up was at "
            f"{last_scale}: past the {READY_GRACE_S} s grace, the check says nothing"
        )
        seen = {n for _, n, _ in sampler.samples}
        assert sampler.samples and seen == {scaled_to}, (
            f"replicas after the kill: {sorted(seen)}, not {scaled_to} "
            f"(the decision before the kill: {before.get('lastDecision')}); "
            f"samples {sampler.samples}"
        )
        # the scenario held: the new replica never became Ready in the window, so the
        # restarted operator decided with one Ready pod under the whole load
        assert max(r for _, _, r in sampler.samples) == 1, sampler.samples
        decisions = [s.get("lastDecision") or "" for s in rounds.values()]
        assert all("become Ready" in d for d in decisions), decisions
        assert all(s.get("desiredReplicas") == scaled_to for s in rounds.values()), rounds
        report(
            "autoscaler-restart",
            load_rps=LOAD,
            per_replica_rps=PER_REPLICA,
            scaled_to=scaled_to,
            decision_before_kill=before.get("lastDecision"),
            killed_after_scale_s=round((killed_at - last_scale).total_seconds(), 1),
            restarted_healthy_s=round((back_at - killed_at).total_seconds(), 1),
            window_s=round((window_end - killed_at).total_seconds(), 1),
            samples=len(sampler.samples),
            failed_samples=sampler.failed,
            replicas_seen=sorted(seen),
            decisions_after_restart=sorted(set(decisions)),
        )
        kube.close()
