"""Explicit quantization: one Q/DQ ONNX artifact, made on the CPU, that both runtimes run.

INT8 (and FP8) models are produced here from the export's calibration samples, before any
engine is built. TensorRT compiles this file on GPUs (explicit quantization: no calibrator
runs inside TensorRT), and ONNX Runtime serves it on CPUs in a re-encoded form that holds
the same quantized values (`for_onnxruntime`), so the accuracy gate's numbers are
measured on the quantized model the serving runtime executes.

Why ONNX Runtime's QDQ quantizer rather than NVIDIA ModelOpt's ONNX PTQ: it is already in
the optimizer's dependency set, runs on CPU in seconds, and ORT executes its output with
real INT8 kernels, which keeps the CPU serving speed-up. ModelOpt places Q/DQ nodes where
TensorRT fuses best, but brings torch and a GPU-oriented ONNX Runtime into an image that
needs neither. The settings are the ones TensorRT requires of an explicitly quantized
network:

- QDQ format (QuantizeLinear/DequantizeLinear around float ops), not QOperator;
- signed int8 activations *and* weights, symmetric: every zero point is 0;
- per-channel weight scales (on the output-channel axis), per-tensor activation scales;
- biases stay float (TensorRT has no int32 DequantizeLinear; it folds the bias itself).
FP8 uses E4M3 with the distribution calibrator (the only one ORT offers for float types).
"""

from __future__ import annotations

