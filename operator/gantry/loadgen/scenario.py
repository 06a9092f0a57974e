"""A step-load scenario on a cluster: real tritonserver pods, the real autoscaler rounds.

Used by the integration test and `bench/autoscale.py` on the embedded dev cluster. It
lays out the objects the InferenceService reconciler makes for a service (the
InferenceService, Deployment `<name>-triton` with pods labelled
`gantry.dev/inferenceservice=<name>` serving gRPC/HTTP/metrics on 8001/8000/8002 of the
pod IP, and the headless Service `<name>-headless`), so it does not need that
reconciler, and runs `ServiceAutoscaler` rounds in-process at a short interval while
`LoadRunner` sends the profile's load to the Ready pods the headless Service selects.

The model is a Triton Python-backend model with a fixed service time (it sleeps), so the
capacity of one replica is known (≈ 1000 / service_ms requests per second per model
instance) and does not depend on how busy the shared CPU is.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gantry.autoscaler.actuator import ServiceAutoscaler
from gantry.inferenceservice.names import (
    GRPC_PORT,
    HTTP_PORT,
    METRICS_PORT,
    deployment_name,
    headless_name,
    triton_labels,
)
from gantry.loadgen.endpoints import ServiceEndpoints
from gantry.loadgen.profile import parse_profile
from gantry.loadgen.report import results_document
from gantry.loadgen.runner import LoadRunner, Tick, random_inputs

MODEL_PY = '''"""Echo after a fixed service time: one request at a time per model instance."""
import time

import triton_python_backend_utils as pb_utils

SERVICE_SECONDS = {service_seconds!r}


class TritonPythonModel:
    def execute(self, requests):
        responses = []
        for request in requests:
            data = pb_utils.get_input_tensor_by_name(request, "INPUT").as_numpy()
            time.sleep(SERVICE_SECONDS)
            responses.append(pb_utils.InferenceResponse([pb_utils.Tensor("OUTPUT", data)]))
        return responses
'''

CONFIG = """name: "{name}"
backend: "python"
max_batch_size: 8
input [ {{ name: "INPUT", data_type: TYPE_FP32, dims: [ 4 ] }} ]
output [ {{ name: "OUTPUT", data_type: TYPE_FP32, dims: [ 4 ] }} ]
instance_group [ {{ kind: KIND_CPU, count: 1 }} ]
"""


def write_model(repository: Path, name: str, service_ms: float) -> Path:
    """A Triton model repository holding `name` (version 1) with a fixed service time."""
    version = repository / name / "1"
    version.mkdir(parents=True, exist_ok=True)
    (repository / name / "config.pbtxt").write_text(CONFIG.format(name=name))
    (version / "model.py").write_text(MODEL_PY.format(service_seconds=service_ms / 1000))
    return repository


def manifests(
    name: str, namespace: str, repository: Path, autoscaling: dict[str, Any]
) -> list[dict[str, Any]]:
    """InferenceService, Triton Deployment (1 replica) and headless Service."""
    labels = triton_labels(name)
    selector = {"gantry.dev/inferenceservice": name}
    args = [
        f"--model-repository={repository}",
        "--strict-readiness=true",
        "--exit-timeout-secs=5",
        "--http-address=$(POD_IP)",
        "--grpc-address=$(POD_IP)",
        "--metrics-address=$(POD_IP)",
        f"--http-port={HTTP_PORT}",
        f"--grpc-port={GRPC_PORT}",
        f"--metrics-port={METRICS_PORT}",
        "--allow-gpu-metrics=false",
        "--metrics-config=summary_latencies=true",
    ]
    ports = [
        {"name": "http", "containerPort": HTTP_PORT},
        {"name": "grpc", "containerPort": GRPC_PORT},
        {"name": "metrics", "containerPort": METRICS_PORT},
    ]
    return [
        {
            "apiVersion": "gantry.dev/v1alpha1",
            "kind": "InferenceService",
            "metadata": {"name": name, "namespace": namespace},
            "spec": {
                "model": {"storageUri": f"pvc://models/{name}"},
                "optimization": {"precision": "fp32"},
                "autoscaling": autoscaling,
            },
        },
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": {"name": deployment_name(name), "namespace": namespace, "labels": labels},
            "spec": {
                "replicas": int(autoscaling.get("minReplicas", 1)),
                "selector": {"matchLabels": selector},
                "template": {
                    "metadata": {"labels": labels},
                    "spec": {
                        "terminationGracePeriodSeconds": 15,
                        "containers": [
                            {
                                "name": "triton",
                                "image": "nvcr.io/nvidia/tritonserver:24.08-py3",
                                "command": ["tritonserver"],
                                "args": args,
                                "env": [
                                    {
                                        "name": "POD_IP",
                                        "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}},
                                    }
                                ],
                                "ports": ports,
                                # Endpoints drop the pod before Triton stops taking requests.
                                "lifecycle": {"preStop": {"exec": {"command": ["sleep", "3"]}}},
                                "readinessProbe": {
                                    "httpGet": {"path": "/v2/health/ready", "port": HTTP_PORT},
                                    "periodSeconds": 1,
                                    "failureThreshold": 2,
                                },
                            }
                        ],
                    },
                },
            },
        },
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": headless_name(name), "namespace": namespace, "labels": labels},
            "spec": {
                "clusterIP": "None",
                "selector": selector,
                "ports": [
                    {"name": p["name"], "port": p["containerPort"], "targetPort": p["name"]}
                    for p in ports
                ],
            },
        },
    ]


@dataclass
class ScenarioResult:
    load: dict[str, Any]  # the load generator's results document
    rounds: list[dict[str, Any]] = field(default_factory=list)  # every autoscaler round
    replicas_seen: list[int] = field(default_factory=list)
    back_to_min_s: float | None = None  # seconds after the load ended, when reached
    load_started_at: float = 0.0  # on the rounds' clock


async def _deployment_replicas(kube: Any, name: str, namespace: str) -> int:
    deployment = await asyncio.to_thread(
        kube.get, "apps/v1", "deployments", deployment_name(name), namespace
    )
    return int(((deployment or {}).get("spec") or {}).get("replicas") or 0)


async def wait_ready(endpoints: ServiceEndpoints, count: int, timeout: float) -> None:
    """Until `count` pods are Ready, or TimeoutError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while len(await endpoints.refresh()) < count:
        if time.monotonic() > deadline:
            raise TimeoutError(f"fewer than {count} Ready Triton pods after {timeout:g} s")
        await asyncio.sleep(0.5)


