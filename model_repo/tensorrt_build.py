"""TensorRT engine builder and runner (GPU clusters only; `tensorrt` is imported lazily).

Read against TensorRT 10.3 (the Triton 24.08 image's): every call that reports failure by
its return value (`parse`, `add_optimization_profile`, `build_serialized_network`,
`deserialize_cuda_engine`, `create_execution_context`, `set_input_shape`,
`set_tensor_address`, `execute_async_v3`) is checked, because TensorRT logs the cause and
carries on, and the next call then fails somewhere unrelated.

Precision is explicit: int8 and fp8 engines are compiled from a Q/DQ ONNX model made on
the CPU (`model_repo.quantize`), so there is no calibrator (implicit INT8 is deprecated
since TensorRT 10.1) and no calibration profile in the build. fp32 clears TF32, which
TensorRT enables by default, so the ladder's last rung really is fp32.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from model_repo import cuda_runtime
from model_repo.accuracy import AccuracyResult, compare
from model_repo.errors import ModelError
from model_repo.samples import SampleSet
from model_repo.shapes import ShapeProfile, gate_batch_size, profile_shapes
from model_repo.signature import Signature

ENGINE = "tensorrt"
RECIPE = "trt-2"  # bump when the flags or passes below change: old engines stop matching
WORKSPACE_BYTES = 4 << 30

_UNAVAILABLE = (
    "backend tensorrt_plan needs TensorRT, which is not installed in this optimizer image "
    "(or this node has no GPU); use backend onnxruntime_onnx or python for CPU serving"
)


def _trt() -> Any:
    try:
        module = importlib.import_module("tensorrt")
    except ImportError as err:
        raise ModelError(_UNAVAILABLE, "Unsupported") from err
    if not hasattr(module, "Builder"):  # the type stubs alone import as an empty namespace
        raise ModelError(_UNAVAILABLE, "Unsupported")
    return module


def tensorrt_available() -> tuple[bool, str]:
    """(available, reason): TensorRT importable, cuda-python present, a GPU visible."""
    try:
        _trt()
    except ModelError as err:
        return False, str(err)
    return cuda_runtime.cuda_available()


def engine_version() -> str:
    return str(_trt().__version__)


def check_version(expected: str | None, actual: str) -> None:
    """Refuse to build with another TensorRT than the serving Triton's (plans don't load).

    `expected` "10.3.0" matches "10.3.0" and "10.3.0.26": the components given must agree.
    """
    if not expected:
        return
    want = expected.split(".")
    if actual.split(".")[: len(want)] != want:
        raise ModelError(
            f"this optimizer has TensorRT {actual} but the serving Triton has TensorRT "
            f"{expected}; an engine loads only on the version that built it — use the "
            "optimizer image that matches the Triton image",
            "Unsupported",
        )


def builder_flags(precision: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Pure: (BuilderFlag names to set, names to clear) for a precision.

    int8/fp8 keep FP16 on so layers without a Q/DQ pair run in fp16, not fp32.
    """
    table: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
        "fp32": ((), ("TF32",)),
        "fp16": (("FP16",), ()),
        "int8": (("INT8", "FP16"), ()),
        "fp8": (("FP8", "FP16"), ()),
    }
    if precision not in table:
        raise ModelError(f"TensorRT has no {precision} recipe", "Unsupported")
    return table[precision]


def build_engine(
    onnx_path: Path, plan_path: Path, precision: str, sig: Signature, profile: ShapeProfile
) -> None:
    """Parse the ONNX (Q/DQ for int8/fp8), set flags and the profile, write the plan."""
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
    on, off = builder_flags(precision)
    for name in on:
        config.set_flag(getattr(t.BuilderFlag, name))
    for name in off:
        config.clear_flag(getattr(t.BuilderFlag, name))
    opt_profile = builder.create_optimization_profile()
    for spec in sig.inputs:
        low, opt, high = profile_shapes(spec, profile)
        opt_profile.set_shape(spec.name, t.Dims(list(low)), t.Dims(list(opt)), t.Dims(list(high)))
    if config.add_optimization_profile(opt_profile) < 0:
        raise ModelError(f"TensorRT rejected the shape profile {profile.to_json()}", "Unsupported")
    plan = builder.build_serialized_network(network, config)
    if plan is None:
        raise ModelError(f"TensorRT could not build a {precision} engine", "Unsupported")
    plan_path.write_bytes(bytes(plan))


