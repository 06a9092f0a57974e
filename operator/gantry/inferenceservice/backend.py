"""Which Triton backend serves a model: decided from the spec and the cluster's image."""

from __future__ import annotations

from gantry.api.inferenceservice import InferenceServiceSpec
from gantry.config import OperatorConfig, TritonBackend


class BackendUnavailable(ValueError):
    """The spec asks for something the configured Triton image cannot serve."""


def choose_backend(spec: InferenceServiceSpec, config: OperatorConfig) -> TritonBackend:
    """tensorrt_plan when the service uses TensorRT; else onnxruntime_onnx if the image has
    it; else a Python-backend model running onnxruntime (the dev cluster's only backend).
    """
    available = set(config.triton_backends)
    if spec.uses_tensorrt():
        if TritonBackend.TENSORRT not in available:
            raise BackendUnavailable(
                "this service uses TensorRT (it requests GPUs or sets "
                "optimization.tensorrt.enabled), but the operator's Triton image has no "
                f"tensorrt_plan backend (available: {_names(available)}); set "
                "optimization.tensorrt.enabled: false to serve with ONNX Runtime"
            )
        override = spec.triton.image
        if override and override != config.triton_image:
            raise BackendUnavailable(
                f"triton.image {override!r} overrides the operator's Triton image, but "
                "TensorRT engines are built by the optimizer image for the TensorRT of "
                f"{config.triton_image!r} ({config.tensorrt_version}) and load on no other "
                "version; remove triton.image, or set optimization.tensorrt.enabled: false "
                "to serve with ONNX Runtime"
            )
        return TritonBackend.TENSORRT
    for backend in (TritonBackend.ONNXRUNTIME, TritonBackend.PYTHON):
        if backend in available:
            return backend
    raise BackendUnavailable(
        "the operator's Triton image has neither the onnxruntime_onnx nor the python "
        f"backend (available: {_names(available)}), so ONNX models cannot be served"
    )


def _names(backends: set[TritonBackend]) -> str:
    return ", ".join(sorted(b.value for b in backends)) or "none"
