"""Triton `config.pbtxt` from a model signature (pure).

The config is assembled as Triton's own ModelConfig protobuf (shipped in tritonclient)
and rendered with protobuf's text format, then parsed back: a config that Triton's schema
rejects never reaches a model repository.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from model_repo.errors import ModelError
from model_repo.shapes import ShapeProfile, sample_dims
from model_repo.signature import Signature, TensorSpec

Backend = Literal["tensorrt_plan", "onnxruntime_onnx", "python"]
BACKENDS: tuple[Backend, ...] = ("tensorrt_plan", "onnxruntime_onnx", "python")
MODEL_FILES: dict[str, str] = {
    "tensorrt_plan": "model.plan",
    "onnxruntime_onnx": "model.onnx",
    "python": "model.py",
}
INTRA_OP_THREADS_PARAM = "intra_op_threads"

_TRITON_TYPES = {
    "bool": "TYPE_BOOL",
    "uint8": "TYPE_UINT8",
    "uint16": "TYPE_UINT16",
    "uint32": "TYPE_UINT32",
    "uint64": "TYPE_UINT64",
    "int8": "TYPE_INT8",
    "int16": "TYPE_INT16",
    "int32": "TYPE_INT32",
    "int64": "TYPE_INT64",
    "float16": "TYPE_FP16",
    "float32": "TYPE_FP32",
    "float64": "TYPE_FP64",
    "object": "TYPE_STRING",
    "bytes": "TYPE_STRING",
}


@dataclass(frozen=True)
class DynamicBatching:
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_delay_microseconds: int = 0

    @classmethod
    def from_json(cls, data: Any) -> DynamicBatching:
        """From the InferenceService's `spec.triton.dynamicBatching` object."""
        if not isinstance(data, dict):
            raise ModelError("dynamic batching must be a JSON object", "Unsupported")
        try:
            sizes = tuple(int(s) for s in data.get("preferredBatchSizes") or ())
            delay = int(data.get("maxQueueDelayMicroseconds") or 0)
        except (TypeError, ValueError) as err:
            raise ModelError(f"invalid dynamic batching settings: {err}", "Unsupported") from err
        if any(s < 1 for s in sizes) or delay < 0:
            raise ModelError(
                "dynamic batching: preferred batch sizes must be ≥1 and the queue delay ≥0",
                "Unsupported",
            )
        return cls(sizes, delay)


@dataclass(frozen=True)
class QueuePolicy:
    """A bounded queue: requests that would wait longer than the latency target are
    rejected (UNAVAILABLE, which clients retry on another replica) instead of queueing
    for seconds behind a backlog. `max_queue_size` 0 leaves the length unbounded (the
    timeout alone bounds the wait)."""

    timeout_microseconds: int
    max_queue_size: int = 0

    @classmethod
    def from_json(cls, data: Any) -> QueuePolicy:
        """From `{"timeoutMicroseconds": T, "maxQueueSize": N}` (what the operator sends)."""
        if not isinstance(data, dict):
            raise ModelError("queue policy must be a JSON object", "Unsupported")
        try:
            timeout = int(data["timeoutMicroseconds"])
            size = int(data.get("maxQueueSize") or 0)
        except (KeyError, TypeError, ValueError) as err:
            raise ModelError(f"invalid queue policy: {err}", "Unsupported") from err
        if timeout < 1 or size < 0:
            raise ModelError(
                "queue policy: the timeout must be ≥1 µs and the queue size ≥0", "Unsupported"
            )
        return cls(timeout, size)


@dataclass(frozen=True)
class ServingOptions:
    backend: Backend
    max_batch_size: int = 1
    dynamic_batching: DynamicBatching | None = None
    instances: int = 1
    kind: Literal["cpu", "gpu"] = "cpu"
    warmup: bool = False
    intra_op_threads: int = 1
    profile: ShapeProfile | None = None  # the engine's; warm-up samples take its optimum
    # Needs a batch dimension (the dynamic batcher holds the queue); left out otherwise.
    queue_policy: QueuePolicy | None = None


def triton_dtype(dtype: str) -> str:
    try:
        return _TRITON_TYPES[dtype]
    except KeyError:
        raise ModelError(f"dtype {dtype} has no Triton equivalent", "Unsupported") from None


def _dims(spec: TensorSpec, batched: bool) -> list[int]:
    return list(spec.shape[1:] if batched else spec.shape)


