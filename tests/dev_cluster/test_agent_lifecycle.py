"""A pod's life on the dev node, seen through kube-apiserver: init containers, config
volumes, identity, probes, preStop, active deadlines, `kubectl logs -f`, Triton."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from tests.conftest import require_triton, wait_for
from tests.dev_cluster.devkit import (
    NODE,
    gone,
    is_ready,
    job_condition,
    phase,
    pod_manifest,
    process_alive,
    python_container,
    python_pod,
)

pytestmark = pytest.mark.slow


def test_init_containers_config_volumes_and_identity(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_config_map(
        ns, {"metadata": {"name": "app-cfg"}, "data": {"mode": "fast"}}
    )
    core.create_namespaced_secret(ns, {"metadata": {"name": "app-secret"},
                                       "data": {"token": base64.b64encode(b"s3cret").decode()}})  # fmt: skip
    init = python_container("open('/workspace/seed', 'w').write('seeded')", name="seed",
                            volumeMounts=[{"name": "work", "mountPath": "/workspace"}])  # fmt: skip
    code = (
        "import os, socket\n"
        "r = lambda p: open(p).read()\n"
        "print(r('/workspace/seed'), r('/etc/app/mode'), r('/etc/secret/token'), os.environ['TOKEN'],\n"
        "      os.environ['CFG_mode'], socket.gethostname(), os.environ['MY_NS'], os.environ['NODE'],\n"
        "      r('/var/run/secrets/kubernetes.io/serviceaccount/namespace'), os.getcwd())"
    )
    main = python_container(
        code,
        workingDir="/workspace",
        env=[{"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "app-secret", "key": "token"}}},
             {"name": "MY_NS", "valueFrom": {"fieldRef": {"fieldPath": "metadata.namespace"}}},
             {"name": "NODE", "valueFrom": {"fieldRef": {"fieldPath": "spec.nodeName"}}}],
        envFrom=[{"configMapRef": {"name": "app-cfg"}, "prefix": "CFG_"}],
        volumeMounts=[{"name": "work", "mountPath": "/workspace"},
                      {"name": "cfg", "mountPath": "/etc/app", "readOnly": True},
                      {"name": "sec", "mountPath": "/etc/secret"}],
    )  # fmt: skip
    core.create_namespaced_pod(ns, pod_manifest(
        "configured", main, initContainers=[init], restartPolicy="Never",
        volumes=[{"name": "work", "emptyDir": {}}, {"name": "cfg", "configMap": {"name": "app-cfg"}},
                 {"name": "sec", "secret": {"secretName": "app-secret"}}],
    ))  # fmt: skip
    done = wait_for(
        lambda: phase(core, ns, "configured", "Succeeded", "Failed"), 90, "the pod to finish"
    )
    log = core.read_namespaced_pod_log("configured", ns)
    assert done.status.phase == "Succeeded", log
    assert log.split() == [
        "seeded", "fast", "s3cret", "s3cret", "fast", "configured", ns, NODE, ns, "/workspace",
    ]  # fmt: skip
    assert done.status.init_container_statuses[0].state.terminated.reason == "Completed"
    assert {c.type: c.status for c in done.status.conditions}["Initialized"] == "True"
    assert core.read_namespaced_pod_log("configured", ns, container="seed") == ""


def test_init_failure_and_on_failure_restarts(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, pod_manifest(
        "init-fails", python_container("print('never')"), restartPolicy="Never",
        initContainers=[python_container("raise SystemExit(4)", name="init")],
    ))  # fmt: skip
    once = (
        "import os, sys\n"
        "again = os.path.exists('/data/ran'); open('/data/ran', 'w').close()\n"
        "print('second' if again else 'first', flush=True); sys.exit(0 if again else 3)"
    )
    core.create_namespaced_pod(ns, python_pod(
        "retry", once, restartPolicy="OnFailure",
        container={"volumeMounts": [{"name": "d", "mountPath": "/data"}]},
        volumes=[{"name": "d", "emptyDir": {}}],
    ))  # fmt: skip

    failed = wait_for(lambda: phase(core, ns, "init-fails", "Failed"), 90, "the init failure")
    (init,) = failed.status.init_container_statuses
    assert (init.state.terminated.exit_code, init.state.terminated.reason) == (4, "Error")
    assert {c.type: c.status for c in failed.status.conditions}["Initialized"] == "False"
    assert failed.status.container_statuses[0].state.terminated is None  # never started

    done = wait_for(lambda: phase(core, ns, "retry", "Succeeded"), 90, "the retried pod")
    status = done.status.container_statuses[0]
    assert status.restart_count == 1 and status.last_state.terminated.exit_code == 3
    assert core.read_namespaced_pod_log("retry", ns) == "second\n"
    assert core.read_namespaced_pod_log("retry", ns, previous=True) == "first\n"


def test_a_sidecar_runs_beside_the_job_and_stops_when_it_is_done(
    api: ApiClient, core: client.CoreV1Api, ns: str
) -> None:
    """Native sidecars: an init container with restartPolicy Always."""
    batch = client.BatchV1Api(api)
    sidecar = python_container(
        "import time; open('/shared/up', 'w').close(); print('serving', flush=True); "
        "time.sleep(3600)",
        name="proxy", restartPolicy="Always",
        volumeMounts=[{"name": "shared", "mountPath": "/shared"}],
        startupProbe={"exec": {"command": ["test", "-f", "/shared/up"]}, "periodSeconds": 1},
    )  # fmt: skip
    main = python_container(
        "import os; print('proxy up:', os.path.exists('/shared/up'))",
        volumeMounts=[{"name": "shared", "mountPath": "/shared"}],
    )
    job = {
        "apiVersion": "batch/v1", "kind": "Job", "metadata": {"name": "with-sidecar"},
        "spec": {"backoffLimit": 0, "template": {"spec": {
            "restartPolicy": "Never", "initContainers": [sidecar], "containers": [main],
            "volumes": [{"name": "shared", "emptyDir": {}}],
        }}},
    }  # fmt: skip
    batch.create_namespaced_job(ns, job)
    wait_for(
        lambda: job_condition(batch, ns, "with-sidecar", "Complete"), 120, "the Job to complete"
    )
    (pod,) = core.list_namespaced_pod(ns, label_selector="job-name=with-sidecar").items
    assert pod.status.phase == "Succeeded"
    assert core.read_namespaced_pod_log(pod.metadata.name, ns) == "proxy up: True\n"
    assert core.read_namespaced_pod_log(pod.metadata.name, ns, container="proxy") == "serving\n"
    (proxy,) = pod.status.init_container_statuses
    assert proxy.state.terminated is not None and proxy.restart_count == 0
    assert not process_alive(int(proxy.container_id.removeprefix("dev://")))


def test_liveness_failure_restarts_and_prestop_runs_before_sigterm(
    core: client.CoreV1Api, ns: str, tmp_path: Path
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
        ns, pod_manifest("lively", main, volumes=[{"name": "out", "hostPath": {"path": str(out)}}])
    )

    def restarted_and_ready() -> Any:
        p = core.read_namespaced_pod("lively", ns)
        s = (p.status.container_statuses or [None])[0]
        return p if s and s.restart_count == 1 and s.ready and s.started else None

    pod = wait_for(restarted_and_ready, 120, "a liveness restart")
    assert is_ready(pod)
    wait_for(lambda: (out / "started").read_text() == "xx", 60, "the second run")
    events = core.list_namespaced_event(ns, field_selector="involvedObject.name=lively").items
    assert "Unhealthy" in {e.reason for e in events}
    core.delete_namespaced_pod("lively", ns, grace_period_seconds=10)
    wait_for(lambda: gone(core, ns, "lively"), 90, "the deletion to finish")
    assert (out / "prestop").read_text() == "done\n"
    assert (out / "sigterm").read_text() == "True"


def test_active_deadline_fails_the_pod(core: client.CoreV1Api, ns: str) -> None:
    core.create_namespaced_pod(ns, python_pod(
        "slow", "import time; time.sleep(600)", restartPolicy="Never", activeDeadlineSeconds=2,
    ))  # fmt: skip
    failed = wait_for(lambda: phase(core, ns, "slow", "Failed"), 90, "the deadline to pass")
    assert failed.status.reason == "DeadlineExceeded"
    assert failed.status.container_statuses[0].state.terminated is not None


def test_logs_follow_until_the_container_ends(
    core: client.CoreV1Api, ns: str, tmp_path: Path
) -> None:
    code = (
        "import os, time\n"
        "print('first', flush=True)\n"
        "while not os.path.exists('/signal/go'): time.sleep(0.1)\n"
        "for i in range(3): print(f'line {i}', flush=True)\n"
    )
    core.create_namespaced_pod(ns, python_pod(
        "talker", code, restartPolicy="Never",
        container={"volumeMounts": [{"name": "signal", "mountPath": "/signal"}]},
        volumes=[{"name": "signal", "hostPath": {"path": str(tmp_path)}}],
    ))  # fmt: skip
    wait_for(lambda: phase(core, ns, "talker", "Running"), 90, "the container to start")
    wait_for(lambda: core.read_namespaced_pod_log("talker", ns) == "first\n", 60, "the first line")
    stream = core.read_namespaced_pod_log(
        "talker", ns, follow=True, _preload_content=False, _request_timeout=120
    )
    try:
        first = stream.read(6)
        assert first == b"first\n"  # the stream is open while the container still runs
        assert core.read_namespaced_pod("talker", ns).status.phase == "Running"
        (tmp_path / "go").write_text("")
        rest = stream.read()  # ends when the container exits
    finally:
        stream.release_conn()
    assert (first + rest).decode() == "first\nline 0\nline 1\nline 2\n"
    assert core.read_namespaced_pod_log("talker", ns, tail_lines=1) == "line 2\n"


def test_a_tritonserver_container_serves_on_its_pod_ip(core: client.CoreV1Api, ns: str) -> None:
    require_triton()
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
        ns, pod_manifest("triton", triton, volumes=[{"name": "models", "emptyDir": {}}])
    )

    def ready() -> Any:
        p = core.read_namespaced_pod("triton", ns)
        return p if is_ready(p) else None

    served = wait_for(ready, 180, "Triton to become ready")
    assert served.status.container_statuses[0].restart_count == 0
    core.delete_namespaced_pod("triton", ns)
    wait_for(lambda: gone(core, ns, "triton"), 90, "the deletion to finish")
