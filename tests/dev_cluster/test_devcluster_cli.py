"""`gantry dev up/down/logs` as a user runs them (`python -m dev_cluster`), driven with
the real kubectl against the real control plane it starts."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dev_cluster.cluster import kubernetes_version
from dev_cluster.controlplane import find_binary
from tests.conftest import require_control_plane, wait_for
from tests.dev_cluster.devkit import process_alive

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".tools" / "bin" / "kubectl"
CONTROL_PLANE = {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler"}

WEB = """
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data: {greeting: hello}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 2
  selector: {matchLabels: {app: web}}
  template:
    metadata: {labels: {app: web}}
    spec:
      containers:
      - name: http
        image: python:3.12-slim
        command: [python, -m, http.server, "18080", --bind, $(POD_IP)]
        env:
        - name: POD_IP
          valueFrom: {fieldRef: {fieldPath: status.podIP}}
        - name: GREETING
          valueFrom: {configMapKeyRef: {name: web-config, key: greeting}}
        ports: [{name: http, containerPort: 18080}]
        readinessProbe: {httpGet: {path: /, port: http}, periodSeconds: 1}
---
apiVersion: v1
kind: Service
metadata: {name: web}
spec:
  selector: {app: web}
  ports: [{name: http, port: 80, targetPort: http}]
"""


def descendants(root: int) -> dict[int, str]:
    """pid → program name (argv[0]'s base name) of every process below `root`."""
    children: dict[int, list[int]] = {}
    names: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            argv0 = (entry / "cmdline").read_bytes().split(b"\0", 1)[0].decode()
        except OSError:
            continue
        children.setdefault(int(stat.rsplit(")", 1)[1].split()[1]), []).append(int(entry.name))
        names[int(entry.name)] = Path(argv0).name
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = names[child]
            todo.append(child)
    return found


class Up:
    """A `python -m dev_cluster up` process and its output."""

    def __init__(self, state: Path, *extra: str) -> None:
        self.state = state
        self.out = state.parent / f"{state.name}-up.log"
        earlier = self.text().count("ready;")  # a restart appends to the same log
        with open(self.out, "ab") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dev_cluster", "up", "--state-dir", str(state),
                 "--no-operator", "--backoff-base", "0.5", *extra],
                stdout=fh, stderr=subprocess.STDOUT, cwd=REPO,
            )  # fmt: skip
        self.kubeconfig = state / "kubeconfig"
        ready = wait_for(
            lambda: self.text().count("ready;") > earlier or self.proc.poll() is not None,
            240,
            "dev up to be ready",
        )
        assert ready and self.proc.poll() is None, self.text()

    def text(self) -> str:
        return self.out.read_text() if self.out.exists() else ""

    def run(self, *args: str, input: str | None = None) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True, text=True, input=input, timeout=180,
        )  # fmt: skip

    def kubectl(self, *args: str, input: str | None = None) -> str:
        result = self.run(*args, input=input)
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout

    def json(self, *args: str) -> Any:
        return json.loads(self.kubectl(*args, "-o", "json"))

    def interrupt(self) -> int:
        """Ctrl-C, as a user stops it; the exit code."""
        self.proc.send_signal(signal.SIGINT)
        return self.proc.wait(timeout=120)

    def close(self) -> None:
        if self.proc.poll() is None:  # a failed test: stop it the way a user would
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=120)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


@pytest.fixture(scope="module")
def up(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Up]:
    require_control_plane()
    if not KUBECTL.exists():
        pytest.fail("kubectl is not installed under .tools/bin (make tools)")
    running = Up(tmp_path_factory.mktemp("cli") / "state")
    yield running
    running.close()


