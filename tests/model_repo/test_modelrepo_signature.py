"""Reading the model signature from ONNX (+ metadata.json) and the errors users see."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from model_repo.errors import ModelError
from model_repo.signature import TensorSpec, read_signature
from tests.model_repo.model_testkit import tiny_onnx, write_metadata


def test_exported_model_signature_merges_metadata(digits_export: Path) -> None:
    sig = read_signature(digits_export)
    assert sig.name == "digits-cnn"
    assert sig.inputs == (TensorSpec("input", "float32", (-1, 1, 8, 8)),)
    assert sig.outputs == (TensorSpec("logits", "float32", (-1, 10)),)
    assert sig.dynamic_axes["input"] == {"0": "batch"}
    assert sig.labels == tuple(str(i) for i in range(10))
    assert sig.calibration_file == "calibration.npy"
    assert sig.batched


def test_bare_onnx_without_metadata(tmp_path: Path) -> None:
    tiny_onnx(tmp_path / "model.onnx")
    sig = read_signature(tmp_path, name="tiny")
    assert sig.name == "tiny"
    assert sig.inputs == (TensorSpec("x", "float32", (-1, 4)),)
    assert sig.labels == ()
    assert sig.calibration_file is None


def test_fixed_batch_model_is_not_batched(tmp_path: Path) -> None:
    tiny_onnx(tmp_path / "model.onnx", batch=1)
    sig = read_signature(tmp_path)
    assert sig.inputs[0].shape == (1, 4)
    assert not sig.batched


def test_name_argument_overrides_metadata(digits_export: Path) -> None:
    assert read_signature(digits_export, name="served-name").name == "served-name"


@pytest.mark.parametrize(
    ("prepare", "reason", "message"),
    [
        (lambda d: None, "ModelNotFound", "no model.onnx"),
        (
            lambda d: (d / "model.onnx").write_bytes(b"\x00garbage\xff" * 10),
            "CorruptModel",
            "is not a valid ONNX model",
        ),
        (lambda d: tiny_onnx(d / "model.onnx", inputs=False), "CorruptModel", "declares no inputs"),
        (
            lambda d: (d / "metadata.json").write_text("{not json"),
            "CorruptModel",
            "is not valid JSON",
        ),
    ],
    ids=["missing", "corrupt", "no-inputs", "bad-metadata"],
)
def test_clear_errors(
    tmp_path: Path, prepare: Callable[[Path], object], reason: str, message: str
) -> None:
    prepare(tmp_path)
    with pytest.raises(ModelError, match=message) as err:
        read_signature(tmp_path)
    assert err.value.reason == reason


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist") as err:
        read_signature(tmp_path / "nowhere")
    assert err.value.reason == "ModelNotFound"


def test_sha256_mismatch_is_reported(digits_dir: Path) -> None:
    metadata = json.loads((digits_dir / "metadata.json").read_text())
    metadata["files"]["model.onnx"]["sha256"] = "0" * 64
    (digits_dir / "metadata.json").write_text(json.dumps(metadata))
    with pytest.raises(ModelError, match="does not match the sha256") as err:
        read_signature(digits_dir)
    assert err.value.reason == "CorruptModel"


def test_listed_file_missing(digits_dir: Path) -> None:
    (digits_dir / "calibration.npy").unlink()
    with pytest.raises(
        ModelError, match=r"calibration\.npy is listed in metadata\.json but missing"
    ):
        read_signature(digits_dir)


def test_metadata_that_disagrees_with_the_graph(digits_dir: Path) -> None:
    write_metadata(digits_dir, name="x", inputs=[{"name": "pixels", "dtype": "float32"}])
    with pytest.raises(ModelError, match=r"describes inputs \['pixels'\] but model.onnx has"):
        read_signature(digits_dir)
