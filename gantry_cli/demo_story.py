"""The story `gantry demo` tells on the embedded dev cluster, step by step.

Train → serve → predict → load → autoscale, with real processes: `torchrun` workers, an
optimize Job running ONNX Runtime behind the accuracy gate, `tritonserver` pods and gRPC
clients. The manifests are the ones in `examples/`, with demo-sized autoscaling for the
InferenceService (a throughput target a laptop reaches, a 20 s scale-down window so the
demo shows it, small pods so three fit on a 2-CPU dev node).
"""

from __future__ import annotations

import copy
import json
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import click
import numpy as np
import yaml

REPO_ROOT = Path(__file__).resolve().parents[1]
NAMESPACE = "ml"
GROUP, VERSION = "gantry.dev", "v1alpha1"
# Chart values for the demo's operator: Triton metrics every 2 s, so the load step's
# scale-up shows within seconds.
OPERATOR_VALUES: dict[str, Any] = {"config": {"scrapeIntervalSeconds": 2}}


class DemoError(click.ClickException):
    """A step did not reach its goal; the message says which and why."""


def _say(step: str) -> None:
    click.secho(f"\n==> {step}", bold=True)


def _info(text: str) -> None:
    click.echo(f"    {text}")


def _examples(name: str) -> list[dict[str, Any]]:
    path = REPO_ROOT / "examples" / name
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d]


