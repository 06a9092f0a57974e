"""The optimize CLI end to end on the CPU path: real ONNX Runtime builds, gate and cache."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from model_repo import pipeline
from model_repo.accuracy import AccuracyResult
from model_repo.errors import ModelError
from model_repo.optimize import REPORT_LIMIT, compact, main
from model_repo.tensorrt_build import tensorrt_available
from model_repo.triton_config import parse_config
from tests.model_repo.model_testkit import tiny_onnx

pytestmark = pytest.mark.slow


def optimize(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    model_dir: Path | str,
    *extra: str,
    name: str = "digits",
) -> tuple[int, dict[str, Any]]:
    report = tmp_path / "termination-log"
    code = main(
        [
            "--model-dir",
            str(model_dir),
            "--repository",
            str(tmp_path / "repo"),
            "--name",
            name,
            "--max-batch-size",
            "64",
            "--cache-dir",
            str(tmp_path / "cache"),
            "--samples",
            "64",
            "--report",
            str(report),
            *extra,
        ]
    )
    printed = capsys.readouterr().out.strip()
    assert report.read_text() == printed
    assert len(printed.encode()) < REPORT_LIMIT
    return code, json.loads(printed)


def test_int8_passes_with_numbers_then_hits_the_cache(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, digits_export: Path
) -> None:
    code, report = optimize(
        capsys, tmp_path, digits_export, "--precision", "int8", "--backend", "python"
    )
    assert code == 0, report
    assert (report["servedPrecision"], report["cacheHit"], report["version"]) == ("int8", False, 1)
    numbers = report["accuracy"]["int8"]
    assert 0 < numbers["maxAbsDiff"] <= 0.01
    assert numbers["top1Agreement"] >= 0.99
    # 64 real rows: 32 calibrate, the other 32 (plus random fill) are the gate's
    assert report["samples"] == {
        "count": 64,
        "source": "calibration+random",
        "calibration": {"count": 32, "source": "calibration"},
    }
    assert report["reason"].startswith("int8 passed the accuracy gate (max |Δ| ")
    assert report["digest"].startswith("sha256:")
    entry = tmp_path / "cache" / report["cacheKey"]
    built = {p.name: p.stat().st_mtime_ns for p in entry.iterdir()}
    version_dir = tmp_path / "repo" / "digits" / "1"
    assert sorted(p.name for p in version_dir.iterdir()) == ["model.onnx", "model.py"]
    served_mtime = (version_dir / "model.onnx").stat().st_mtime_ns

    code, again = optimize(
        capsys, tmp_path, digits_export, "--precision", "int8", "--backend", "python"
    )
    assert code == 0
    assert (again["cacheHit"], again["cacheKey"], again["version"]) == (True, report["cacheKey"], 1)
    assert again["accuracy"] == report["accuracy"]  # recorded numbers, not a re-measurement
    assert "build" not in again["durationsSeconds"] and "gate" not in again["durationsSeconds"]
    assert {p.name: p.stat().st_mtime_ns for p in entry.iterdir()} == built
    assert (version_dir / "model.onnx").stat().st_mtime_ns == served_mtime


def test_forced_failure_falls_back_then_fails_outright(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, digits_export: Path
) -> None:
    code, report = optimize(
        capsys,
        tmp_path,
        digits_export,
        "--precision",
        "int8",
        "--backend",
        "onnxruntime_onnx",
        "--max-abs-diff",
        "1e-7",
    )
    assert code == 0, report
    assert report["servedPrecision"] == "fp32"
    assert set(report["accuracy"]) == {"int8", "fp16", "fp32"}
    assert report["accuracy"]["fp16"]["maxAbsDiff"] > 1e-7
    assert report["reason"].startswith("int8 failed the accuracy gate (max |Δ| ")
    assert "fp16 failed the accuracy gate" in report["reason"]
    assert report["reason"].endswith("serving fp32 (the fp32 reference)")
    config = parse_config((tmp_path / "repo" / "digits" / "config.pbtxt").read_text())
    assert config.platform == "onnxruntime_onnx"
    assert (tmp_path / "repo" / "digits" / "1" / "model.onnx").is_file()

    # Relaxing the bound serves fp16 straight from the cache: the thresholds are re-applied
    # to the recorded numbers, nothing is rebuilt; a new build is a new version.
    code, relaxed = optimize(
        capsys, tmp_path, digits_export, "--precision", "fp16", "--backend", "onnxruntime_onnx"
    )
    assert code == 0
    assert (relaxed["servedPrecision"], relaxed["cacheHit"]) == ("fp16", True)
    assert relaxed["version"] == 2


def test_fp8_on_cpu_serves_fp16_with_the_reason(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, digits_export: Path
) -> None:
    code, report = optimize(
        capsys, tmp_path, digits_export, "--precision", "fp8", "--backend", "python"
    )
    assert code == 0, report
    assert report["servedPrecision"] == "fp16"
    assert report["reason"].startswith("fp8 is not available on CPU")
    assert "serving fp16 (max |Δ| " in report["reason"]


def test_bare_onnx_uses_random_samples(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, digits_export: Path
) -> None:
    bare = tmp_path / "bare"
    bare.mkdir()
    shutil.copyfile(digits_export / "model.onnx", bare / "model.onnx")
    code, report = optimize(
        capsys, tmp_path, bare, "--precision", "int8", "--backend", "python", name="bare"
    )
    assert code == 0, report
    assert report["samples"]["source"] == "random"
    assert report["servedPrecision"] in {"int8", "fp16"}


def test_tensorrt_unavailable_is_a_clear_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    available, why = tensorrt_available()
    if available:
        pytest.skip("TensorRT and a GPU are here: the error path cannot be shown")
    model = tiny_onnx(tmp_path / "m" / "model.onnx").parent
    code, report = optimize(capsys, tmp_path, model, "--backend", "tensorrt_plan", "--kind", "gpu")
    assert code == 2
    assert set(report) == {"error", "reason"}
    assert report["reason"] == "Unsupported"
    assert "needs TensorRT" in report["error"] or "CUDA" in report["error"], why


def test_unexpected_exception_becomes_a_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    def broken(req: object) -> dict[str, Any]:
        raise KeyError("profile")

    monkeypatch.setattr("model_repo.optimize.run", broken)
    model = tiny_onnx(tmp_path / "m" / "model.onnx").parent
    code, report = optimize(capsys, tmp_path, model, "--backend", "python")
    assert code == 1
    assert report["reason"] == "InternalError"
    assert report["error"].startswith("unexpected KeyError in test_modelrepo_optimize.py:")
    assert "'profile'" in report["error"]


def test_unbatched_model_is_gated_sample_by_sample(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    model = tiny_onnx(tmp_path / "m" / "model.onnx", batch=2).parent  # fixed [2, 4]: no batch
    code, report = optimize(
        capsys, tmp_path, model, "--backend", "onnxruntime_onnx", "--precision", "int8"
    )
    assert code == 0, report
    assert report["samples"]["count"] == 64
    assert report["servedPrecision"] in {"int8", "fp16"}
    config = parse_config((tmp_path / "repo" / "digits" / "config.pbtxt").read_text())
    assert config.max_batch_size == 0 and list(config.input[0].dims) == [2, 4]


@pytest.mark.parametrize(
    ("model", "reason", "message"),
    [
        ("missing", "ModelNotFound", "does not exist"),
        ("http://example.com/m", "StorageError", "unsupported storage URI scheme 'http'"),
        ("pvc://claim/models/x", "ModelNotFound", "is not available at"),
    ],
)
def test_errors_exit_2_with_one_line_report(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, model: str, reason: str, message: str
) -> None:
    target = str(tmp_path / model) if model == "missing" else model
    code, report = optimize(
        capsys, tmp_path, target, "--backend", "python", "--pvc-root", str(tmp_path / "pvc")
    )
    assert code == 2
    assert report["reason"] == reason
    assert message in report["error"]
    assert set(report) == {"error", "reason"}


def test_gate_failure_reports_numbers(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With ONNX Runtime fp32 is the reference and always passes; an engine whose every
    precision is measured (as TensorRT's) can fail outright: emulate one."""

    def measure_badly(self: object, precision: str, *args: object) -> AccuracyResult:
        return AccuracyResult(precision, 0.5, 0.1, 0.5, 64)

    monkeypatch.setattr(pipeline._Engine, "measure", measure_badly)
    model = tiny_onnx(tmp_path / "m" / "model.onnx").parent
    code, report = optimize(
        capsys, tmp_path, model, "--backend", "python", "--precision", "fp16", name="tiny"
    )
    assert code == 2
    assert report["reason"] == "AccuracyGateFailed"
    assert "no precision passed the accuracy gate" in report["error"]
    assert "fp16" in report["accuracy"]


