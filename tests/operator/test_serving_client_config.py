"""Pure parts of serving to stock gRPC clients: connection age flags, the client
configuration, bounded queues in config.pbtxt, rejections as demand, stock-client results."""

from __future__ import annotations

import json
from typing import Any

import pytest
from tritonclient.grpc import model_config_pb2 as mc

from gantry.api.inferenceservice import InferenceServiceSpec
from gantry.autoscaler.decision import Policy, target_desires
from gantry.autoscaler.rates import PodWindow, ServiceMetrics
from gantry.autoscaler.triton_metrics import parse_triton_metrics
from gantry.config import OperatorConfig, load_config
from gantry.inferenceservice.optimize import queue_policy
from gantry.inferenceservice.triton import grpc_connection_args, triton_args
from gantry_cli.grpc_client import channel_args, service_config, service_url, triton_client
from gantry_cli.loadgen.stock_client import RESULT_PREFIX, parse_args
from gantry_cli.loadgen.stock_pods import parse_result, served_shares, stock_client_pod, summarize
from model_repo.errors import ModelError
from model_repo.signature import Signature, TensorSpec
from model_repo.triton_config import QueuePolicy, ServingOptions, parse_config, render_config

DIGITS = Signature(
    name="digits",
    inputs=(TensorSpec("input", "float32", (-1, 1, 8, 8)),),
    outputs=(TensorSpec("logits", "float32", (-1, 10)),),
    dynamic_axes={"input": {"0": "batch"}, "logits": {"0": "batch"}},
)
UNBATCHED = Signature(
    name="fixed",
    inputs=(TensorSpec("x", "float32", (1, 4)),),
    outputs=(TensorSpec("y", "float32", (1, 4)),),
    dynamic_axes={},
)