def _validate(sig: Signature, opts: ServingOptions) -> None:
    if opts.backend not in BACKENDS:
        raise ModelError(
            f"unknown Triton backend {opts.backend!r}: use one of {', '.join(BACKENDS)}",
            "Unsupported",
        )
    if opts.max_batch_size < 1:
        raise ModelError("maxBatchSize must be at least 1", "Unsupported")
    if opts.instances < 1:
        raise ModelError("instancesPerReplica must be at least 1", "Unsupported")
    if opts.dynamic_batching is not None:
        if not sig.batched:
            raise ModelError(
                "dynamic batching needs a model whose inputs and outputs all have a dynamic "
                "leading (batch) dimension; re-export with a dynamic batch axis",
                "Unsupported",
            )
        too_big = [
            s for s in opts.dynamic_batching.preferred_batch_sizes if s > opts.max_batch_size
        ]
        if too_big:
            raise ModelError(
                f"preferred batch sizes {too_big} exceed maxBatchSize {opts.max_batch_size}",
                "Unsupported",
            )


def _io(specs: Sequence[TensorSpec], batched: bool, cls: Any) -> list[Any]:
    return [
        cls(name=t.name, data_type=mc.DataType.Value(triton_dtype(t.dtype)), dims=_dims(t, batched))
        for t in specs
    ]


def build_config(sig: Signature, opts: ServingOptions) -> mc.ModelConfig:
    """Pure: the ModelConfig message for `sig` served with `opts`."""
    _validate(sig, opts)
    batched = sig.batched
    config = mc.ModelConfig(
        name=sig.name,
        max_batch_size=opts.max_batch_size if batched else 0,
        version_policy=mc.ModelVersionPolicy(latest=mc.ModelVersionPolicy.Latest(num_versions=1)),
        input=_io(sig.inputs, batched, mc.ModelInput),
        output=_io(sig.outputs, batched, mc.ModelOutput),
    )
    if opts.backend == "python":
        config.backend = "python"
        config.parameters[INTRA_OP_THREADS_PARAM].string_value = str(opts.intra_op_threads)
    else:
        config.platform = opts.backend
    # TensorRT engines run on the GPU; the Python backend runs onnxruntime on the CPU.
    gpu = opts.backend == "tensorrt_plan" or (opts.backend != "python" and opts.kind == "gpu")
    kind = mc.ModelInstanceGroup.KIND_GPU if gpu else mc.ModelInstanceGroup.KIND_CPU
    config.instance_group.append(mc.ModelInstanceGroup(count=opts.instances, kind=kind))
    if opts.dynamic_batching is not None:
        db = config.dynamic_batching
        db.preferred_batch_size.extend(opts.dynamic_batching.preferred_batch_sizes)
        db.max_queue_delay_microseconds = opts.dynamic_batching.max_queue_delay_microseconds
    if opts.queue_policy is not None and batched:
        # Without requested batching the batcher runs with no delay: it only groups
        # requests that are already waiting, and it is what holds a bounded queue.
        policy = config.dynamic_batching.default_queue_policy
        policy.timeout_action = mc.ModelQueuePolicy.REJECT
        policy.default_timeout_microseconds = opts.queue_policy.timeout_microseconds
        policy.allow_timeout_override = False
        policy.max_queue_size = opts.queue_policy.max_queue_size
    if opts.warmup:
        warm = mc.ModelWarmup(name="zeros", batch_size=1)
        profile = opts.profile or ShapeProfile(1, 1, 1, batched=batched)
        for t in sig.inputs:
            dims = list(sample_dims(t, profile))
            warm.inputs[t.name].CopyFrom(
                mc.ModelWarmup.Input(
                    data_type=mc.DataType.Value(triton_dtype(t.dtype)), dims=dims, zero_data=True
                )
            )
        config.model_warmup.append(warm)
    return config


def render_config(sig: Signature, opts: ServingOptions) -> str:
    """Pure: config.pbtxt text, checked by parsing it back into a ModelConfig."""
    text = str(text_format.MessageToString(build_config(sig, opts)))
    parse_config(text)
    return text


def parse_config(text: str) -> mc.ModelConfig:
    """Parse config.pbtxt with Triton's schema; a ModelError explains any rejection."""
    try:
        return text_format.Parse(text, mc.ModelConfig())
    except text_format.ParseError as err:
        raise ModelError(f"generated config.pbtxt does not parse: {err}", "Unsupported") from err
