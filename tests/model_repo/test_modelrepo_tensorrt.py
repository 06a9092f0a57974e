"""The TensorRT builder: type-checked against tensorrt-stubs here, built on GPU clusters."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_repo.accuracy import reference_outputs
from model_repo.cache import ShapeProfile
from model_repo.samples import model_samples
from model_repo.signature import read_signature
from model_repo.tensorrt_build import build_engine, measure_plan, tensorrt_available

REPO_ROOT = Path(__file__).resolve().parents[2]
_DEF = re.compile(r"^(\s*def \w+\()(.*)(\)\s*->.*:\s*)$")


def _split_params(text: str) -> list[str]:
    parts, depth, current = [], 0, ""
    for ch in text:
        depth += ch in "([{"
        depth -= ch in ")]}"
        if ch == "," and depth == 0:
            parts.append(current)
            current = ""
        else:
            current += ch
    return [*parts, current] if current.strip() else parts


def _repair_stub_line(line: str) -> str:
    """tensorrt-stubs is generated and has two syntax slips mypy cannot read past:
    parameters named `in`, and required parameters after defaulted ones."""
    match = _DEF.match(line)
    if not match:
        return line
    seen_default, params = False, []
    for param in _split_params(match.group(2)):
        param = re.sub(r"^(\s*)in(\s*:)", r"\1in_\2", param)
        if "=" in param:
            seen_default = True
        elif seen_default and not param.strip().startswith("*"):
            param += " = ..."
        params.append(param)
    return match.group(1) + ",".join(params) + match.group(3)


@pytest.mark.slow
def test_builder_type_checks_against_tensorrt_stubs(tmp_path: Path) -> None:
    """mypy --strict on tensorrt_build.py with the real TensorRT API types (not Any)."""
    import tensorrt_bindings  # noqa: F401  (the stubs' package: a namespace of .pyi files)

    site = Path(sys.modules["tensorrt_bindings"].__path__[0]).parent
    stubs = tmp_path / "stubs"
    for rel in (
        "tensorrt/__init__.pyi",
        "tensorrt_bindings/__init__.pyi",
        "tensorrt_bindings/tensorrt.pyi",
    ):
        if not (site / rel).is_file():
            pytest.skip(f"tensorrt-stubs is not installed ({rel} missing)")
        text = (site / rel).read_text().splitlines()
        (stubs / rel).parent.mkdir(parents=True, exist_ok=True)
        (stubs / rel).write_text("\n".join(_repair_stub_line(line) for line in text) + "\n")
    config = tmp_path / "mypy.ini"
    config.write_text(
        "[mypy]\nstrict = True\npython_version = 3.11\n"
        f"mypy_path = {stubs}:{REPO_ROOT}\ncache_dir = {tmp_path / 'cache'}\n"
        "[mypy-tensorrt_libs,onnx.*,onnxruntime.*,tritonclient.*,google.protobuf.*]\n"
        "ignore_missing_imports = True\n"
        "[mypy-tensorrt,tensorrt_bindings.*]\nignore_errors = True\n"
    )
    mypy = shutil.which("mypy", path=str(Path(sys.executable).parent)) or "mypy"
    result = subprocess.run(
        [mypy, "--config-file", str(config), str(REPO_ROOT / "model_repo" / "tensorrt_build.py")],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert result.returncode == 0, result.stdout[-4000:]


@pytest.mark.gpu
def test_tensorrt_builds_gated_engines(tmp_path: Path, digits_export: Path) -> None:
    available, reason = tensorrt_available()
    if not available:
        pytest.skip(reason)
    sig = read_signature(digits_export)
    samples = model_samples(sig, digits_export, 64)
    reference = reference_outputs(digits_export / "model.onnx", samples, sig.batched)
    for precision in ("fp32", "fp16", "int8"):
        plan = tmp_path / f"{precision}.plan"
        build_engine(
            digits_export / "model.onnx", plan, precision, sig, ShapeProfile(1, 16, 64), samples
        )
        result = measure_plan(precision, plan, sig, reference, samples, batch_size=16)
        assert plan.stat().st_size > 0
        assert np.isfinite(result.max_abs_diff)
        assert result.top1_agreement is not None
