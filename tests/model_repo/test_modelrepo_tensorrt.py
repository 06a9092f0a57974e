"""The TensorRT builder: pure recipe parts and a type check here, real builds on GPU machines.

The `gpu` tests skip with the reason when TensorRT, cuda-python or a CUDA device is
missing (they need no torch: device memory goes through cuda-python).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from model_repo import quantize
from model_repo.accuracy import reference_outputs
from model_repo.errors import ModelError
from model_repo.samples import plan_samples, real_rows
from model_repo.shapes import build_profile
from model_repo.signature import read_signature
from model_repo.tensorrt_build import (
    build_engine,
    builder_flags,
    check_version,
    measure_plan,
    tensorrt_available,
)

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
        assert (site / rel).is_file(), (
            f"tensorrt-stubs is incomplete ({rel} missing): run `make venv`"
        )
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


@pytest.mark.parametrize(
    ("precision", "on", "off"),
    [
        ("fp32", (), ("TF32",)),  # the last rung is real fp32, not TensorRT's default TF32
        ("fp16", ("FP16",), ()),
        ("int8", ("INT8", "FP16"), ()),
        ("fp8", ("FP8", "FP16"), ()),
    ],
)
def test_builder_flags(precision: str, on: tuple[str, ...], off: tuple[str, ...]) -> None:
    assert builder_flags(precision) == (on, off)


@pytest.mark.parametrize(
    ("expected", "actual", "ok"),
    [
        (None, "10.3.0.26", True),
        ("10.3.0", "10.3.0.26", True),
        ("10.3", "10.3.0.26", True),
        ("10.3.0", "10.4.0.26", False),
        ("10.3.0.30", "10.3.0.26", False),
    ],
)
def test_tensorrt_version_must_match_the_serving_triton(
    expected: str | None, actual: str, ok: bool
) -> None:
    if ok:
        check_version(expected, actual)
    else:
        with pytest.raises(ModelError, match="loads only on the version that built it"):
            check_version(expected, actual)


def _gpu_or_skip() -> None:
    available, reason = tensorrt_available()
    if not available:
        pytest.skip(reason)


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16", "int8", "fp8"])
def test_tensorrt_builds_gated_engines(tmp_path: Path, digits_export: Path, precision: str) -> None:
    """Build → run with cuda-python buffers → compare, with the gate's batches (max 8)."""
    _gpu_or_skip()
    sig = read_signature(digits_export)
    rows = real_rows(sig, digits_export)
    profile = build_profile(sig, 8)
    plan = plan_samples(sig, rows, 64, profile)
    reference = reference_outputs(digits_export / "model.onnx", plan.gate, sig.batched)
    source = digits_export / "model.onnx"
    if precision in quantize.QUANTIZED:
        source = tmp_path / "qdq.onnx"
        quantize.quantize(
            digits_export / "model.onnx", source, precision, plan.calibration, profile, tmp_path
        )
    engine = tmp_path / f"{precision}.plan"
    try:
        build_engine(source, engine, precision, sig, profile)
    except ModelError as err:
        if precision == "fp8":
            pytest.skip(f"fp8 is not buildable here: {err}")
        raise
    result = measure_plan(precision, engine, sig, reference, plan.gate, profile)
    assert engine.stat().st_size > 0
    assert result.samples == 64  # 8 batches of 8: nothing past the profile's max
    assert np.isfinite(result.max_abs_diff)
    assert result.top1_agreement is not None
