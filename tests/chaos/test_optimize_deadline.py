"""An optimize Job whose model download never ends, stopped at `optimizeDeadlineSeconds`.

The model's S3 endpoint (a server in this test) answers the fetch's listing with headers
and then one byte of a chunked body every second, forever: the download neither fails nor
finishes, as a stuck transfer does. The operator (the chart's, on the case's own dev
cluster) runs with the smallest deadline its configuration accepts. At the deadline the
Job controller fails the Job (DeadlineExceeded) and deletes its pod; the InferenceService
must end Failed with that reason and a message, the download's process must be gone (its
connection closes), and no Triton Deployment may serve a repository that was never built.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dev_cluster.cluster import DevCluster
from gantry.k8s.client import KubeClient
from gantry.k8s.conditions import parse_time
from tests.chaos.chaos_testkit import report
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

NS = "default"
API = "gantry.dev/v1alpha1"
SVC = "stuck"
DEADLINE = 60  # the smallest optimizeDeadlineSeconds OperatorConfig accepts


class TrickleServer:
    """Answers every HTTP request with a 200 whose chunked body never ends (one byte a
    second); counts the connections still open."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.sock.settimeout(0.5)
        self.port = int(self.sock.getsockname()[1])
        self.requests: list[str] = []
        self.open = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._acceptor = threading.Thread(target=self._accept, name="trickle", daemon=True)
        self._acceptor.start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        with self._lock:
            self.open += 1
        try:
            with conn:
                conn.settimeout(30)
                head = b""
                while b"\r\n\r\n" not in head:
                    data = conn.recv(4096)
                    if not data:
                        return
                    head += data
                with self._lock:
                    self.requests.append(head.split(b"\r\n", 1)[0].decode(errors="replace"))
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/xml\r\n"
                    b"Transfer-Encoding: chunked\r\n\r\n"
                )
                while not self._stop.wait(1.0):
                    conn.sendall(b"1\r\n \r\n")  # fails once the client's process is gone
        except OSError:
            pass
        finally:
            with self._lock:
                self.open -= 1

    def close(self) -> None:
        self._stop.set()
        self.sock.close()
        self._acceptor.join(5)


def condition(obj: dict[str, Any] | None, type_: str) -> dict[str, Any]:
    conditions = ((obj or {}).get("status") or {}).get("conditions") or []
    return next((c for c in conditions if c["type"] == type_), {})


def view(cluster: DevCluster, kube: KubeClient, server: TrickleServer) -> Callable[[], str]:
    def render() -> str:
        svc = (kube.get(API, "inferenceservices", SVC, NS) or {}).get("status") or {}
        lines = [f"InferenceService: {svc}", f"endpoint requests: {server.requests}"]
        for pod in kube.list("v1", "pods", NS):
            status = pod.get("status") or {}
            lines.append(
                f"pod {pod['metadata']['name']}: {status.get('phase')} "
                f"{status.get('initContainerStatuses')}"
            )
        lines.append(cluster.operator_logs()[-3000:])
        return "\n".join(lines)

    return render


def test_an_optimize_job_past_its_deadline_is_stopped_and_the_service_fails(
    tmp_path: Path,
) -> None:
    server = TrickleServer()
    values = {"config": {"optimizeDeadlineSeconds": DEADLINE}}
    try:
        with DevCluster(tmp_path / "cluster", operator=True, operator_values=values) as cluster:
            kube = KubeClient.for_kubeconfig(cluster.kubeconfig)
            shown = view(cluster, kube, server)
            kube.create(
                {
                    "apiVersion": "v1",
                    "kind": "Secret",
                    "metadata": {"name": "s3", "namespace": NS},
                    "stringData": {
                        "AWS_ACCESS_KEY_ID": "test",
                        "AWS_SECRET_ACCESS_KEY": "test",
                        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{server.port}",
                    },
                }
            )
            created = time.monotonic()
            kube.create(
                {
                    "apiVersion": API,
                    "kind": "InferenceService",
                    "metadata": {"name": SVC, "namespace": NS},
                    "spec": {
                        "model": {
                            "storageUri": "s3://models/digits/v1",
                            "storageSecretRef": {"name": "s3"},
                        },
                        "optimization": {"precision": "fp32", "accuracy": {"samples": 16}},
                    },
                }
            )
            # the optimize Job runs: its download reached the endpoint and hangs there
            wait_for(
                lambda: server.requests, 180, "the model download to start", 0.2, on_timeout=shown
            )
            assert "/models" in server.requests[0], server.requests

            def failed() -> dict[str, Any] | None:
                obj = kube.get(API, "inferenceservices", SVC, NS)
                return obj if ((obj or {}).get("status") or {}).get("phase") == "Failed" else None

            svc = wait_for(failed, DEADLINE + 180, "the service to fail", 0.5, on_timeout=shown)
            failed_after = time.monotonic() - created
            optimized = condition(svc, "Optimized")
            assert (optimized["status"], optimized["reason"]) == ("False", "DeadlineExceeded")
            assert f"deadline of {DEADLINE} s (optimizeDeadlineSeconds)" in optimized["message"]
            assert "s3://models/digits/v1" in optimized["message"], optimized
            assert svc["status"]["message"] == optimized["message"]

            (job,) = kube.list(
                "batch/v1", "jobs", NS, label_selector=f"gantry.dev/optimize-for={SVC}"
            )
            failure = condition(job, "Failed")
            assert (failure["status"], failure["reason"]) == ("True", "DeadlineExceeded")
            started, ended = (
                parse_time(job["status"]["startTime"]),
                parse_time(failure["lastTransitionTime"]),
            )
            assert started is not None and ended is not None
            assert (ended - started).total_seconds() >= DEADLINE - 1, "stopped before the deadline"

            # its pod is stopped, and the download's process with it
            name = job["metadata"]["name"]

            def live_pods() -> list[str]:
                pods = kube.list("v1", "pods", NS, label_selector=f"job-name={name}")
                return [
                    p["metadata"]["name"]
                    for p in pods
                    if (p.get("status") or {}).get("phase") in ("Pending", "Running")
                ]

            wait_for(lambda: not live_pods(), 120, "the optimize pod to stop", on_timeout=shown)
            wait_for(lambda: server.open == 0, 60, "the download's connection to close")
            # nothing serves a repository that was never built, and nothing retries
            assert kube.get("apps/v1", "deployments", f"{SVC}-triton", NS) is None
            triton = kube.list(
                "v1", "pods", NS, label_selector=f"gantry.dev/inferenceservice={SVC}"
            )
            assert triton == [], [p["metadata"]["name"] for p in triton]
            jobs = kube.list(
                "batch/v1", "jobs", NS, label_selector=f"gantry.dev/optimize-for={SVC}"
            )
            assert [j["metadata"]["name"] for j in jobs] == [name]
            report(
                "optimize-deadline",
                deadline_s=DEADLINE,
                failed_after_create_s=round(failed_after, 1),
                job_ran_s=(ended - started).total_seconds(),
                endpoint_requests=len(server.requests),
                message=optimized["message"],
            )
            kube.close()
    finally:
        server.close()
