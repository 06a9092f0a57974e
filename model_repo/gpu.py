"""The GPU an engine is built for: product, compute capability, what it can run (pure).

TensorRT engines are tied to the exact GPU product, not only its architecture (H100 and
H200 are both sm_90, but tactics are timed on one chip), so the product is part of the
cache key and of the node selector that keeps the optimize Job and the Triton pods on the
same GPU type. The product is written as NVIDIA's GPU feature discovery writes the node
label `nvidia.com/gpu.product` (spaces become dashes).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from model_repo.errors import ModelError

PRODUCT_LABEL = "nvidia.com/gpu.product"
FP8_MIN_CAPABILITY = (8, 9)  # Ada (sm_89) and Hopper (sm_90) have FP8 tensor cores


@dataclass(frozen=True)
class GpuInfo:
    name: str  # as the driver reports it, e.g. "NVIDIA H200"
    major: int
    minor: int

    @property
    def capability(self) -> str:
        return f"sm_{self.major}{self.minor}"

    @property
    def product(self) -> str:
        return product_label(self.name)

    @property
    def has_fp8(self) -> bool:
        return (self.major, self.minor) >= FP8_MIN_CAPABILITY


def product_label(name: str) -> str:
    """`NVIDIA H100 80GB HBM3` → `NVIDIA-H100-80GB-HBM3`, a valid label value (≤ 63)."""
    value = re.sub(r"[^A-Za-z0-9_.-]+", "-", name.strip())
    value = value[:63].strip("-_.")
    return value or "unknown"


def parse_nvidia_smi(text: str) -> GpuInfo:
    """GPU 0 from `nvidia-smi --query-gpu=name,compute_cap --format=csv,noheader`."""
    line = next((ln for ln in text.splitlines() if ln.strip()), "")
    name, _, cap = line.rpartition(",")
    major, _, minor = cap.strip().partition(".")
    if not name.strip() or not major.isdigit() or not minor.isdigit():
        raise ModelError(f"cannot read the GPU from nvidia-smi output {line!r}", "Unsupported")
    return GpuInfo(name.strip(), int(major), int(minor))


def node_selector(gpu: GpuInfo) -> dict[str, str]:
    """The selector that puts Triton pods on the GPU product the engine was built on."""
    return {PRODUCT_LABEL: gpu.product}
