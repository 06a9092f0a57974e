"""Stock `tritonclient` clients in pods through a scale-up and a model roll (slow, dev cluster).

Three pods each run one long-lived `tritonclient.grpc.InferenceServerClient` on
`dns:///stock-headless.default.svc.cluster.local:8001` with the documented channel
configuration (round_robin, bounded retries), never re-created. The operator (installed
by the chart) serves an InferenceService with a short gRPC connection age. The tests, in
order: scaling 1 → 3 through the scale subresource (`kubectl scale`) restarts no running
Triton pod, and once the clients' connections have reached their age every Ready replica
serves a share of their requests (Triton's own counters); then a new storageUri rolls every
pod while the clients keep sending; the clients report 0 failed requests.
"""

from __future__ import annotations

import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dev_cluster.cluster import DevCluster
from gantry.k8s.client import KubeClient
from gantry_cli.loadgen.stock_pods import (
    LABEL,
    parse_result,
    served_shares,
    stock_client_pod,
    summarize,
)
from tests.conftest import claim_manifest, export_digits_shaped_model, require_triton, wait_for

pytestmark = pytest.mark.slow

NS = "default"
NAME = "stock"
API = "gantry.dev/v1alpha1"
KUBECTL = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "kubectl"
CONNECTION_AGE_S = 8.0
# How long to wait for every replica to serve a share after the scale-up: a bound to give
# up at (clients that never reconnect never get there), not a figure; how fast stock
# clients spread is bench/autoscale.py --stock-clients's.
SPREAD_TIMEOUT_S = 180
CLIENTS = 3
TOTAL_RPS = 15  # 5 per client


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    require_triton()
    values = {"config": {"tritonGrpcMaxConnectionAgeSeconds": CONNECTION_AGE_S}}
    with DevCluster(
        tmp_path_factory.mktemp("stock-dev"), operator=True, operator_values=values
    ) as dev:
        yield dev


@pytest.fixture(scope="module")
def clients(cluster: DevCluster, kube: KubeClient, tmp_path_factory: pytest.TempPathFactory) -> Any:
    """The service at one replica, v1, with three stock clients sending to it."""
    kube.create(claim_manifest("exports", NS, access_mode="ReadWriteMany"))
    root = cluster.state_dir / "pvc" / NS / "exports"
    export_digits_shaped_model(root / "m" / "v1", seed=1)
    export_digits_shaped_model(root / "m" / "v2", seed=2)
    kube.create(
        {
            "apiVersion": API,
            "kind": "InferenceService",
            "metadata": {"name": NAME, "namespace": NS},
            "spec": {
                "model": {"storageUri": "pvc://exports/m/v1"},
                "optimization": {"precision": "fp32", "accuracy": {"samples": 16}},
                "replicas": 1,
            },
        }
    )
    wait_for(lambda: ready_version(kube, 1) and len(ready_pods(kube)) == 1, 300, "stock Ready")
    stop = tmp_path_factory.mktemp("stock-clients") / "stop"
    start_at = time.time() + 5
    for index in range(CLIENTS):
        kube.create(
            stock_client_pod(
                f"client-{index}",
                NS,
                service=NAME,
                model=NAME,
                profile=f"0:{TOTAL_RPS}rps,1800:0",
                clients=CLIENTS,
                start_at=start_at,
                inputs=["input:FP32:1x1x8x8"],
                stop_file=str(stop),
            )
        )
    # Requests flow from every client before the tests start changing the service.
    wait_for(lambda: total_served(kube) >= 30, 120, "stock clients' first requests")
    return stop


def ready_version(kube: KubeClient, version: int) -> bool:
    status = (kube.get(API, "inferenceservices", NAME, NS) or {}).get("status") or {}
    return status.get("phase") == "Ready" and (status.get("model") or {}).get("version") == version


def triton_pods(kube: KubeClient) -> list[dict[str, Any]]:
    return kube.list("v1", "pods", NS, label_selector=f"gantry.dev/inferenceservice={NAME}")


def _ready(pod: dict[str, Any]) -> bool:
    conditions = (pod.get("status") or {}).get("conditions") or []
    return not pod["metadata"].get("deletionTimestamp") and any(
        c["type"] == "Ready" and c["status"] == "True" for c in conditions
    )


