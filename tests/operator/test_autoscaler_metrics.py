"""Parsing Triton's /metrics text (a capture from a real tritonserver 2.51)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gantry.autoscaler.triton_metrics import MetricsParseError, parse_triton_metrics

CAPTURE = (Path(__file__).parent / "data" / "autoscaler_triton_metrics.txt").read_text()


def test_real_capture_counters_and_summary() -> None:
    counters = parse_triton_metrics(CAPTURE, "digits")
    assert counters is not None
    assert counters.success == 200
    assert counters.failure == 0
    assert counters.requests == 200
    assert counters.inferences == 200
    assert counters.executions == 200
    assert counters.request_us == 180160
    assert counters.queue_us == 6663
    assert counters.compute_us == 4620 + 99842 + 68306
    assert counters.pending == 0
    assert counters.request_quantiles_us == {
        0.5: 621,
        0.9: 895,
        0.95: 1005,
        0.99: 1339,
        0.999: 1487,
    }
    assert counters.queue_quantiles_us[0.95] == 78


def test_other_model_is_absent() -> None:
    assert parse_triton_metrics(CAPTURE, "resnet") is None


def test_summaries_off_leaves_quantiles_empty() -> None:
    text = "\n".join(line for line in CAPTURE.splitlines() if "summary" not in line) + "\n"
    counters = parse_triton_metrics(text, "digits")
    assert counters is not None
    assert counters.request_quantiles_us == {}
    assert counters.success == 200


def test_versions_are_summed_and_nan_quantiles_dropped() -> None:
    text = """# TYPE nv_inference_request_success counter
nv_inference_request_success{model="m",version="1"} 10
nv_inference_request_success{model="m",version="2"} 5
# TYPE nv_inference_request_duration_us counter
nv_inference_request_duration_us{model="m",version="1"} 1000
nv_inference_request_duration_us{model="m",version="2"} 500
# TYPE nv_inference_pending_request_count gauge
nv_inference_pending_request_count{model="m",version="1"} 2
nv_inference_pending_request_count{model="m",version="2"} 1
# TYPE nv_inference_request_summary_us summary
nv_inference_request_summary_us{model="m",version="1",quantile="0.95"} NaN
nv_inference_request_summary_us{model="m",version="2",quantile="0.95"} 300
"""
    counters = parse_triton_metrics(text, "m")
    assert counters is not None
    assert counters.success == 15
    assert counters.request_us == 1500
    assert counters.pending == 3
    assert counters.request_quantiles_us == {0.95: 300}


def test_garbage_is_a_clear_error() -> None:
    with pytest.raises(MetricsParseError, match="not Prometheus text format"):
        parse_triton_metrics('nv_inference_count{model="m" 1 2 3 4\n', "m")
