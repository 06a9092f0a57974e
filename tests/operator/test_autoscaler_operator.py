"""The kopf daemon inside the real operator, against the emulated API server (slow).

A stand-in metrics endpoint plays the Triton pod (its counters grow on every scrape);
the daemon must fill `status.autoscaling` for a service without autoscaling, create the
HPA in the hpa mode, and delete it again when the mode changes.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from aiohttp import web

from gantry.k8s.client import KubeClient

pytestmark = pytest.mark.slow

POD_IP = "127.0.8.31"
REPO = Path(__file__).resolve().parents[2]


def metrics_text(calls: int) -> str:
    requests = 50 * calls
    return (
        "# TYPE nv_inference_request_success counter\n"
        f'nv_inference_request_success{{model="digits",version="1"}} {requests}\n'
        "# TYPE nv_inference_request_duration_us counter\n"
        f'nv_inference_request_duration_us{{model="digits",version="1"}} {requests * 4000}\n'
    )


@pytest.fixture
def fake_pod() -> Iterator[None]:
    """/metrics on POD_IP:8002 in a thread of its own."""
    loop = asyncio.new_event_loop()
    calls = [0]
    started = threading.Event()
    runner_box: list[web.AppRunner] = []

    async def handle(_: web.Request) -> web.Response:
        calls[0] += 1
        return web.Response(text=metrics_text(calls[0]))

    async def serve() -> None:
        app = web.Application()
        app.router.add_get("/metrics", handle)
        runner = web.AppRunner(app)
        await runner.setup()
        await web.TCPSite(runner, POD_IP, 8002).start()
        runner_box.append(runner)
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop)
    assert started.wait(10)
    yield
    asyncio.run_coroutine_threadsafe(runner_box[0].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def poll(check: Callable[[], Any], timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = check()
        if value:
            return value
        time.sleep(0.3)
    raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")


def test_daemon_records_metrics_and_manages_hpa(
    fake_pod: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dev_cluster.apiserver.testing import start_in_thread
    from gantry.controller.settings import operator_config
    from gantry.controller.testing import run_operator_in_thread

    monkeypatch.setenv("GANTRY_SCRAPE_INTERVAL_SECONDS", "1")
    operator_config.cache_clear()
    with start_in_thread(tmp_path / "api") as api:
        kube = KubeClient.for_url(api.url)
        for path in sorted((REPO / "crds").glob("*.yaml")):
            kube.create(yaml.safe_load(path.read_text()))
        kube.create(
            {
                "apiVersion": "discovery.k8s.io/v1",
                "kind": "EndpointSlice",
                "metadata": {
                    "name": "digits-headless-x1",
                    "namespace": "default",
                    "labels": {"kubernetes.io/service-name": "digits-headless"},
                },
                "addressType": "IPv4",
                "endpoints": [
                    {
                        "addresses": [POD_IP],
                        "conditions": {"ready": True},
                        "targetRef": {"kind": "Pod", "name": "digits-pod", "namespace": "default"},
                    }
                ],
                "ports": [{"name": "metrics", "port": 8002, "protocol": "TCP"}],
            }
        )
        kube.create(
            {
                "apiVersion": "gantry.dev/v1alpha1",
                "kind": "InferenceService",
                "metadata": {"name": "digits", "namespace": "default"},
                "spec": {"model": {"storageUri": "pvc://models/digits"}},
            }
        )

        def autoscaling() -> dict[str, Any]:
            isvc = kube.get("gantry.dev/v1alpha1", "inferenceservices", "digits", "default")
            return dict(((isvc or {}).get("status") or {}).get("autoscaling") or {})

        with run_operator_in_thread(api.url):
            status = poll(
                lambda: autoscaling().get("requestsPerSecond") and autoscaling(),
                60,
                "status.autoscaling.requestsPerSecond",
            )
            assert status["latencyMeanMs"] == 4 and status["sampledAt"]
            assert "desiredReplicas" not in status

            kube.patch(
                "gantry.dev/v1alpha1",
                "inferenceservices",
                "digits",
                "default",
                {
                    "spec": {
                        "autoscaling": {
                            "mode": "hpa",
                            "minReplicas": 1,
                            "maxReplicas": 3,
                            "targets": {"latencyP95Ms": 20},
                        }
                    }
                },
            )
            hpa = poll(
                lambda: kube.get("autoscaling/v2", "horizontalpodautoscalers", "digits", "default"),
                60,
                "the HPA",
            )
            assert hpa["spec"]["scaleTargetRef"]["kind"] == "InferenceService"
            poll(lambda: autoscaling().get("mode") == "hpa", 30, "mode hpa in the status")

            kube.patch(
                "gantry.dev/v1alpha1",
                "inferenceservices",
                "digits",
                "default",
                {"spec": {"autoscaling": {"mode": "builtin"}}},
            )
            poll(
                lambda: (
                    kube.get("autoscaling/v2", "horizontalpodautoscalers", "digits", "default")
                    is None
                ),
                60,
                "the stale HPA to be deleted",
            )
        kube.close()
    operator_config.cache_clear()