def ready_pods(kube: KubeClient) -> list[dict[str, Any]]:
    return [p for p in triton_pods(kube) if _ready(p)]


def served(pod: dict[str, Any]) -> float:
    """Requests this pod's Triton answered successfully (its own counter)."""
    url = f"http://{pod['status']['podIP']}:8002/metrics"
    with urllib.request.urlopen(url, timeout=5) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("nv_inference_request_success{") and f'model="{NAME}"' in line
    )


def total_served(kube: KubeClient) -> float:
    return sum(served(p) for p in ready_pods(kube))


def kubectl_args(cluster: DevCluster) -> list[str]:
    return [str(KUBECTL), f"--kubeconfig={cluster.kubeconfig}", "-n", NS]


def restarts(pod: dict[str, Any]) -> int:
    return sum(c.get("restartCount", 0) for c in pod["status"].get("containerStatuses") or [])


def test_scale_up_keeps_running_pods_and_spreads_stock_clients(
    cluster: DevCluster, kube: KubeClient, clients: Path
) -> None:
    (before,) = ready_pods(kube)
    generation = kube.get("apps/v1", "deployments", f"{NAME}-triton", NS)["metadata"]["generation"]
    subprocess.run(
        [*kubectl_args(cluster), "scale", "inferenceservice", NAME, "--replicas=3"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    wait_for(lambda: len(ready_pods(kube)) == 3, 180, "3 Ready Triton pods")
    # The running pod was neither replaced nor restarted; the template did not change.
    now = {p["metadata"]["uid"]: p for p in triton_pods(kube)}
    assert before["metadata"]["uid"] in now, sorted(p["metadata"]["name"] for p in now.values())
    assert restarts(now[before["metadata"]["uid"]]) == 0
    deployment = kube.get("apps/v1", "deployments", f"{NAME}-triton", NS)
    assert deployment["spec"]["replicas"] == 3
    assert deployment["metadata"]["generation"] == generation + 1  # only the replica count
    # As the clients' connections reach their age, every Ready replica serves a share.
    pods = ready_pods(kube)
    baseline = {p["metadata"]["name"]: served(p) for p in pods}

    def spread() -> dict[str, float] | None:
        shares = served_shares(baseline, {p["metadata"]["name"]: served(p) for p in pods})
        return shares if all(s >= 0.1 for s in shares.values()) else None

    shares = wait_for(spread, SPREAD_TIMEOUT_S, "every replica serving a share")
    assert len(shares) == 3
    assert all(p["metadata"]["uid"] in now for p in ready_pods(kube))


def test_model_roll_under_stock_clients_fails_no_request(
    cluster: DevCluster, kube: KubeClient, clients: Path
) -> None:
    old = {p["metadata"]["uid"] for p in triton_pods(kube)}
    kube.patch(
        API,
        "inferenceservices",
        NAME,
        NS,
        {"spec": {"model": {"storageUri": "pvc://exports/m/v2"}}},
    )

    def rolled() -> bool:
        pods = triton_pods(kube)
        return (
            ready_version(kube, 2)
            and len(pods) == 3
            and all(_ready(p) and p["metadata"]["uid"] not in old for p in pods)
        )

    wait_for(rolled, 420, "version 2 on three new pods", every=0.5)
    # The new pods serve the clients too before they stop.
    pods = ready_pods(kube)
    baseline = {p["metadata"]["name"]: served(p) for p in pods}
    wait_for(
        lambda: all(served(p) > baseline[p["metadata"]["name"]] for p in pods),
        SPREAD_TIMEOUT_S,
        "every new replica serving",
    )
    clients.write_text("stop")

    def finished() -> list[dict[str, Any]] | None:
        pods = kube.list("v1", "pods", NS, label_selector=LABEL)
        if len(pods) != CLIENTS or any(p["status"].get("phase") != "Succeeded" for p in pods):
            return None
        return pods

    client_pods = wait_for(finished, 120, "the clients to finish")
    results = []
    for pod in client_pods:
        result = parse_result(kube.pod_log(NS, pod["metadata"]["name"]))
        assert result is not None, kube.pod_log(NS, pod["metadata"]["name"], tail_lines=20)
        results.append(result)
    summary = summarize(results)
    assert summary.clients == CLIENTS
    assert summary.failed == 0, summary.errors
    assert summary.ok == summary.sent and summary.sent > 100
