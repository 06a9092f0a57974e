"""Engine cache: a built (and measured) model, keyed on everything that makes it valid.

An engine is only reusable for the same source model, the same engine kind and version
(a TensorRT plan loads only on the TensorRT version that built it), the same device —
compute capability *and* GPU product, because H100 and H200 are both sm_90 but TensorRT
picks tactics for the exact chip —, the same builder recipe (flags Gantry sets; bumped when
they change), precision, shape profile and, for quantized precisions, the same calibration
data. The entry also records the gate's measurements, so a hit
skips both the build and the measurement: the thresholds are re-applied to the recorded
numbers, which keeps a threshold change from needing a rebuild.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import platform
import shutil
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from model_repo.shapes import ShapeProfile

__all__ = ["CacheEntry", "CacheKeyParts", "EngineCache", "ShapeProfile", "cache_key", "cpu_device"]

RESULT_FILE = "result.json"


@dataclass(frozen=True)
class CacheKeyParts:
    model_digest: str
    engine: str  # "tensorrt" | "onnxruntime"
    engine_version: str
    device: str  # "sm_90" or "cpu-x86_64"
    precision: str
    profile: ShapeProfile = field(default_factory=lambda: ShapeProfile(1, 1, 1))
    gpu_product: str = ""  # e.g. "NVIDIA-H200" (the nvidia.com/gpu.product label); "" on CPU
    recipe: str = ""  # builder recipe version: which flags and passes produced the artifact
    calibration_digest: str = ""  # sha256 of the calibration samples; "" when none were used


def cpu_device() -> str:
    return f"cpu-{platform.machine() or 'unknown'}"


def cache_key(parts: CacheKeyParts) -> str:
    """Pure: sha256 over a canonical JSON of every component."""
    canonical = json.dumps(
        {**asdict(parts), "profile": parts.profile.to_json()}, sort_keys=True, separators=(",", ":")
    )
    return hashlib.sha256(canonical.encode()).hexdigest()


@dataclass(frozen=True)
class CacheEntry:
    key: str
    model_path: Path
    result: dict[str, Any]


class EngineCache:
    """`<root>/<key>/model.{plan,onnx}` + `result.json`; entries appear atomically."""

    def __init__(self, root: Path) -> None:
        self.root = root

    def lookup(self, key: str) -> CacheEntry | None:
        entry = self.root / key
        result_path = entry / RESULT_FILE
        if not result_path.is_file():
            return None
        try:
            result = json.loads(result_path.read_text())
        except (OSError, json.JSONDecodeError):
            return None  # a damaged entry is a miss; store() will replace it
        if not isinstance(result, dict) or not result.get("modelFile"):
            return None
        model = entry / str(result["modelFile"])
        if not model.is_file():
            return None
        return CacheEntry(key, model, result)

    def store(self, key: str, model_file: Path, result: Mapping[str, Any]) -> CacheEntry:
        """Copy the model in and write result.json, then publish the entry with one rename.

        Two optimize Jobs racing for the same key both build; the first rename wins and
        the second keeps the winner's entry (same inputs, equivalent engine).
        """
        self.root.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{key[:12]}-", dir=self.root))
        try:
            shutil.copyfile(model_file, staging / model_file.name)
            payload = {**result, "modelFile": model_file.name, "key": key}
            (staging / RESULT_FILE).write_text(json.dumps(payload, indent=2, sort_keys=True))
            final = self.root / key
            if final.exists():
                shutil.rmtree(final, ignore_errors=True)
            with contextlib.suppress(OSError):  # another writer published first
                os.rename(staging, final)
        finally:
            if staging.exists():
                shutil.rmtree(staging, ignore_errors=True)
        entry = self.lookup(key)
        if entry is None:
            raise OSError(f"engine cache entry {self.root / key} could not be written")
        return entry

    def update_result(self, key: str, result: Mapping[str, Any]) -> None:
        """Rewrite result.json atomically (e.g. after re-measuring with more samples)."""
        entry = self.root / key
        tmp = entry / f".{RESULT_FILE}.tmp"
        tmp.write_text(json.dumps(dict(result), indent=2, sort_keys=True))
        os.replace(tmp, entry / RESULT_FILE)
