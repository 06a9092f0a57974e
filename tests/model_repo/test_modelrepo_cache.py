"""Engine cache keys and the on-disk cache."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from model_repo.cache import CacheKeyParts, EngineCache, ShapeProfile, cache_key
from model_repo.shapes import AxisRange

TOKENS = AxisRange("tokens", 1, 1, 128, 256)
BASE = CacheKeyParts(
    model_digest="a" * 64,
    engine="tensorrt",
    engine_version="10.3.0.26",
    device="sm_90",
    precision="int8",
    profile=ShapeProfile(1, 16, 64, (TOKENS,)),
    gpu_product="NVIDIA-H200",
    recipe="trt-2",
    calibration_digest="c" * 64,
)


@pytest.mark.parametrize(
    "change",
    [
        {"model_digest": "b" * 64},
        {"engine": "onnxruntime"},
        {"engine_version": "10.4.0.26"},
        {"device": "sm_89"},
        {"precision": "fp16"},
        {"profile": ShapeProfile(2, 16, 64, (TOKENS,))},
        {"profile": ShapeProfile(1, 8, 64, (TOKENS,))},
        {"profile": ShapeProfile(1, 16, 32, (TOKENS,))},
        {"profile": ShapeProfile(1, 16, 64, (AxisRange("tokens", 1, 1, 128, 512),))},
        {"profile": ShapeProfile(1, 1, 1, (TOKENS,), batched=False)},
        {"gpu_product": "NVIDIA-H100-80GB-HBM3"},  # same sm_90, another chip
        {"recipe": "trt-3"},
        {"calibration_digest": "d" * 64},
    ],
    ids=[
        "digest",
        "engine",
        "version",
        "device",
        "precision",
        "min",
        "opt",
        "max",
        "axes",
        "unbatched",
        "gpu-product",
        "recipe",
        "calibration",
    ],
)
def test_every_component_changes_the_key(change: dict[str, object]) -> None:
    assert cache_key(dataclasses.replace(BASE, **change)) != cache_key(BASE)


def test_key_is_stable_and_hex() -> None:
    key = cache_key(BASE)
    assert key == cache_key(dataclasses.replace(BASE))
    assert len(key) == 64 and int(key, 16) >= 0


def test_store_then_lookup(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path / "cache")
    assert cache.lookup("k1") is None
    model = tmp_path / "model.plan"
    model.write_bytes(b"engine")
    entry = cache.store("k1", model, {"accuracy": {"maxAbsDiff": 0.1}})
    again = cache.lookup("k1")
    assert again is not None and again.model_path == entry.model_path
    assert again.model_path.read_bytes() == b"engine"
    assert again.result["accuracy"] == {"maxAbsDiff": 0.1}
    # nothing but the published entry is left behind (staging is renamed into place)
    assert [p.name for p in (tmp_path / "cache").iterdir()] == ["k1"]


def test_damaged_entry_is_a_miss_and_gets_replaced(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    (tmp_path / "k2").mkdir()
    (tmp_path / "k2" / "result.json").write_text("{half")
    assert cache.lookup("k2") is None
    model = tmp_path / "model.onnx"
    model.write_bytes(b"m")
    cache.store("k2", model, {})
    entry = cache.lookup("k2")
    assert entry is not None
    assert json.loads((tmp_path / "k2" / "result.json").read_text())["modelFile"] == "model.onnx"


def test_update_result(tmp_path: Path) -> None:
    cache = EngineCache(tmp_path)
    model = tmp_path / "model.onnx"
    model.write_bytes(b"m")
    cache.store("k3", model, {"accuracy": {"samples": 8}})
    cache.update_result("k3", {"modelFile": "model.onnx", "accuracy": {"samples": 64}})
    entry = cache.lookup("k3")
    assert entry is not None and entry.result["accuracy"] == {"samples": 64}
