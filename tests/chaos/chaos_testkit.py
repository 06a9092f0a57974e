"""The fault suite's toolkit: the train → serve story, a ledger of children, the checks.

Every case runs the same small story on its own dev cluster (real control plane, the
chart-installed operator, pods as local processes): a 2-worker digits TrainingJob with a
checkpoint claim and an output, and an InferenceService on its model (`trainingJobRef`),
both created up front. A fault is injected while the story runs; afterwards the story
must reach the end state of an undisturbed run:

- the TrainingJob Succeeded with one attempt, its checkpoints and export on the claims;
- the InferenceService Ready, answering held-out digits over gRPC;
- no duplicate children: each Job name seen with one uid only, one Job per attempt, one
  optimize Job per model digest, one pod per (attempt, worker index);
- no orphans: every ownerReference in the namespace names an object that exists.

The ledger polls the namespace every half second for the whole run (while the API server
is down it counts failed polls), so a child created and deleted again in between is seen.
Figures (kills survived, convergence times) go to the test's output and to
`.gantry/chaos/report.jsonl`; nothing here asserts a time.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from dev_cluster.cluster import DevCluster
from gantry.k8s.client import KubeClient, RetryPolicy
from gantry.k8s.errors import ApiError
from tests.conftest import REPO_ROOT, claim_manifest, wait_for

NS = "chaos"
API = "gantry.dev/v1alpha1"
TJ, SVC = "digits-cnn", "digits"
EPOCHS = 8
CKPT_CLAIM, MODELS_CLAIM = "ckpt", "models"
OPERATOR_NS = "gantry-system"
HEALTH_PORT = 8080  # the chart's healthPort
REPORT = REPO_ROOT / ".gantry" / "chaos" / "report.jsonl"

# The ledger's and the checks' client: short timeouts, no retries (a poll that fails while
# the API server is away is counted, not waited for).
POLL_RETRY = RetryPolicy(connect_timeout=2.0, read_timeout=5.0, attempts=1)


def training_job(epochs: int = EPOCHS, epoch_sleep: float = 1.0) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "TrainingJob",
        "metadata": {"name": TJ, "namespace": NS},
        "spec": {
            "command": ["python", "-m", "training_jobs.examples.digits"],
            "args": ["--epochs", str(epochs), "--epoch-sleep", str(epoch_sleep)],
            "workers": 2,
            "gpusPerWorker": 0,
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
            "checkpoint": {"volume": {"persistentVolumeClaim": {"claimName": CKPT_CLAIM}}},
            "output": {"storageUri": f"pvc://{MODELS_CLAIM}/{TJ}"},
            # A spurious restart must show as attempts == 2, not as a failed story.
            "backoffLimit": 2,
        },
    }


def inference_service(replicas: int = 1) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "InferenceService",
        "metadata": {"name": SVC, "namespace": NS},
        "spec": {
            "model": {"trainingJobRef": {"name": TJ}},
            "optimization": {
                "precision": "fp32",
                "tensorrt": {"enabled": False},
                "accuracy": {"samples": 64},
            },
            "resources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
            "autoscaling": {
                "minReplicas": replicas,
                "maxReplicas": replicas,
                "targets": {"requestsPerSecondPerReplica": 1000},
            },
        },
    }


# ---- the ledger: every child the namespace held during the run ----------------------------


@dataclass
class Seen:
    kind: str
    name: str
    uid: str
    labels: dict[str, str]
    owners: list[dict[str, Any]]
    first: float


@dataclass
class Ledger:
    """Polls Jobs, Pods and ReplicaSets in the story's namespace until stopped."""

    kube: KubeClient
    every: float = 0.5
    seen: dict[str, Seen] = field(default_factory=dict)  # by uid
    phases: list[tuple[float, str, str]] = field(default_factory=list)  # (t, kind, phase)
    polls: int = 0
    failed_polls: int = 0
    stop: threading.Event = field(default_factory=threading.Event)
    started: float = field(default_factory=time.monotonic)
    _thread: threading.Thread | None = None

    def start(self) -> Ledger:
        self._thread = threading.Thread(target=self._run, name="chaos-ledger", daemon=True)
        self._thread.start()
        return self

    def close(self) -> None:
        self.stop.set()
        if self._thread is not None:
            self._thread.join(10)

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                self.poll()
            except ApiError:
                self.failed_polls += 1
            self.polls += 1
            self.stop.wait(self.every)

    def poll(self) -> None:
        now = time.monotonic() - self.started
        for api, plural, kind in (
            ("batch/v1", "jobs", "Job"),
            ("v1", "pods", "Pod"),
            ("apps/v1", "replicasets", "ReplicaSet"),
        ):
            for obj in self.kube.list(api, plural, NS):
                meta = obj["metadata"]
                if meta["uid"] not in self.seen:
                    self.seen[meta["uid"]] = Seen(
                        kind,
                        meta["name"],
                        meta["uid"],
                        dict(meta.get("labels") or {}),
                        list(meta.get("ownerReferences") or []),
                        now,
                    )
        for plural, kind in (("trainingjobs", "TrainingJob"), ("inferenceservices", "Service")):
            obj = self.kube.get(API, plural, TJ if kind == "TrainingJob" else SVC, NS)
            phase = str(((obj or {}).get("status") or {}).get("phase") or "-")
            last = next((p for t, k, p in reversed(self.phases) if k == kind), None)
            if phase != last:
                self.phases.append((now, kind, phase))

    def of_kind(self, kind: str, **labels: str) -> list[Seen]:
        return [
            s
            for s in self.seen.values()
            if s.kind == kind and all(s.labels.get(k) == v for k, v in labels.items())
        ]

    def timeline(self) -> str:
        return ", ".join(f"{t:.0f}s {k} {p}" for t, k, p in self.phases)


