"""The dev cluster's costs: building the control plane, starting it, and its memory.

    python bench/devcluster.py                 # start-up times and resident memory
    python bench/devcluster.py --cold-build    # also a cold `go build` (empty build cache)

- **Cold build**: `scripts/build-k8s.sh` into a scratch directory with an empty Go build
  cache (`GOCACHE`), so every package compiles; the module cache (`GOMODCACHE`) is reused
  unless `--cold-modules` (then the Go module proxy is asked for every module too).
- **Start-up**: wall time of `DevCluster.start()` until the node is Ready (and, with the
  operator, until the chart's operator Deployment is Available), `--runs` times each.
- **Memory**: resident set (VmRSS) of etcd, kube-apiserver, kube-controller-manager,
  kube-scheduler, the node agent's process and the operator pod, after `--settle` seconds
  at rest.

Prints a table and writes `bench/results/devcluster.json`.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dev_cluster.cluster import OPERATOR_NAMESPACE, DevCluster  # noqa: E402


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def tree_size_mib(path: Path) -> float:
    total = 0
    for root, _, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += (Path(root) / name).lstat().st_size
    return total / 1024**2


def cold_build(cold_modules: bool) -> dict[str, Any]:
    scratch = Path(tempfile.mkdtemp(prefix="gantry-cold-build-"))
    env = {**os.environ, "GOCACHE": str(scratch / "gocache")}
    if cold_modules:
        env["GOMODCACHE"] = str(scratch / "gomodcache")
    modcache = Path(
        env.get("GOMODCACHE")
        or subprocess.run(
            ["go", "env", "GOMODCACHE"], capture_output=True, text=True
        ).stdout.strip()
    )
    start = time.monotonic()
    subprocess.run(
        [str(ROOT / "scripts" / "build-k8s.sh"), str(scratch / "tools")], env=env, check=True
    )
    seconds = time.monotonic() - start
    result = {
        "seconds": round(seconds, 1),
        "cold_modules": cold_modules,
        "build_cache_mib": round(tree_size_mib(scratch / "gocache")),
        "module_cache_mib": round(tree_size_mib(modcache)),
        "binaries_mib": round(tree_size_mib(scratch / "tools" / "bin")),
    }
    subprocess.run(["chmod", "-R", "u+w", str(scratch)], check=False)
    shutil.rmtree(scratch, ignore_errors=True)
    return result


def operator_pids(state: Path) -> list[int]:
    """Host pids of the operator pod's processes (their command line names the module)."""
    pids = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"gantry.controller" in cmdline and any(b"--liveness" in a for a in cmdline):
            pids.append(int(proc.name))
    return pids


def start_up(runs: int, operator: bool, settle: float) -> dict[str, Any]:
    times = []
    memory: dict[str, float] = {}
    for run in range(runs):
        state = Path(tempfile.mkdtemp(prefix="gantry-bench-dev-"))
        start = time.monotonic()
        cluster = DevCluster(state, operator=operator)
        try:
            cluster.start()
            times.append(time.monotonic() - start)
            if run == runs - 1:
                time.sleep(settle)  # at rest, after start-up work has settled
                assert cluster.control_plane is not None
                for name, pid in cluster.control_plane.pids().items():
                    memory[name] = round(rss_mib(pid), 1)
                memory["node agent (this process)"] = round(rss_mib(os.getpid()), 1)
                if operator:
                    memory[f"operator pod ({OPERATOR_NAMESPACE})"] = round(
                        sum(rss_mib(p) for p in operator_pids(state)), 1
                    )
        finally:
            cluster.stop()
            shutil.rmtree(state, ignore_errors=True)
    return {
        "operator": operator,
        "runs": runs,
        "seconds_median": round(statistics.median(times), 2),
        "seconds_max": round(max(times), 2),
        "rss_mib": memory,
        "control_plane_rss_mib": round(
            sum(v for k, v in memory.items() if k.startswith(("etcd", "kube-"))), 1
        ),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--settle", type=float, default=20.0)
    parser.add_argument("--cold-build", action="store_true")
    parser.add_argument("--cold-modules", action="store_true")
    args = parser.parse_args()
    results: dict[str, Any] = {"cpus": os.cpu_count()}
    if args.cold_build or args.cold_modules:
        results["cold_build"] = cold_build(args.cold_modules)
    results["start"] = [
        start_up(args.runs, False, args.settle),
        start_up(args.runs, True, args.settle),
    ]

    if "cold_build" in results:
        b = results["cold_build"]
        print(
            f"cold build ({'empty module and build caches' if b['cold_modules'] else 'empty build cache'}): "
            f"{b['seconds']:.0f} s; build cache {b['build_cache_mib']} MiB, "
            f"module cache {b['module_cache_mib']} MiB, binaries {b['binaries_mib']} MiB"
        )
    for s in results["start"]:
        what = (
            "with the operator (helm install, Deployment Available)"
            if s["operator"]
            else "node Ready"
        )
        print(
            f"gantry dev up → {what}: median {s['seconds_median']} s, max {s['seconds_max']} s ({s['runs']} runs)"
        )
    print("resident memory at rest (MiB):")
    for name, mib in results["start"][-1]["rss_mib"].items():
        print(f"  {name:<40} {mib:8.1f}")
    print(f"  {'control plane total':<40} {results['start'][-1]['control_plane_rss_mib']:8.1f}")
    out = ROOT / "bench" / "results" / "devcluster.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(results, indent=2))
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
