"""Export a trained model for serving: ONNX + TorchScript + calibration samples + metadata.

Every file is written atomically and ``metadata.json`` last, so a consumer that sees
the metadata sees a complete, verified export (ONNX Runtime output checked against
PyTorch, also at a second batch size to prove the batch axis is really dynamic).
"""

from __future__ import annotations

import copy
import io
import json
import logging
import math
import os
import platform
import re
import warnings
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.jit._trace import TracerWarning

from training_jobs._files import atomic_path, atomic_write, atomic_write_bytes, sha256_file
from training_jobs.checkpoint import unwrap_model
from training_jobs.distributed import DistributedContext, current_rank
from training_jobs.logs import ensure_configured
from training_jobs.metadata import METADATA_FILE, build_metadata
from training_jobs.progress import rfc3339

__all__ = ["ExportError", "export_model"]

OUTPUT_DIR_ENV = "GANTRY_OUTPUT_DIR"
ONNX_FILE = "model.onnx"
TORCHSCRIPT_FILE = "model.pt"
CALIBRATION_FILE = "calibration.npy"
MAX_CALIBRATION_SAMPLES = 512

log = logging.getLogger(__name__)

_DTYPE_NAMES = {
    torch.float32: "float32",
    torch.float64: "float64",
    torch.float16: "float16",
    torch.bfloat16: "bfloat16",
    torch.int8: "int8",
    torch.int16: "int16",
    torch.int32: "int32",
    torch.int64: "int64",
    torch.uint8: "uint8",
    torch.bool: "bool",
}


class ExportError(RuntimeError):
    """The model could not be exported, or the export does not reproduce the model."""


TensorLike = torch.Tensor | np.ndarray[Any, Any]


def _as_tuple(value: Any, what: str) -> tuple[torch.Tensor, ...]:
    items = tuple(value) if isinstance(value, list | tuple) else (value,)
    if not items or not all(isinstance(t, torch.Tensor) for t in items):
        raise TypeError(f"{what} must be a tensor or a tuple of tensors")
    return items


def _dtype_name(dtype: torch.dtype) -> str:
    return _DTYPE_NAMES.get(dtype) or str(dtype).removeprefix("torch.")


def _spec(name: str, tensor: torch.Tensor) -> dict[str, Any]:
    shape = [-1, *tensor.shape[1:]] if tensor.dim() > 0 else []
    return {"name": name, "dtype": _dtype_name(tensor.dtype), "shape": [int(d) for d in shape]}


def _default_name(model: nn.Module) -> str:
    job = os.environ.get("GANTRY_JOB_NAME")
    if job:
        return job
    words = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", type(model).__name__)
    return words.lower()


def _max_abs_diff(
    expected: Sequence[torch.Tensor], actual: Sequence[np.ndarray[Any, Any]]
) -> float:
    worst = 0.0
    for want, got in zip(expected, actual, strict=True):
        got_t = torch.from_numpy(np.asarray(got))
        if tuple(got_t.shape) != tuple(want.shape):
            return math.inf
        if want.numel():
            worst = max(worst, float((got_t.double() - want.double()).abs().max()))
    return worst