# ---- the operator's pod and process ------------------------------------------------------


def operator_pid(state_dir: Path) -> int | None:
    """The operator container's process (the node agent records every container's pid)."""
    for entry in sorted((state_dir / "run" / "pids").glob("*")):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{entry.name}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            continue
        if state != "Z" and b"gantry.controller" in cmdline:
            return int(entry.name)
    return None


def operator_pod_ip(kube: KubeClient) -> str | None:
    pods = kube.list("v1", "pods", OPERATOR_NS, label_selector="app.kubernetes.io/name=gantry")
    running = [p for p in pods if (p.get("status") or {}).get("podIP")]
    return str(running[0]["status"]["podIP"]) if running else None


def operator_restarts(kube: KubeClient) -> int:
    """The operator container's restart count, as the node agent reports it."""
    pods = kube.list("v1", "pods", OPERATOR_NS, label_selector="app.kubernetes.io/name=gantry")
    return sum(
        int(c.get("restartCount") or 0)
        for p in pods
        for c in (p.get("status") or {}).get("containerStatuses") or []
    )


def healthz(ip: str, timeout: float = 3.0) -> int:
    """The operator's /healthz status code (0: no answer)."""
    try:
        with urllib.request.urlopen(f"http://{ip}:{HEALTH_PORT}/healthz", timeout=timeout) as r:
            return int(r.status)
    except urllib.error.HTTPError as err:
        return int(err.code)
    except (OSError, urllib.error.URLError):
        return 0


class HealthSampler:
    """Samples the operator's /healthz every 0.5 s in a thread: (seconds since `started`,
    status code) pairs, as long as the fault lasts."""

    def __init__(self, ip: str, started: float, timeout: float) -> None:
        self.samples: list[tuple[float, int]] = []
        self._stop = threading.Event()

        def sample() -> None:
            while not self._stop.is_set():
                self.samples.append((time.monotonic() - started, healthz(ip, timeout=timeout)))
                self._stop.wait(0.5)

        self._thread = threading.Thread(target=sample, name="healthz-sampler", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


def on_cluster_loop(cluster: DevCluster, coro: Coroutine[Any, Any, None], timeout: float) -> None:
    """Run a coroutine on the dev cluster's event loop, where its processes live."""
    cluster.run_on_loop(coro, timeout)


# ---- the story ---------------------------------------------------------------------------


def create_story(kube: KubeClient, replicas: int = 1, **job: Any) -> None:
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}})
    wait_for(
        lambda: kube.get("v1", "serviceaccounts", "default", NS),
        60,
        f"the default ServiceAccount in {NS}",
    )
    kube.create(claim_manifest(CKPT_CLAIM, NS))
    kube.create(claim_manifest(MODELS_CLAIM, NS))
    kube.create(training_job(**job))
    kube.create(inference_service(replicas))


def story_state(kube: KubeClient) -> tuple[dict[str, Any], dict[str, Any]]:
    tj = (kube.get(API, "trainingjobs", TJ, NS) or {}).get("status") or {}
    svc = (kube.get(API, "inferenceservices", SVC, NS) or {}).get("status") or {}
    return tj, svc


