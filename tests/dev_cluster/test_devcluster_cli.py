"""`gantry dev up/down/logs` as a user runs them, driven with the real kubectl."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

pytestmark = pytest.mark.slow
T = TypeVar("T")
REPO = Path(__file__).resolve().parents[2]
KUBECTL = REPO / ".tools" / "bin" / "kubectl"

MANIFEST = """
apiVersion: v1
kind: ConfigMap
metadata: {name: web-config}
data: {greeting: hello}
---
apiVersion: apps/v1
kind: Deployment
metadata: {name: web}
spec:
  replicas: 1
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


def wait_for(probe: Callable[[], T | None], timeout: float = 60, what: str = "condition") -> T:
    deadline = time.monotonic() + timeout
    last: T | None = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last: {last!r})")


def descendants(root: int) -> dict[int, str]:
    """pid → start time of every process below `root` (read from /proc)."""
    children: dict[int, list[int]] = {}
    starts: dict[int, str] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
        except OSError:
            continue
        fields = stat.rsplit(")", 1)[1].split()
        children.setdefault(int(fields[1]), []).append(int(entry.name))
        starts[int(entry.name)] = fields[19]
    found: dict[int, str] = {}
    todo = [root]
    while todo:
        for child in children.get(todo.pop(), []):
            found[child] = starts[child]
            todo.append(child)
    return found


def alive(pid: int, start: str) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    fields = stat.rsplit(")", 1)[1].split()
    return fields[19] == start and fields[0] != "Z"


class Up:
    """A `python -m dev_cluster up` process and its output."""

    def __init__(self, state: Path, *extra: str) -> None:
        self.state = state
        self.out = state.parent / f"{state.name}-up.log"
        with open(self.out, "wb") as fh:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "dev_cluster", "up", "--state-dir", str(state), "--no-operator",
                 "--backoff-base", "0.5", *extra],
                stdout=fh, stderr=subprocess.STDOUT, cwd=state.parent,
            )  # fmt: skip
        wait_for(lambda: "ready;" in self.text() or self.proc.poll() is not None, what="dev up")
        assert self.proc.poll() is None, self.text()
        self.kubeconfig = state / "kubeconfig"

    def text(self) -> str:
        return self.out.read_text() if self.out.exists() else ""

    def kubectl(self, *args: str, input: str | None = None) -> str:
        result = subprocess.run(
            [str(KUBECTL), "--kubeconfig", str(self.kubeconfig), *args],
            capture_output=True, text=True, input=input, timeout=120,
        )  # fmt: skip
        assert result.returncode == 0, f"kubectl {' '.join(args)}: {result.stderr}"
        return result.stdout


@pytest.fixture
def up(tmp_path: Path) -> Iterator[Up]:
    running = Up(tmp_path / "state")
    yield running
    if running.proc.poll() is None:  # a failed test: stop it the way a user would
        running.proc.send_signal(signal.SIGINT)
        try:
            running.proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            running.proc.kill()
            running.proc.wait()


