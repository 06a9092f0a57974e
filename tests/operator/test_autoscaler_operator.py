"""The kopf daemon inside the real operator, on a real control plane, under the chart's RBAC.

A stand-in metrics endpoint plays the Triton pod (its counters grow on every scrape); a
pod labelled as the service's Triton pod carries its address with a Ready condition, as a
kubelet would report it (this control plane has no node; the test writes the status). The
daemon must fill `status.autoscaling` for a service without autoscaling, create the HPA in
the hpa mode, and delete it again when the mode changes.

The autoscaler reads Ready pods, not EndpointSlices: EndpointSlices reject loopback
addresses, which is what dev-cluster pods get where the node agent may not add addresses
to `lo` (the first test shows it).
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from aiohttp import web

from gantry.k8s.client import KubeClient
from tests.conftest import wait_for

if TYPE_CHECKING:
    from dev_cluster.controlplane.threaded import ThreadedControlPlane

pytestmark = pytest.mark.slow

ISVC = ("gantry.dev/v1alpha1", "inferenceservices")
HPA = ("autoscaling/v2", "horizontalpodautoscalers")


def host_address() -> str:
    """This host's outgoing IPv4 address (a UDP connect sends nothing, it picks the route)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))
        except OSError as err:
            pytest.fail(f"this host has no IPv4 route for a non-loopback address: {err}")
        address = str(sock.getsockname()[0])
    if ipaddress.ip_address(address).is_loopback:
        pytest.fail(
            f"this host's only IPv4 address is loopback ({address}): EndpointSlices reject it"
        )
    return address


def metrics_text(calls: int) -> str:
    requests = 50 * calls
    return (
        "# TYPE nv_inference_request_success counter\n"
        f'nv_inference_request_success{{model="digits",version="1"}} {requests}\n'
        "# TYPE nv_inference_request_duration_us counter\n"
        f'nv_inference_request_duration_us{{model="digits",version="1"}} {requests * 4000}\n'
    )


@pytest.fixture
def fake_pod() -> Iterator[str]:
    """/metrics on <host address>:8002 in a thread of its own; yields the address."""
    address = host_address()
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
        await web.TCPSite(runner, address, 8002).start()
        runner_box.append(runner)
        started.set()

    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    asyncio.run_coroutine_threadsafe(serve(), loop)
    assert started.wait(10)
    yield address
    asyncio.run_coroutine_threadsafe(runner_box[0].cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)


def endpoint_slice(namespace: str, address: str) -> dict[str, Any]:
    """A ready endpoint of `digits-headless` on `address`, port `metrics`."""
    return {
        "apiVersion": "discovery.k8s.io/v1",
        "kind": "EndpointSlice",
        "metadata": {
            "name": "digits-headless-x1",
            "namespace": namespace,
            "labels": {"kubernetes.io/service-name": "digits-headless"},
        },
        "addressType": "IPv4",
        "endpoints": [
            {
                "addresses": [address],
                "conditions": {"ready": True},
                "targetRef": {"kind": "Pod", "name": "digits-pod", "namespace": namespace},
            }
        ],
        "ports": [{"name": "metrics", "port": 8002, "protocol": "TCP"}],
    }


def ready_pod(admin: KubeClient, namespace: str, address: str) -> None:
    """A Triton pod of `digits`, Ready on `address`, its status written as a kubelet would."""
    admin.create(
        {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {
                "name": "digits-pod",
                "namespace": namespace,
                "labels": {"gantry.dev/inferenceservice": "digits"},
            },
            "spec": {"containers": [{"name": "triton", "image": "triton"}]},
        }
    )
    admin.patch(
        "v1",
        "pods",
        "digits-pod",
        namespace,
        {
            "status": {
                "phase": "Running",
                "podIP": address,
                "podIPs": [{"ip": address}],
                "conditions": [{"type": "Ready", "status": "True"}],
            }
        },
        subresource="status",
    )


def test_endpoint_slices_reject_loopback_pod_addresses(
    control_plane: ThreadedControlPlane, namespace: str
) -> None:
    """Why the autoscaler finds Triton pods through pods, not EndpointSlices: the
    EndpointSlice controller cannot publish a dev-cluster pod's loopback address."""
    from gantry.k8s.errors import Invalid

    admin = KubeClient.for_kubeconfig(control_plane.kubeconfig)
    with pytest.raises(Invalid, match="loopback"):
        admin.create(endpoint_slice(namespace, "127.0.8.31"))
    admin.close()


def test_daemon_records_metrics_and_manages_hpa(
    fake_pod: str,
    control_plane: ThreadedControlPlane,
    crds: list[dict[str, Any]],
    operator_kubeconfig: Path,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from gantry.controller.settings import operator_config
    from gantry.controller.testing import run_operator_in_thread

    monkeypatch.setenv("GANTRY_SCRAPE_INTERVAL_SECONDS", "1")
    operator_config.cache_clear()
    admin = KubeClient.for_kubeconfig(control_plane.kubeconfig)
    ready_pod(admin, namespace, fake_pod)
    admin.create(
        {
            "apiVersion": "gantry.dev/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": "digits", "namespace": namespace},
            "spec": {"model": {"storageUri": "pvc://models/digits"}},
        }
    )

    def autoscaling() -> dict[str, Any]:
        isvc = admin.get(*ISVC, "digits", namespace)
        return dict(((isvc or {}).get("status") or {}).get("autoscaling") or {})

    try:
        with run_operator_in_thread(str(operator_kubeconfig), namespaces=[namespace]):
            status = wait_for(
                lambda: autoscaling().get("requestsPerSecond") and autoscaling(),
                60,
                "status.autoscaling.requestsPerSecond",
            )
            assert status["latencyMeanMs"] == 4 and status["sampledAt"]
            assert "desiredReplicas" not in status

            admin.patch(
                *ISVC,
                "digits",
                namespace,
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
            hpa = wait_for(lambda: admin.get(*HPA, "digits", namespace), 60, "the HPA")
            assert hpa["spec"]["scaleTargetRef"]["kind"] == "InferenceService"
            owner = admin.get(*ISVC, "digits", namespace)
            assert owner is not None
            assert hpa["metadata"]["ownerReferences"][0]["uid"] == owner["metadata"]["uid"]
            wait_for(lambda: autoscaling().get("mode") == "hpa", 30, "mode hpa in the status")

            admin.patch(*ISVC, "digits", namespace, {"spec": {"autoscaling": {"mode": "builtin"}}})
            wait_for(
                lambda: admin.get(*HPA, "digits", namespace) is None,
                60,
                "the stale HPA to be deleted",
            )
    finally:
        admin.close()
        operator_config.cache_clear()