def wait_mid_training(
    cluster: DevCluster, kube: KubeClient, ledger: Ledger, epoch: int = 2
) -> None:
    """Until the story's TrainingJob reports `epoch` (the moment each fault strikes)."""

    def reached() -> bool:
        tj, _ = story_state(kube)
        return ((tj.get("progress") or {}).get("epoch") or 0) >= epoch

    wait_for(
        reached,
        300,
        f"epoch {epoch} of the training",
        every=0.5,
        on_timeout=view(cluster, kube, ledger),
    )


def converged(kube: KubeClient) -> tuple[dict[str, Any], dict[str, Any]] | None:
    """Both at the end state, or None; a failed phase stops the wait at once."""
    import pytest

    try:
        tj, svc = story_state(kube)
    except ApiError:
        return None
    if tj.get("phase") == "Failed" or svc.get("phase") == "Failed":
        pytest.fail(f"the story failed: TrainingJob {tj}\nInferenceService {svc}")
    if tj.get("phase") == "Succeeded" and svc.get("phase") == "Ready":
        return tj, svc
    return None


def wait_converged(
    cluster: DevCluster, kube: KubeClient, ledger: Ledger, what: str, timeout: float = 600
) -> None:
    """Poll until the story reaches its end state; the cluster's view if it never does."""
    wait_for(
        lambda: converged(kube), timeout, what, every=1, on_timeout=view(cluster, kube, ledger)
    )


def view(cluster: DevCluster, kube: KubeClient, ledger: Ledger | None = None) -> Callable[[], str]:
    """What a timed-out wait shows: both objects, the namespace's pods, the operator log."""

    def render() -> str:
        tj, svc = story_state(kube)
        lines = [
            f"TrainingJob: {json.dumps(tj)[:1500]}",
            f"InferenceService: {json.dumps(svc)[:1500]}",
        ]
        for pod in kube.list("v1", "pods", NS):
            lines.append(f"pod {pod['metadata']['name']}: {(pod.get('status') or {}).get('phase')}")
        if ledger is not None:
            lines.append(f"timeline: {ledger.timeline()}")
        lines.append("operator log (tail):")
        lines.append(cluster.operator_logs()[-4000:])
        return "\n".join(lines)

    return render


def predict_heldout(kube: KubeClient, count: int = 64) -> float:
    """Accuracy of the served model on held-out digits, over gRPC to a Ready pod."""
    from gantry_cli.predict import model_signature, predict, ready_pod_address
    from training_jobs.examples.digits_data import heldout_split

    pods = kube.list("v1", "pods", NS, label_selector=f"gantry.dev/inferenceservice={SVC}")
    target = ready_pod_address(pods)
    assert target is not None, "no Ready Triton pod"
    signature = model_signature(target, SVC)
    images, labels = heldout_split()
    correct = 0
    for start in range(0, count, 8):  # the service's max batch size is 8
        batch = images[start : start + 8].astype(np.float32)
        outputs, _ = predict(target, SVC, {signature.inputs[0].name: batch}, timeout=30)
        logits = outputs[signature.outputs[0].name]
        correct += int((logits.argmax(axis=1) == labels[start : start + 8]).sum())
    return correct / count


# ---- the end state -----------------------------------------------------------------------


OWNED_KINDS = (
    ("batch/v1", "jobs"),
    ("v1", "pods"),
    ("v1", "services"),
    ("v1", "serviceaccounts"),
    ("v1", "configmaps"),
    ("v1", "persistentvolumeclaims"),
    ("apps/v1", "deployments"),
    ("apps/v1", "replicasets"),
    ("rbac.authorization.k8s.io/v1", "roles"),
    ("rbac.authorization.k8s.io/v1", "rolebindings"),
    ("policy/v1", "poddisruptionbudgets"),
    (API, "trainingjobs"),
    (API, "inferenceservices"),
)


def orphans(kube: KubeClient) -> list[str]:
    """Objects in the namespace whose owner (by uid) is gone."""
    objects = [o for api, plural in OWNED_KINDS for o in kube.list(api, plural, NS)]
    uids = {o["metadata"]["uid"] for o in objects}
    return [
        f"{o['kind']}/{o['metadata']['name']} → {ref['kind']}/{ref['name']}"
        for o in objects
        for ref in o["metadata"].get("ownerReferences") or []
        if ref["uid"] not in uids
    ]


@dataclass
class EndState:
    attempts: int
    training_jobs: list[str]
    optimize_jobs: list[str]
    accuracy: float
    checkpoints: list[str]


