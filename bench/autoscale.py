"""Step load on the dev cluster: how fast does Gantry's autoscaler react, and at what cost?

    .venv/bin/python bench/autoscale.py [--quick]

Runs real tritonserver pods (a Python-backend model with a fixed 20 ms service time, so
one replica carries ≈ 45 req/s) on the embedded dev cluster, sends an open-loop step
(15 → 100 → 15 req/s) with the load generator through the headless Service's endpoints,
and lets the builtin autoscaler (1 s rounds, p95 target 150 ms, scale-down window 20 s)
scale the Deployment. It prints:

- time from the step to the first scale-up decision, and from there to the new
  replicas being Ready (in the EndpointSlice);
- client p95 before, early in, late in and after the step, and the share of requests
  each replica answered (round-robin keeps sending the first replica 1/N of the traffic
  while it drains the backlog it built up before help arrived, which shows in the p95);
- the same offered-load trace replayed through a simulation of the default Kubernetes
  HPA (15 s sync, 0.1 tolerance, 300 s scale-down stabilization, +100 %/+4 pods per
  15 s) and through Gantry's own decision function on the same simulated service, for
  comparison.

Figures go to stdout; the plot and the raw results go to bench/results/.
Runtime ≈ 3 minutes (`--quick`: ≈ 1.5).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from dev_cluster.local_triton import triton_available, triton_environment, tritonserver_argv
from gantry.api.inferenceservice import AutoscalingSpec
from gantry.autoscaler.decision import Observation, Policy, Recommendation, decide
from gantry.autoscaler.rates import PodWindow, ServiceMetrics
from gantry.k8s.client import KubeClient
from gantry.loadgen.report import plot
from gantry.loadgen.scenario import ScenarioResult, run_scenario, write_model

RESULTS = Path(__file__).resolve().parent / "results"
SERVICE_MS = 20.0
TARGET_MS = 150.0
PER_REPLICA = 35.0  # a throughput floor: latency alone is not proportional to replicas
LOW, HIGH = 15, 100


def autoscaling(down_window: int) -> dict[str, Any]:
    return {
        "minReplicas": 1,
        "maxReplicas": 5,
        "targets": {"latencyP95Ms": TARGET_MS, "requestsPerSecondPerReplica": PER_REPLICA},
        "behavior": {
            "scaleUp": {"stabilizationSeconds": 2, "maxReplicasPerStep": 4},
            "scaleDown": {"stabilizationSeconds": down_window, "maxReplicasPerStep": 1},
        },
    }


# --- simulation ------------------------------------------------------------------------


@dataclass
class SimService:
    """A fluid model of N replicas with a fixed service time: backlog + M/D/1 waiting."""

    service_s: float
    ready_delay_s: float
    replicas: int = 1
    backlog: float = 0.0

    def step(self, offered: float, pending: list[tuple[float, int]], now: float) -> float:
        """Advance one second; returns the p95 latency (ms) of that second."""
        for at, target in list(pending):
            if now >= at:
                self.replicas = target
                pending.remove((at, target))
        capacity = self.replicas / self.service_s
        self.backlog = max(0.0, self.backlog + offered - capacity)
        rho = min(offered / capacity, 0.99) if capacity else 0.99
        wait = rho * self.service_s / (2 * (1 - rho))  # M/D/1 mean wait
        return 1000 * (self.service_s + 3 * wait + self.backlog / capacity)


def _metrics(offered: float, p95_ms: float, replicas: int) -> ServiceMetrics:
    requests = offered / max(replicas, 1)
    windows = tuple(
        PodWindow(
            pod=f"p{i}",
            start=0,
            end=1,
            deltas={
                "success": requests,
                "failure": 0,
                "inferences": requests,
                "executions": requests,
                "request_us": requests * p95_ms * 1000,
                "queue_us": 0,
                "compute_input_us": 0,
                "compute_infer_us": 0,
                "compute_output_us": 0,
            },
            pending=0,
        )
        for i in range(replicas)
    )
    return ServiceMetrics(windows=windows, latency_p95_ms=p95_ms if offered else None)


def simulate_gantry(
    trace: list[float], spec: dict[str, Any], service_s: float, ready_s: float, tail: int
) -> list[tuple[float, int]]:
    """Gantry's decide() every second on the simulated service; (t, Ready replicas)."""
    policy = Policy.from_spec(AutoscalingSpec.model_validate(spec))
    sim = SimService(service_s, ready_s)
    pending: list[tuple[float, int]] = []
    history: tuple[Recommendation, ...] = ()
    target = 1
    last_change: float | None = None
    out = []
    for t, offered in enumerate(trace + [0.0] * tail):
        p95 = sim.step(offered, pending, t)
        ready = sim.replicas if not pending else min(sim.replicas, target)
        observation = Observation(t, target, ready, _metrics(offered, p95, target), last_change)
        d = decide(policy, observation, history)
        history = d.history
        if d.replicas != target:
            last_change = float(t)
            if d.replicas > target:
                pending.append((t + ready_s, d.replicas))
            else:
                sim.replicas = d.replicas
            target = d.replicas
        out.append((float(t), sim.replicas))  # replicas serving (Ready)
    return out


