"""The gRPC client configuration Gantry documents for Triton, and a `tritonclient` built with it.

A stock gRPC client keeps its connections for as long as they live, and re-resolves a
name only when one drops. Gantry's Triton pods close every connection after a bounded
age (`tritonGrpcMaxConnectionAgeSeconds`, 30 s by default), so a client that dials the
headless Service (`dns:///<name>-headless.<ns>.svc.cluster.local:8001`, which resolves to
every Ready pod) with this configuration spreads over new replicas within about that
age, and rides through scale-ups and model rolls without failed requests:

- `round_robin` over every address the name resolves to (the default, pick_first, sends
  everything to one pod);
- a bounded retry policy on UNAVAILABLE and RESOURCE_EXHAUSTED — what a pod that is
  shutting down, a refused connection or Triton's queue timeout answer — at most
  `max_attempts` attempts with exponential back-off, under `retryThrottling` so retries
  stop when most calls fail (a real outage is not multiplied);
- keepalive pings every 30 s (Triton accepts them; see its keepalive flags), and
  re-resolution at most every second when a connection drops (gRPC's default is 30 s).

`SERVICE_CONFIG` and `channel_args()` are plain data: any gRPC client (not only Python)
can use the same JSON service config.
"""

from __future__ import annotations

import json
from typing import Any

GRPC_SERVICE = "inference.GRPCInferenceService"
MAX_MESSAGE_BYTES = 2**31 - 1  # tritonclient's own default
MAX_ATTEMPTS = 5  # gRPC caps retry attempts at 5


def service_config(max_attempts: int = MAX_ATTEMPTS) -> dict[str, Any]:
    """The gRPC service config (JSON-able) for Triton's inference service."""
    return {
        "loadBalancingConfig": [{"round_robin": {}}],
        "methodConfig": [
            {
                "name": [{"service": GRPC_SERVICE}],
                "retryPolicy": {
                    "maxAttempts": max_attempts,
                    "initialBackoff": "0.05s",
                    "maxBackoff": "1s",
                    "backoffMultiplier": 2,
                    "retryableStatusCodes": ["UNAVAILABLE", "RESOURCE_EXHAUSTED"],
                },
            }
        ],
        # Each failed attempt costs a token, each success gives back 0.1; below half of
        # the tokens retries stop (per channel). 200 lets a client ride out a load step's
        # rejections (~100 before new replicas are Ready) and still stops a retry storm
        # when the service is down.
        "retryThrottling": {"maxTokens": 200, "tokenRatio": 0.1},
    }


SERVICE_CONFIG: dict[str, Any] = service_config()


def channel_args(
    *, max_attempts: int = MAX_ATTEMPTS, keepalive_ms: int = 30_000
) -> list[tuple[str, Any]]:
    """gRPC channel options: the service config, retries on, keepalive, fast re-resolution."""
    return [
        ("grpc.service_config", json.dumps(service_config(max_attempts))),
        ("grpc.enable_retries", 1),
        ("grpc.dns_min_time_between_resolutions_ms", 1000),
        ("grpc.keepalive_time_ms", keepalive_ms),
        ("grpc.keepalive_timeout_ms", 10_000),
        ("grpc.keepalive_permit_without_calls", 1),
        ("grpc.http2.max_pings_without_data", 0),
        ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
        ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ]


def service_url(name: str, namespace: str, port: int = 8001) -> str:
    """`dns:///<name>-headless.<ns>.svc.cluster.local:<port>`: every Ready pod's address."""
    return f"dns:///{name}-headless.{namespace}.svc.cluster.local:{port}"


def triton_client(url: str, **kwargs: Any) -> Any:
    """A `tritonclient.grpc.InferenceServerClient` with the documented configuration.

    `url` is `host:port` or a gRPC target such as `service_url(...)`; further keyword
    arguments go to `channel_args` (max_attempts, keepalive_ms).
    """
    import tritonclient.grpc as grpcclient

    return grpcclient.InferenceServerClient(url=url, channel_args=channel_args(**kwargs))