def _grown_batch(inputs: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    """The example batch plus one more row: a different batch size to test the axis."""
    return tuple(torch.cat([x, x[:1]]) for x in inputs)


def _reference(module: nn.Module, batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    try:
        with torch.no_grad():
            return _as_tuple(module(*batch), "the model's output")
    except RuntimeError as exc:
        raise ExportError(
            f"the model fails on a batch of {batch[0].shape[0]} (dimension 0 of every input "
            f"must be a free batch axis): {exc}"
        ) from exc


def _verify_onnx(
    path: Path,
    module: nn.Module,
    inputs: tuple[torch.Tensor, ...],
    input_names: Sequence[str],
    atol: float,
) -> None:
    import onnxruntime as ort

    try:
        session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:
        raise ExportError(f"ONNX Runtime cannot load the exported model: {exc}") from exc
    for batch in (inputs, _grown_batch(inputs)):
        expected = _reference(module, batch)
        feeds = {name: t.numpy() for name, t in zip(input_names, batch, strict=True)}
        try:
            actual = session.run(None, feeds)
        except Exception as exc:
            raise ExportError(
                f"the exported ONNX model fails on a batch of {batch[0].shape[0]}: {exc}"
            ) from exc
        diff = _max_abs_diff(expected, actual)
        if not diff <= atol:
            raise ExportError(
                f"ONNX Runtime output differs from PyTorch on a batch of {batch[0].shape[0]}: "
                f"max |diff| {diff:.3g} > {atol:g} (is the batch size hard-coded, or does the "
                "model behave differently in eval mode?)"
            )


def _verify_torchscript(
    traced: torch.jit.ScriptModule, module: nn.Module, inputs: tuple[torch.Tensor, ...], atol: float
) -> None:
    for batch in (inputs, _grown_batch(inputs)):
        expected = _reference(module, batch)
        with torch.no_grad():
            actual = _as_tuple(traced(*batch), "the traced model's output")
        diff = _max_abs_diff(expected, [t.numpy() for t in actual])
        if not diff <= atol:
            raise ExportError(
                f"TorchScript output differs from PyTorch on a batch of {batch[0].shape[0]}: "
                f"max |diff| {diff:.3g} > {atol:g}"
            )


def _calibration_array(
    samples: TensorLike, example: torch.Tensor, limit: int = MAX_CALIBRATION_SAMPLES
) -> np.ndarray[Any, Any]:
    array = (
        samples.detach().cpu().numpy() if isinstance(samples, torch.Tensor) else np.asarray(samples)
    )
    if array.ndim != example.dim() or tuple(array.shape[1:]) != tuple(example.shape[1:]):
        raise ValueError(
            f"calibration samples have shape {tuple(array.shape)}; expected (N, "
            f"{', '.join(str(d) for d in example.shape[1:])}) like the first input"
        )
    if array.shape[0] == 0:
        raise ValueError("calibration_samples is empty")
    return np.ascontiguousarray(array[:limit], dtype=np.float32)


def _clean_metrics(metrics: Mapping[str, float] | None) -> dict[str, float]:
    clean: dict[str, float] = {}
    for key, value in (metrics or {}).items():
        number = float(value)
        if math.isfinite(number):
            clean[str(key)] = number
        else:
            log.warning("metric %s=%s is not finite; left out of metadata.json", key, value)
    return clean


def export_model(
    model: nn.Module,
    example_input: torch.Tensor | Sequence[torch.Tensor],
    output_dir: str | os.PathLike[str] | None = None,
    *,
    input_names: Sequence[str] = ("input",),
    output_names: Sequence[str] = ("logits",),
    labels: Sequence[str] | None = None,
    calibration_samples: TensorLike | None = None,
    metrics: Mapping[str, float] | None = None,
    opset: int = 17,
    name: str | None = None,
    atol: float = 1e-4,
    context: DistributedContext | None = None,
) -> Path | None:
    """Write model.onnx, model.pt, calibration.npy (optional) and metadata.json.

    ``output_dir`` defaults to ``$GANTRY_OUTPUT_DIR``; dimension 0 of every input and
    output is the dynamic batch axis. Only rank 0 exports; other ranks return None at
    once. Returns the output directory. Raises ``ExportError`` if ONNX Runtime or
    TorchScript do not reproduce the model within ``atol``.
    """
    is_main = context.is_main if context is not None else current_rank() == 0
    if not is_main:
        return None
    import onnx  # here, not at module level: workers that never export skip the import

    ensure_configured()
    target = output_dir if output_dir is not None else os.environ.get(OUTPUT_DIR_ENV)
    if not target:
        raise ValueError(f"no output directory: pass output_dir or set {OUTPUT_DIR_ENV}")
    out = Path(target)
    inputs = tuple(t.detach().cpu() for t in _as_tuple(example_input, "example_input"))
    if len(input_names) != len(inputs):
        raise ValueError(f"{len(inputs)} example inputs but {len(input_names)} input_names")
    if inputs[0].dim() == 0 or inputs[0].shape[0] < 1:
        raise ValueError("example_input needs a batch dimension with at least one sample")

    module = copy.deepcopy(unwrap_model(model)).cpu().eval()
    with torch.no_grad():
        reference = _as_tuple(module(*inputs), "the model's output")
    if len(output_names) != len(reference):
        raise ValueError(
            f"the model returns {len(reference)} outputs but {len(output_names)} output_names"
        )
    if labels is not None and reference[0].shape[-1] != len(labels):
        raise ValueError(
            f"{len(labels)} labels for an output with {reference[0].shape[-1]} classes"
        )
    calibration = (
        _calibration_array(calibration_samples, inputs[0])
        if calibration_samples is not None
        else None
    )
    dynamic_axes = {n: {0: "batch"} for n in (*input_names, *output_names)}

    out.mkdir(parents=True, exist_ok=True)
    # A stale metadata.json would vouch for files about to be replaced.
    (out / METADATA_FILE).unlink(missing_ok=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.simplefilter("ignore", TracerWarning)
        with atomic_path(out / ONNX_FILE) as tmp:
            # The TorchScript-based exporter (dynamo=False): it honours `dynamic_axes` and
            # writes one self-contained file in well under a second; the default dynamo
            # exporter (which the training image also carries, via onnxscript, for user
            # scripts) takes seconds and splits weights into model.onnx.data by default.
            torch.onnx.export(
                module,
                inputs,
                str(tmp),
                input_names=list(input_names),
                output_names=list(output_names),
                dynamic_axes=dynamic_axes,
                opset_version=opset,
                dynamo=False,
            )
            _verify_onnx(tmp, module, inputs, input_names, atol)
        traced = torch.jit.trace(module, inputs, check_trace=False)  # type: ignore[no-untyped-call]
        _verify_torchscript(traced, module, inputs, atol)
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    atomic_write_bytes(out / TORCHSCRIPT_FILE, buffer.getvalue())
    written = [ONNX_FILE, TORCHSCRIPT_FILE]
    if calibration is not None:
        atomic_write(out / CALIBRATION_FILE, lambda fh: np.save(fh, calibration))
        written.append(CALIBRATION_FILE)

    files = {
        f: {"sha256": sha256_file(out / f), "bytes": (out / f).stat().st_size} for f in written
    }
    document = build_metadata(
        name=name or _default_name(unwrap_model(model)),
        inputs=[_spec(n, t) for n, t in zip(input_names, inputs, strict=True)],
        outputs=[_spec(n, t) for n, t in zip(output_names, reference, strict=True)],
        dynamic_axes={k: {str(a): v for a, v in axes.items()} for k, axes in dynamic_axes.items()},
        labels=[str(label) for label in labels] if labels is not None else None,
        files=files,
        calibration=(
            {"file": CALIBRATION_FILE, "count": int(calibration.shape[0])}
            if calibration is not None
            else None
        ),
        metrics=_clean_metrics(metrics),
        framework={
            "torch": torch.__version__.split("+")[0],
            "onnx": onnx.__version__,
            "onnxOpset": opset,
            "python": platform.python_version(),
        },
        created_at=rfc3339(datetime.now(UTC)),
    )
    atomic_write_bytes(out / METADATA_FILE, (json.dumps(document, indent=2) + "\n").encode())
    log.info("exported %s to %s (%s)", document["name"], out, ", ".join(written))
    return out