def simulate_default_hpa(
    trace: list[float], spec: dict[str, Any], service_s: float, ready_s: float, tail: int
) -> list[tuple[float, int]]:
    """The default HPA: 15 s sync, ±10 % tolerance, 300 s down window, +max(4, 100 %)/15 s."""
    low, high = spec["minReplicas"], spec["maxReplicas"]
    sim = SimService(service_s, ready_s)
    pending: list[tuple[float, int]] = []
    recommendations: list[tuple[int, int]] = []
    target = 1
    out = []
    last_p95 = 0.0
    for t, offered in enumerate(trace + [0.0] * tail):
        last_p95 = sim.step(offered, pending, t)
        if t % 15 == 0 and t > 0:
            desires = []
            for ratio in (last_p95 / TARGET_MS if offered else 0.0, offered / target / PER_REPLICA):
                proportional = max(1, math.ceil(target * ratio))
                desires.append(target if abs(ratio - 1) <= 0.1 else proportional)
            desired = min(high, max(low, max(desires)))
            recommendations = [(at, r) for at, r in recommendations if at > t - 300]
            recommendations.append((t, desired))
            if desired > target:
                new = min(desired, target + max(4, target))
            else:
                new = max(r for _, r in recommendations)
                new = min(new, target)
            if new != target:
                if new > target:
                    pending.append((t + ready_s, new))
                else:
                    sim.replicas = new
                target = new
        out.append((float(t), sim.replicas))  # replicas serving (Ready)
    return out


# --- the real run ----------------------------------------------------------------------


def _p95(rows: list[dict[str, Any]], start: int, end: int) -> float | None:
    values = [r["p95_ms"] for r in rows[start:end] if r["p95_ms"] is not None]
    return round(statistics.median(values), 1) if values else None