def check_end_state(
    cluster: DevCluster, kube: KubeClient, ledger: Ledger, attempts: int = 1
) -> EndState:
    """Assert the undisturbed run's end state, with no duplicates and no orphans; a fault
    that loses a worker costs exactly `attempts` - 1 more attempts."""
    tj, svc = story_state(kube)
    assert tj.get("phase") == "Succeeded", tj
    assert tj.get("attempts") == attempts, f"{tj.get('attempts')} attempts, not {attempts}"
    assert svc.get("phase") == "Ready", svc
    digest = (svc.get("model") or {}).get("digest", "").removeprefix("sha256:")
    assert digest == tj["model"]["sha256"]["model.onnx"], "serving another model than trained"

    # no duplicates: a name seen with two uids is a child created twice
    by_name: dict[tuple[str, str], set[str]] = {}
    for s in ledger.seen.values():
        by_name.setdefault((s.kind, s.name), set()).add(s.uid)
    doubled = {f"{k}/{n}": sorted(u) for (k, n), u in by_name.items() if len(u) > 1}
    assert not doubled, f"children created twice: {doubled}"
    training = sorted({s.name for s in ledger.of_kind("Job", **{"gantry.dev/trainingjob": TJ})})
    wanted = [f"{TJ}-a{a}" for a in range(1, attempts + 1)]
    assert training == wanted, f"one Job per attempt: {training}"
    workers: dict[tuple[str, str], set[str]] = {}
    for s in ledger.of_kind("Pod", **{"gantry.dev/trainingjob": TJ}):
        key = (
            s.labels.get("gantry.dev/attempt", "?"),
            s.labels.get("batch.kubernetes.io/job-completion-index", "?"),
        )
        workers.setdefault(key, set()).add(s.name)
    pairs = [(str(a), i) for a in range(1, attempts + 1) for i in ("0", "1")]
    assert sorted(workers) == pairs, f"worker pods: {workers}"
    assert all(len(n) == 1 for n in workers.values()), f"a worker ran twice: {workers}"
    optimize = sorted({s.name for s in ledger.of_kind("Job", **{"gantry.dev/optimize-for": SVC})})
    assert len(optimize) == 1, f"one optimize Job for one digest: {optimize}"

    lost = orphans(kube)
    assert not lost, f"orphans: {lost}"

    ckpt_root = cluster.state_dir / "pvc" / NS / CKPT_CLAIM
    checkpoints = sorted(p.name for p in ckpt_root.rglob("ckpt-e*.pt"))
    assert checkpoints, f"no checkpoint under {ckpt_root}"
    assert checkpoints[-1].startswith(f"ckpt-e{EPOCHS:05d}-"), checkpoints
    export = cluster.state_dir / "pvc" / NS / MODELS_CLAIM / TJ
    assert {"model.onnx", "metadata.json"} <= {p.name for p in export.iterdir()}

    accuracy = predict_heldout(kube)
    assert accuracy >= 0.8, f"held-out accuracy over gRPC {accuracy:.3f}"
    return EndState(tj["attempts"], training, optimize, accuracy, checkpoints)


def report(case: str, **figures: Any) -> None:
    """Print the case's figures and append them to .gantry/chaos/report.jsonl."""
    line = json.dumps(
        {"case": case, "at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), **figures}
    )
    print(f"\nCHAOS {line}")
    REPORT.parent.mkdir(parents=True, exist_ok=True)
    with REPORT.open("a", encoding="utf-8") as out:
        out.write(line + "\n")


@contextlib.contextmanager
def story_cluster(
    tmp: Path, **cluster_args: Any
) -> Iterator[tuple[DevCluster, KubeClient, Ledger]]:
    """A dev cluster with the operator, the story created, and its ledger running."""
    from tests.conftest import require_triton

    require_triton()
    args: dict[str, Any] = {"operator": True, "backoff_base": 0.05, **cluster_args}
    with DevCluster(tmp / "cluster", **args) as cluster:
        kube = KubeClient.for_kubeconfig(cluster.kubeconfig)
        kube.retry = POLL_RETRY
        own = KubeClient.for_kubeconfig(cluster.kubeconfig)  # the ledger's thread has its own
        own.retry = POLL_RETRY
        ledger = Ledger(own)
        try:
            yield cluster, kube, ledger
        finally:
            ledger.close()
            own.close()
            kube.close()


def kill(pid: int) -> bool:
    try:
        os.kill(pid, signal.SIGKILL)
    except ProcessLookupError:
        return False
    return True