def spec_of(**extra: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate({"model": {"storageUri": "pvc://m/x"}, **extra})


# --- 1. connection age ---------------------------------------------------------------------


def test_triton_pods_close_connections_after_the_configured_age() -> None:
    args = triton_args(spec_of(), OperatorConfig())
    assert "--grpc-max-connection-age=30000" in args
    assert "--grpc-max-connection-age-grace=10000" in args
    assert "--grpc-keepalive-time=20000" in args
    # The server accepts client pings (30 s) more often than clients send them.
    assert "--grpc-http2-min-recv-ping-interval-without-data=10000" in args


@pytest.mark.parametrize(
    ("age", "keepalive", "expected"),
    [
        (0, 0, []),
        (5, 0, ["--grpc-max-connection-age=5000", "--grpc-max-connection-age-grace=10000"]),
    ],
)
def test_connection_flags_follow_the_operator_configuration(
    age: float, keepalive: float, expected: list[str]
) -> None:
    config = OperatorConfig(
        triton_grpc_max_connection_age_seconds=age, triton_grpc_keepalive_seconds=keepalive
    )
    assert grpc_connection_args(config) == expected


def test_connection_age_from_the_environment() -> None:
    config = load_config({"GANTRY_TRITON_GRPC_MAX_CONNECTION_AGE_SECONDS": "12.5"})
    assert "--grpc-max-connection-age=12500" in grpc_connection_args(config)


# --- 2. the client configuration ----------------------------------------------------------


def test_service_config_is_round_robin_with_bounded_throttled_retries() -> None:
    config = service_config()
    assert config["loadBalancingConfig"] == [{"round_robin": {}}]
    (method,) = config["methodConfig"]
    assert method["name"] == [{"service": "inference.GRPCInferenceService"}]
    retry = method["retryPolicy"]
    assert 2 <= retry["maxAttempts"] <= 5
    assert set(retry["retryableStatusCodes"]) == {"UNAVAILABLE", "RESOURCE_EXHAUSTED"}
    assert config["retryThrottling"] == {"maxTokens": 200, "tokenRatio": 0.1}


def test_channel_args_carry_the_service_config_and_keepalive() -> None:
    args = dict(channel_args())
    assert json.loads(args["grpc.service_config"]) == service_config()
    assert args["grpc.enable_retries"] == 1
    assert args["grpc.keepalive_time_ms"] == 30_000
    assert args["grpc.dns_min_time_between_resolutions_ms"] == 1000


def test_triton_client_uses_the_channel_configuration() -> None:
    client = triton_client(service_url("digits", "ml"))
    try:
        assert service_url("digits", "ml") == "dns:///digits-headless.ml.svc.cluster.local:8001"
        assert client._channel is not None
    finally:
        client.close()


# --- 3. bounded queues ---------------------------------------------------------------------

AUTOSCALING = {"maxReplicas": 4, "targets": {"latencyP95Ms": 150}}
TWO = {"instancesPerReplica": 2}


def test_queue_policy_is_sized_from_the_latency_target() -> None:
    assert queue_policy(spec_of(triton=TWO)) is None
    # Four p95 targets in the queue.
    assert queue_policy(spec_of(autoscaling=AUTOSCALING, triton=TWO)) == {
        "timeoutMicroseconds": 600_000
    }
    both = {"maxReplicas": 4, "targets": {"latencyP95Ms": 150, "requestsPerSecondPerReplica": 40}}
    # Twice what one replica serves within the timeout: 2 × 40/s × 0.6 s = 48.
    assert queue_policy(spec_of(autoscaling=both, triton=TWO)) == {
        "timeoutMicroseconds": 600_000,
        "maxQueueSize": 48,
    }


def test_single_instance_services_get_no_queue_policy() -> None:
    """Triton 2.51 holds queued requests behind a single busy instance under a policy."""
    assert queue_policy(spec_of(autoscaling=AUTOSCALING)) is None


def test_config_pbtxt_gets_a_rejecting_queue_policy_triton_parses() -> None:
    text = render_config(
        DIGITS,
        ServingOptions(backend="python", max_batch_size=8, queue_policy=QueuePolicy(150_000, 12)),
    )
    config = parse_config(text)
    policy = config.dynamic_batching.default_queue_policy
    assert policy.timeout_action == mc.ModelQueuePolicy.REJECT
    assert policy.default_timeout_microseconds == 150_000
    assert policy.max_queue_size == 12
    assert config.dynamic_batching.max_queue_delay_microseconds == 0


def test_queue_policy_needs_a_batch_dimension() -> None:
    opts = ServingOptions(backend="python", queue_policy=QueuePolicy(150_000))
    assert not parse_config(render_config(UNBATCHED, opts)).HasField("dynamic_batching")


@pytest.mark.parametrize(
    "raw", [{}, {"timeoutMicroseconds": 0}, "x", {"timeoutMicroseconds": 5, "maxQueueSize": -1}]
)
def test_bad_queue_policies_are_refused(raw: Any) -> None:
    with pytest.raises(ModelError):
        QueuePolicy.from_json(raw)


METRICS = """# TYPE nv_inference_request_success counter
nv_inference_request_success{model="m",version="1"} 90
# TYPE nv_inference_request_failure counter
nv_inference_request_failure{model="m",reason="REJECTED",version="1"} 7
nv_inference_request_failure{model="m",reason="BACKEND",version="1"} 3
"""


def test_rejections_are_read_from_the_failure_counter() -> None:
    counters = parse_triton_metrics(METRICS, "m")
    assert counters is not None
    assert (counters.success, counters.failure, counters.rejected) == (90, 10, 7)


def _metrics(success: float, rejected: float) -> ServiceMetrics:
    names = ("inferences", "executions", "queue_us", "compute_input_us", "compute_infer_us")
    deltas = dict.fromkeys((*names, "compute_output_us"), 0.0)
    deltas |= {"success": success, "failure": rejected, "rejected": rejected, "request_us": 1e3}
    window = PodWindow(pod="p0", start=0, end=1, deltas=deltas, pending=0)
    return ServiceMetrics(windows=(window,), latency_p95_ms=10.0, p95_source="summary")


def test_rejections_count_as_demand_whatever_the_latency_says() -> None:
    policy = Policy(min_replicas=1, max_replicas=10, latency_p95_ms=150.0)
    # p95 looks fine (10 ms: rejected requests are quick), but 60 of 100 were rejected.
    desires = target_desires(policy, 1, _metrics(success=40, rejected=60))
    assert max(n for n, _ in desires) == 3  # ceil(1 × 100 / 40)
    assert any("rejected" in why for _, why in desires)
    # A stray rejection is noise.
    assert max(n for n, _ in target_desires(policy, 2, _metrics(success=999, rejected=1))) <= 2


# --- 4. stock clients ----------------------------------------------------------------------


def test_stock_client_pod_runs_plain_tritonclient_on_the_headless_name() -> None:
    pod = stock_client_pod(
        "c0",
        "ml",
        service="digits",
        model="digits",
        profile="0:10rps,30:0",
        clients=2,
        start_at=100.0,
        inputs=["input:FP32:1x1x8x8"],
    )
    container = pod["spec"]["containers"][0]
    args = parse_args(container["args"][2:])
    assert container["args"][:2] == ["-m", "gantry_cli.loadgen.stock_client"]
    assert args.url == "dns:///digits-headless.ml.svc.cluster.local:8001"
    assert (args.clients, args.start_at, args.input) == (2, 100.0, ["input:FP32:1x1x8x8"])
    assert pod["spec"]["restartPolicy"] == "Never"


def test_results_are_merged_with_a_window_p95() -> None:
    a = {"sent": 3, "ok": 2, "errors": {"UNAVAILABLE": 1}, "samples": [[0.5, 5.0], [11.0, 50.0]]}
    b = {"sent": 2, "ok": 2, "errors": {}, "samples": [[10.5, 900.0], [30.0, 7.0]]}
    log = "noise\n" + RESULT_PREFIX + json.dumps(a) + "\n"
    parsed = parse_result(log)
    assert parsed == a
    summary = summarize([a, b], window=(10.0, 20.0))
    assert (summary.sent, summary.ok, summary.failed) == (5, 4, 1)
    assert summary.window_p95_ms == 900.0
    assert served_shares({"p0": 10, "p1": 0}, {"p0": 40, "p1": 30}) == {"p0": 0.5, "p1": 0.5}


def test_terminating_pods_outlive_their_clients_connections() -> None:
    from gantry.inferenceservice.triton import prestop_seconds

    assert prestop_seconds(OperatorConfig()) == 35  # 30 s age + 10 % jitter + 2 s
    assert prestop_seconds(OperatorConfig(triton_grpc_max_connection_age_seconds=0)) == 5
    assert prestop_seconds(OperatorConfig(triton_grpc_max_connection_age_seconds=1)) == 5