def test_report_is_kept_under_the_termination_message_limit() -> None:
    report = {"name": "m", "reason": "x" * 5000, "accuracy": {"a": 1}, "durationsSeconds": {}}
    text = compact(report)
    assert len(text.encode()) <= REPORT_LIMIT
    assert json.loads(text)["name"] == "m"


def test_a_precision_that_cannot_be_built_falls_back(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    digits_export: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real_build = pipeline.ort_optimize.build

    def build(src: Path, dst: Path, precision: str, *args: Any) -> None:
        if precision == "int8":
            raise ModelError("no INT8 kernels for this op", "Unsupported")
        real_build(src, dst, precision, *args)

    monkeypatch.setattr(pipeline.ort_optimize, "build", build)
    code, report = optimize(
        capsys,
        tmp_path,
        digits_export,
        "--precision",
        "int8",
        "--backend",
        "python",
        "--intra-op-threads",
        "2",
    )
    assert code == 0, report
    assert report["servedPrecision"] == "fp16"
    assert report["reason"].startswith("int8 could not be built (no INT8 kernels for this op)")
    config = parse_config((tmp_path / "repo" / "digits" / "config.pbtxt").read_text())
    assert config.parameters["intra_op_threads"].string_value == "2"


def test_a_model_that_is_not_the_one_its_training_job_recorded_is_refused(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    import hashlib

    model = tiny_onnx(tmp_path / "m" / "model.onnx").parent
    actual = hashlib.sha256((model / "model.onnx").read_bytes()).hexdigest()
    code, report = optimize(
        capsys, tmp_path, model, "--backend", "python", "--expect-sha256", "0" * 64, name="tiny"
    )
    assert code == 2 and report["reason"] == "DigestMismatch"
    assert "is not the file its TrainingJob exported" in report["error"]
    code, report = optimize(
        capsys, tmp_path, model, "--backend", "python", "--expect-sha256", f"sha256:{actual}",
        name="tiny",
    )  # fmt: skip
    assert code == 0, report
