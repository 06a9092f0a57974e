"""Accuracy gate: measurements and decisions (pure, table-driven)."""

from __future__ import annotations

import numpy as np
import pytest

from model_repo.accuracy import AccuracyResult, Thresholds, compare, decide, precision_ladder
from model_repo.gpu import GpuInfo

T = Thresholds(max_abs_diff=0.01, min_top1_agreement=0.99)


def r(
    precision: str, max_abs: float, top1: float | None = 1.0, ref: bool = False
) -> AccuracyResult:
    return AccuracyResult(precision, max_abs, max_abs / 10, top1, 256, ref)


@pytest.mark.parametrize(
    ("requested", "engine", "ladder", "notes"),
    [
        ("int8", "onnxruntime", ["int8", "fp16", "fp32"], []),
        ("fp8", "tensorrt", ["fp8", "fp16", "fp32"], []),
        ("fp8", "onnxruntime", ["fp16", "fp32"], ["fp8 is not available on CPU"]),
        ("fp16", "tensorrt", ["fp16", "fp32"], []),
        ("fp32", "tensorrt", ["fp32"], []),
    ],
)
def test_precision_ladder(requested: str, engine: str, ladder: list[str], notes: list[str]) -> None:
    got_ladder, got_notes = precision_ladder(requested, engine)
    assert got_ladder == ladder
    assert len(got_notes) == len(notes)
    assert all(n in g for n, g in zip(notes, got_notes, strict=True))


@pytest.mark.parametrize(
    ("gpu", "ladder", "note"),
    [
        (GpuInfo("NVIDIA H200", 9, 0), ["fp8", "fp16", "fp32"], None),
        (GpuInfo("NVIDIA L4", 8, 9), ["fp8", "fp16", "fp32"], None),
        (
            GpuInfo("NVIDIA A100-SXM4-80GB", 8, 0),
            ["fp16", "fp32"],
            "fp8 needs compute capability ≥ 8.9 (this GPU, NVIDIA A100-SXM4-80GB, is sm_80)",
        ),
    ],
)
def test_fp8_only_where_the_gpu_has_it(gpu: GpuInfo, ladder: list[str], note: str | None) -> None:
    got_ladder, notes = precision_ladder("fp8", "tensorrt", gpu)
    assert got_ladder == ladder
    assert notes == ([note] if note else [])


def test_unknown_precision() -> None:
    with pytest.raises(ValueError, match="unknown precision 'int4'"):
        precision_ladder("int4", "tensorrt")


@pytest.mark.parametrize(
    ("results", "ladder", "passed", "served", "reason"),
    [
        pytest.param(
            [r("int8", 0.004, 1.0)],
            ["int8", "fp16", "fp32"],
            True,
            "int8",
            "int8 passed the accuracy gate (max |Δ| 0.004, top-1 1.000)",
            id="pass",
        ),
        pytest.param(
            [r("int8", 0.043, 0.984), r("fp16", 0.0004, 1.0)],
            ["int8", "fp16", "fp32"],
            True,
            "fp16",
            "int8 failed the accuracy gate (max |Δ| 0.043 > 0.01, top-1 agreement 0.984 < "
            "0.99); serving fp16 (max |Δ| 0.0004, top-1 1.000)",
            id="fall-back-to-fp16",
        ),
        pytest.param(
            [r("int8", 0.5), r("fp16", 0.02), r("fp32", 0.0, ref=True)],
            ["int8", "fp16", "fp32"],
            True,
            "fp32",
            "int8 failed the accuracy gate (max |Δ| 0.5 > 0.01); fp16 failed the accuracy "
            "gate (max |Δ| 0.02 > 0.01); serving fp32 (the fp32 reference)",
            id="fall-back-to-reference",
        ),
        pytest.param(
            [r("fp8", 0.5), r("fp16", 0.02), r("fp32", 0.011)],
            ["fp8", "fp16", "fp32"],
            False,
            None,
            "fp8 failed the accuracy gate (max |Δ| 0.5 > 0.01); fp16 failed the accuracy gate "
            "(max |Δ| 0.02 > 0.01); fp32 failed the accuracy gate (max |Δ| 0.011 > 0.01); "
            "no precision passed the accuracy gate",
            id="tensorrt-fp32-measured-and-fails",
        ),
        pytest.param(
            [r("fp16", 0.001, None)],
            ["fp16", "fp32"],
            True,
            "fp16",
            "fp16 passed the accuracy gate (max |Δ| 0.001)",
            id="regression-output",
        ),
        pytest.param(
            [r("int8", 0.001, 0.9)],
            ["int8", "fp16", "fp32"],
            False,
            None,
            "int8 failed the accuracy gate (top-1 agreement 0.900 < 0.99); fp16 was not "
            "measured; no precision passed the accuracy gate",
            id="unmeasured-rung-never-trusted",
        ),
    ],
)
def test_decide(
    results: list[AccuracyResult], ladder: list[str], passed: bool, served: str | None, reason: str
) -> None:
    decision = decide({x.precision: x for x in results}, T, ladder)
    assert (decision.passed, decision.served, decision.reason) == (passed, served, reason)
    assert decision.requested == ladder[0]
    assert [x.precision for x in decision.results] == [x.precision for x in results]


def test_decide_mentions_notes_first() -> None:
    decision = decide(
        {"fp16": r("fp16", 0.001)},
        T,
        ["fp16", "fp32"],
        notes=["fp8 is not available on CPU (ONNX Runtime has no fp8 kernels)"],
    )
    assert decision.reason.startswith("fp8 is not available on CPU")
    assert decision.reason.endswith("serving fp16 (max |Δ| 0.001, top-1 1.000)")


def test_compare_measures_diff_and_top1() -> None:
    ref = {"logits": np.array([[0.0, 1.0, 0.5], [2.0, 0.0, 0.1]], dtype=np.float32)}
    cand = {"logits": np.array([[0.0, 0.9, 0.95], [2.0, 0.0, 0.1]], dtype=np.float32)}
    got = compare("int8", ref, cand)
    assert got.max_abs_diff == pytest.approx(0.45)
    assert got.mean_abs_diff == pytest.approx(0.55 / 6)
    assert got.top1_agreement == 0.5
    assert got.samples == 2


def test_compare_nan_is_infinitely_off_and_non_classifier_has_no_top1() -> None:
    ref = {"y": np.zeros((4, 1), dtype=np.float32)}
    got = compare("fp16", ref, {"y": np.full((4, 1), np.nan, dtype=np.float32)})
    assert got.max_abs_diff == float("inf")
    assert got.top1_agreement is None


def test_compare_rejects_shape_mismatch() -> None:
    with pytest.raises(ValueError, match="shape"):
        compare("fp16", {"y": np.zeros((2, 3))}, {"y": np.zeros((3, 3))})


def test_result_json_round_trip() -> None:
    x = r("int8", 0.004, 0.996)
    assert AccuracyResult.from_json("int8", x.to_json()) == x
