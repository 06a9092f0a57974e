"""export_model and metadata.json: files, checksums, shape, and ONNX == PyTorch."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest
import torch
from torch import nn

from training_jobs import (
    DistributedContext,
    ExportError,
    MetadataError,
    export_model,
    read_metadata,
)
from training_jobs.metadata import validate_metadata

SINGLE = DistributedContext(
    rank=0, local_rank=0, world_size=1, device=torch.device("cpu"), backend=None, is_main=True
)


class TinyCNN(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(1, 4, 3, padding=1)
        self.head = nn.Linear(4 * 8 * 8, 10)
        self.drop = nn.Dropout(0.5)  # eval mode must be used for export

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out: torch.Tensor = self.head(self.drop(torch.relu(self.conv(x))).flatten(1))
        return out


class FixedBatch(TinyCNN):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch = int(x.shape[0])  # a Python int: tracing bakes the example's batch in
        out: torch.Tensor = self.head(torch.relu(self.conv(x)).reshape(batch, -1))
        return out


@pytest.fixture(scope="module")
def exported(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, nn.Module]:
    """One export shared by the read-only checks below."""
    tmp_path = tmp_path_factory.mktemp("export")
    torch.manual_seed(0)
    model = TinyCNN().train()
    samples = torch.rand(600, 1, 8, 8)
    out = export_model(
        model,
        samples[:4],
        tmp_path / "out",
        labels=[str(i) for i in range(10)],
        calibration_samples=samples,
        metrics={"test_accuracy": 0.97},
        name="tiny-cnn",
        context=SINGLE,
    )
    assert out == tmp_path / "out"
    assert model.training, "the caller's model is left as it was"
    return out, model.eval()


def test_writes_the_files_with_matching_checksums(exported: tuple[Path, nn.Module]) -> None:
    out, _ = exported
    assert sorted(p.name for p in out.iterdir()) == [
        "calibration.npy",
        "metadata.json",
        "model.onnx",
        "model.pt",
    ]
    meta = read_metadata(out)
    assert set(meta["files"]) == {"model.onnx", "model.pt", "calibration.npy"}
    for name, entry in meta["files"].items():
        data = (out / name).read_bytes()
        assert entry == {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}


def test_metadata_has_the_agreed_shape(exported: tuple[Path, nn.Module]) -> None:
    out, _ = exported
    meta = json.loads((out / "metadata.json").read_text())
    assert list(meta) == [
        "formatVersion",
        "name",
        "inputs",
        "outputs",
        "dynamicAxes",
        "labels",
        "files",
        "calibration",
        "metrics",
        "framework",
        "createdAt",
    ]
    assert meta["formatVersion"] == 1 and meta["name"] == "tiny-cnn"
    assert meta["inputs"] == [{"name": "input", "dtype": "float32", "shape": [-1, 1, 8, 8]}]
    assert meta["outputs"] == [{"name": "logits", "dtype": "float32", "shape": [-1, 10]}]
    assert meta["dynamicAxes"] == {"input": {"0": "batch"}, "logits": {"0": "batch"}}
    assert meta["labels"] == [str(i) for i in range(10)]
    assert meta["calibration"] == {"file": "calibration.npy", "count": 512}
    assert meta["metrics"] == {"test_accuracy": 0.97}
    assert meta["framework"]["torch"] == torch.__version__.split("+")[0]
    assert meta["framework"]["onnxOpset"] == 17
    assert set(meta["framework"]) == {"torch", "onnx", "onnxOpset", "python"}
    assert meta["createdAt"].endswith("Z")


def test_calibration_holds_real_samples_as_float32(exported: tuple[Path, nn.Module]) -> None:
    out, _ = exported
    calibration = np.load(out / "calibration.npy")
    assert calibration.dtype == np.float32 and calibration.shape == (512, 1, 8, 8)


@pytest.mark.parametrize("batch", [1, 7])
def test_onnx_and_torchscript_match_torch_at_any_batch(
    exported: tuple[Path, nn.Module], batch: int
) -> None:
    out, model = exported
    x = torch.rand(batch, 1, 8, 8)
    with torch.no_grad():
        expected = model(x).numpy()
    session = ort.InferenceSession(str(out / "model.onnx"), providers=["CPUExecutionProvider"])
    (onnx_out,) = session.run(["logits"], {"input": x.numpy()})
    assert onnx_out.shape == (batch, 10)
    assert np.abs(onnx_out - expected).max() <= 1e-4
    scripted = torch.jit.load(str(out / "model.pt"))  # type: ignore[no-untyped-call]
    with torch.no_grad():
        assert np.abs(scripted(x).numpy() - expected).max() <= 1e-4


def test_model_that_fails_at_another_batch_is_refused(tmp_path: Path) -> None:
    class Broken(TinyCNN):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.head(torch.relu(self.conv(x)).reshape(4, -1))  # type: ignore[no-any-return]

    with pytest.raises(ExportError, match="the model fails on a batch of 5"):
        export_model(Broken(), torch.rand(4, 1, 8, 8), tmp_path, context=SINGLE)


def test_hard_coded_batch_fails_verification_and_leaves_no_metadata(tmp_path: Path) -> None:
    (tmp_path / "metadata.json").write_text("{}")  # from an earlier export
    with pytest.raises(ExportError, match="batch of 5"):
        export_model(FixedBatch(), torch.rand(4, 1, 8, 8), tmp_path, context=SINGLE)
    assert not (tmp_path / "metadata.json").exists()
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())


def test_only_rank_zero_exports(tmp_path: Path) -> None:
    worker = DistributedContext(
        rank=1,
        local_rank=1,
        world_size=2,
        device=torch.device("cpu"),
        backend="gloo",
        is_main=False,
    )
    assert export_model(TinyCNN(), torch.rand(2, 1, 8, 8), tmp_path / "o", context=worker) is None
    assert not (tmp_path / "o").exists()


def test_output_dir_defaults_to_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GANTRY_OUTPUT_DIR", str(tmp_path / "env-out"))
    monkeypatch.setenv("GANTRY_JOB_NAME", "my-job")
    export_model(TinyCNN(), torch.rand(2, 1, 8, 8), context=SINGLE)
    meta = read_metadata(tmp_path / "env-out" / "metadata.json")
    assert meta["name"] == "my-job" and meta["labels"] is None and meta["calibration"] is None
    assert set(meta["files"]) == {"model.onnx", "model.pt"}


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"labels": ["a", "b"]}, "2 labels for an output with 10 classes"),
        ({"calibration_samples": np.zeros((3, 8, 8))}, "calibration samples have shape"),
        ({"input_names": ("a", "b")}, "1 example inputs but 2 input_names"),
        ({"output_names": ()}, "returns 1 outputs but 0 output_names"),
    ],
)
def test_bad_arguments_are_clear_errors(
    tmp_path: Path, kwargs: dict[str, object], message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        export_model(TinyCNN(), torch.rand(2, 1, 8, 8), tmp_path, context=SINGLE, **kwargs)  # type: ignore[arg-type]


def test_missing_output_dir_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GANTRY_OUTPUT_DIR", raising=False)
    with pytest.raises(ValueError, match="GANTRY_OUTPUT_DIR"):
        export_model(TinyCNN(), torch.rand(2, 1, 8, 8), context=SINGLE)


def test_read_metadata_reports_what_is_wrong(
    tmp_path: Path, exported: tuple[Path, nn.Module]
) -> None:
    with pytest.raises(MetadataError, match="does not exist"):
        read_metadata(tmp_path / "nowhere")
    broken = tmp_path / "broken.json"
    broken.write_text("{not json")
    with pytest.raises(MetadataError, match="not valid JSON"):
        read_metadata(broken)
    good = read_metadata(exported[0])
    cases: list[tuple[Callable[[dict[str, Any]], object], str]] = [
        (lambda m: m.update(formatVersion=2), "formatVersion must be 1"),
        (lambda m: m["inputs"][0].update(dtype="float"), "not a numpy dtype name"),
        (lambda m: m["outputs"][0].update(shape=[-2, 10]), "shape must be a list"),
        (lambda m: m["files"]["model.onnx"].update(sha256="xyz"), "needs a lowercase hex"),
        (lambda m: m.update(calibration={"file": "other.npy", "count": 1}), "calibration"),
        (lambda m: m["dynamicAxes"].update(ghost={"0": "batch"}), "unknown tensor 'ghost'"),
        (lambda m: m.update(labels=[1, 2]), "labels"),
        (lambda m: m.pop("metrics"), "metrics"),
    ]
    for mutate, message in cases:
        doc = json.loads(json.dumps(good))
        mutate(doc)
        with pytest.raises(MetadataError, match=message):
            validate_metadata(doc)
