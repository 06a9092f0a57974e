"""TensorRT engine builder (GPU clusters only; `tensorrt` is imported lazily).

Engines are specific to the TensorRT version and the GPU architecture, so the optimize
Job runs on the serving GPU type with the serving Triton's TensorRT, and the cache key
carries both (`engine_version()`, `compute_capability()`).
"""

from __future__ import annotations

import importlib
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from model_repo.accuracy import AccuracyResult, compare
from model_repo.cache import ShapeProfile
from model_repo.errors import ModelError
from model_repo.samples import SampleSet, sample_shape
from model_repo.signature import Signature

ENGINE = "tensorrt"
WORKSPACE_BYTES = 4 << 30


def _trt() -> Any:
    try:
        module = importlib.import_module("tensorrt")
    except ImportError as err:
        raise ModelError(_UNAVAILABLE, "Unsupported") from err
    if not hasattr(module, "Builder"):  # the type stubs alone import as an empty namespace
        raise ModelError(_UNAVAILABLE, "Unsupported")
    return module


_UNAVAILABLE = (
    "backend tensorrt_plan needs TensorRT, which is not installed in this optimizer image "
    "(or this node has no GPU); use backend onnxruntime_onnx or python for CPU serving"
)


def tensorrt_available() -> tuple[bool, str]:
    """(available, reason) — reason says why not, for test skips and reports."""
    try:
        _trt()
    except ModelError as err:
        return False, str(err)
    return True, ""


def engine_version() -> str:
    return str(_trt().__version__)


def tensorrt_module() -> Any:
    """The imported tensorrt module (raises ModelError when unavailable)."""
    return _trt()


def compute_capability() -> str:
    """`sm_<major><minor>` of GPU 0, from torch when present, else nvidia-smi."""
    try:
        torch = importlib.import_module("torch")
        if torch.cuda.is_available():
            major, minor = torch.cuda.get_device_capability(0)
            return f"sm_{major}{minor}"
    except ImportError:
        pass
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.split()
    except (OSError, subprocess.SubprocessError) as err:
        raise ModelError("cannot determine the GPU's compute capability", "Unsupported") from err
    if not out:
        raise ModelError("no GPU visible to the optimizer", "Unsupported")
    return "sm_" + out[0].replace(".", "")


def _cuda_tensor(array: np.ndarray) -> Any:
    torch = importlib.import_module("torch")
    return torch.from_numpy(np.ascontiguousarray(array)).cuda()


def make_calibrator(samples: SampleSet, batch_size: int, cache_file: Path) -> Any:
    """An entropy calibrator fed batch by batch from the calibration samples."""
    _trt()
    import tensorrt as trt

    # Without the stubs (plain `mypy`) tensorrt is Any; with them the base is typed.
    class Calibrator(trt.IInt8EntropyCalibrator2):  # type: ignore[misc,unused-ignore]
        def __init__(self) -> None:
            super().__init__()
            self._batches = iter(samples.feeds(True, batch_size))
            self._alive: list[Any] = []  # keeps device buffers alive while TensorRT reads

        def get_batch_size(self) -> int:
            return batch_size

        # TensorRT ends calibration on None, which the generated stubs do not declare.
        def get_batch(self, names: list[str]) -> list[int] | None:  # type: ignore[override,unused-ignore]
            batch = next(self._batches, None)
            if batch is None or len(next(iter(batch.values()))) < batch_size:
                return None  # TensorRT's end-of-data signal
            self._alive = [_cuda_tensor(batch[n]) for n in names]
            return [int(t.data_ptr()) for t in self._alive]

        def read_calibration_cache(self) -> bytes | None:  # type: ignore[override,unused-ignore]
            return cache_file.read_bytes() if cache_file.is_file() else None

        def write_calibration_cache(self, cache: Any) -> None:
            cache_file.write_bytes(bytes(cache))

    return Calibrator()


def _dims(batch: int | None, rest: tuple[int, ...]) -> Any:
    import tensorrt as trt

    return trt.Dims([*([] if batch is None else [batch]), *rest])


def build_engine(
    onnx_path: Path,
    plan_path: Path,
    precision: str,
    sig: Signature,
    profile: ShapeProfile,
    calibration: SampleSet,
) -> None:
    """Parse the ONNX, set precision flags and a batch profile, write a serialized plan."""
    _trt()
    import tensorrt as t

    logger = t.Logger(t.Logger.WARNING)
    builder = t.Builder(logger)
    network = builder.create_network(0)
    parser = t.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes(), str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ModelError(f"TensorRT cannot parse the ONNX model: {errors[:300]}", "Unsupported")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(t.MemoryPoolType.WORKSPACE, WORKSPACE_BYTES)
    if precision in ("fp16", "int8", "fp8"):
        config.set_flag(t.BuilderFlag.FP16)  # layers INT8/FP8 cannot take fall back to fp16
    if precision == "int8":
        config.set_flag(t.BuilderFlag.INT8)
        batch = max(1, min(profile.opt_batch, calibration.count))
        config.int8_calibrator = make_calibrator(
            calibration, batch, plan_path.with_suffix(".calib")
        )
    if precision == "fp8":
        config.set_flag(t.BuilderFlag.FP8)
    opt_profile = builder.create_optimization_profile()
    for spec in sig.inputs:
        rest = sample_shape(spec)
        if spec.batched:
            opt_profile.set_shape(
                spec.name,
                _dims(profile.min_batch, rest),
                _dims(profile.opt_batch, rest),
                _dims(profile.max_batch, rest),
            )
        else:
            fixed = _dims(None, rest)
            opt_profile.set_shape(spec.name, fixed, fixed, fixed)
    config.add_optimization_profile(opt_profile)
    if precision == "int8":
        config.set_calibration_profile(opt_profile)
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(f"TensorRT could not build a {precision} engine", "Unsupported")
    plan_path.write_bytes(bytes(plan))


def measure_plan(
    precision: str,
    plan_path: Path,
    sig: Signature,
    reference: dict[str, np.ndarray],
    samples: SampleSet,
    batch_size: int,
) -> AccuracyResult:
    """Run the engine on the samples (device buffers via torch) and compare."""
    _trt()
    import tensorrt as t

    torch = importlib.import_module("torch")
    runtime = t.Runtime(t.Logger(t.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
    context = engine.create_execution_context()
    stream = torch.cuda.Stream()
    collected: dict[str, list[np.ndarray]] = {o.name: [] for o in sig.outputs}
    for feed in samples.feeds(sig.batched, batch_size):
        inputs = {name: _cuda_tensor(arr) for name, arr in feed.items()}
        for name, tensor in inputs.items():
            context.set_input_shape(name, tuple(tensor.shape))
            context.set_tensor_address(name, int(tensor.data_ptr()))
        outputs = {}
        for spec in sig.outputs:
            dims = context.get_tensor_shape(spec.name)
            shape = tuple(int(dims[i]) for i in range(len(dims)))
            dtype = getattr(torch, spec.dtype)
            outputs[spec.name] = torch.empty(shape, dtype=dtype, device="cuda")
            context.set_tensor_address(spec.name, int(outputs[spec.name].data_ptr()))
        context.execute_async_v3(stream.cuda_stream)
        stream.synchronize()
        for name, tensor in outputs.items():
            collected[name].append(tensor.cpu().numpy())
    candidate = {n: np.concatenate(parts) for n, parts in collected.items()}
    return compare(precision, reference, candidate)
