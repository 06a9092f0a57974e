"""Shared by the autoscaler tests: service metrics built directly, with the p95 given."""

from __future__ import annotations

from gantry.autoscaler.rates import PodWindow, ServiceMetrics


def metrics(
    *,
    rps: float = 100.0,
    p95: float | None = 20.0,
    queue: float = 0.0,
    pods: int = 2,
    new: tuple[str, ...] = (),
    failed: tuple[str, ...] = (),
) -> ServiceMetrics:
    """`pods` pods sharing `rps` over a 5 s window; p95 given directly."""
    windows = []
    for i in range(pods):
        requests = rps * 5 / pods
        windows.append(
            PodWindow(
                pod=f"p{i}",
                start=0,
                end=5,
                deltas={
                    "success": requests,
                    "failure": 0,
                    "inferences": requests,
                    "executions": requests,
                    "request_us": requests * 1000 * (p95 or 1) / 1.5,
                    "queue_us": requests * 1000 * queue,
                    "compute_input_us": 0,
                    "compute_infer_us": 0,
                    "compute_output_us": 0,
                },
                pending=0,
            )
        )
    return ServiceMetrics(
        windows=tuple(windows),
        new_pods=new,
        failed_pods=failed,
        latency_p95_ms=p95 if rps > 0 else None,
        p95_source="summary",
    )
