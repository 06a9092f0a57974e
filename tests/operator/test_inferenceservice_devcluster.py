"""InferenceServices end to end on the dev cluster: operator, optimize Jobs, real Triton.

One cluster serves every test in this module, with the operator installed by the chart
(its Deployment's pod, under the chart's RBAC); the tests run in order: serve → predict →
an unchanged service is left alone → roll a new model under load → failures → scale.
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import re
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from dev_cluster.cluster import DevCluster
from gantry.k8s.client import KubeClient
from gantry.k8s.errors import ApiError
from gantry_cli.predict import (
    model_signature,
    predict,
    predict_command,
    ready_pod_address,
)
from tests.conftest import claim_manifest, export_digits_shaped_model, require_triton, wait_for

pytestmark = pytest.mark.slow

NS = "default"
KUBECTL = Path(__file__).resolve().parents[2] / ".tools" / "bin" / "kubectl"
API = "gantry.dev/v1alpha1"
ISVC = "inferenceservices"


# --- a digits-shaped model exported with torch ---------------------------------------------


def reference(directory: Path, batch: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(directory / "model.onnx"))
    result: np.ndarray = session.run(None, {"input": batch})[0]
    return result


# --- the cluster ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    require_triton()
    with DevCluster(tmp_path_factory.mktemp("isvc-dev"), operator=True, backoff_base=1.0) as dev:
        yield dev


@pytest.fixture(scope="module")
def exports(cluster: DevCluster, kube: KubeClient) -> Path:
    """The `exports` claim with models v1 and v2 and a corrupt one."""
    kube.create(claim_manifest("exports", NS, access_mode="ReadWriteMany"))
    root = cluster.state_dir / "pvc" / NS / "exports"
    export_digits_shaped_model(root / "digits" / "v1", seed=1)
    export_digits_shaped_model(root / "digits" / "v2", seed=2)
    (root / "corrupt").mkdir(parents=True)
    (root / "corrupt" / "model.onnx").write_bytes(b"this is not an ONNX protobuf")
    return root


def debug_view(cluster: DevCluster, kube: KubeClient) -> Callable[[], str]:
    def view() -> str:
        lines = []
        for isvc in kube.list(API, ISVC, NS):
            status = isvc.get("status") or {}
            lines.append(
                f"{isvc['metadata']['name']}: {status.get('phase')} {status.get('message')}"
            )
        for pod in kube.list("v1", "pods", NS):
            pod_status = pod.get("status") or {}
            lines.append(f"pod {pod['metadata']['name']}: {pod_status.get('phase')}")
            ready = all(c.get("ready") for c in pod_status.get("containerStatuses") or [{}])
            if not ready:
                for container in pod["spec"].get("initContainers", []) + pod["spec"]["containers"]:
                    try:
                        log = kube.pod_log(
                            NS, pod["metadata"]["name"], container=container["name"], tail_lines=15
                        )
                    except ApiError as err:
                        log = str(err)
                    lines.append(f"  {container['name']}: {log}")
        lines.append("operator log (tail):")
        lines.append(cluster.operator_logs())
        return "\n".join(lines)

    return view


def service(name: str, uri: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": API,
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "model": {"storageUri": uri},
            "optimization": {"precision": "fp32", "accuracy": {"samples": 16}},
            **spec,
        },
    }


def status_of(kube: KubeClient, name: str) -> dict[str, Any]:
    obj = kube.get(API, ISVC, name, NS) or {}
    return dict(obj.get("status") or {})


def condition(status: dict[str, Any], type_: str) -> dict[str, Any]:
    return next((c for c in status.get("conditions") or [] if c["type"] == type_), {})


def pod_target(kube: KubeClient, name: str) -> str | None:
    """gRPC host:port of a Ready Triton pod (pod IPs are loopback addresses here, which
    EndpointSlices cannot carry)."""
    pods = kube.list("v1", "pods", NS, label_selector=f"gantry.dev/inferenceservice={name}")
    return ready_pod_address(pods)


def ready_version(kube: KubeClient, name: str, version: int) -> dict[str, Any] | None:
    status = status_of(kube, name)
    model = status.get("model") or {}
    if status.get("phase") == "Ready" and model.get("version") == version:
        return status
    return None


# --- the tests -----------------------------------------------------------------------------


def test_cpu_service_becomes_ready_and_matches_onnxruntime(
    cluster: DevCluster, kube: KubeClient, exports: Path
) -> None:
    kube.create(service("digits", "pvc://exports/digits/v1"))
    status = wait_for(
        lambda: ready_version(kube, "digits", 1),
        90,
        "digits Ready",
        on_timeout=debug_view(cluster, kube),
    )
    assert status["ready"] == "1/1"
    assert status["selector"] == "gantry.dev/inferenceservice=digits"
    assert status["endpoints"]["grpc"] == "digits.default.svc:8001"
    assert status["model"]["backend"] == "python"
    assert status["model"]["precision"] == "fp32"
    assert status["model"]["uri"] == "pvc://exports/digits/v1"
    assert {c["type"]: c["status"] for c in status["conditions"]} == {
        "ModelResolved": "True",
        "Optimized": "True",
        "Deployed": "True",
        "Ready": "True",
    }
    assert kube.get("v1", "services", "digits", NS) is not None
    headless = kube.get("v1", "services", "digits-headless", NS)
    assert headless is not None and headless["spec"]["clusterIP"] == "None"
    assert kube.get("v1", "persistentvolumeclaims", "gantry-models", NS) is not None

    target = pod_target(kube, "digits")
    assert target is not None
    batch = np.random.default_rng(0).random((7, 1, 8, 8), dtype=np.float32)
    outputs, _latency = predict(target, "digits", {"input": batch}, timeout=10)
    np.testing.assert_allclose(
        outputs["logits"], reference(exports / "digits" / "v1", batch), atol=1e-5
    )
    single, _ = predict(target, "digits", {"input": batch[:1]}, timeout=10)
    events = kube.list("v1", "events", NS, field_selector="involvedObject.name=digits")
    assert {"Resolved", "Optimized", "Serving"} <= {e.get("reason") for e in events}
    np.testing.assert_allclose(
        single["logits"], reference(exports / "digits" / "v1", batch[:1]), atol=1e-5
    )


def apiserver_requests(cluster: DevCluster, verb: str, resource: str) -> int:
    """kube-apiserver's own count of `verb` requests on `resource` (all codes, scopes)."""
    metrics = subprocess.run(
        [str(KUBECTL), "--kubeconfig", str(cluster.kubeconfig), "get", "--raw", "/metrics"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    total = 0
    for line in metrics.splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels = dict(re.findall(r'(\w+)="([^"]*)"', line.split("}", 1)[0]))
        if labels.get("verb") == verb and labels.get("resource") == resource:
            total += int(float(line.rsplit(" ", 1)[1]))
    return total


def test_unchanged_service_is_left_alone(
    cluster: DevCluster, kube: KubeClient, exports: Path
) -> None:
    """A pass that finds nothing to change writes nothing.

    Reconciles run on watch events (the dev cluster's resync is an hour). An unrelated
    annotation on the Deployment (a child event) and then deleting the headless Service
    each wake the service; once the Service is back, both passes have run. The API
    server's defaults and canonical quantities must not read as differences: no Deployment
    PATCH is sent but the test's own, and no Triton pod is replaced or restarted."""
    wait_for(
        lambda: ready_version(kube, "digits", 1),
        90,
        "digits Ready",
        on_timeout=debug_view(cluster, kube),
    )

    def triton_pods() -> list[tuple[str, int]]:
        pods = kube.list("v1", "pods", NS, label_selector="gantry.dev/inferenceservice=digits")
        return sorted(
            (p["metadata"]["uid"], sum(c["restartCount"] for c in p["status"]["containerStatuses"]))
            for p in pods
        )

    deployment = kube.get("apps/v1", "deployments", "digits-triton", NS)
    headless = kube.get("v1", "services", "digits-headless", NS)
    assert deployment is not None and headless is not None
    pods_before = triton_pods()
    patches_before = apiserver_requests(cluster, "PATCH", "deployments")
    poke = {"metadata": {"annotations": {"test.gantry.dev/poke": "1"}}}
    kube.patch("apps/v1", "deployments", "digits-triton", NS, poke)
    kube.delete("v1", "services", "digits-headless", NS)

    def recreated() -> bool:
        again = kube.get("v1", "services", "digits-headless", NS)
        return again is not None and again["metadata"]["uid"] != headless["metadata"]["uid"]

    wait_for(
        recreated,
        60,
        "the headless Service to come back",
        on_timeout=debug_view(cluster, kube),
    )
    assert apiserver_requests(cluster, "PATCH", "deployments") == patches_before + 1, (
        cluster.operator_logs()
    )
    after = kube.get("apps/v1", "deployments", "digits-triton", NS)
    assert after is not None
    # (A Deployment's generation counts annotation changes too, the test's poke among them.)
    assert after["spec"]["template"] == deployment["spec"]["template"], cluster.operator_logs()
    assert after["metadata"]["annotations"]["test.gantry.dev/poke"] == "1", "not ours to drop"
    assert triton_pods() == pods_before and all(n == 0 for _, n in pods_before)


class SteadyLoad:
    """A client thread that keeps sending requests to a ready pod, re-resolving often."""

    def __init__(self, kube: KubeClient, name: str) -> None:
        self.kube, self.name = kube, name
        self.ok = 0
        self.failures: list[str] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._sample = np.zeros((1, 1, 8, 8), dtype=np.float32)

    def _run(self) -> None:
        target, resolved_at = None, 0.0
        while not self._stop.is_set():
            if target is None or time.monotonic() - resolved_at > 0.2:
                target, resolved_at = pod_target(self.kube, self.name), time.monotonic()
            if target is None:
                self.failures.append("no ready endpoint")
                time.sleep(0.05)
                continue
            try:
                predict(target, self.name, {"input": self._sample}, timeout=10)
            except Exception as err:
                self.failures.append(f"{target}: {err}")
            else:
                self.ok += 1

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join(30)


def test_model_change_rolls_out_without_failed_requests(
    cluster: DevCluster, kube: KubeClient, exports: Path
) -> None:
    with SteadyLoad(kube, "digits") as load:
        wait_for(
            lambda: load.ok >= 5,
            30,
            "requests flowing",
            on_timeout=lambda: str(load.failures[:3]),
        )
        kube.patch(
            API, ISVC, "digits", NS, {"spec": {"model": {"storageUri": "pvc://exports/digits/v2"}}}
        )

        def rolled() -> bool:
            if not ready_version(kube, "digits", 2):
                return False
            pods = kube.list("v1", "pods", NS, label_selector="gantry.dev/inferenceservice=digits")
            return len(pods) == 1  # the old pod has terminated

        wait_for(rolled, 240, "version 2 rolled out", on_timeout=debug_view(cluster, kube))
        served_before_stop = load.ok
    assert load.failures == [], load.failures[:5]
    assert served_before_stop > 10
    target = pod_target(kube, "digits")
    assert target is not None
    batch = np.random.default_rng(1).random((3, 1, 8, 8), dtype=np.float32)
    outputs, _ = predict(target, "digits", {"input": batch}, timeout=10)
    np.testing.assert_allclose(
        outputs["logits"], reference(exports / "digits" / "v2", batch), atol=1e-5
    )
    jobs = kube.list("batch/v1", "jobs", NS, label_selector="gantry.dev/optimize-for=digits")
    assert len(jobs) == 1  # the superseded optimize Job was cleaned up


def failed_with(kube: KubeClient, name: str, type_: str) -> Callable[[], dict[str, Any] | None]:
    def probe() -> dict[str, Any] | None:
        status = status_of(kube, name)
        found = condition(status, type_)
        if status.get("phase") == "Failed" and found.get("status") == "False":
            return found
        return None

    return probe


def test_bad_inputs_end_in_clear_conditions(
    cluster: DevCluster, kube: KubeClient, exports: Path
) -> None:
    # A URI of the wrong scheme never gets in: the API answers 422.
    with pytest.raises(ApiError) as rejected:
        kube.create(service("bad-uri", "http://example.com/model"))
    assert rejected.value.status == 422
    assert "storageUri" in str(rejected.value)

    kube.create(service("missing", "pvc://exports/nothing/here"))
    kube.create(service("corrupt", "pvc://exports/corrupt"))
    kube.create(service("no-claim", "pvc://no-such-claim/model"))
    kube.create(
        {
            "apiVersion": API,
            "kind": "TrainingJob",
            "metadata": {"name": "broken-training", "namespace": NS},
            "spec": {
                "command": ["python", "-c", "import sys; sys.exit(3)"],
                "backoffLimit": 0,
                "suspend": True,
            },
        }
    )

    def training_phase() -> str | None:
        job = kube.get(API, "trainingjobs", "broken-training", NS) or {}
        return (job.get("status") or {}).get("phase")

    def mark_failed() -> bool:
        """Set status Failed (again, if the TrainingJob reconciler wrote its own first)."""
        if training_phase() != "Failed":
            kube.patch(
                API,
                "trainingjobs",
                "broken-training",
                NS,
                {"status": {"phase": "Failed", "message": "worker 0 exited with code 3"}},
                subresource="status",
            )
        return True

    # Let the TrainingJob reconciler see the suspended job first, then fail it.
    deadline = time.monotonic() + 20
    while training_phase() is None and time.monotonic() < deadline:
        time.sleep(0.2)
    mark_failed()
    kube.create(
        {
            "apiVersion": API,
            "kind": "InferenceService",
            "metadata": {"name": "from-training", "namespace": NS},
            "spec": {"model": {"trainingJobRef": {"name": "broken-training"}}},
        }
    )
    view = debug_view(cluster, kube)
    missing = wait_for(
        failed_with(kube, "missing", "Optimized"), 120, "missing model", on_timeout=view
    )
    assert missing["reason"] == "ModelNotFound"
    assert "pvc://exports/nothing/here" in missing["message"]
    corrupt = wait_for(
        failed_with(kube, "corrupt", "Optimized"), 120, "corrupt model", on_timeout=view
    )
    assert corrupt["reason"] == "CorruptModel"
    no_claim = wait_for(
        failed_with(kube, "no-claim", "ModelResolved"), 60, "no claim", on_timeout=view
    )
    assert no_claim["reason"] == "ClaimNotFound" and "no-such-claim" in no_claim["message"]
    failed_training = failed_with(kube, "from-training", "ModelResolved")

    def training_failed() -> dict[str, Any] | None:
        mark_failed()
        return failed_training()

    training = wait_for(training_failed, 60, "failed TrainingJob", on_timeout=view)
    assert training["reason"] == "TrainingJobFailed"
    assert "TrainingJob 'broken-training' failed" in training["message"]
    for name in ("missing", "corrupt", "no-claim", "from-training"):
        assert kube.get("apps/v1", "deployments", f"{name}-triton", NS) is None


def test_operator_keeps_running_and_scales_with_a_pdb(
    cluster: DevCluster, kube: KubeClient, exports: Path
) -> None:
    # still the first run of the operator's container after every failure above
    operators = kube.list(
        "v1", "pods", "gantry-system", label_selector="app.kubernetes.io/component=operator"
    )
    assert len(operators) == 1, [p["metadata"]["name"] for p in operators]
    statuses = operators[0]["status"]["containerStatuses"]
    assert [c["restartCount"] for c in statuses] == [0], cluster.operator_logs()
    kube.patch(API, ISVC, "digits", NS, {"spec": {"replicas": 2}})

    def scaled() -> dict[str, Any] | None:
        status = status_of(kube, "digits")
        return status if status.get("ready") == "2/2" and status.get("phase") == "Ready" else None

    wait_for(scaled, 120, "2/2 replicas", on_timeout=debug_view(cluster, kube))
    pdb = kube.get("policy/v1", "poddisruptionbudgets", "digits-triton", NS)
    assert pdb is not None and pdb["spec"]["maxUnavailable"] == 1
    kube.patch(API, ISVC, "digits", NS, {"spec": {"replicas": 1}})
    wait_for(
        lambda: kube.get("policy/v1", "poddisruptionbudgets", "digits-triton", NS) is None,
        60,
        "PDB removed at 1 replica",
        on_timeout=debug_view(cluster, kube),
    )


def test_clients_reach_the_service_by_name(
    cluster: DevCluster, kube: KubeClient, exports: Path, tmp_path: Path
) -> None:
    sample = tmp_path / "digit.npy"
    np.save(sample, np.zeros((1, 8, 8), dtype=np.float32))
    result = CliRunner().invoke(
        predict_command,
        ["digits", "--input", str(sample), "--kubeconfig", str(cluster.kubeconfig)],
    )
    assert result.exit_code == 0, result.output
    assert "logits [1, 10]: top 3 per row" in result.output
    assert "latency:" in result.output

    spec = importlib.util.spec_from_file_location(
        "digits_grpc_client", Path(__file__).parents[2] / "examples" / "digits_grpc_client.py"
    )
    assert spec is not None and spec.loader is not None
    example = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(example)
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = example.main(["--service", "digits", "--kubeconfig", str(cluster.kubeconfig)])
    assert code == 0
    assert "held-out digits: 360" in out.getvalue()


def test_a_users_service_and_pdb_under_child_names_are_left_alone(
    cluster: DevCluster, kube: KubeClient, exports: Path
) -> None:
    """A Service `shared` and a PDB `shared-triton` that the user made: an InferenceService
    `shared` reports ResourceConflict, never rewrites, adopts or (on deletion) removes them."""
    users_service = kube.create(
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": "shared", "namespace": NS, "labels": {"app": "web"}},
            "spec": {"selector": {"app": "web"}, "ports": [{"name": "http", "port": 80}]},
        }
    )
    pdb = kube.create(
        {
            "apiVersion": "policy/v1",
            "kind": "PodDisruptionBudget",
            "metadata": {"name": "shared-triton", "namespace": NS},
            "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "web"}}},
        }
    )
    kube.create(service("shared", "pvc://exports/digits/v1", replicas=2))

    def conflict() -> dict[str, Any] | None:
        found = condition(status_of(kube, "shared"), "ResourceConflict")
        return (
            found
            if found.get("status") == "True" and "PodDisruptionBudget" in str(found.get("message"))
            else None
        )

    reported = wait_for(conflict, 120, "ResourceConflict", on_timeout=debug_view(cluster, kube))
    assert "Service 'shared' already exists" in reported["message"]
    assert condition(status_of(kube, "shared"), "Ready")["status"] == "False"
    for before, api, plural in (
        (users_service, "v1", "services"),
        (pdb, "policy/v1", "poddisruptionbudgets"),
    ):
        after = kube.get(api, plural, before["metadata"]["name"], NS)
        assert after is not None
        # (The disruption controller keeps writing the PDB's status: compare what users own.)
        assert after["spec"] == before["spec"]
        assert after["metadata"].get("labels") == before["metadata"].get("labels")
        assert not after["metadata"].get("ownerReferences")
        managers = {f.get("manager") for f in after["metadata"].get("managedFields") or []}
        assert "gantry" not in managers, managers
    kube.delete(API, ISVC, "shared", NS)
    wait_for(
        lambda: kube.get(API, ISVC, "shared", NS) is None,
        60,
        "shared deleted",
        on_timeout=debug_view(cluster, kube),
    )
    assert kube.get("v1", "services", "shared", NS) is not None
    assert kube.get("policy/v1", "poddisruptionbudgets", "shared-triton", NS) is not None


# A user's own training script that exports with PyTorch's documented defaults (the
# dynamo exporter, fixed shapes) and nothing of Gantry's runtime.
PLAIN_EXPORT = """
import os, torch
torch.manual_seed(0)
model = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(64, 10)).eval()
path = os.path.join(os.environ["GANTRY_OUTPUT_DIR"], "model.onnx")
torch.onnx.export(model, (torch.randn(1, 1, 8, 8),), path)
print("exported", path)
"""


def test_a_plain_torch_onnx_export_from_a_trainingjob_is_served(
    cluster: DevCluster, kube: KubeClient, exports: Path
) -> None:
    """torch.onnx.export with PyTorch's defaults, run as a TrainingJob, then served."""
    kube.create(
        {
            "apiVersion": API,
            "kind": "TrainingJob",
            "metadata": {"name": "plain", "namespace": NS},
            "spec": {
                "command": ["python", "-c", PLAIN_EXPORT],
                "workers": 1,
                "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
                "output": {"storageUri": "pvc://exports/plain/v1"},
            },
        }
    )

    def trained() -> dict[str, Any] | None:
        status = ((kube.get(API, "trainingjobs", "plain", NS) or {}).get("status")) or {}
        if status.get("phase") == "Failed":
            pytest.fail(f"the TrainingJob failed: {status.get('message')}")
        return status if status.get("phase") == "Succeeded" else None

    status = wait_for(trained, 300, "the plain TrainingJob", on_timeout=debug_view(cluster, kube))
    assert status["attempts"] == 1
    assert (exports / "plain" / "v1" / "model.onnx").is_file()
    kube.create(
        {
            "apiVersion": API,
            "kind": "InferenceService",
            "metadata": {"name": "plain", "namespace": NS},
            "spec": {
                "model": {"trainingJobRef": {"name": "plain"}},
                "optimization": {"precision": "fp32", "accuracy": {"samples": 4}},
            },
        }
    )

    def ready() -> dict[str, Any] | None:
        served = status_of(kube, "plain")
        return served if served.get("phase") == "Ready" else None

    wait_for(ready, 240, "the plain InferenceService Ready", on_timeout=debug_view(cluster, kube))
    target = wait_for(
        lambda: pod_target(kube, "plain"), 60, "a Ready pod", on_timeout=debug_view(cluster, kube)
    )
    sample = np.ones((1, 1, 8, 8), dtype=np.float32)
    name = model_signature(target, "plain").inputs[0].name
    outputs, _latency = predict(target, "plain", {name: sample}, timeout=10)
    (result,) = outputs.values()
    assert result.shape[-1] == 10
    kube.delete(API, ISVC, "plain", NS)
    kube.delete(API, "trainingjobs", "plain", NS)


def test_a_namespace_quota_serves_what_fits_and_explains_what_does_not(
    cluster: DevCluster, kube: KubeClient
) -> None:
    """Under a ResourceQuota on requests.memory every container of a pod must name its
    requests: a service that fits is served; one whose Triton pods the quota refuses says
    so in Ready and Deployed (QuotaExceeded), not a bare "0/1 replica(s) ready"."""
    ns = "capped-serving"
    kube.create({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": ns}})
    kube.create(
        {
            "apiVersion": "v1",
            "kind": "ResourceQuota",
            "metadata": {"name": "serving-cap", "namespace": ns},
            "spec": {"hard": {"requests.memory": "1536Mi"}},
        }
    )
    kube.create(claim_manifest("exports", ns, access_mode="ReadWriteMany"))
    export_digits_shaped_model(cluster.state_dir / "pvc" / ns / "exports" / "digits", seed=3)

    def create(name: str, memory: str) -> None:
        body = service(name, "pvc://exports/digits", resources={"requests": {"memory": memory}})
        body["metadata"]["namespace"] = ns
        kube.create(body)

    def status(name: str) -> dict[str, Any]:
        return (kube.get(API, ISVC, name, ns) or {}).get("status") or {}

    def state() -> str:
        found = [
            f"{kind} {obj['metadata']['name']}: {obj.get('status')}"
            for kind, api, plural in (
                ("InferenceService", API, ISVC),
                ("Deployment", "apps/v1", "deployments"),
                ("Pod", "v1", "pods"),
                ("ResourceQuota", "v1", "resourcequotas"),
            )
            for obj in kube.list(api, plural, ns)
        ]
        events = [
            f"Event {e.get('reason')}: {e.get('message')}" for e in kube.list("v1", "events", ns)
        ]
        return "\n".join(found + events)

    create("fits", "512Mi")
    wait_for(lambda: status("fits").get("phase") == "Ready", 240, "fits Ready", on_timeout=state)

    create("capped", "2Gi")  # more than the quota has left

    def refused() -> dict[str, Any] | None:
        by_type = {c["type"]: c for c in status("capped").get("conditions") or []}
        ready = by_type.get("Ready") or {}
        return by_type if ready.get("reason") == "QuotaExceeded" else None

    by_type = wait_for(refused, 240, "capped Ready=False QuotaExceeded", on_timeout=state)
    assert status("capped")["phase"] == "Deploying"
    assert by_type["Optimized"]["status"] == "True", "the optimize pod fits the quota"
    assert "exceeded quota: serving-cap" in by_type["Ready"]["message"]
    assert by_type["Deployed"]["reason"] == "QuotaExceeded"
    events = kube.list("v1", "events", ns, field_selector="involvedObject.name=capped")
    assert any(e.get("reason") == "QuotaExceeded" for e in events)
    assert status("fits")["phase"] == "Ready", "the service that fits keeps serving"
    for name in ("fits", "capped"):
        kube.delete(API, ISVC, name, ns)
