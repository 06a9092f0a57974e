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
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gantry.api.inferenceservice import InferenceServiceSpec
from gantry.autoscaler.actuator import ServiceAutoscaler
from gantry.autoscaler.scrape import ready_targets, scrape
from gantry.config import OperatorConfig
from gantry.inferenceservice.names import (
    GRPC_PORT,
    HTTP_PORT,
    METRICS_PORT,
    deployment_name,
    headless_name,
    triton_labels,
)
from gantry.inferenceservice.triton import (
    lifecycle,
    probes,
    termination_grace_seconds,
    triton_args,
)
from gantry_cli.loadgen.endpoints import ServiceEndpoints
from gantry_cli.loadgen.profile import parse_profile
from gantry_cli.loadgen.report import results_document
from gantry_cli.loadgen.runner import LoadRunner, Tick, random_inputs
from gantry_cli.loadgen.stock_pods import LABEL, parse_result, stock_client_pod

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
instance_group [ {{ kind: KIND_CPU, count: {instances} }} ]
"""


# preferred_batch_size 1: this model serves a batch's requests one after the other and
# answers them together, so batches would only add latency here.
QUEUE_POLICY = """dynamic_batching {{
  preferred_batch_size: [ 1 ]
  default_queue_policy {{
    timeout_action: REJECT
    default_timeout_microseconds: {timeout_us}
    max_queue_size: {max_queue_size}
  }}
}}
"""


# Triton's own gRPC connection defaults (no connection age, keepalive every 2 hours): for a
# load generator that follows the Ready pods itself, and as the benchmark's baseline.
PLAIN_TRITON = OperatorConfig(
    triton_grpc_max_connection_age_seconds=0, triton_grpc_keepalive_seconds=0
)


def write_model(
    repository: Path,
    name: str,
    service_ms: float,
    queue_timeout_ms: float | None = None,
    max_queue_size: int = 0,
    instances: int = 1,
) -> Path:
    """A Triton model repository holding `name` (version 1) with a fixed service time per
    request and `instances` model instances; with `queue_timeout_ms`, the bounded queue
    Gantry's config.pbtxt gets from a latency target."""
    version = repository / name / "1"
    version.mkdir(parents=True, exist_ok=True)
    config = CONFIG.format(name=name, instances=instances)
    if queue_timeout_ms is not None:
        config += QUEUE_POLICY.format(
            timeout_us=round(queue_timeout_ms * 1000), max_queue_size=max_queue_size
        )
    (repository / name / "config.pbtxt").write_text(config)
    (version / "model.py").write_text(MODEL_PY.format(service_seconds=service_ms / 1000))
    return repository


def manifests(
    name: str,
    namespace: str,
    repository: Path,
    autoscaling: dict[str, Any],
    config: OperatorConfig = PLAIN_TRITON,
) -> list[dict[str, Any]]:
    """InferenceService, Triton Deployment (1 replica) and headless Service.

    The Triton pods run, probe and drain as the operator's do for `config` (tritonserver
    flags, probes, connection age, preStop, exit timeout, grace period: built by
    `gantry.inferenceservice.triton`), so what a scenario measures while replicas come and
    go is what a served model's clients see.
    """
    labels = triton_labels(name)
    selector = {"gantry.dev/inferenceservice": name}
    served = {
        "model": {"storageUri": f"pvc://models/{name}"},
        "optimization": {"precision": "fp32"},
    }
    # The operator's flags, serving the scenario's repository instead of the staged one.
    operator_args = triton_args(InferenceServiceSpec.model_validate(served), config)
    args = [
        f"--model-repository={repository}",
        *(a for a in operator_args if not a.startswith("--model-repository=")),
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
            "spec": {**served, "autoscaling": autoscaling},
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
                        "terminationGracePeriodSeconds": termination_grace_seconds(config),
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
                                "lifecycle": lifecycle(config),
                                **probes(),
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


# Stock-client pods start, import tritonclient and connect before the common t=0.
STOCK_START_DELAY_S = 20.0


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
    config: OperatorConfig = PLAIN_TRITON,
    stock_clients: int = 0,
) -> ScenarioResult:
    """Create the service, autoscale it while the profile's load runs, then tear down.

    With `stock_clients` K > 0 the load comes from K pods running a plain long-lived
    `tritonclient` each (`gantry_cli.loadgen.stock_client`) on the headless Service's name,
    instead of the load generator, and `result.load` is their merged results plus the
    Triton pods' own counters at the end of the load.
    """
    objects = manifests(name, namespace, repository, autoscaling, config)
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
                        "rejected_rps": metrics.rejected_per_second if metrics else None,
                        "share": metrics.request_share() if metrics else {},
                    }
                )
            await asyncio.sleep(interval)

    task = asyncio.create_task(autoscale())
    try:
        await wait_ready(endpoints, minimum, ready_timeout)
        ready = await endpoints.refresh()
        from gantry_cli.predict import model_signature

        signature = await asyncio.to_thread(model_signature, ready[0].address, name)
        parsed = parse_profile(profile)
        if stock_clients > 0:
            inputs = [
                f"{t.name}:{t.datatype}:{'x'.join(str(max(d, 1)) for d in t.shape)}"
                for t in signature.inputs
            ]
            start_at = time.time() + STOCK_START_DELAY_S
            result.load_started_at = time.monotonic() + STOCK_START_DELAY_S - started
            result.load = await stock_load(
                kube, name, namespace, profile, stock_clients, inputs, start_at, parsed.end
            )
        else:
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


