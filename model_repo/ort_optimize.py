"""CPU optimization with ONNX Runtime: graph optimization, fp16 conversion, static INT8.

This path runs wherever there is no TensorRT (CPU serving, the dev cluster) and feeds
the same accuracy gate and engine cache as the TensorRT builder.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_static,
)
from onnxruntime.quantization.shape_inference import quant_pre_process
from onnxruntime.transformers.float16 import convert_float_to_float16

from model_repo.errors import ModelError
from model_repo.samples import SampleSet

ENGINE = "onnxruntime"
CPU_PRECISIONS = ("fp32", "fp16", "int8")


def engine_version() -> str:
    return str(ort.__version__)


class _SampleReader(CalibrationDataReader):  # type: ignore[misc]
    """Feeds calibration samples to quantize_static one batch at a time."""

    def __init__(self, samples: SampleSet, batched: bool, batch_size: int) -> None:
        self._feeds = iter(samples.feeds(batched, batch_size))

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._feeds, None)


def graph_optimize(src: Path, dst: Path) -> None:
    """Save ORT's offline-optimized graph.

    BASIC level only: its rewrites (constant folding, redundant node removal) keep
    standard ONNX ops, so the file stays portable to any ONNX Runtime of the cache key's
    version; layout-specific fusions happen at load time on the serving machine anyway.
    """
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    opts.optimized_model_filepath = str(dst)
    opts.intra_op_num_threads = 1
    ort.InferenceSession(str(src), sess_options=opts, providers=["CPUExecutionProvider"])


def to_fp16(src: Path, dst: Path) -> None:
    """fp16 weights and compute, fp32 inputs/outputs so clients and configs don't change."""
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))


def to_int8(src: Path, dst: Path, calibration: SampleSet, batched: bool, work: Path) -> None:
    """Static INT8 (QDQ, per-channel weights): the fast path on x86 CPUs with VNNI."""
    prepared = work / "int8-pre.onnx"
    try:
        # ONNX's own shape inference is enough for the quantizer here; the symbolic pass
        # (for transformer-style dynamic shapes) costs seconds of sympy start-up.
        quant_pre_process(str(src), str(prepared), skip_symbolic_shape=True)
    except Exception:  # pre-processing is an optimization; quantize the raw model instead
        shutil.copyfile(src, prepared)
    quantize_static(
        str(prepared),
        str(dst),
        _SampleReader(calibration, batched, batch_size=32),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def build(src: Path, dst: Path, precision: str, calibration: SampleSet, batched: bool) -> None:
    """Write the `precision` variant of `src` to `dst` (an ONNX file)."""
    if precision not in CPU_PRECISIONS:
        raise ModelError(
            f"precision {precision} is not available with ONNX Runtime on CPU "
            f"(available: {', '.join(CPU_PRECISIONS)})",
            "Unsupported",
        )
    with tempfile.TemporaryDirectory(prefix="gantry-ort-") as tmp:
        work = Path(tmp)
        try:
            if precision == "fp32":
                graph_optimize(src, dst)
            elif precision == "fp16":
                converted = work / "fp16.onnx"
                to_fp16(src, converted)
                graph_optimize(converted, dst)
            else:
                to_int8(src, dst, calibration, batched, work)
        except ModelError:
            raise
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ModelError(
                f"ONNX Runtime could not build the {precision} model: {first[:300]}",
                "Unsupported",
            ) from err
