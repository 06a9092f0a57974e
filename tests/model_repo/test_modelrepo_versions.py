"""Version numbering in the Triton model repository."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from model_repo.repository import choose_version, publish
from model_repo.signature import read_signature
from model_repo.triton_config import ServingOptions, parse_config
from tests.model_repo.model_testkit import tiny_onnx


@pytest.mark.parametrize(
    ("known", "dirs", "digest", "key", "expected"),
    [
        ({}, set(), "d1", "k1", (1, False)),
        ({1: {"modelDigest": "d1", "buildKey": "k1"}}, {1}, "d1", "k1", (1, True)),
        ({1: {"modelDigest": "d1", "buildKey": "k1"}}, {1}, "d2", "k1", (2, False)),
        ({1: {"modelDigest": "d1", "buildKey": "k1"}}, {1}, "d1", "k2", (2, False)),
        # going back to an older build needs a higher number: Triton serves the latest
        (
            {1: {"modelDigest": "d1", "buildKey": "k1"}, 2: {"modelDigest": "d2", "buildKey": "k"}},
            {1, 2},
            "d1",
            "k1",
            (3, False),
        ),
        ({1: {"modelDigest": "d1", "buildKey": "k1"}}, set(), "d1", "k1", (2, False)),
        ({}, {4}, "d1", "k1", (5, False)),
    ],
    ids=["first", "same", "new-digest", "new-build", "back-to-old", "dir-gone", "stray-dir"],
)
def test_choose_version(
    known: dict[int, dict[str, str]],
    dirs: set[int],
    digest: str,
    key: str,
    expected: tuple[int, bool],
) -> None:
    assert choose_version(known, dirs, digest, key) == expected


def test_publish_layout_and_idempotence(tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "src" / "model.onnx")
    sig = read_signature(model.parent, name="tiny")
    repo = tmp_path / "repo"
    opts = ServingOptions("python", 8)
    first = publish(repo, sig, opts, model, "d1", "k1")
    assert (first.version, first.reused) == (1, False)
    assert sorted(p.name for p in (repo / "tiny" / "1").iterdir()) == ["model.onnx", "model.py"]
    assert parse_config((repo / "tiny" / "config.pbtxt").read_text()).name == "tiny"
    again = publish(repo, sig, opts, model, "d1", "k1")
    assert (again.version, again.reused) == (1, True)
    newer = publish(repo, sig, ServingOptions("onnxruntime_onnx", 8), model, "d2", "k2")
    assert newer.version == 2
    assert sorted(p.name for p in (repo / "tiny" / "2").iterdir()) == ["model.onnx"]
    versions = json.loads((repo / "tiny" / "versions.json").read_text())["versions"]
    assert {v: info["modelDigest"] for v, info in versions.items()} == {"1": "d1", "2": "d2"}
    assert not [p for p in (repo / "tiny").iterdir() if p.name.startswith(".")]


def test_plan_file_name(tmp_path: Path) -> None:
    model = tiny_onnx(tmp_path / "src" / "model.onnx")
    plan = tmp_path / "model.plan"
    plan.write_bytes(b"serialized engine")
    sig = read_signature(model.parent, name="trt")
    published = publish(tmp_path / "repo", sig, ServingOptions("tensorrt_plan", 4), plan, "d", "k")
    assert (published.model_dir / "1" / "model.plan").read_bytes() == b"serialized engine"
