"""The autoscaler on the dev cluster with real tritonserver pods under a load step (slow).

The InferenceService's Triton Deployment and headless Service are laid out by the
scenario itself (the same names, labels and ports the InferenceService reconciler uses),
and the autoscaler runs the same `ServiceAutoscaler` rounds the operator's daemon runs,
with short windows.
"""

from __future__ import annotations

import os
import statistics
import subprocess
from pathlib import Path

import pytest

from dev_cluster.local_triton import triton_available, triton_environment, tritonserver_argv
from gantry.k8s.client import KubeClient
from gantry.k8s.errors import ApiError
from gantry_cli.loadgen.scenario import manifests, run_scenario, write_model

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
# then 30 req/s (≈ 1.5 × one replica) until STEP_END. The
# step lasts long enough for the first replica to drain the queue it built before help
# arrived (round-robin keeps sending it its share meanwhile).
STEP_AT, STEP_END, STEP_RATE = 4, 44, 30


def _triton_problem() -> str | None:
    if not triton_available():
        return "tritonserver is not installed under .tools (run `make tools`)"
    run = subprocess.run(
        [*tritonserver_argv([]), "--help"],
        env=triton_environment(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "error while loading shared libraries" in run.stderr:
        return f"the local tritonserver cannot start: {run.stderr.strip()[-300:]}"
    return None


async def test_load_step_scales_up_meets_the_target_and_scales_back(tmp_path: Path) -> None:
    problem = _triton_problem()
    if problem:
        pytest.skip(problem)
    from dev_cluster.cluster import DevCluster

    repository = write_model(tmp_path / "repo", "steady", service_ms=50)
    async with DevCluster(tmp_path / "dev") as cluster:
        kube = KubeClient.for_kubeconfig(cluster.kubeconfig)
        probe = manifests("probe", "default", repository, AUTOSCALING)[0]
        try:
            kube.create(probe)
        except ApiError as err:
            pytest.skip(f"the dev cluster cannot store InferenceServices yet: {err}")
        kube.delete("gantry.dev/v1alpha1", "inferenceservices", "probe", "default")
        result = await run_scenario(
            kube,
            name="steady",
            namespace="default",
            repository=repository,
            profile=f"0:8rps,{STEP_AT}:{STEP_RATE}rps,{STEP_END}:0",
            autoscaling=AUTOSCALING,
            interval=1.0,
            wait_for_min=60,
        )
        kube.close()

    start = result.load_started_at
    rounds = [r for r in result.rounds if "replicas" in r]
    # replicas never leave [min, max]
    assert result.replicas_seen and all(1 <= n <= 4 for n in result.replicas_seen)
    # the step is more than one replica can carry: the service scales up
    during = [r for r in rounds if start + STEP_AT < r["t"] < start + STEP_END]
    assert max(r["replicas"] for r in during) >= 2, rounds
    # … and the server-side p95 comes back under the target while the load lasts
    late = [r["p95_ms"] for r in during if r["t"] > start + STEP_END - 8 and r["p95_ms"]]
    assert late and statistics.median(late) < TARGET_MS, late
    # the new replicas took their share of the requests
    shares = result.load["pod_share"]
    assert sum(1 for share in shares.values() if share > 0.1) >= 2, shares
    assert result.load["summary"]["errors"] == 0, result.load["errors"]
    # load gone: back to minReplicas after the stabilization window
    assert result.back_to_min_s is not None, rounds[-5:]
    assert result.back_to_min_s >= AUTOSCALING["behavior"]["scaleDown"]["stabilizationSeconds"]
