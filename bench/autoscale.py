"""Step load on the dev cluster: how fast does Gantry's autoscaler react, and at what cost?

    .venv/bin/python bench/autoscale.py [--quick]

Runs real tritonserver pods (a Python-backend model with two instances and a fixed 40 ms
service time, so one replica carries ≈ 45 req/s) on the embedded dev cluster, sends an open-loop step
(15 → 100 → 15 req/s) with the load generator through the headless Service's endpoints,
and lets the builtin autoscaler (1 s rounds, p95 target 150 ms, scale-down window 20 s)
scale the Deployment. It prints:

- time from the step to the first scale-up decision, and from there to the new
  replicas being Ready (in the EndpointSlice);
- client p95 before, early in, late in and after the step, the server-side p95 the
  autoscaler saw early and late in the step (against its target), and the share of requests
  each replica answered (round-robin keeps sending the first replica 1/N of the traffic
  while it drains the backlog it built up before help arrived, which shows in the p95);
- the same offered-load trace replayed through a simulation of the default Kubernetes
  HPA (15 s sync, 0.1 tolerance, 300 s scale-down stabilization, +100 %/+4 pods per
  15 s) and through Gantry's own decision function on the same simulated service, for
  comparison.

`--stock-clients K` sends the same step from K pods instead, each one plain long-lived
`tritonclient` on `dns:///stepload-headless…:8001` with the documented channel
configuration (round_robin, bounded retries), against Triton pods with Gantry's gRPC
connection age and the bounded queue from the latency target (`--plain-triton`: without
them, for comparison). It reports the clients' p95 in the 10 s before and the first 10 s
of the step, each replica's share after the scale-up (Triton's counters), errors, and
retries (attempts Triton counted beyond the clients' requests). Triton pods drain as the
operator's do for the same configuration (preStop of connection age + 10 % + 2 s, exit
timeout, grace period), so the scale-down at the end is measured as users would see it.

Figures go to stdout; the plot and the raw results go to bench/results/.
Runtime ≈ 3 minutes (`--quick`: ≈ 1.5).
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
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
from gantry.api.inferenceservice import AutoscalingSpec, InferenceServiceSpec
from gantry.autoscaler.decision import Observation, Policy, Recommendation, decide
from gantry.autoscaler.rates import PodWindow, ServiceMetrics
from gantry.config import OperatorConfig
from gantry.inferenceservice.optimize import queue_policy
from gantry.k8s.client import KubeClient
from gantry_cli.loadgen.report import plot
from gantry_cli.loadgen.scenario import PLAIN_TRITON, ScenarioResult, run_scenario, write_model
from gantry_cli.loadgen.stock_pods import summarize

RESULTS = Path(__file__).resolve().parent / "results"
SERVICE_MS = 40.0
INSTANCES = 2  # 2 × 40 ms: the capacity of one 20 ms instance, and a queue policy applies
PER_REQUEST_S = SERVICE_MS / INSTANCES / 1000  # a replica's time per request at saturation
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


def _server_p95(rounds: list[dict[str, Any]], start: float, end: float) -> float | None:
    """Median of the autoscaler rounds' server-side p95 between `start` and `end`."""
    values = [r["p95_ms"] for r in rounds if start <= r["t"] <= end and r["p95_ms"] is not None]
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
    print(
        f"server p95 (median of the autoscaler rounds' p95): first 10 s of the step "
        f"{_server_p95(rounds, step, step + 10)} ms, last 10 s of the step "
        f"{_server_p95(rounds, step_over - 10, step_over)} ms (target {TARGET_MS:g} ms)"
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


def report_stock(result: ScenarioResult, step_at: int, step_end: int, clients: int) -> None:
    """Stock-client mode: what K plain long-lived tritonclient processes in pods saw."""
    t0 = result.load_started_at
    step, step_over = t0 + step_at, t0 + step_end
    rounds = [r for r in result.rounds if "replicas" in r]
    summary = summarize(result.load["clients"], window=(step_at, step_at + 10))
    before = summarize(result.load["clients"], window=(max(0, step_at - 10), step_at))
    # Attempts Triton counted, from the autoscaler's per-round rates (pods that were scaled
    # away before the end are in them; the final counters are only the remaining pods').
    attempts = rejected = 0.0
    for prev, cur in itertools.pairwise(rounds):
        if t0 <= cur["t"] and cur["rps"] is not None:
            attempts += cur["rps"] * (cur["t"] - prev["t"])
            rejected += (cur.get("rejected_rps") or 0.0) * (cur["t"] - prev["t"])
    late = max(float(c.get("late_start_s", 0)) for c in result.load["clients"])
    print(
        f"\n== {clients} stock tritonclient pods (one long-lived channel each, dns:/// + round_robin)"
    )
    ups = [r for r in rounds if r["direction"] == "up" and step <= r["t"] <= step_over]
    if ups:
        print(f"step → first scale-up decision: {ups[0]['t'] - step:5.1f} s  ({ups[0]['reason']})")
    ready_at = next(
        (r["t"] for r in rounds if r["t"] >= step and r["ready"] >= max(2, r["replicas"])), None
    )
    if ready_at is not None:
        print(f"step → scaled-up replicas all Ready: {ready_at - step:5.1f} s")
    if late > 0:
        print(f"(a client started {late:.1f} s late: its first requests were skipped)")
    print(
        f"client p95: 10 s before the step {before.window_p95_ms} ms, first 10 s of the step "
        f"{summary.window_p95_ms} ms, whole run {summary.p95_ms} ms"
    )
    for label, lo, hi in (("first 10 s after scale-up", 0, 10), ("last 10 s of the step", -10, 0)):
        base = (ready_at or step) if lo >= 0 else step_over
        window = [r for r in rounds if base + lo <= r["t"] <= base + hi and r["share"]]
        if window:
            shares = window[-1]["share"]
            text = ", ".join(f"…{p[-5:]} {s:.0%}" for p, s in sorted(shares.items()))
            print(f"share per replica, {label} (Triton counters, last round): {text}")
    # Triton counts the queue timeouts it answered; those the clients did not see as their
    # final error were retried. A full queue's refusals (and their retries) Triton 2.51
    # does not count, so this is a lower bound.
    timeout_errors = sum(n for e, n in summary.errors.items() if "timeout expired" in e)
    retries = max(0.0, rejected - timeout_errors)
    print(
        f"requests: {summary.sent} sent, {summary.ok} answered, {summary.failed} errors "
        f"({summary.failed / max(summary.sent, 1):.1%}) {summary.errors or ''}; Triton counted "
        f"{attempts:.0f} attempts, {rejected:.0f} queue timeouts → retries ≥ {retries:.0f} "
        f"({retries / max(summary.sent, 1):.1%} of requests)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="a shorter step (≈ 1.5 min)")
    parser.add_argument(
        "--stock-clients",
        type=int,
        default=0,
        metavar="K",
        help="send the step from K pods running a plain long-lived tritonclient each",
    )
    parser.add_argument(
        "--plain-triton",
        action="store_true",
        help="Triton without Gantry's connection age and bounded queue (for comparison)",
    )
    parser.add_argument(
        "--connection-age",
        type=float,
        default=OperatorConfig().triton_grpc_max_connection_age_seconds,
        metavar="S",
        help="Triton's gRPC connection age (tritonGrpcMaxConnectionAgeSeconds)",
    )
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
        queue: dict[str, Any] = {}
        if not args.plain_triton:  # what the operator writes into config.pbtxt for `spec`
            service = InferenceServiceSpec.model_validate(
                {
                    "model": {"storageUri": "pvc://models/stepload"},
                    "autoscaling": spec,
                    "triton": {"instancesPerReplica": INSTANCES},
                }
            )
            policy = queue_policy(service) or {}
            queue = {
                "queue_timeout_ms": policy["timeoutMicroseconds"] / 1000,
                "max_queue_size": policy.get("maxQueueSize", 0),
            }
        repository = write_model(
            Path(tmp) / "repo", "stepload", SERVICE_MS, instances=INSTANCES, **queue
        )
        config = (
            PLAIN_TRITON
            if args.plain_triton
            else OperatorConfig(triton_grpc_max_connection_age_seconds=args.connection_age)
        )
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
                    config=config,
                    stock_clients=args.stock_clients,
                )
            )
            kube.close()
    if args.stock_clients:
        report_stock(result, step_at, step_end, args.stock_clients)
        RESULTS.mkdir(parents=True, exist_ok=True)
        variant = "plain" if args.plain_triton else f"age{args.connection_age:g}"
        out = RESULTS / f"autoscale-stock-{variant}.json"
        out.write_text(json.dumps({"load": result.load, "rounds": result.rounds}))
        print(f"\nresults: {out}\nbench took {time.monotonic() - started:.0f} s")
        return 0
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
        "gantry (simulated)": simulate_gantry(trace, spec, PER_REQUEST_S * 1.1, ready_s, tail),
        "default HPA (simulated)": simulate_default_hpa(
            trace, spec, PER_REQUEST_S * 1.1, ready_s, tail
        ),
    }
    print(
        f"\n== Same trace, simulated service (capacity {1 / (PER_REQUEST_S * 1.1):.0f} req/s per replica, Ready after {ready_s:.1f} s)"
    )
    for label, points in sims.items():
        after_step = [(t, n) for t, n in points if t >= step_at]
        enough = next((t for t, n in after_step if n * 1 / (PER_REQUEST_S * 1.1) > HIGH), None)
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
        title=f"step load {LOW}→{HIGH}→{LOW} req/s, 2 × 40 ms/request/replica",
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