import contextlib
import shutil
import sys
from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from onnxruntime.quantization import (
    CalibrationDataReader,
    CalibrationMethod,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process

from model_repo.errors import ModelError
from model_repo.samples import SampleSet
from model_repo.shapes import ShapeProfile, calibration_profile

QUANTIZED = ("int8", "fp8")
RECIPE = "qdq-1"  # bump when the settings below change


class _SampleReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds calibration samples to quantize_static in the calibration profile's batches."""

    def __init__(self, samples: SampleSet, profile: ShapeProfile) -> None:
        self._feeds = iter(samples.feeds(profile.batched, profile.max_batch))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def _prepare(src: Path, work: Path) -> Path:
    prepared = work / "quant-pre.onnx"
    try:
        # ONNX's own shape inference is enough for the quantizer here; the symbolic pass
        # (for transformer-style dynamic shapes) costs seconds of sympy start-up.
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    except Exception:  # pre-processing is an optimization; quantize the raw model instead
        shutil.copyfile(src, prepared)
    return prepared


def quantize(
    src: Path,
    dst: Path,
    precision: str,
    calibration: SampleSet,
    profile: ShapeProfile,
    work: Path,
) -> None:
    """Write the symmetric Q/DQ `precision` model of `src` to `dst`.

    Calibration runs in a profile of its own (`shapes.calibration_profile`): batches no
    larger than the calibration samples, independent of the serving profile.
    """
    if precision not in QUANTIZED:
        raise ModelError(f"{precision} is not a quantized precision", "Unsupported")
    if calibration.count < 1:
        raise ModelError("quantization needs calibration samples", "Unsupported")
    reader = _SampleReader(calibration, calibration_profile(profile, calibration.count))
    try:
        # the distribution calibrator prints tables to stdout, where the report goes
        with contextlib.redirect_stdout(sys.stderr):
            _quantize_static(src, dst, precision, reader, work)
    except ModelError:
        raise
    except Exception as err:  # the quantizer raises ValueError, RuntimeError, ORT errors, ...
        first = (str(err).strip().splitlines() or [type(err).__name__])[0]
        raise ModelError(
            f"ONNX Runtime could not quantize the model to {precision}: {first[:300]}",
            "Unsupported",
        ) from err


def _quantize_static(
    src: Path, dst: Path, precision: str, reader: _SampleReader, work: Path
) -> None:
    """One quantize_static call with the settings the module docstring explains."""
    kind = QuantType.QInt8 if precision == "int8" else QuantType.QFLOAT8E4M3FN
    quantize_static(
        str(_prepare(src, work)),
        str(dst),
        reader,
        quant_format=QuantFormat.QDQ,
        per_channel=precision == "int8",
        activation_type=kind,
        weight_type=kind,
        calibrate_method=(
            CalibrationMethod.MinMax if precision == "int8" else CalibrationMethod.Distribution
        ),
        extra_options={
            "ActivationSymmetric": True,
            "WeightSymmetric": True,
            "QuantizeBias": False,
        },
    )


def _initializers(model: onnx.ModelProto) -> dict[str, onnx.TensorProto]:
    return {init.name: init for init in model.graph.initializer}


def _dq_params(
    model: onnx.ModelProto, producers: dict[str, onnx.NodeProto], tensor: str
) -> np.ndarray | None:
    """The scale of the DequantizeLinear producing `tensor`, if one does."""
    node = producers.get(tensor)
    if node is None or node.op_type != "DequantizeLinear":
        return None
    scale = _initializers(model).get(node.input[1])
    return None if scale is None else numpy_helper.to_array(scale).astype(np.float64)


def for_onnxruntime(src: Path, dst: Path) -> None:
    """The CPU encoding of a Q/DQ artifact: the same quantized values, ORT's fast kernels.

    Two rewrites, neither changes what is computed beyond float rounding:
    - activations are re-encoded from int8 (zero point 0) to uint8 (zero point 128): the
      same integers shifted by 128, because ONNX Runtime's x86 kernels multiply uint8
      activations by int8 weights (VNNI) and take a slow path for int8 × int8;
    - float biases of quantized Conv/Gemm become int32 with scale s_x·s_w (what TensorRT
      does internally when it fuses them), because ORT fuses DQ→Conv→Q into one integer
      QLinearConv only when the bias is quantized too.
    """
    model = onnx.load(str(src))
    graph = model.graph
    inits = _initializers(model)
    producers = {out: node for node in graph.node for out in node.output}
    added: list[onnx.TensorProto] = []
    bias_nodes: list[onnx.NodeProto] = []
    for node in graph.node:
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) == 3:
            is_weight = node.op_type == "DequantizeLinear" and node.input[0] in inits
            zp = inits.get(node.input[2])
            if is_weight or zp is None or zp.data_type != onnx.TensorProto.INT8:
                continue
            shifted = numpy_helper.to_array(zp).astype(np.int16) + 128
            name = f"{node.input[2]}_u8"
            if name not in {t.name for t in added}:
                added.append(numpy_helper.from_array(shifted.astype(np.uint8), name))
            node.input[2] = name
        elif node.op_type in ("Conv", "Gemm") and len(node.input) == 3 and node.input[2] in inits:
            s_x = _dq_params(model, producers, node.input[0])
            s_w = _dq_params(model, producers, node.input[1])
            if s_x is None or s_w is None or s_x.size != 1:
                continue
            bias = numpy_helper.to_array(inits[node.input[2]]).astype(np.float64)
            scale = (s_x.reshape(()) * s_w).reshape(-1) * np.ones_like(bias)
            base = node.input[2]
            added += [
                numpy_helper.from_array(np.round(bias / scale).astype(np.int32), f"{base}_int32"),
                numpy_helper.from_array(scale.astype(np.float32), f"{base}_int32_scale"),
            ]
            bias_nodes.append(
                onnx.helper.make_node(
                    "DequantizeLinear",
                    [f"{base}_int32", f"{base}_int32_scale"],
                    [f"{base}_dq"],
                    name=f"{base}_DequantizeLinear",
                    axis=0,
                )
            )
            node.input[2] = f"{base}_dq"
    for dq in reversed(bias_nodes):
        graph.node.insert(0, dq)
    graph.initializer.extend(added)
    used = {name for node in graph.node for name in node.input}
    kept = [init for init in graph.initializer if init.name in used]  # old zero points, biases
    del graph.initializer[:]
    graph.initializer.extend(kept)
    del graph.value_info[:]  # recorded int8 types of re-encoded tensors no longer hold
    onnx.save(model, str(dst))
