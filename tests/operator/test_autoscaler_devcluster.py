"""The autoscaler on the dev cluster with real tritonserver pods under a load step (slow).

The InferenceService's Triton Deployment and headless Service are laid out by the
scenario itself (the same names, labels and ports the InferenceService reconciler uses),
and the autoscaler runs the same `ServiceAutoscaler` rounds the operator's daemon runs,
with short windows.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from gantry.k8s.client import KubeClient
from gantry_cli.loadgen.scenario import run_scenario, write_model
from tests.conftest import require_triton

pytestmark = pytest.mark.slow

TARGET_MS = 300.0
AUTOSCALING = {
    "minReplicas": 1,
    "maxReplicas": 4,
    "targets": {"latencyP95Ms": TARGET_MS},
    "behavior": {
        "scaleUp": {"stabilizationSeconds": 0, "maxReplicasPerStep": 4},
        "scaleDown": {"stabilizationSeconds": 8, "maxReplicasPerStep": 1},
    },
}
# 50 ms per request: one replica carries ≈ 19 req/s (a long service time keeps the CPU
# the machine's other work takes out of the picture). Seconds into the load: 8 req/s,
# then 30 req/s (≈ 1.5 × one replica) until STEP_END: long enough for new replicas to
# become Ready and answer requests while the step lasts.
STEP_AT, STEP_END, STEP_RATE = 4, 44, 30
# How long the scenario waits for minReplicas once the load is gone: a bound to give up at,
# not a figure (bench/autoscale.py prints how long it takes).
WAIT_FOR_MIN_S = 180


async def test_load_step_scales_up_and_back_to_the_minimum(tmp_path: Path) -> None:
    """What happens, in order: the step scales the service up while the load lasts, the
    new replicas answer requests, none fails, and the service returns to minReplicas once
    the load is gone. How fast, and the p95 on the way, are bench/autoscale.py's figures."""
    require_triton()
    from dev_cluster.cluster import DevCluster

    repository = write_model(tmp_path / "repo", "steady", service_ms=50)
    async with DevCluster(tmp_path / "dev") as cluster:
        kube = KubeClient.for_kubeconfig(cluster.kubeconfig)
        result = await run_scenario(
            kube,
            name="steady",
            namespace="default",
            repository=repository,
            profile=f"0:8rps,{STEP_AT}:{STEP_RATE}rps,{STEP_END}:0",
            autoscaling=AUTOSCALING,
            interval=1.0,
            wait_for_min=WAIT_FOR_MIN_S,
        )
        kube.close()

    start = result.load_started_at
    ended = start + result.load["summary"]["duration_s"]
    rounds = [r for r in result.rounds if "replicas" in r]
    # replicas never leave [min, max]
    assert result.replicas_seen and all(1 <= n <= 4 for n in result.replicas_seen)
    # the step is more than one replica can carry: the service scales up while it lasts
    ups = [r for r in rounds if start + STEP_AT < r["t"] < ended and r["replicas"] >= 2]
    assert ups, rounds
    # the new replicas answered requests, and no request failed
    shares = result.load["pod_share"]
    assert sum(1 for share in shares.values() if share > 0) >= 2, shares
    assert result.load["summary"]["errors"] == 0, result.load["errors"]
    assert result.load["summary"]["ok"] == result.load["summary"]["sent"] > 0
    # load gone: back to minReplicas, after the scale-up
    assert result.back_to_min_s is not None, rounds[-5:]
