"""CUDA through cuda-python: device buffers, a stream and the GPU's identity, every call checked.

The optimizer image holds TensorRT and cuda-python, not torch (a multi-GB dependency for
a few mallocs). cuda-python is what TensorRT's own samples use. Each of its calls returns
`(error, value…)` instead of raising; an error left unchecked shows up later as garbage
outputs or a crash inside TensorRT, so every call here goes through `_call`, which turns a
failure into a `ModelError` naming the call.
"""

from __future__ import annotations

import importlib
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from model_repo.errors import ModelError
from model_repo.gpu import GpuInfo, parse_nvidia_smi

_NO_CUDA_PYTHON = (
    "the TensorRT path needs cuda-python's runtime bindings, which are not installed in "
    "this optimizer image (pip install 'cuda-bindings>=12.6,<13' for CUDA 12 drivers)"
)


def cudart() -> Any:
    """The CUDA runtime bindings: `cuda.bindings.runtime` (≥ 12.6) or `cuda.cudart`."""
    for name in ("cuda.bindings.runtime", "cuda.cudart"):
        try:
            return importlib.import_module(name)
        except ImportError:
            continue
    raise ModelError(_NO_CUDA_PYTHON, "Unsupported")


def _call(result: Any, what: str) -> Any:
    """Check a cuda-python result tuple; return its value(s)."""
    rt = cudart()
    err, *values = result if isinstance(result, tuple) else (result,)
    if err != rt.cudaError_t.cudaSuccess:
        raise ModelError(f"CUDA {what} failed: {_error_name(rt, err)}", "Unsupported")
    if not values:
        return None
    return values[0] if len(values) == 1 else tuple(values)


def _error_name(rt: Any, err: Any) -> str:
    try:
        _, name = rt.cudaGetErrorName(err)
        return name.decode() if isinstance(name, bytes) else str(name)
    except Exception:  # naming the error must not hide it
        return str(err)


def cuda_available() -> tuple[bool, str]:
    """(available, reason): cuda-python importable and at least one device visible."""
    try:
        count = _call(cudart().cudaGetDeviceCount(), "cudaGetDeviceCount")
    except ModelError as err:
        return False, str(err)
    if not count:
        return False, "no CUDA device is visible"
    return True, ""


def gpu_info() -> GpuInfo:
    """GPU 0: from cuda-python when present, else from nvidia-smi."""
    try:
        props = _call(cudart().cudaGetDeviceProperties(0), "cudaGetDeviceProperties")
    except ModelError:
        return _gpu_from_nvidia_smi()
    name = props.name
    name = name.split(b"\0", 1)[0].decode() if isinstance(name, bytes) else str(name)
    return GpuInfo(name, int(props.major), int(props.minor))


def _gpu_from_nvidia_smi() -> GpuInfo:
    try:
        out = subprocess.run(
            ["nvidia-smi", "--query-gpu=name,compute_cap", "--format=csv,noheader"],
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout
    except (OSError, subprocess.SubprocessError) as err:
        message = "no GPU visible to the optimizer (nvidia-smi failed)"
        raise ModelError(message, "Unsupported") from err
    return parse_nvidia_smi(out)


class DeviceBuffer:
    """`nbytes` of device memory; free() it (or use `device_buffers`)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = nbytes
        self.ptr = int(_call(cudart().cudaMalloc(max(nbytes, 1)), "cudaMalloc"))

    def upload(self, array: np.ndarray) -> None:
        host = np.ascontiguousarray(array)
        if host.nbytes > self.nbytes:
            raise ModelError(f"{host.nbytes} bytes do not fit a {self.nbytes}-byte buffer")
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyHostToDevice
        _call(rt.cudaMemcpy(self.ptr, host.ctypes.data, host.nbytes, kind), "cudaMemcpy H→D")

    def download(self, shape: tuple[int, ...], dtype: np.dtype[Any]) -> np.ndarray:
        host = np.empty(shape, dtype=dtype)
        if host.nbytes > self.nbytes:
            raise ModelError(f"a {host.nbytes}-byte result exceeds its {self.nbytes}-byte buffer")
        rt = cudart()
        kind = rt.cudaMemcpyKind.cudaMemcpyDeviceToHost
        _call(rt.cudaMemcpy(host.ctypes.data, self.ptr, host.nbytes, kind), "cudaMemcpy D→H")
        return host

    def free(self) -> None:
        if self.ptr:
            _call(cudart().cudaFree(self.ptr), "cudaFree")
            self.ptr = 0


@contextmanager
def device_buffers() -> Iterator[list[DeviceBuffer]]:
    """A list to append buffers to; all are freed on exit."""
    buffers: list[DeviceBuffer] = []
    try:
        yield buffers
    finally:
        for buf in buffers:
            buf.free()


@contextmanager
def stream() -> Iterator[int]:
    """A CUDA stream handle (int, as TensorRT's execute_async_v3 takes it)."""
    rt = cudart()
    handle = _call(rt.cudaStreamCreate(), "cudaStreamCreate")
    try:
        yield int(handle)
    finally:
        _call(rt.cudaStreamDestroy(handle), "cudaStreamDestroy")


def synchronize(handle: int) -> None:
    _call(cudart().cudaStreamSynchronize(handle), "cudaStreamSynchronize")