async def run_scenario(
    kube: Any,
    *,
    name: str,
    namespace: str,
    repository: Path,
    profile: str,
    autoscaling: dict[str, Any],
    interval: float = 1.0,
    wait_for_min: float | None = None,
    ready_timeout: float = 90.0,
    on_tick: Any = None,
) -> ScenarioResult:
    """Create the service, autoscale it while the profile's load runs, then tear down."""
    objects = manifests(name, namespace, repository, autoscaling)
    for obj in objects:
        await asyncio.to_thread(kube.create, obj)
    endpoints = ServiceEndpoints(kube, name, namespace)
    scaler = ServiceAutoscaler(kube, name, namespace)
    result = ScenarioResult(load={})
    started = time.monotonic()
    minimum = int(autoscaling.get("minReplicas", 1))

    async def autoscale() -> None:
        while True:
            try:
                outcome = await scaler.run_round()
            except Exception as err:  # a round may fail on an API blip; keep going
                result.rounds.append({"t": time.monotonic() - started, "error": str(err)})
            else:
                metrics, decision = outcome.metrics, outcome.decision
                replicas = await _deployment_replicas(kube, name, namespace)
                result.replicas_seen.append(replicas)
                result.rounds.append(
                    {
                        "t": round(time.monotonic() - started, 3),
                        "replicas": replicas,
                        "ready": len(outcome.targets),
                        "scaled_to": outcome.scaled_to,
                        "direction": decision.direction if decision else None,
                        "reason": decision.reason if decision else None,
                        "rps": metrics.requests_per_second if metrics else None,
                        "p95_ms": metrics.latency_p95_ms if metrics else None,
                        "share": metrics.request_share() if metrics else {},
                    }
                )
            await asyncio.sleep(interval)

    task = asyncio.create_task(autoscale())
    try:
        await wait_ready(endpoints, minimum, ready_timeout)
        ready = await endpoints.refresh()
        from gantry.predict import model_signature

        signature = await asyncio.to_thread(model_signature, ready[0].address, name)
        parsed = parse_profile(profile)
        runner = LoadRunner(
            parsed, endpoints, name, random_inputs(signature), timeout=30.0, on_tick=on_tick
        )
        result.load_started_at = time.monotonic() - started
        load = await runner.run()
        result.load = results_document(
            load, target=f"{namespace}/{name}", model=name, profile=profile, kind=parsed.kind
        )
        ended = time.monotonic()
        if wait_for_min is not None:
            deadline = ended + wait_for_min
            while time.monotonic() < deadline:
                if await _deployment_replicas(kube, name, namespace) <= minimum:
                    result.back_to_min_s = round(time.monotonic() - ended, 3)
                    break
                await asyncio.sleep(0.5)
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
        for obj in reversed(objects):
            meta = obj["metadata"]
            plural = {"Deployment": "deployments", "Service": "services"}.get(
                obj["kind"], "inferenceservices"
            )
            with contextlib.suppress(Exception):
                await asyncio.to_thread(
                    kube.delete, obj["apiVersion"], plural, meta["name"], meta["namespace"]
                )
    return result


def ticks_to_console() -> Any:
    """A progress printer for `on_tick` (rich, one line per second)."""
    from rich.console import Console

    from gantry.loadgen.cli import _progress_line

    console = Console(stderr=True, highlight=False, soft_wrap=True)

    def show(tick: Tick) -> None:
        console.print(_progress_line(tick))

    return show
