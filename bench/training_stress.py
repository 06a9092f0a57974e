"""Back-to-back multi-worker TrainingJobs on the dev cluster: does a finished job ever restart?

    python bench/training_stress.py --jobs 20 --workers 2 --epochs 3

Runs K TrainingJobs one after another (each a real torchrun DDP job over gloo, with a
checkpoint and an exported model) through the chart-installed operator, and reports per
job its attempts, the wall time from creation to Succeeded, and the exit codes torchrun
reported for attempts that did not count. A *spurious restart* is a job that needed more
than one attempt although its script never fails: the number must be 0.

Prints a table and writes `bench/results/training_stress.json`.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "operator"))
sys.path.insert(0, str(ROOT))

from dev_cluster.cluster import DevCluster  # noqa: E402
from gantry.k8s.client import KubeClient  # noqa: E402

API, PLURAL, NS = "gantry.dev/v1alpha1", "trainingjobs", "default"


def claim(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"accessModes": ["ReadWriteOnce"], "resources": {"requests": {"storage": "1Gi"}}},
    }


def job(name: str, workers: int, epochs: int) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "command": ["python", "-m", "training_jobs.examples.digits"],
            "args": ["--epochs", str(epochs)],
            "workers": workers,
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
            "checkpoint": {"volume": {"persistentVolumeClaim": {"claimName": f"ck-{name}"}}},
            "output": {"storageUri": f"pvc://stress-models/{name}"},
            "backoffLimit": 3,
        },
    }


def run_one(
    client: KubeClient, name: str, workers: int, epochs: int, timeout: float
) -> dict[str, Any]:
    client.create(claim(f"ck-{name}"))
    start = time.monotonic()
    client.create(job(name, workers, epochs))
    status: dict[str, Any] = {}
    while time.monotonic() - start < timeout:
        status = (client.get(API, PLURAL, name, NS) or {}).get("status") or {}
        if status.get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(1)
    return {
        "name": name,
        "phase": status.get("phase", "Timeout"),
        "attempts": int(status.get("attempts") or 0),
        "seconds": round(time.monotonic() - start, 1),
        "message": status.get("message", ""),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=20)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--timeout", type=float, default=600)
    args = parser.parse_args()
    results = []
    with (
        tempfile.TemporaryDirectory(prefix="gantry-stress-") as state,
        DevCluster(state, operator=True, backoff_base=2.0) as cluster,
    ):
        client = KubeClient.for_kubeconfig(cluster.kubeconfig)
        client.create(claim("stress-models"))
        for i in range(args.jobs):
            result = run_one(client, f"stress-{i:02d}", args.workers, args.epochs, args.timeout)
            results.append(result)
            print(
                f"{result['name']}: {result['phase']:<9} attempts={result['attempts']} "
                f"{result['seconds']:6.1f} s {result['message'][:80]}",
                flush=True,
            )
            client.delete(API, PLURAL, result["name"], NS)
        client.close()
    spurious = sum(1 for r in results if r["phase"] == "Succeeded" and r["attempts"] > 1)
    failed = sum(1 for r in results if r["phase"] != "Succeeded")
    print(
        f"{len(results)} jobs × {args.workers} workers: {spurious} spurious restarts, "
        f"{failed} not Succeeded"
    )
    out = ROOT / "bench" / "results" / "training_stress.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(
        json.dumps({"jobs": results, "spurious_restarts": spurious, "failed": failed}, indent=2)
    )
    print(f"written {out.relative_to(ROOT)}")


if __name__ == "__main__":
    main()