def _wait(what: str, check: Callable[[], Any], *, timeout: float, interval: float = 1.0) -> Any:
    """Poll `check` until it returns something truthy, or fail with `what`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = check()
        if result:
            return result
        time.sleep(interval)
    raise DemoError(f"timed out after {timeout:.0f} s waiting for {what}")


class Story:
    """The demo's steps against one running dev cluster."""

    def __init__(self, cluster: Any) -> None:
        from kubernetes import client

        self.cluster = cluster
        # The generated client's annotations are partial; the demo reads plain dicts.
        self.api: Any = cluster.api_client()
        self.core: Any = client.CoreV1Api(self.api)
        self.apps: Any = client.AppsV1Api(self.api)
        self.custom: Any = client.CustomObjectsApi(self.api)

    # ---- helpers -------------------------------------------------------------------

    def _get(self, plural: str, name: str) -> dict[str, Any]:
        obj: dict[str, Any] = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, plural, name
        )
        return obj

    def _apply(self, doc: dict[str, Any]) -> None:
        from kubernetes import utils

        create_from_dict: Any = utils.create_from_dict
        kind = doc["kind"]
        if doc["apiVersion"].startswith(GROUP):
            plural = {"TrainingJob": "trainingjobs", "InferenceService": "inferenceservices"}
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, plural[kind], doc
            )
        else:
            create_from_dict(self.api, doc, namespace=NAMESPACE)
        _info(f"created {kind}/{doc['metadata']['name']}")

    # ---- the story -----------------------------------------------------------------

    def train(self) -> dict[str, Any]:
        _say("1. Train: a TrainingJob runs torchrun DDP on 2 worker pods (gloo, CPU)")
        self.core.create_namespace({"metadata": {"name": NAMESPACE}})
        for doc in _examples("trainingjob-digits.yaml"):
            self._apply(doc)
        last = ""
        started = time.monotonic()

        def finished() -> dict[str, Any] | None:
            nonlocal last
            job = self._get("trainingjobs", "digits-cnn")
            status = job.get("status") or {}
            line = f"{status.get('phase', 'Pending'):<10} " + str(
                (status.get("progress") or {}).get("summary") or ""
            )
            if line != last:
                _info(f"[{time.monotonic() - started:5.1f} s] kubectl get tj: {line}")
                last = line
            if status.get("phase") == "Failed":
                raise DemoError(f"the TrainingJob failed: {status.get('message')}")
            return job if status.get("phase") == "Succeeded" else None

        job: dict[str, Any] = _wait("the TrainingJob to succeed", finished, timeout=900)
        model = job["status"].get("model") or {}
        _info(f"exported {', '.join(model.get('formats', []))} to {model.get('uri')}")
        accuracy = (model.get("metrics") or {}).get("test_accuracy")
        if accuracy is not None:
            _info(f"held-out test accuracy reported by the job: {accuracy:.3f}")
        return job

    def serve(self) -> dict[str, Any]:
        _say("2. Serve: an InferenceService optimizes the model and runs Triton")
        (doc,) = _examples("inferenceservice-digits.yaml")
        doc = copy.deepcopy(doc)
        # Small pods, so three replicas fit on a laptop-sized dev node (2 CPUs here).
        doc["spec"]["resources"] = {"requests": {"cpu": "250m", "memory": "512Mi"}}
        doc["spec"]["autoscaling"] = {
            "minReplicas": 1,
            "maxReplicas": 3,
            "targets": {"requestsPerSecondPerReplica": 150},
            "behavior": {
                "scaleUp": {"stabilizationSeconds": 0, "maxReplicasPerStep": 2},
                "scaleDown": {"stabilizationSeconds": 20, "maxReplicasPerStep": 1},
            },
        }
        self._apply(doc)
        last = ""
        started = time.monotonic()

        def ready() -> dict[str, Any] | None:
            nonlocal last
            svc = self._get("inferenceservices", "digits")
            status = svc.get("status") or {}
            line = f"{status.get('phase', 'Pending'):<15} {status.get('message') or ''}"
            if line != last:
                _info(f"[{time.monotonic() - started:5.1f} s] {line}")
                last = line
            if status.get("phase") == "Failed":
                raise DemoError(f"the InferenceService failed: {status.get('message')}")
            return svc if status.get("phase") == "Ready" else None

        svc: dict[str, Any] = _wait("the InferenceService to be Ready", ready, timeout=600)
        model = svc["status"].get("model") or {}
        _info(
            f"serving version {model.get('version')} with backend {model.get('backend')}, "
            f"precision {model.get('precision')} (requested {model.get('requestedPrecision')})"
        )
        if model.get("gate"):
            _info(f"accuracy gate: {model['gate']}")
        _info(f"gRPC endpoint in the cluster: {(svc['status'].get('endpoints') or {}).get('grpc')}")
        return svc

    def predict(self) -> None:
        _say("3. Predict: classify the held-out digits over gRPC (tritonclient)")
        from gantry_cli.predict import find_target, model_signature, predict
        from training_jobs.examples.digits_data import heldout_split

        target = find_target("digits", NAMESPACE, self.cluster.kubeconfig, None, 10.0)
        assert target.model is not None
        signature = model_signature(target.url, target.model)
        images, labels = heldout_split()
        correct, latencies = 0, []
        for start in range(0, len(images), 16):
            batch = images[start : start + 16].astype(np.float32)
            outputs, latency = predict(target.url, target.model, {signature.inputs[0].name: batch})
            logits = outputs[signature.outputs[0].name]
            correct += int((logits.argmax(axis=1) == labels[start : start + len(batch)]).sum())
            latencies.append(latency)
        accuracy = correct / len(images)
        _info(
            f"{len(images)} digits, accuracy {accuracy:.3f}, "
            f"median batch latency {float(np.median(latencies)):.1f} ms (pod {target.url})"
        )
        if accuracy < 0.9:
            raise DemoError(f"served accuracy {accuracy:.3f} is below 0.90")

    def _replicas(self) -> tuple[int, int]:
        deployment = self.apps.read_namespaced_deployment("digits-triton", NAMESPACE)
        return deployment.spec.replicas or 0, deployment.status.ready_replicas or 0

    def load_and_autoscale(self) -> None:
        _say("4. Load: a step of gRPC load; the autoscaler adds replicas, then removes them")
        out = Path(tempfile.mkdtemp(prefix="gantry-demo-load-")) / "load.json"
        profile = "0:40rps,10:400rps,50:0"
        _info(f"gantry bench load digits --profile {profile}  (40 req/s, then 400 req/s for 40 s)")
        command = [
            sys.executable, "-m", "gantry_cli", "bench", "load", "digits",
            "--namespace", NAMESPACE, "--kubeconfig", str(self.cluster.kubeconfig),
            "--profile", profile, "--output", str(out), "--quiet",
        ]  # fmt: skip
        started = time.monotonic()
        seen: tuple[int, int] = self._replicas()
        peak = seen[0]
        with subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT) as load:
            while load.poll() is None:
                now = self._replicas()
                if now != seen:
                    _info(
                        f"[{time.monotonic() - started:5.1f} s] replicas {now[0]}, ready {now[1]}"
                    )
                    seen, peak = now, max(peak, now[0])
                time.sleep(1.0)
            output = (load.stdout.read() if load.stdout else b"").decode(errors="replace")
        if load.returncode != 0:
            raise DemoError(f"the load generator failed:\n{output[-2000:]}")
        results = json.loads(out.read_text())
        _info(f"load results: {json.dumps(results.get('summary', {}))[:300]}")
        _info(f"timeline and plot: {out} and {out.with_suffix('.png')}")
        status = (self._get("inferenceservices", "digits").get("status") or {}).get("autoscaling")
        if status:
            _info(f"last decision: {status.get('lastDecision')}")
        if peak <= 1:
            raise DemoError("the autoscaler did not add a replica under 400 req/s")
        _info(f"peak replicas {peak}; waiting for the scale-down window (20 s) to pass")

        def back_to_one() -> bool:
            nonlocal seen
            now = self._replicas()
            if now != seen:
                _info(f"[{time.monotonic() - started:5.1f} s] replicas {now[0]}, ready {now[1]}")
                seen = now
            return now[0] == 1

        _wait("replicas to return to minReplicas", back_to_one, timeout=240)

    def table(self) -> None:
        _say("kubectl get tj,infsvc -n ml")
        for plural, columns in (
            ("trainingjobs", ("phase", "attempts")),
            ("inferenceservices", ("phase", "ready")),
        ):
            for obj in self.custom.list_namespaced_custom_object(GROUP, VERSION, NAMESPACE, plural)[
                "items"
            ]:
                status = obj.get("status") or {}
                values = "  ".join(f"{c}={status.get(c)}" for c in columns)
                _info(f"{obj['kind']}/{obj['metadata']['name']}: {values}")


def run_story(*, with_load: bool = True) -> None:
    """Start a dev cluster with the operator, tell the story, stop everything."""
    from dev_cluster.cluster import DevCluster

    state = Path(tempfile.mkdtemp(prefix="gantry-demo-"))
    _say(f"Starting the embedded dev cluster (state in {state})")
    with DevCluster(
        state, operator=True, backoff_base=2.0, operator_values=OPERATOR_VALUES
    ) as cluster:
        _info(f"API server {cluster.url}; kubeconfig {cluster.kubeconfig}")
        _info(f"try: kubectl --kubeconfig {cluster.kubeconfig} get tj,infsvc,pods -A")
        story = Story(cluster)
        story.train()
        story.serve()
        story.predict()
        if with_load:
            story.load_and_autoscale()
        story.table()
        _say("Stopping the dev cluster: every pod process and the operator exit")
    click.echo(json.dumps({"demo": "ok", "state": str(state)}))