def test_kubectl_works_against_dev_up(up: Up, tmp_path: Path) -> None:
    assert f"kubeconfig:  {up.kubeconfig}" in up.text()
    version = up.json("version")
    assert version["serverVersion"]["gitVersion"] == kubernetes_version(
        find_binary("kube-apiserver")
    )
    assert version["serverVersion"]["gitVersion"].startswith("v1.")
    crds = {p.name.split("_", 1)[1].removesuffix(".yaml") for p in (REPO / "crds").glob("*.yaml")}
    listed = up.kubectl("get", "crd", "-o", "name")
    assert all(f"{name.split('.')[0]}.gantry.dev" in listed for name in crds)
    assert "dev-node" in up.kubectl("get", "nodes")

    explained = up.kubectl("explain", "deployment.spec")
    assert "DeploymentSpec" in explained and "replicas" in explained

    assert up.kubectl("auth", "can-i", "create", "pods").strip() == "yes"
    denied = up.run("auth", "can-i", "create", "pods", "--as=system:serviceaccount:default:default")
    assert (denied.returncode, denied.stdout.strip()) == (1, "no")

    code = "import time; print('hello from a deployment', flush=True); time.sleep(3600)"
    up.kubectl("create", "deployment", "hello", "--image=python:3.12", "--", "python", "-c", code)
    up.kubectl("rollout", "status", "deployment/hello", "--timeout=180s")
    wait_for(
        lambda: up.kubectl("logs", "deployment/hello") == "hello from a deployment\n",
        90,
        "kubectl logs through the kubelet API",
    )

    (tmp_path / "web.yaml").write_text(WEB)
    applied = up.kubectl("apply", "--server-side", "-f", str(tmp_path / "web.yaml"))
    assert "deployment.apps/web serverside-applied" in applied
    up.kubectl("rollout", "status", "deployment/web", "--timeout=180s")
    config = up.json("get", "configmap", "web-config", "--show-managed-fields")
    assert [(f["manager"], f["operation"]) for f in config["metadata"]["managedFields"]] == [
        ("kubectl", "Apply")
    ]
    pods = up.json("get", "pods", "-l", "app=web")["items"]
    assert len(pods) == 2
    name = pods[0]["metadata"]["name"]
    wait_for(lambda: "GET / HTTP/1.1" in up.kubectl("logs", name), 60, "probe requests in the log")
    logs = subprocess.run(
        [sys.executable, "-m", "dev_cluster", "logs", name, "--state-dir", str(up.state)],
        capture_output=True, text=True, timeout=60, check=True, cwd=REPO,
    ).stdout  # fmt: skip
    assert "GET / HTTP/1.1" in logs

    reasons = {e["reason"] for e in up.json("get", "events")["items"]}
    assert {"Scheduled", "Started", "SuccessfulCreate", "ScalingReplicaSet"} <= reasons, reasons
    assert "Started" in up.kubectl(
        "get", "events", "--field-selector", f"involvedObject.name={name}"
    )


def test_ctrl_c_leaves_nothing_behind_and_a_restart_keeps_objects(up: Up) -> None:
    up.kubectl("create", "configmap", "kept", "--from-literal=answer=42")
    code = "import os; print('run', os.getpid(), flush=True); import time; time.sleep(3600)"
    up.kubectl("run", "sleeper", "--image=python:3.12", "--", "python", "-c", code)
    up.kubectl("wait", "pod/sleeper", "--for=condition=Ready", "--timeout=180s")
    before = up.json("get", "pod", "sleeper")
    first_run = before["status"]["containerStatuses"][0]["containerID"]

    started = descendants(up.proc.pid)
    assert set(started.values()) >= CONTROL_PLANE, started
    containers = [pid for pid, name in started.items() if name.startswith("python")]
    assert containers, started
    assert up.interrupt() == 0, up.text()
    assert "dev cluster stopped" in up.text()
    left = {pid: name for pid, name in started.items() if process_alive(pid)}
    assert left == {}, f"processes left behind: {left}"
    assert not (up.state / "dev.pid").exists()

    again = Up(up.state)  # the same state directory
    try:
        assert again.kubectl("get", "configmap", "kept", "-o", "jsonpath={.data.answer}") == "42"

        def rerun() -> Any:
            pod = again.json("get", "pod", "sleeper")
            statuses = pod["status"].get("containerStatuses") or [{}]
            running = "running" in (statuses[0].get("state") or {})
            return pod if running and statuses[0].get("containerID") != first_run else None

        pod = wait_for(rerun, 120, "the node to run the pod again")
        assert pod["metadata"]["uid"] == before["metadata"]["uid"]
        pid = int(pod["status"]["containerStatuses"][0]["containerID"].removeprefix("dev://"))
        assert process_alive(pid)
        wait_for(
            lambda: f"run {pid}" in again.kubectl("logs", "sleeper"), 60, "the new run's output"
        )

        twice = subprocess.run(
            [sys.executable, "-m", "dev_cluster", "up", "--state-dir", str(up.state),
             "--no-operator"],
            capture_output=True, text=True, timeout=60, cwd=REPO,
        )  # fmt: skip
        assert twice.returncode != 0 and "already running" in twice.stderr
        down = subprocess.run(
            [sys.executable, "-m", "dev_cluster", "down", "--state-dir", str(up.state)],
            capture_output=True, text=True, timeout=150, check=True, cwd=REPO,
        )  # fmt: skip
        assert "dev cluster stopped" in down.stdout
        assert again.proc.wait(timeout=30) == 0
        assert not process_alive(pid)
    finally:
        again.close()


def test_bad_arguments_are_reported(tmp_path: Path) -> None:
    run = subprocess.run(
        [sys.executable, "-m", "dev_cluster", "up", "--state-dir", str(tmp_path / "s"),
         "--memory", "lots"],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert run.returncode == 2 and "invalid quantity 'lots'" in run.stderr
    down = subprocess.run(
        [sys.executable, "-m", "dev_cluster", "down", "--state-dir", str(tmp_path / "s")],
        capture_output=True, text=True, timeout=60, cwd=REPO,
    )  # fmt: skip
    assert down.returncode == 0 and "no dev cluster is running" in down.stdout