@pytest.mark.skipif(
    not KUBECTL.exists(), reason="kubectl is not installed under .tools/bin (make tools)"
)
def test_dev_up_serves_kubectl_and_ctrl_c_leaves_nothing_behind(up: Up, tmp_path: Path) -> None:
    assert f"kubeconfig:  {up.kubeconfig}" in up.text()
    crds = {p.name.split("_", 1)[1].removesuffix(".yaml") for p in (REPO / "crds").glob("*.yaml")}
    listed = up.kubectl("get", "crd", "-o", "name")
    assert all(f"{name.split('.')[0]}.gantry.dev" in listed for name in crds)
    assert "dev-node" in up.kubectl("get", "nodes")

    (tmp_path / "web.yaml").write_text(MANIFEST)
    up.kubectl("apply", "-f", str(tmp_path / "web.yaml"))
    up.kubectl("rollout", "status", "deployment/web", "--timeout=90s")
    up.kubectl("scale", "deployment/web", "--replicas=2")
    up.kubectl("rollout", "status", "deployment/web", "--timeout=90s")
    pods: dict[str, Any] = json.loads(up.kubectl("get", "pods", "-l", "app=web", "-o", "json"))
    assert len(pods["items"]) == 2
    name = pods["items"][0]["metadata"]["name"]
    ip = pods["items"][0]["status"]["podIP"]
    assert ip.startswith("127.0.") and not ip.startswith("127.0.0.")
    assert ip in up.kubectl(
        "get", "pods", "-o", "custom-columns=NAME:.metadata.name,IP:.status.podIP"
    )
    wait_for(lambda: "GET / HTTP/1.1" in up.kubectl("logs", name), what="probe requests in the log")
    logs = subprocess.run(
        [sys.executable, "-m", "dev_cluster", "logs", name, "--state-dir", str(up.state)],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    assert "GET / HTTP/1.1" in logs
    slices = json.loads(
        up.kubectl("get", "endpointslices", "-l", "kubernetes.io/service-name=web", "-o", "json")
    )
    assert sorted(e["addresses"][0] for e in slices["items"][0]["endpoints"]) == sorted(
        p["status"]["podIP"] for p in pods["items"]
    )

    events = json.loads(up.kubectl("get", "events", "-o", "json"))["items"]
    reasons = {e["reason"] for e in events}
    assert {"Scheduled", "Started", "SuccessfulCreate", "ScalingReplicaSet"} <= reasons, reasons

    started = descendants(up.proc.pid)
    assert len(started) >= 2  # the two pods' processes at least
    up.proc.send_signal(signal.SIGINT)
    assert up.proc.wait(timeout=60) == 0
    left = [pid for pid, start in started.items() if alive(pid, start)]
    assert left == [], f"processes left behind: {left}"
    assert not (up.state / "dev.pid").exists()


def test_dev_down_stops_a_running_cluster(up: Up) -> None:
    assert (up.state / "dev.pid").read_text().strip() == str(up.proc.pid)
    again = subprocess.run(
        [sys.executable, "-m", "dev_cluster", "up", "--state-dir", str(up.state), "--no-operator"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert again.returncode != 0 and "already running" in again.stderr
    down = subprocess.run(
        [sys.executable, "-m", "dev_cluster", "down", "--state-dir", str(up.state)],
        capture_output=True, text=True, timeout=90, check=True,
    )  # fmt: skip
    assert "stopped" in down.stdout
    assert up.proc.wait(timeout=30) == 0
    os.environ.get("PATH")  # the environment is untouched by the commands


def test_agent_runs_alone_against_any_api(tmp_path: Path) -> None:
    from kubernetes import client, config

    from dev_cluster.apiserver import write_kubeconfig
    from dev_cluster.apiserver.testing import start_in_thread

    with start_in_thread(tmp_path / "api") as api:
        kubeconfig = write_kubeconfig(tmp_path / "kubeconfig", api.url)
        agent = subprocess.Popen(
            [sys.executable, "-m", "dev_cluster.agent", "--kubeconfig", str(kubeconfig),
             "--state-dir", str(tmp_path / "node"), "--gpus", "2", "--cpu", "3", "--memory", "4Gi"],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip
        try:
            core = client.CoreV1Api(config.new_client_from_config(config_file=str(kubeconfig)))

            def node() -> Any:
                items = core.list_node().items
                return (
                    items[0] if items and items[0].status and items[0].status.allocatable else None
                )

            found = wait_for(node, what="the node to register")
            assert found.metadata.name == "dev-node"
            assert found.metadata.labels["kubernetes.io/hostname"] == "dev-node"
            assert {k: found.status.allocatable[k] for k in ("cpu", "memory", "nvidia.com/gpu")} == {
                "cpu": "3", "memory": "4Gi", "nvidia.com/gpu": "2",
            }  # fmt: skip
            assert [c.status for c in found.status.conditions if c.type == "Ready"] == ["True"]
        finally:
            agent.send_signal(signal.SIGTERM)
            out, _ = agent.communicate(timeout=60)
        assert agent.returncode == 0, out


def test_bad_agent_arguments_are_reported(tmp_path: Path) -> None:
    (tmp_path / "kubeconfig").write_text("clusters: []\n")
    run = subprocess.run(
        [sys.executable, "-m", "dev_cluster.agent", "--kubeconfig", str(tmp_path / "kubeconfig"),
         "--state-dir", str(tmp_path / "s")],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "names no cluster" in run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "dev_cluster", "up", "--state-dir", str(tmp_path / "s"), "--memory", "lots"],
        capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert run.returncode == 2 and "invalid quantity 'lots'" in run.stderr
