"""CPU optimization with ONNX Runtime: graph optimization, fp16 conversion, static INT8.

This path runs wherever there is no TensorRT (CPU serving, the dev cluster) and feeds
the same accuracy gate and engine cache as the TensorRT builder. Its INT8 model is the
symmetric Q/DQ artifact of `model_repo.quantize` (the file TensorRT compiles) in its CPU
encoding (`quantize.for_onnxruntime`: the same quantized values, ORT's fast kernels).
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import onnx
import onnxruntime as ort
from onnxruntime.transformers.float16 import convert_float_to_float16

from model_repo import quantize
from model_repo.errors import ModelError
from model_repo.samples import SampleSet
from model_repo.shapes import ShapeProfile

ENGINE = "onnxruntime"
RECIPE = f"ort-3+{quantize.RECIPE}"  # bump when a pass below changes
CPU_PRECISIONS = ("fp32", "fp16", "int8")


def engine_version() -> str:
    return str(ort.__version__)


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


def build(
    src: Path, dst: Path, precision: str, calibration: SampleSet, profile: ShapeProfile
) -> None:
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
                artifact = work / "int8-qdq.onnx"  # the model TensorRT would compile
                quantize.quantize(src, artifact, precision, calibration, profile, work)
                quantize.for_onnxruntime(artifact, dst)
        except ModelError:
            raise
        except Exception as err:
            first = (str(err).strip().splitlines() or [type(err).__name__])[0]
            raise ModelError(
                f"ONNX Runtime could not build the {precision} model: {first[:300]}",
                "Unsupported",
            ) from err
