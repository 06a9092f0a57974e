"""The GPU's identity (pure), and CUDA-only checks that need no TensorRT (`gpu`-marked)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_repo.accuracy import measure_onnx, reference_outputs
from model_repo.cuda_runtime import DeviceBuffer, cuda_available, device_buffers
from model_repo.errors import ModelError
from model_repo.gpu import GpuInfo, node_selector, parse_nvidia_smi, product_label
from model_repo.samples import plan_samples, real_rows
from model_repo.signature import read_signature


@pytest.mark.parametrize(
    ("name", "label"),
    [
        ("NVIDIA H200", "NVIDIA-H200"),
        ("NVIDIA H100 80GB HBM3", "NVIDIA-H100-80GB-HBM3"),
        ("Tesla V100-SXM2-16GB", "Tesla-V100-SXM2-16GB"),
        ("  odd/name (x) ", "odd-name-x"),
    ],
)
def test_product_label_is_the_gpu_feature_discovery_label(name: str, label: str) -> None:
    assert product_label(name) == label
    assert node_selector(GpuInfo(name, 9, 0)) == {"nvidia.com/gpu.product": label}


def test_nvidia_smi_parsing() -> None:
    gpu = parse_nvidia_smi("NVIDIA H200, 9.0\nNVIDIA H200, 9.0\n")
    assert (gpu.capability, gpu.product, gpu.has_fp8) == ("sm_90", "NVIDIA-H200", True)
    assert not parse_nvidia_smi("NVIDIA A10G, 8.6").has_fp8
    with pytest.raises(ModelError, match="cannot read the GPU"):
        parse_nvidia_smi("No devices were found")


def _cuda_or_skip() -> None:
    available, reason = cuda_available()
    if not available:
        pytest.skip(reason)


@pytest.mark.gpu
def test_device_buffer_round_trip() -> None:
    _cuda_or_skip()
    data = np.arange(1000, dtype=np.float32).reshape(10, 100)
    with device_buffers() as buffers:
        buf = DeviceBuffer(data.nbytes)
        buffers.append(buf)
        buf.upload(data)
        np.testing.assert_array_equal(buf.download(data.shape, data.dtype), data)


@pytest.mark.gpu
def test_onnxruntime_cuda_through_the_gate(digits_export: Path) -> None:
    """ORT's CUDA execution provider measured against the CPU reference by the gate."""
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("onnxruntime has no CUDA execution provider (install onnxruntime-gpu)")
    sig = read_signature(digits_export)
    gate = plan_samples(sig, real_rows(sig, digits_export), 64).gate
    reference = reference_outputs(digits_export / "model.onnx", gate, sig.batched)
    result = measure_onnx(
        "fp32",
        digits_export / "model.onnx",
        reference,
        gate,
        sig.batched,
        providers=("CUDAExecutionProvider",),
    )
    assert result.max_abs_diff < 1e-3
    assert result.top1_agreement == 1.0
