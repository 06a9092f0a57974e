"""Probes, hooks, init containers, volumes and Job lifecycles on the dev node (real processes)."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
from kubernetes import client

from dev_cluster.cluster import DevCluster

pytestmark = pytest.mark.slow
T = TypeVar("T")
NS = "default"
PY = "python:3.12"


def wait_for(probe: Callable[[], T | None], timeout: float = 60, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    with DevCluster(tmp_path_factory.mktemp("dev"), backoff_base=0.2) as c:
        yield c


@pytest.fixture(scope="module")
def core(cluster: DevCluster) -> client.CoreV1Api:
    return client.CoreV1Api(cluster.api_client())


@pytest.fixture(scope="module")
def batch(cluster: DevCluster) -> client.BatchV1Api:
    return client.BatchV1Api(cluster.api_client())


def python_container(code: str, name: str = "main", **extra: Any) -> dict[str, Any]:
    return {"name": name, "image": PY, "command": ["python", "-c", code], **extra}


def pod(name: str, *containers: dict[str, Any], **spec: Any) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": name, "labels": {"test": name}},
            "spec": {"containers": list(containers), **spec}}  # fmt: skip


def phase_is(core: client.CoreV1Api, name: str, *wanted: str) -> Any:
    p = core.read_namespaced_pod(name, NS)
    return p if p.status.phase in wanted else None


def job_condition(batch: client.BatchV1Api, name: str, kind: str) -> Any:
    j = batch.read_namespaced_job_status(name, NS)
    return next(
        (c for c in j.status.conditions or [] if c.type == kind and c.status == "True"), None
    )


def test_init_containers_config_volumes_and_identity(core: client.CoreV1Api) -> None:
    core.create_namespaced_config_map(
        NS, {"metadata": {"name": "app-cfg"}, "data": {"mode": "fast"}}
    )
    core.create_namespaced_secret(NS, {"metadata": {"name": "app-secret"},
                                       "data": {"token": base64.b64encode(b"s3cret").decode()}})  # fmt: skip
    init = python_container("open('/workspace/seed', 'w').write('seeded')", name="seed",
                            volumeMounts=[{"name": "work", "mountPath": "/workspace"}])  # fmt: skip
    code = (
        "import os, socket\n"
        "r = lambda p: open(p).read()\n"
        "print(r('/workspace/seed'), r('/etc/app/mode'), r('/etc/secret/token'), os.environ['TOKEN'],\n"
        "      os.environ['CFG_mode'], socket.gethostname(), os.environ['MY_NS'],\n"
        "      r('/var/run/secrets/kubernetes.io/serviceaccount/namespace'), os.getcwd())"
    )
    main = python_container(
        code,
        workingDir="/workspace",
        env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "token"}}},
             {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}}],
        envFrom=[{"configMapRef": {"name": "app-cfg"}, "prefix": "CFG_"}],
        volumeMounts=[{"name": "work", "mountPath": "/workspace"},
                      {"name": "cfg", "mountPath": "/etc/app", "readOnly": True},
                      {"name": "sec", "mountPath": "/etc/secret"}],
    )  # fmt: skip
    core.create_namespaced_pod(NS, pod(
        "configured", main, initContainers=[init], restartPolicy="Never",
        volumes=[{"name": "work", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "app-cfg"}},
                 {"name": "sec", "secret": {"secretName": "app-secret"}}],
    ))  # fmt: skip
    done = wait_for(
        lambda: phase_is(core, "configured", "Succeeded", "Failed"), what="the pod to finish"
    )
    log = core.read_namespaced_pod_log("configured", NS)
    assert done.status.phase == "Succeeded", log
    assert log.split() == [
        "seeded",
        "fast",
        "s3cret",
        "s3cret",
        "fast",
        "configured",
        "default",
        "default",
        "/workspace",
    ]
    assert done.status.init_container_statuses[0].state.terminated.reason == "Completed"
    assert {c.type: c.status for c in done.status.conditions}["Initialized"] == "True"


def test_liveness_failure_restarts_and_prestop_runs_before_sigterm(
    core: client.CoreV1Api, tmp_path: Path
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    code = (
        "import os, signal, sys, time\n"
        "if os.path.exists('/out/started'):\n"
        "    os.remove('/out/unhealthy')\n"
        "else:\n"
        "    open('/out/unhealthy', 'w').close()\n"
        "open('/out/started', 'a').write('x')\n"
        "def bye(*_):\n"
        "    open('/out/sigterm', 'w').write(str(os.path.exists('/out/prestop'))); sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, bye)\n"
        "while True: time.sleep(0.1)"
    )
    main = python_container(
        code,
        volumeMounts=[{"name": "out", "mountPath": "/out"}],
        livenessProbe={"exec": {"command": ["python", "-c", "import os, sys; sys.exit(os.path.exists('/out/unhealthy'))"]},
                       "periodSeconds": 1, "failureThreshold": 1},
        startupProbe={"exec": {"command": ["test", "-f", "/out/started"]}, "periodSeconds": 1},
        lifecycle={"preStop": {"exec": {"command": ["sh", "-c", "echo done > /out/prestop"]}}},
    )  # fmt: skip
    core.create_namespaced_pod(
        NS, pod("lively", main, volumes=[{"name": "out", "hostPath": {"path": str(out)}}])
    )

    def restarted_and_ready() -> Any:
        p = core.read_namespaced_pod("lively", NS)
        s = (p.status.container_statuses or [None])[0]
        return p if s and s.restart_count == 1 and s.ready and s.started else None

    wait_for(restarted_and_ready, what="a liveness restart")
    wait_for(lambda: (out / "started").read_text() == "xx", what="the second run")
    core.delete_namespaced_pod("lively", NS, grace_period_seconds=10)
    wait_for(
        lambda: "lively" not in {p.metadata.name for p in core.list_namespaced_pod(NS).items},
        what="deletion",
    )
    assert (out / "prestop").read_text() == "done\n"
    assert (out / "sigterm").read_text() == "True"


def test_job_deadline_suspend_and_ttl(core: client.CoreV1Api, batch: client.BatchV1Api) -> None:
    def job(name: str, code: str, **spec: Any) -> dict[str, Any]:
        return {"apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": name},
                "spec": {**spec, "template": {"spec": {"restartPolicy": "Never",
                                                       "containers": [python_container(code)]}}}}  # fmt: skip

    batch.create_namespaced_job(
        NS, job("slow", "import time; time.sleep(600)", activeDeadlineSeconds=2)
    )
    batch.create_namespaced_job(NS, job("later", "print('resumed')", suspend=True))
    batch.create_namespaced_job(NS, job("brief", "pass", ttlSecondsAfterFinished=0))

    cond = wait_for(lambda: job_condition(batch, "slow", "Failed"), what="the deadline")
    assert cond.reason == "DeadlineExceeded"
    wait_for(lambda: not [p for p in core.list_namespaced_pod(NS, label_selector="job-name=slow").items
                          if not p.metadata.deletion_timestamp], what="the slow job's pods to go")  # fmt: skip

    assert (
        wait_for(lambda: job_condition(batch, "later", "Suspended"), what="Suspended").reason
        == "JobSuspended"
    )
    assert core.list_namespaced_pod(NS, label_selector="job-name=later").items == []
    batch.patch_namespaced_job("later", NS, {"spec": {"suspend": False}})
    wait_for(lambda: job_condition(batch, "later", "Complete"), what="the resumed job")

    wait_for(lambda: "brief" not in {j.metadata.name for j in batch.list_namespaced_job(NS).items},
             what="ttlSecondsAfterFinished to delete the job")  # fmt: skip


def test_pod_disruption_budget_status(cluster: DevCluster, core: client.CoreV1Api) -> None:
    policy = client.PolicyV1Api(cluster.api_client())
    sleeper = python_container("import time; time.sleep(600)",
                               readinessProbe={"exec": {"command": ["true"]}, "periodSeconds": 1})  # fmt: skip
    never_ready = python_container("import time; time.sleep(600)",
                                   readinessProbe={"exec": {"command": ["false"]}, "periodSeconds": 1})  # fmt: skip
    for name, container in (("pdb-a", sleeper), ("pdb-b", never_ready)):
        manifest = pod(name, container)
        manifest["metadata"]["labels"] = {"app": "guarded"}
        core.create_namespaced_pod(NS, manifest)
    policy.create_namespaced_pod_disruption_budget(NS, {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget", "metadata": {"name": "guard"},
        "spec": {"minAvailable": 1, "selector": {"matchLabels": {"app": "guarded"}}},
    })  # fmt: skip

    def settled() -> Any:
        s = policy.read_namespaced_pod_disruption_budget_status("guard", NS).status
        return s if s and s.expected_pods == 2 and s.current_healthy == 1 else None

    status = wait_for(settled, what="PDB status")
    assert (status.desired_healthy, status.disruptions_allowed) == (1, 0)
    for name in ("pdb-a", "pdb-b"):
        core.delete_namespaced_pod(name, NS, grace_period_seconds=1)


def test_a_tritonserver_container_serves_on_its_pod_ip(core: client.CoreV1Api) -> None:
    from dev_cluster.local_triton import triton_available

    if not triton_available():
        pytest.skip("the local Triton build is not installed under .tools (make tools)")
    triton = {
        "name": "triton",
        "image": "nvcr.io/nvidia/tritonserver:24.10-py3",
        "command": ["tritonserver"],
        "args": ["--model-repository=/models", "--http-address=$(POD_IP)", "--grpc-address=$(POD_IP)",
                 "--metrics-address=$(POD_IP)", "--allow-gpu-metrics=false"],
        "env": [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}}],
        "ports": [{"name": "http", "containerPort": 8000}, {"name": "grpc", "containerPort": 8001}],
        "readinessProbe": {"httpGet": {"path": "/v2/health/ready", "port": "http"}, "periodSeconds": 1},
        "volumeMounts": [{"name": "models", "mountPath": "/models"}],
    }  # fmt: skip
    core.create_namespaced_pod(
        NS, pod("triton", triton, volumes=[{"name": "models", "emptyDir": {}}])
    )

    def ready() -> Any:
        p = core.read_namespaced_pod("triton", NS)
        return (
            p
            if any(c.type == "Ready" and c.status == "True" for c in p.status.conditions or [])
            else None
        )

    served = wait_for(ready, timeout=120, what="Triton to become ready")
    assert served.status.container_statuses[0].restart_count == 0
    core.delete_namespaced_pod("triton", NS)
    wait_for(
        lambda: "triton" not in {p.metadata.name for p in core.list_namespaced_pod(NS).items},
        what="deletion",
    )
