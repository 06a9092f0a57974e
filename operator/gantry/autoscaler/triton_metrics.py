"""Parse Triton's Prometheus text into the cumulative numbers of one model on one pod.

The text is parsed by `prometheus_client`'s own parser; only the `nv_inference_*` series
of the requested model are kept, summed over model versions (a rolling model update
briefly serves two). Values stay cumulative here: turning them into rates needs two
samples and belongs to `gantry.autoscaler.rates`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from prometheus_client.parser import text_string_to_metric_families

# Counter families (cumulative since the server started) → field of TritonCounters.
COUNTERS: dict[str, str] = {
    "nv_inference_request_success": "success",
    "nv_inference_request_failure": "failure",
    "nv_inference_count": "inferences",
    "nv_inference_exec_count": "executions",
    "nv_inference_request_duration_us": "request_us",
    "nv_inference_queue_duration_us": "queue_us",
    "nv_inference_compute_input_duration_us": "compute_input_us",
    "nv_inference_compute_infer_duration_us": "compute_infer_us",
    "nv_inference_compute_output_duration_us": "compute_output_us",
}
# Failures Triton counts with reason="REJECTED": requests its queue policy timed out (a
# bounded queue's rejections; a full queue's refusals are not counted by Triton 2.51).
FAILURE_COUNTER = "nv_inference_request_failure"
REJECTED_REASON = "REJECTED"
PENDING_GAUGE = "nv_inference_pending_request_count"
REQUEST_SUMMARY = "nv_inference_request_summary_us"
QUEUE_SUMMARY = "nv_inference_queue_summary_us"


class MetricsParseError(ValueError):
    """The text is not Prometheus exposition format, or not from Triton."""


@dataclass(frozen=True)
class TritonCounters:
    """One model's numbers on one pod at one instant; counters are cumulative."""

    success: float = 0.0
    failure: float = 0.0
    inferences: float = 0.0
    executions: float = 0.0
    request_us: float = 0.0
    queue_us: float = 0.0
    compute_input_us: float = 0.0
    compute_infer_us: float = 0.0
    compute_output_us: float = 0.0
    rejected: float = 0.0  # part of `failure`
    pending: float = 0.0
    # Summary quantiles (q → µs) over Triton's own sliding window; empty when summaries
    # are off (`--metrics-config summary_latencies=false`, Triton's default).
    request_quantiles_us: dict[float, float] = field(default_factory=dict)
    queue_quantiles_us: dict[float, float] = field(default_factory=dict)

    @property
    def requests(self) -> float:
        """Requests finished, successful or not."""
        return self.success + self.failure

    @property
    def compute_us(self) -> float:
        return self.compute_input_us + self.compute_infer_us + self.compute_output_us

    def counter_values(self) -> dict[str, float]:
        values = {name: float(getattr(self, name)) for name in COUNTERS.values()}
        values["rejected"] = float(self.rejected)
        return values


def parse_triton_metrics(text: str, model: str) -> TritonCounters | None:
    """The counters of `model` in `text`; None when the server does not serve that model.

    Raises MetricsParseError for text that is not Prometheus exposition format.
    """
    totals: dict[str, float] = dict.fromkeys(COUNTERS.values(), 0.0)
    pending = 0.0
    rejected = 0.0
    request_q: dict[float, float] = {}
    queue_q: dict[float, float] = {}
    seen = False
    try:
        families = list(text_string_to_metric_families(text))
    except (ValueError, TypeError, IndexError) as err:
        raise MetricsParseError(f"not Prometheus text format: {err}") from err
    for family in families:
        for sample in family.samples:
            if sample.labels.get("model") != model or not math.isfinite(sample.value):
                continue
            name = sample.name
            if name.endswith("_total") and name.removesuffix("_total") == family.name:
                name = family.name  # the parser names counter samples <family>_total
            if name in COUNTERS:
                totals[COUNTERS[name]] += sample.value
                seen = True
                if name == FAILURE_COUNTER and sample.labels.get("reason") == REJECTED_REASON:
                    rejected += sample.value
            elif name == PENDING_GAUGE:
                pending += sample.value
            elif name in (REQUEST_SUMMARY, QUEUE_SUMMARY) and "quantile" in sample.labels:
                target = request_q if name == REQUEST_SUMMARY else queue_q
                try:
                    q = float(sample.labels["quantile"])
                except ValueError:
                    continue
                # Several versions: keep the slower one (a conservative merge).
                target[q] = max(target.get(q, 0.0), sample.value)
    if not seen:
        return None
    return TritonCounters(
        **totals,
        rejected=rejected,
        pending=pending,
        request_quantiles_us=_finite(request_q),
        queue_quantiles_us=_finite(queue_q),
    )


def _finite(quantiles: dict[float, float]) -> dict[float, float]:
    """Quantiles with a value; Triton reports NaN for a summary with no observations yet."""
    return {q: v for q, v in sorted(quantiles.items()) if math.isfinite(v) and 0 < q < 1}