def _load(plan_path: Path) -> tuple[Any, Any]:
    import tensorrt as t

    runtime = t.Runtime(t.Logger(t.Logger.WARNING))
    engine = runtime.deserialize_cuda_engine(plan_path.read_bytes())
    if engine is None:
        raise ModelError(
            f"TensorRT cannot load {plan_path.name} (built by another TensorRT version or "
            "for another GPU?)",
            "Unsupported",
        )
    context = engine.create_execution_context()
    if context is None:
        raise ModelError("TensorRT could not create an execution context", "Unsupported")
    return engine, context


def _np_dtype(engine: Any, name: str) -> np.dtype[Any]:
    """numpy dtype of an engine tensor (`tensorrt.nptype` is untyped in the stubs)."""
    import tensorrt as t

    nptype: Callable[[Any], Any] = t.nptype
    dtype: np.dtype[Any] = np.dtype(nptype(engine.get_tensor_dtype(name)))
    return dtype


def _run_batch(
    engine: Any, context: Any, feed: dict[str, np.ndarray], sig: Signature, stream: int
) -> dict[str, np.ndarray]:
    """One inference with checked shapes and addresses; outputs copied back to the host."""
    with cuda_runtime.device_buffers() as buffers:
        for name, value in feed.items():
            host = np.ascontiguousarray(value, dtype=_np_dtype(engine, name))
            if not context.set_input_shape(name, host.shape):
                raise ModelError(
                    f"the engine does not accept input '{name}' of shape {list(host.shape)}",
                    "Unsupported",
                )
            buf = cuda_runtime.DeviceBuffer(host.nbytes)
            buffers.append(buf)
            buf.upload(host)
            if not context.set_tensor_address(name, buf.ptr):
                raise ModelError(f"TensorRT refused the address of '{name}'", "Unsupported")
        outputs: dict[str, tuple[cuda_runtime.DeviceBuffer, tuple[int, ...], Any]] = {}
        for spec in sig.outputs:
            shape = tuple(int(d) for d in context.get_tensor_shape(spec.name))
            if any(d < 0 for d in shape):
                raise ModelError(f"output '{spec.name}' has no shape yet: {shape}", "Unsupported")
            dtype = _np_dtype(engine, spec.name)
            buf = cuda_runtime.DeviceBuffer(int(np.prod(shape, dtype=np.int64)) * dtype.itemsize)
            buffers.append(buf)
            if not context.set_tensor_address(spec.name, buf.ptr):
                raise ModelError(f"TensorRT refused the address of '{spec.name}'", "Unsupported")
            outputs[spec.name] = (buf, shape, dtype)
        if not context.execute_async_v3(stream):
            raise ModelError("TensorRT could not enqueue the inference", "Unsupported")
        cuda_runtime.synchronize(stream)
        return {name: buf.download(shape, dtype) for name, (buf, shape, dtype) in outputs.items()}


def measure_plan(
    precision: str,
    plan_path: Path,
    sig: Signature,
    reference: dict[str, np.ndarray],
    samples: SampleSet,
    profile: ShapeProfile,
) -> AccuracyResult:
    """Run the engine on the gate samples in batches the profile admits, and compare.

    Unbatched models run one sample at a time and get a leading sample axis, as the
    ONNX Runtime reference does.
    """
    _trt()
    engine, context = _load(plan_path)
    inputs = {sig_in.name for sig_in in sig.inputs}
    collected: dict[str, list[np.ndarray]] = {o.name: [] for o in sig.outputs}
    with cuda_runtime.stream() as stream:
        for feed in samples.feeds(profile.batched, gate_batch_size(profile)):
            missing = inputs - set(feed)
            if missing:
                raise ModelError(f"no samples for inputs {sorted(missing)}", "Unsupported")
            for name, value in _run_batch(engine, context, feed, sig, stream).items():
                collected[name].append(value if profile.batched else value[np.newaxis, ...])
    candidate = {n: np.concatenate(parts) for n, parts in collected.items()}
    return compare(precision, reference, candidate)
