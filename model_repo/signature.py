"""The model's signature: what goes in and out, read from the ONNX graph itself.

The ONNX graph is the authority for names, dtypes and shapes (it is what runs);
`metadata.json` from the training runtime adds what ONNX cannot say (labels, the
calibration samples, metrics) and its sha256 list guards against a half-copied export.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from model_repo.errors import ModelError

MODEL_FILE = "model.onnx"
METADATA_FILE = "metadata.json"


@dataclass(frozen=True)
class TensorSpec:
    """One input or output; -1 marks a dynamic dimension."""

    name: str
    dtype: str  # numpy dtype name, e.g. "float32"
    shape: tuple[int, ...]

    @property
    def batched(self) -> bool:
        """Whether the leading dimension is dynamic, i.e. usable as Triton's batch dim."""
        return len(self.shape) > 0 and self.shape[0] == -1


@dataclass(frozen=True)
class Signature:
    name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    dynamic_axes: dict[str, dict[str, str]]
    labels: tuple[str, ...] = ()
    calibration_file: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)

    @property
    def batched(self) -> bool:
        """Triton can batch only when every tensor has a dynamic leading dimension."""
        return all(t.batched for t in (*self.inputs, *self.outputs))


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _tensor_spec(value: onnx.ValueInfoProto, dynamic: dict[str, dict[str, str]]) -> TensorSpec:
    ttype = value.type.tensor_type
    try:
        dtype = np.dtype(helper.tensor_dtype_to_np_dtype(ttype.elem_type)).name
    except (KeyError, TypeError) as err:
        raise ModelError(
            f"tensor '{value.name}' has an ONNX element type ({ttype.elem_type}) "
            "that has no numpy equivalent",
            "Unsupported",
        ) from err
    dims: list[int] = []
    for axis, dim in enumerate(ttype.shape.dim):
        if dim.HasField("dim_value") and dim.dim_value > 0:
            dims.append(int(dim.dim_value))
        else:
            dims.append(-1)
            if dim.dim_param:
                dynamic.setdefault(value.name, {})[str(axis)] = dim.dim_param
    return TensorSpec(value.name, dtype, tuple(dims))


def signature_from_onnx(model: onnx.ModelProto, name: str) -> Signature:
    """Pure: the signature the graph declares (initializers are not inputs)."""
    graph = model.graph
    initializers = {init.name for init in graph.initializer}
    dynamic: dict[str, dict[str, str]] = {}
    inputs = tuple(_tensor_spec(v, dynamic) for v in graph.input if v.name not in initializers)
    outputs = tuple(_tensor_spec(v, dynamic) for v in graph.output)
    if not inputs:
        raise ModelError("model.onnx declares no inputs: nothing to serve", "CorruptModel")
    if not outputs:
        raise ModelError("model.onnx declares no outputs: nothing to serve", "CorruptModel")
    return Signature(name=name, inputs=inputs, outputs=outputs, dynamic_axes=dynamic)


def _read_metadata(model_dir: Path) -> dict[str, Any] | None:
    path = model_dir / METADATA_FILE
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise ModelError(f"{path} is not valid JSON: {err}", "CorruptModel") from err
    if not isinstance(data, dict):
        raise ModelError(f"{path} must hold a JSON object", "CorruptModel")
    return data


def verify_files(model_dir: Path, metadata: dict[str, Any]) -> None:
    """Check every file metadata.json lists against its recorded sha256."""
    files = metadata.get("files") or {}
    if not isinstance(files, dict):
        raise ModelError("metadata.json 'files' must be an object", "CorruptModel")
    for fname, info in files.items():
        path = model_dir / fname
        if not path.is_file():
            raise ModelError(
                f"{fname} is listed in metadata.json but missing from {model_dir}",
                "ModelNotFound" if fname == MODEL_FILE else "CorruptModel",
            )
        expected = info.get("sha256") if isinstance(info, dict) else None
        if expected and file_sha256(path) != expected:
            raise ModelError(
                f"{fname} does not match the sha256 recorded in metadata.json "
                "(incomplete copy or modified export)",
                "CorruptModel",
            )


def merge_metadata(sig: Signature, metadata: dict[str, Any]) -> Signature:
    """Pure: add labels/calibration/name from metadata; refuse a signature that disagrees."""
    declared = [i.get("name") for i in metadata.get("inputs") or [] if isinstance(i, dict)]
    actual = [t.name for t in sig.inputs]
    if declared and declared != actual:
        raise ModelError(
            f"metadata.json describes inputs {declared} but model.onnx has {actual}",
            "CorruptModel",
        )
    calibration = metadata.get("calibration")
    cal_file = calibration.get("file") if isinstance(calibration, dict) else None
    dynamic = dict(sig.dynamic_axes)
    for tensor, axes in (metadata.get("dynamicAxes") or {}).items():
        if isinstance(axes, dict):
            declared_axes = {str(k): str(v) for k, v in axes.items()}
            dynamic[tensor] = {**declared_axes, **dynamic.get(tensor, {})}
    return Signature(
        name=str(metadata.get("name") or sig.name),
        inputs=sig.inputs,
        outputs=sig.outputs,
        dynamic_axes=dynamic,
        labels=tuple(str(label) for label in metadata.get("labels") or ()),
        calibration_file=str(cal_file) if cal_file else None,
        metadata=metadata,
    )


def load_onnx(path: Path) -> onnx.ModelProto:
    """Load and check an ONNX file, turning every parse failure into a clear ModelError."""
    if not path.is_file():
        raise ModelError(f"no {path.name} in {path.parent}", "ModelNotFound")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(str(path))
    except Exception as err:  # onnx raises DecodeError, ValidationError, OSError, ...
        first_line = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise ModelError(
            f"{path} is not a valid ONNX model: {first_line[:200]}", "CorruptModel"
        ) from err
    return model


def read_signature(model_dir: Path, name: str | None = None) -> Signature:
    """Signature of `<model_dir>/model.onnx`, merged with metadata.json when present."""
    if not model_dir.is_dir():
        raise ModelError(f"model directory {model_dir} does not exist", "ModelNotFound")
    metadata = _read_metadata(model_dir)
    if metadata is not None:
        verify_files(model_dir, metadata)
    model = load_onnx(model_dir / MODEL_FILE)
    sig = signature_from_onnx(model, name or model.graph.name or "model")
    if metadata is not None:
        sig = merge_metadata(sig, metadata)
    if name:
        sig = dataclasses.replace(sig, name=name)
    return sig
