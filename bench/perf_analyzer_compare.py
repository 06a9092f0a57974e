"""Triton's perf_analyzer against `gantry bench load` on the same steady load.

    .venv/bin/python bench/perf_analyzer_compare.py [--seconds 20] [--rate 40] [--concurrency 2]

perf_analyzer (2.51, C++, from the tritonclient wheel; `make tools` puts it in
.tools/bin) is the reference Triton load client; Gantry's own generator (`gantry bench
load`, `gantry_cli/loadgen/`) is kept for what perf_analyzer cannot do: a load that changes
over time (steps, ramps) with a per-second timeline, the replica count and a plot, sent to
the Ready pods of an InferenceService as they come and go. This bench checks that on a
steady load the two measure the same thing.

It starts one tritonserver from .tools on 127.0.0.1 with the load tools' fixed-service-time
model (Python backend, one instance, 10 ms per request, so ~100 req/s at most), then for
two steady loads — an open-loop request rate and a closed loop of N concurrent clients —
runs perf_analyzer and `gantry bench load` one after the other (never together) for the
same time, and prints each one's throughput and client-side p50 and whether they agree:
throughput within 5 % and p50 within 20 % of perf_analyzer's, and how many requests the
open loop sent against the number its profile offers. Writes
bench/results/perf_analyzer_compare.json. About a minute and a half with the defaults.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from dev_cluster.local_triton import (
    loopback_args,
    tools_dir,
    triton_available,
    triton_environment,
    tritonserver_argv,
)
from dev_cluster.ports import pick_port
from gantry_cli.loadgen.scenario import write_model

MODEL = "fixed"
SERVICE_MS = 10.0
THROUGHPUT_TOLERANCE = 0.05
P50_TOLERANCE = 0.20


def start_triton(repository: Path, log: Path) -> tuple[subprocess.Popen[bytes], int]:
    """tritonserver on 127.0.0.1 (free ports); the process and its gRPC port, once Ready."""
    http, grpc, metrics = pick_port(), pick_port(), pick_port()
    argv = tritonserver_argv(loopback_args(repository, http, grpc, metrics))
    proc = subprocess.Popen(
        argv,
        env=triton_environment(os.environ),
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"tritonserver exited: {log.read_text(errors='replace')[-2000:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/v2/health/ready", timeout=1):
                return proc, grpc
        except OSError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit(f"tritonserver not Ready in 120 s; see {log}")


def perf_analyzer(
    executable: Path, url: str, load: dict[str, Any], seconds: float, work: Path
) -> dict[str, float]:
    """One perf_analyzer measurement: three stable windows of seconds/3 each."""
    out = work / f"perf_analyzer-{load['kind']}.csv"
    argv = [
        str(executable),
        "-m",
        MODEL,
        "-u",
        url,
        "-i",
        "grpc",
        "--measurement-interval",
        str(round(seconds * 1000 / 3)),
        "--stability-percentage",
        "10",
        "--max-trials",
        "6",
        "-f",
        str(out),
    ]
    if load["kind"] == "rate":
        argv += ["--request-rate-range", str(load["value"]), "--request-distribution", "constant"]
    else:
        argv += ["--concurrency-range", str(load["value"])]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds * 10 + 120)
    if result.returncode != 0:
        raise SystemExit(f"perf_analyzer failed:\n{result.stdout[-3000:]}\n{result.stderr}")
    with out.open() as stream:
        (row,) = list(csv.DictReader(stream))
    return {
        "throughput": float(row["Inferences/Second"]),
        "p50_ms": float(row["p50 latency"]) / 1000,
        "p95_ms": float(row["p95 latency"]) / 1000,
    }


def gantry_load(url: str, load: dict[str, Any], seconds: float, work: Path) -> dict[str, float]:
    """`gantry bench load` with the same load held for `seconds`."""
    out = work / f"gantry-{load['kind']}.json"
    unit = "rps" if load["kind"] == "rate" else "c"
    profile = f"0:{load['value']}{unit},{seconds:g}:0"
    argv = [sys.executable, "-m", "gantry_cli", "bench", "load", "--url", url]
    argv += ["--model", MODEL, "--profile", profile, "--output", str(out), "--quiet"]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=seconds * 3 + 120)
    if result.returncode != 0:
        raise SystemExit(f"gantry bench load failed:\n{result.stdout}\n{result.stderr}")
    summary = json.loads(out.read_text())["summary"]
    if summary["errors"]:
        raise SystemExit(f"gantry bench load saw errors: {summary}")
    measured = {
        "throughput": float(summary["ok_per_second"]),
        "p50_ms": float(summary["p50_ms"]),
        "p95_ms": float(summary["p95_ms"]),
        "sent": float(summary["sent"]),
    }
    if load["kind"] == "rate":  # what the open loop should send: the rate for `seconds`
        measured["offered"] = float(load["value"]) * seconds
    return measured


def compare(reference: dict[str, float], ours: dict[str, float]) -> dict[str, Any]:
    throughput = ours["throughput"] / reference["throughput"] - 1
    p50 = ours["p50_ms"] / reference["p50_ms"] - 1
    return {
        "throughputDiff": round(throughput, 4),
        "p50Diff": round(p50, 4),
        "agree": abs(throughput) <= THROUGHPUT_TOLERANCE and abs(p50) <= P50_TOLERANCE,
    }


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=20.0, help="per measurement")
    parser.add_argument("--rate", type=int, default=40, help="open-loop requests/s")
    parser.add_argument("--concurrency", type=int, default=2, help="closed-loop clients")
    args = parser.parse_args()
    executable = tools_dir() / "bin" / "perf_analyzer"
    if not executable.exists() or not triton_available():
        raise SystemExit("perf_analyzer or tritonserver is not under .tools: run `make tools`")
    loads = [
        {"kind": "rate", "value": args.rate, "label": f"{args.rate} req/s, open loop"},
        {
            "kind": "concurrency",
            "value": args.concurrency,
            "label": f"{args.concurrency} clients, closed loop",
        },
    ]
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="gantry-pa-") as tmp:
        work = Path(tmp)
        repository = write_model(work / "repo", MODEL, SERVICE_MS)
        proc, grpc = start_triton(repository, work / "triton.log")
        url = f"127.0.0.1:{grpc}"
        try:
            for load in loads:
                reference = perf_analyzer(executable, url, load, args.seconds, work)
                ours = gantry_load(url, load, args.seconds, work)
                rows.append(
                    {
                        "load": load["label"],
                        "perfAnalyzer": reference,
                        "gantryBenchLoad": ours,
                        **compare(reference, ours),
                    }
                )
        finally:
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
    print(
        f"\nfixed-service-time model ({SERVICE_MS:g} ms, 1 instance, Python backend), "
        f"{args.seconds:g} s per run; agree = throughput within "
        f"{THROUGHPUT_TOLERANCE:.0%}, p50 within {P50_TOLERANCE:.0%}"
    )
    print(
        f"{'load':26} {'client':18} {'req/s':>8} {'p50 ms':>7} {'p95 ms':>7}  "
        f"{'Δ req/s':>8} {'Δ p50':>7} agree"
    )
    for row in rows:
        for name, key in (
            ("perf_analyzer", "perfAnalyzer"),
            ("gantry bench load", "gantryBenchLoad"),
        ):
            m = row[key]
            tail = (
                f"{row['throughputDiff']:>+8.1%} {row['p50Diff']:>+7.1%} "
                f"{'yes' if row['agree'] else 'NO'}"
                if key == "gantryBenchLoad"
                else ""
            )
            print(
                f"{row['load']:26} {name:18} {m['throughput']:>8.1f} {m['p50_ms']:>7.2f} "
                f"{m['p95_ms']:>7.2f}  {tail}"
            )
    for row in rows:
        ours = row["gantryBenchLoad"]
        if "offered" in ours:
            print(
                f"gantry bench load, {row['load']}: sent {ours['sent']:.0f} requests of the "
                f"{ours['offered']:.0f} the profile offers ({ours['sent'] / ours['offered'] - 1:+.1%})"
            )
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    (out / "perf_analyzer_compare.json").write_text(
        json.dumps({"seconds": args.seconds, "rows": rows}, indent=2) + "\n"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
