"""``metadata.json``: the contract between training and the model-repository builder.

Its presence means an export is complete (it is written last); ``read_metadata``
checks a document's shape so a consumer fails with a precise message, not a KeyError.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

__all__ = [
    "FORMAT_VERSION",
    "METADATA_FILE",
    "MetadataError",
    "build_metadata",
    "read_metadata",
    "validate_metadata",
]

FORMAT_VERSION = 1
METADATA_FILE = "metadata.json"
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_DTYPES = frozenset(
    {
        "bool",
        "uint8",
        "uint16",
        "uint32",
        "uint64",
        "int8",
        "int16",
        "int32",
        "int64",
        "float16",
        "bfloat16",
        "float32",
        "float64",
        "complex64",
        "complex128",
    }
)


class MetadataError(ValueError):
    """A metadata document is missing, unreadable or not of the expected shape."""


def build_metadata(
    *,
    name: str,
    inputs: Sequence[Mapping[str, Any]],
    outputs: Sequence[Mapping[str, Any]],
    dynamic_axes: Mapping[str, Mapping[str, str]],
    labels: Sequence[str] | None,
    files: Mapping[str, Mapping[str, Any]],
    calibration: Mapping[str, Any] | None,
    metrics: Mapping[str, float],
    framework: Mapping[str, Any],
    created_at: str,
) -> dict[str, Any]:
    """Assemble (and validate) the document; optional parts are ``null``, never absent."""
    document: dict[str, Any] = {
        "formatVersion": FORMAT_VERSION,
        "name": name,
        "inputs": [dict(spec) for spec in inputs],
        "outputs": [dict(spec) for spec in outputs],
        "dynamicAxes": {k: dict(v) for k, v in dynamic_axes.items()},
        "labels": list(labels) if labels is not None else None,
        "files": {k: dict(v) for k, v in files.items()},
        "calibration": dict(calibration) if calibration is not None else None,
        "metrics": dict(metrics),
        "framework": dict(framework),
        "createdAt": created_at,
    }
    return validate_metadata(document)


def _require(condition: bool, message: str) -> None:
    if not condition:
        raise MetadataError(f"invalid metadata: {message}")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _check_tensors(document: Mapping[str, Any], key: str) -> list[str]:
    specs = document.get(key)
    if not isinstance(specs, list) or not specs:
        raise MetadataError(f"invalid metadata: '{key}' must be a non-empty list")
    names: list[str] = []
    for index, spec in enumerate(specs):
        where = f"{key}[{index}]"
        _require(isinstance(spec, dict), f"{where} must be an object")
        _require(isinstance(spec.get("name"), str) and spec["name"] != "", f"{where}.name missing")
        _require(
            spec.get("dtype") in _DTYPES,
            f"{where}.dtype {spec.get('dtype')!r} is not a numpy dtype name",
        )
        shape = spec.get("shape")
        _require(
            isinstance(shape, list) and all(_is_int(d) and (d == -1 or d >= 0) for d in shape),
            f"{where}.shape must be a list of sizes (-1 for dynamic)",
        )
        names.append(spec["name"])
    return names


def validate_metadata(document: Any) -> dict[str, Any]:
    """Return ``document`` if it has the metadata shape, else raise ``MetadataError``."""
    if not isinstance(document, dict):
        raise MetadataError("invalid metadata: top level must be an object")
    _require(
        document.get("formatVersion") == FORMAT_VERSION,
        f"formatVersion must be {FORMAT_VERSION}, got {document.get('formatVersion')!r}",
    )
    _require(isinstance(document.get("name"), str) and document["name"] != "", "'name' missing")
    tensor_names = _check_tensors(document, "inputs") + _check_tensors(document, "outputs")
    axes = document.get("dynamicAxes")
    if not isinstance(axes, dict):
        raise MetadataError("invalid metadata: 'dynamicAxes' must be an object")
    for tensor, dims in axes.items():
        _require(tensor in tensor_names, f"dynamicAxes names unknown tensor {tensor!r}")
        _require(
            isinstance(dims, dict)
            and all(k.isdigit() and isinstance(v, str) for k, v in dims.items()),
            f"dynamicAxes[{tensor!r}] must map dimension indices to names",
        )
    labels = document.get("labels")
    _require(
        labels is None or (isinstance(labels, list) and all(isinstance(x, str) for x in labels)),
        "'labels' must be null or a list of strings",
    )
    files = document.get("files")
    if not isinstance(files, dict) or not files:
        raise MetadataError("invalid metadata: 'files' must be a non-empty object")
    for file_name, entry in files.items():
        _require(
            isinstance(entry, dict)
            and isinstance(entry.get("sha256"), str)
            and _SHA256.match(entry["sha256"]) is not None
            and _is_int(entry.get("bytes"))
            and entry["bytes"] >= 0,
            f"files[{file_name!r}] needs a lowercase hex 'sha256' and a 'bytes' count",
        )
    calibration = document.get("calibration")
    if calibration is not None:
        _require(
            isinstance(calibration, dict)
            and calibration.get("file") in files
            and _is_int(calibration.get("count"))
            and calibration["count"] > 0,
            "'calibration' must be null or {file: <one of files>, count: >0}",
        )
    metrics = document.get("metrics")
    _require(
        isinstance(metrics, dict) and all(_is_number(v) for v in metrics.values()),
        "'metrics' must map names to numbers",
    )
    _require(isinstance(document.get("framework"), dict), "'framework' must be an object")
    _require(isinstance(document.get("createdAt"), str), "'createdAt' must be a timestamp string")
    return document


def read_metadata(path: str | Path) -> dict[str, Any]:
    """Load and validate ``metadata.json`` (``path`` may be the file or its directory)."""
    file = Path(path)
    if file.is_dir():
        file = file / METADATA_FILE
    try:
        text = file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise MetadataError(f"{file} does not exist (export incomplete?)") from None
    except OSError as exc:
        raise MetadataError(f"cannot read {file}: {exc.strerror}") from None
    try:
        document = json.loads(text)
    except json.JSONDecodeError as exc:
        raise MetadataError(f"{file} is not valid JSON: {exc}") from None
    return validate_metadata(document)
