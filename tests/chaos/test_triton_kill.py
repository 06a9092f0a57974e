"""A Triton pod's server SIGKILLed while stock gRPC clients send to the service.

The story's InferenceService runs two replicas; two client pods each hold one long-lived
stock `tritonclient` on the headless Service's name with the README's channel
configuration (gantry_cli.grpc_client: round_robin, up to 5 attempts on UNAVAILABLE and
RESOURCE_EXHAUSTED under retry throttling), started as in
tests/operator/test_serving_stock_clients.py. One Triton process (and its backend stubs)
is killed; the node agent restarts the container in the same pod. Requests in flight on
the killed server, and those sent while it is away, must be retried onto the other
replica: the clients report no failed request. The killed replica must come back Ready
and serve again, and the story's end state holds (no pod replaced or doubled).
"""

from __future__ import annotations

import os
import signal
import time
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from gantry.k8s.client import KubeClient
from gantry_cli.loadgen.stock_pods import LABEL, parse_result, stock_client_pod, summarize
from tests.chaos.chaos_testkit import (
    NS,
    SVC,
    check_end_state,
    create_story,
    report,
    story_cluster,
    view,
    wait_converged,
)
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

CLIENTS = 2
TOTAL_RPS = 20


def triton_pods(kube: KubeClient) -> list[dict[str, Any]]:
    return kube.list("v1", "pods", NS, label_selector=f"gantry.dev/inferenceservice={SVC}")


def ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def served(pod: dict[str, Any]) -> float:
    """Requests this pod's Triton answered successfully (its own counter; 0 while down)."""
    try:
        url = f"http://{pod['status']['podIP']}:8002/metrics"
        with urllib.request.urlopen(url, timeout=3) as response:
            text = response.read().decode()
    except OSError:
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nv_inference_request_success{") and f'model="{SVC}"' in line
    )


def restarts(pod: dict[str, Any]) -> int:
    return sum(
        int(c.get("restartCount") or 0)
        for c in (pod.get("status") or {}).get("containerStatuses") or []
    )


def test_triton_killed_under_stock_client_load(tmp_path: Path) -> None:
    with story_cluster(tmp_path) as (cluster, kube, ledger):
        ledger.start()
        create_story(kube, replicas=2)
        wait_converged(cluster, kube, ledger, "the story at two Ready replicas")
        wait_for(
            lambda: len([p for p in triton_pods(kube) if ready(p)]) == 2,
            120,
            "two Ready Triton pods",
        )
        stop = tmp_path / "stop-clients"
        start_at = time.time() + 3
        for index in range(CLIENTS):
            kube.create(
                stock_client_pod(
                    f"client-{index}",
                    NS,
                    service=SVC,
                    model=SVC,
                    profile=f"0:{TOTAL_RPS}rps,1800:0",
                    clients=CLIENTS,
                    start_at=start_at,
                    inputs=["input:FP32:1x1x8x8"],
                    stop_file=str(stop),
                )
            )
        pods = triton_pods(kube)
        wait_for(
            lambda: all(served(p) >= 20 for p in pods),
            180,
            "both replicas serving the stock clients",
            every=0.5,
        )

        victim = sorted(pods, key=lambda p: p["metadata"]["name"])[0]
        name = victim["metadata"]["name"]
        before = restarts(victim)
        (status,) = victim["status"]["containerStatuses"]
        pid = int(status["containerID"].removeprefix("dev://"))
        killed_at = time.monotonic()
        os.killpg(pid, signal.SIGKILL)

        def back() -> dict[str, Any] | None:
            pod = kube.get("v1", "pods", name, NS)
            return pod if pod and restarts(pod) > before and ready(pod) else None

        pod = wait_for(
            back,
            180,
            f"{name} restarted and Ready",
            every=0.5,
            on_timeout=view(cluster, kube, ledger),
        )
        ready_again = time.monotonic() - killed_at
        baseline = served(pod)
        wait_for(
            lambda: served(pod) >= baseline + 20,
            180,
            f"{name} serving the clients again",
            every=0.5,
        )
        serving_again = time.monotonic() - killed_at
        stop.write_text("stop")

        def finished() -> list[dict[str, Any]] | None:
            found = kube.list("v1", "pods", NS, label_selector=LABEL)
            done = all((p.get("status") or {}).get("phase") == "Succeeded" for p in found)
            return found if len(found) == CLIENTS and done else None

        clients = wait_for(finished, 120, "the clients to finish")
        results = []
        for client in clients:
            result = parse_result(kube.pod_log(NS, client["metadata"]["name"]))
            assert result is not None, kube.pod_log(NS, client["metadata"]["name"], tail_lines=20)
            results.append(result)
        summary = summarize(results)
        assert summary.failed == 0, summary.errors
        assert summary.ok == summary.sent and summary.sent > 100
        # the replica was restarted in place: same pods, no new ReplicaSet
        assert {p["metadata"]["uid"] for p in triton_pods(kube)} == {
            p["metadata"]["uid"] for p in pods
        }
        state = check_end_state(cluster, kube, ledger)
        report(
            "triton-sigkill-under-load",
            requests=summary.sent,
            failed=summary.failed,
            p95_ms=summary.p95_ms,
            ready_again_s=round(ready_again, 1),
            serving_again_s=round(serving_again, 1),
            duplicates=0,
            orphans=0,
            attempts=state.attempts,
        )