def report(result: ScenarioResult, step_at: int, step_end: int, end: int) -> None:
    doc = result.load
    rows = doc["timeline"]
    t0 = result.load_started_at
    step, step_over = t0 + step_at, t0 + step_end
    rounds = [r for r in result.rounds if "replicas" in r]
    before = max((r["replicas"] for r in rounds if r["t"] <= step), default=1)
    print("\n== Gantry builtin autoscaler on the dev cluster (real tritonserver pods)")
    print(
        f"offered load: {LOW} req/s, step to {HIGH} req/s at {step_at} s, back to {LOW} at "
        f"{step_end} s; {before} replica(s) at the step"
    )
    ups = [r for r in rounds if r["direction"] == "up" and step <= r["t"] <= step_over]
    if ups:
        first = ups[0]
        print(f"step → first scale-up decision:  {first['t'] - step:5.1f} s  ({first['reason']})")
        joined = sorted(t + t0 for t in doc["pods_first_ready_s"].values() if t + t0 > first["t"])
        if joined:
            print(f"decision → first new replica Ready: {joined[0] - first['t']:5.1f} s")
    else:
        print("no scale-up after the step")
    print(
        f"client p95 (median of the 1-s p95s): before {_p95(rows, step_at - 10, step_at)} ms, "
        f"first 10 s of the step {_p95(rows, step_at, step_at + 10)} ms, "
        f"last 20 s of the step {_p95(rows, step_end - 20, step_end)} ms, "
        f"after {_p95(rows, step_end + 5, len(rows))} ms "
        f"(target {TARGET_MS:g} ms, server-side)"
    )
    during = [r["replicas"] for r in rounds if step <= r["t"] <= step_over]
    back = next((r["t"] for r in rounds if r["t"] > step_over and r["replicas"] == 1), None)
    if back is None and result.back_to_min_s is not None:  # reached as the run stopped
        back = t0 + end + result.back_to_min_s
    print(
        f"replicas: peak {max(during, default=before)} during the step; back to 1 "
        f"{'never' if back is None else f'{back - step_over:.0f} s'} after the step ended"
    )
    shares = ", ".join(f"…{pod[-5:]} {share:.1%}" for pod, share in doc["pod_share"].items())
    print(f"share of requests per replica (whole run): {shares}")
    last = [r for r in rounds if step_over - 10 <= r["t"] <= step_over]
    if last:
        print(
            "share per replica, last 10 s of the step (server counters): "
            + ", ".join(f"…{p[-5:]} {s:.0%}" for p, s in last[-1]["share"].items())
        )
    print(f"requests: {doc['summary']['sent']} sent, {doc['summary']['errors']} errors")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a shorter step (≈ 1.5 min)")
    args = parser.parse_args()
    if not triton_available():
        print("tritonserver is not installed under .tools (run `make tools`)")
        return 1
    check = subprocess.run(
        [*tritonserver_argv([]), "--help"], env=triton_environment(os.environ),
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if "error while loading shared libraries" in check.stderr:
        print(f"the local tritonserver cannot start: {check.stderr.strip()}")
        return 1
    step_at, step_end, end = (10, 40, 55) if args.quick else (20, 80, 110)
    down_window = 10 if args.quick else 20
    spec = autoscaling(down_window)
    profile = f"0:{LOW}rps,{step_at}:{HIGH}rps,{step_end}:{LOW}rps,{end}:0"
    from dev_cluster.cluster import DevCluster

    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gantry-bench-") as tmp:
        repository = write_model(Path(tmp) / "repo", "stepload", SERVICE_MS)
        with DevCluster(Path(tmp) / "dev") as cluster:
            kube = KubeClient.for_kubeconfig(cluster.kubeconfig)
            result = asyncio.run(
                run_scenario(
                    kube,
                    name="stepload",
                    namespace="default",
                    repository=repository,
                    profile=profile,
                    autoscaling=spec,
                    interval=1.0,
                    wait_for_min=down_window + 40,
                )
            )
            kube.close()
    report(result, step_at, step_end, end)

    # Replay the offered-load trace through both policies on one simulated service.
    trace = [row["target_load"] for row in result.load["timeline"]]
    ready_s = 3.0
    firsts = [t for t in result.load["pods_first_ready_s"].values() if t > 0.5]
    ups = [r["t"] for r in result.rounds if r.get("direction") == "up"]
    if firsts and ups:
        ready_s = max(1.0, min(firsts) + result.load_started_at - ups[0])
    tail = 330
    sims = {
        "gantry (simulated)": simulate_gantry(trace, spec, SERVICE_MS / 1000 * 1.1, ready_s, tail),
        "default HPA (simulated)": simulate_default_hpa(
            trace, spec, SERVICE_MS / 1000 * 1.1, ready_s, tail
        ),
    }
    print(
        f"\n== Same trace, simulated service (capacity {1000 / (SERVICE_MS * 1.1):.0f} req/s per replica, Ready after {ready_s:.1f} s)"
    )
    for label, points in sims.items():
        after_step = [(t, n) for t, n in points if t >= step_at]
        enough = next((t for t, n in after_step if n * 1000 / (SERVICE_MS * 1.1) > HIGH), None)
        back = next((t for t, n in points if t >= step_end and n == 1), None)
        replica_seconds = sum(n for _, n in points[: end + 60])
        print(
            f"{label:24s} enough replicas {'never' if enough is None else f'{enough - step_at:.0f} s'} after the step, "
            f"back to 1 replica {'never' if back is None else f'{back - step_end:.0f} s'} after the step, "
            f"replica·s over the run + 60 s: {replica_seconds}"
        )
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "autoscale.json").write_text(
        json.dumps({"load": result.load, "rounds": result.rounds, "simulated": sims}, indent=1)
    )
    png = plot(
        result.load,
        RESULTS / "autoscale.png",
        slo_ms=TARGET_MS,
        title=f"step load {LOW}→{HIGH}→{LOW} req/s, 20 ms/request/replica",
        extra_replicas={
            "dev cluster (autoscaler rounds)": [
                (r["t"] - result.load_started_at, r["replicas"])
                for r in result.rounds
                if "replicas" in r and r["t"] >= result.load_started_at
            ],
            **{k: [(t, n) for t, n in v if t <= end + 60] for k, v in sims.items()},
        },
    )
    print(
        f"\nplot: {png}\nresults: {RESULTS / 'autoscale.json'}\nbench took {time.monotonic() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
