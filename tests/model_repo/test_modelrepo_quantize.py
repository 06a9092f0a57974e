"""The INT8 artifact: one symmetric Q/DQ ONNX model that ORT serves and TensorRT compiles."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from model_repo import accuracy, quantize
from model_repo.optimize import main
from model_repo.pipeline import shape_profile
from model_repo.samples import plan_samples, real_rows
from model_repo.signature import read_signature

pytestmark = pytest.mark.slow


def _zero_points(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    """Zero point of every Q/DQ node, keyed by node name."""
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    out = {}
    for node in model.graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) == 3:
            out[node.name] = inits[node.input[2]]
    return out


def _quantized_inputs(model: onnx.ModelProto) -> list[np.ndarray]:
    inits = {i.name: numpy_helper.to_array(i) for i in model.graph.initializer}
    return [
        inits[n.input[0]]
        for n in model.graph.node
        if n.op_type == "DequantizeLinear" and n.input[0] in inits
    ]


def test_int8_is_one_symmetric_qdq_artifact_and_the_gate_reports_ort_numbers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, digits_export: Path
) -> None:
    code = main(
        [
            "--model-dir",
            str(digits_export),
            "--repository",
            str(tmp_path / "repo"),
            "--name",
            "digits",
            "--backend",
            "onnxruntime_onnx",
            "--precision",
            "int8",
            "--max-batch-size",
            "8",
            "--samples",
            "64",
            "--cache-dir",
            str(tmp_path / "cache"),
        ]
    )
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report
    assert report["servedPrecision"] == "int8"
    served = tmp_path / "repo" / "digits" / "1" / "model.onnx"

    # The artifact TensorRT compiles, from the same calibration samples the job used.
    sig = read_signature(digits_export, "digits")
    rows = real_rows(sig, digits_export)
    profile = shape_profile(sig, rows, 8, None)
    plan = plan_samples(sig, rows, 64, profile)
    artifact = tmp_path / "qdq.onnx"
    quantize.quantize(
        digits_export / "model.onnx", artifact, "int8", plan.calibration, profile, tmp_path
    )
    qdq = onnx.load(str(artifact))
    zero_points = _zero_points(qdq)
    assert len(zero_points) >= 6  # activations and per-channel weights of 2 convs + 1 gemm
    assert all(z.dtype == np.int8 and not z.any() for z in zero_points.values())  # symmetric
    assert {a.dtype for a in _quantized_inputs(qdq)} == {np.dtype(np.int8)}  # no int32 bias

    # What ORT serves is that artifact's CPU encoding: same integers, activations shifted
    # to uint8 around 128, biases int32 — nothing re-calibrated.
    cpu = tmp_path / "cpu.onnx"
    quantize.for_onnxruntime(artifact, cpu)
    assert onnx.load(str(cpu)).SerializeToString() == onnx.load(str(served)).SerializeToString()
    served_zps = _zero_points(onnx.load(str(served)))
    assert {(z.dtype, int(z.max()), int(z.min())) for z in served_zps.values()} <= {
        (np.dtype(np.uint8), 128, 128),
        (np.dtype(np.int8), 0, 0),
    }

    # The gate's numbers are ONNX Runtime's on the served file, on the gate's samples,
    # and the artifact itself measures the same within a fraction of the threshold.
    reference = accuracy.reference_outputs(digits_export / "model.onnx", plan.gate, True)
    measured = accuracy.measure_onnx("int8", served, reference, plan.gate, True, batch_size=8)
    reported = report["accuracy"]["int8"]
    assert reported["maxAbsDiff"] == float(f"{measured.max_abs_diff:.4g}")
    assert reported["top1Agreement"] == round(measured.top1_agreement or 0.0, 4)
    assert reported["maxAbsDiff"] > 0  # quantized for real, not a copy of the fp32 model
    on_artifact = accuracy.measure_onnx("int8", artifact, reference, plan.gate, True)
    assert abs(on_artifact.max_abs_diff - measured.max_abs_diff) < 0.1 * 0.01
    assert on_artifact.top1_agreement == measured.top1_agreement


def test_fp8_is_an_e4m3_qdq_model_made_on_the_cpu(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, digits_export: Path
) -> None:
    """What TensorRT gets for fp8: FP8 Q/DQ nodes (opset 19), not an fp16 engine renamed."""
    sig = read_signature(digits_export)
    rows = real_rows(sig, digits_export)
    profile = shape_profile(sig, rows, 8, None)
    plan = plan_samples(sig, rows, 16, profile)
    out = tmp_path / "fp8.onnx"
    quantize.quantize(digits_export / "model.onnx", out, "fp8", plan.calibration, profile, tmp_path)
    assert capsys.readouterr().out == ""  # the calibrator's tables stay off the report's stdout
    model = onnx.load(str(out))
    assert max(o.version for o in model.opset_import if o.domain in ("", "ai.onnx")) >= 19
    zero_points = _zero_points(model)
    assert zero_points and all(z.dtype.name.startswith("float8") for z in zero_points.values())
