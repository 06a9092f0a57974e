"""config.pbtxt generation, checked with Triton's own ModelConfig protobuf."""

from __future__ import annotations

from pathlib import Path

import pytest
from google.protobuf import text_format
from tritonclient.grpc import model_config_pb2 as mc

from model_repo.errors import ModelError
from model_repo.signature import Signature, TensorSpec
from model_repo.triton_config import (
    BACKENDS,
    DynamicBatching,
    ServingOptions,
    render_config,
)

DIGITS = Signature(
    name="digits",
    inputs=(TensorSpec("input", "float32", (-1, 1, 8, 8)),),
    outputs=(TensorSpec("logits", "float32", (-1, 10)),),
    dynamic_axes={"input": {"0": "batch"}, "logits": {"0": "batch"}},
)
FIXED = Signature(
    name="fixed",
    inputs=(TensorSpec("ids", "int64", (1, -1)),),
    outputs=(TensorSpec("scores", "float16", (1, 3)),),
    dynamic_axes={"ids": {"1": "seq"}},
)


def parse(text: str) -> mc.ModelConfig:
    return text_format.Parse(text, mc.ModelConfig())


@pytest.mark.parametrize("backend", BACKENDS)
def test_each_backend_parses_with_tritons_schema(backend: str) -> None:
    opts = ServingOptions(backend=backend, max_batch_size=64, instances=2, kind="gpu")
    config = parse(render_config(DIGITS, opts))
    assert config.name == "digits"
    assert config.max_batch_size == 64
    assert [(i.name, mc.DataType.Name(i.data_type), list(i.dims)) for i in config.input] == [
        ("input", "TYPE_FP32", [1, 8, 8])
    ]
    assert [(o.name, list(o.dims)) for o in config.output] == [("logits", [10])]
    assert config.version_policy.latest.num_versions == 1
    assert not config.HasField("dynamic_batching")
    assert config.instance_group[0].count == 2


def test_platform_backend_and_instance_kind() -> None:
    def kind_of(config: mc.ModelConfig) -> str:
        return mc.ModelInstanceGroup.Kind.Name(config.instance_group[0].kind)

    trt = parse(render_config(DIGITS, ServingOptions("tensorrt_plan", 8, kind="cpu")))
    assert (trt.platform, kind_of(trt)) == ("tensorrt_plan", "KIND_GPU")
    ort_gpu = parse(render_config(DIGITS, ServingOptions("onnxruntime_onnx", 8, kind="gpu")))
    assert (ort_gpu.platform, kind_of(ort_gpu)) == ("onnxruntime_onnx", "KIND_GPU")
    ort_cpu = parse(render_config(DIGITS, ServingOptions("onnxruntime_onnx", 8)))
    assert kind_of(ort_cpu) == "KIND_CPU"
    py = parse(render_config(DIGITS, ServingOptions("python", 8, kind="gpu", intra_op_threads=2)))
    assert (py.backend, py.platform, kind_of(py)) == ("python", "", "KIND_CPU")
    assert py.parameters["intra_op_threads"].string_value == "2"


def test_dynamic_batching_and_warmup() -> None:
    batching = DynamicBatching.from_json(
        {"preferredBatchSizes": [8, 16], "maxQueueDelayMicroseconds": 500}
    )
    opts = ServingOptions("python", 32, dynamic_batching=batching, warmup=True)
    config = parse(render_config(DIGITS, opts))
    assert list(config.dynamic_batching.preferred_batch_size) == [8, 16]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    warm = config.model_warmup[0]
    assert warm.batch_size == 1
    assert list(warm.inputs["input"].dims) == [1, 8, 8]
    assert warm.inputs["input"].zero_data


def test_unbatched_model_keeps_full_dims_and_other_types() -> None:
    config = parse(render_config(FIXED, ServingOptions("onnxruntime_onnx", 16, warmup=True)))
    assert config.max_batch_size == 0
    assert list(config.input[0].dims) == [1, -1]
    assert mc.DataType.Name(config.input[0].data_type) == "TYPE_INT64"
    assert mc.DataType.Name(config.output[0].data_type) == "TYPE_FP16"
    assert list(config.model_warmup[0].inputs["ids"].dims) == [1, 1]


@pytest.mark.parametrize(
    ("sig", "opts", "message"),
    [
        (
            DIGITS,
            ServingOptions("python", 4, DynamicBatching((8,), 100)),
            r"preferred batch sizes \[8\] exceed maxBatchSize 4",
        ),
        (
            FIXED,
            ServingOptions("python", 4, DynamicBatching((1,), 100)),
            "dynamic batching needs a model whose inputs and outputs all have a dynamic",
        ),
        (DIGITS, ServingOptions("python", 0), "maxBatchSize must be at least 1"),
        (DIGITS, ServingOptions("python", 1, instances=0), "instancesPerReplica"),
        (DIGITS, ServingOptions("tensorflow_savedmodel", 1), "unknown Triton backend"),
    ],
)
def test_bad_serving_options(sig: Signature, opts: ServingOptions, message: str) -> None:
    with pytest.raises(ModelError, match=message) as err:
        render_config(sig, opts)
    assert err.value.reason == "Unsupported"


@pytest.mark.parametrize(
    "raw",
    [
        [8],
        {"preferredBatchSizes": [0]},
        {"preferredBatchSizes": ["x"]},
        {"maxQueueDelayMicroseconds": -1},
    ],
)
def test_bad_dynamic_batching_json(raw: object) -> None:
    with pytest.raises(ModelError):
        DynamicBatching.from_json(raw)


def test_written_config_parses(tmp_path: Path) -> None:
    path = tmp_path / "config.pbtxt"
    path.write_text(render_config(DIGITS, ServingOptions("python", 8)))
    assert parse(path.read_text()).backend == "python"