async def stock_load(
    kube: Any,
    name: str,
    namespace: str,
    profile: str,
    clients: int,
    inputs: Sequence[str],
    start_at: float,
    duration: float,
) -> dict[str, Any]:
    """Run `clients` stock-client pods through `profile`; their results and Triton's counters."""
    pods = [
        stock_client_pod(
            f"{name}-client-{i}",
            namespace,
            service=name,
            model=name,
            profile=profile,
            clients=clients,
            start_at=start_at,
            inputs=inputs,
        )
        for i in range(clients)
    ]
    for pod in pods:
        await asyncio.to_thread(kube.create, pod)
    names = [p["metadata"]["name"] for p in pods]
    deadline = time.monotonic() + (start_at - time.time()) + duration + 120
    results: list[dict[str, Any]] = []
    try:
        while True:
            listed = await asyncio.to_thread(
                kube.list, "v1", "pods", namespace, label_selector=f"{LABEL}={name}"
            )
            phases = {p["metadata"]["name"]: (p.get("status") or {}).get("phase") for p in listed}
            if all(phases.get(n) in ("Succeeded", "Failed") for n in names):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(f"stock clients still running: {phases}")
            await asyncio.sleep(1.0)
        counters = await _triton_counters(kube, name, namespace)
        for pod_name in names:
            log = await asyncio.to_thread(kube.pod_log, namespace, pod_name)
            parsed = parse_result(log)
            if parsed is None:
                raise RuntimeError(f"{pod_name} printed no result: {log[-500:]}")
            results.append(parsed)
    finally:
        for pod_name in names:
            with contextlib.suppress(Exception):
                await asyncio.to_thread(kube.delete, "v1", "pods", pod_name, namespace)
    return {"clients": results, "triton": counters}


async def _triton_counters(kube: Any, name: str, namespace: str) -> dict[str, dict[str, float]]:
    """success / failure / rejected of every Ready Triton pod, from its own /metrics."""
    pods = await asyncio.to_thread(
        kube.list, "v1", "pods", namespace, label_selector=f"gantry.dev/inferenceservice={name}"
    )
    targets = ready_targets(pods)
    scraped = await scrape(targets, name)
    return {
        pod: {"success": c.success, "failure": c.failure, "rejected": c.rejected}
        for pod, c in scraped.samples.items()
        if c is not None
    }


def ticks_to_console() -> Any:
    """A progress printer for `on_tick` (rich, one line per second)."""
    from rich.console import Console

    from gantry_cli.loadgen.cli import _progress_line

    console = Console(stderr=True, highlight=False, soft_wrap=True)

    def show(tick: Tick) -> None:
        console.print(_progress_line(tick))

    return show
