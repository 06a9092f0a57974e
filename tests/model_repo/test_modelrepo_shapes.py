"""Shape profiles, gate and calibration batches, and disjoint samples (pure, table-driven)."""

from __future__ import annotations

import numpy as np
import pytest

from model_repo.errors import ModelError
from model_repo.samples import CALIBRATION_MAX, plan_samples, split_real
from model_repo.shapes import (
    DYNAMIC_AXIS_MAX,
    AxisRange,
    ShapeProfile,
    axis_ranges,
    build_profile,
    calibration_profile,
    gate_batch_size,
    profile_shapes,
    sample_dims,
)
from model_repo.signature import Signature, TensorSpec

IMAGES = Signature(
    name="cnn",
    inputs=(TensorSpec("input", "float32", (-1, 1, 8, 8)),),
    outputs=(TensorSpec("logits", "float32", (-1, 10)),),
    dynamic_axes={"input": {"0": "batch"}, "logits": {"0": "batch"}},
)
TOKENS = Signature(
    name="encoder",
    inputs=(
        TensorSpec("ids", "int64", (-1, -1)),
        TensorSpec("mask", "int64", (-1, -1)),
    ),
    outputs=(TensorSpec("pooled", "float32", (-1, 16)),),
    dynamic_axes={
        "ids": {"0": "batch", "1": "seq"},
        "mask": {"0": "batch", "1": "seq"},
        "pooled": {"0": "batch"},
    },
)
UNBATCHED = Signature(
    name="fixed",
    inputs=(TensorSpec("x", "float32", (3, 4)),),
    outputs=(TensorSpec("y", "float32", (3, 2)),),
    dynamic_axes={},
)


@pytest.mark.parametrize(
    ("max_batch", "preferred", "expected"),
    [
        (8, (), (1, 8, 8)),
        (64, (8, 16), (1, 16, 64)),
        (8, (4, 16), (1, 4, 8)),  # a preferred size above the max is ignored
        (1, (), (1, 1, 1)),
    ],
)
def test_build_profile_spans_one_to_max_batch(
    max_batch: int, preferred: tuple[int, ...], expected: tuple[int, int, int]
) -> None:
    p = build_profile(IMAGES, max_batch, preferred)
    assert (p.min_batch, p.opt_batch, p.max_batch) == expected
    assert gate_batch_size(p) == max_batch  # the gate never sends more than the engine takes
    assert profile_shapes(IMAGES.inputs[0], p) == (
        (1, 1, 8, 8),
        (expected[1], 1, 8, 8),
        (max_batch, 1, 8, 8),
    )


def test_dynamic_sequence_axis_gets_a_range_not_a_pin() -> None:
    """config.pbtxt says -1 for the sequence axis, so the engine must take more than one size."""
    ranges = axis_ranges(TOKENS, known_sizes={"seq": 48})
    assert ranges == (
        AxisRange("ids", 1, 1, 48, DYNAMIC_AXIS_MAX),
        AxisRange("mask", 1, 1, 48, DYNAMIC_AXIS_MAX),
    )
    p = build_profile(TOKENS, 8, ranges=ranges)
    assert profile_shapes(TOKENS.inputs[1], p) == ((1, 1), (8, 48), (8, DYNAMIC_AXIS_MAX))
    assert sample_dims(TOKENS.inputs[0], p) == (48,)  # samples sit at the optimum


def test_declared_ranges_win_and_bad_ones_are_refused() -> None:
    declared = {"ids": {"1": [16, 128, 512]}}
    ranges = axis_ranges(TOKENS, declared, known_sizes={"seq": 48})
    assert ranges[0] == AxisRange("ids", 1, 16, 128, 512)
    assert ranges[1] == AxisRange("mask", 1, 1, 48, DYNAMIC_AXIS_MAX)
    with pytest.raises(
        ModelError, match=r"dynamicAxisRanges\[ids\]\[1\] must be \[min, opt, max\]"
    ):
        axis_ranges(TOKENS, {"ids": {"1": [128, 16, 512]}})


def test_unbatched_model_has_no_batch_axis_anywhere() -> None:
    p = build_profile(UNBATCHED, 64)
    assert not p.batched
    assert gate_batch_size(p) == 1
    assert profile_shapes(UNBATCHED.inputs[0], p) == ((3, 4), (3, 4), (3, 4))
    gate = plan_samples(UNBATCHED, None, 5, p).gate
    feeds = gate.feeds(p.batched, gate_batch_size(p))
    assert len(feeds) == 5 and feeds[0]["x"].shape == (3, 4)  # the declared shape, no batch


def test_unbatched_model_with_a_dynamic_leading_axis_ranges_it() -> None:
    sig = Signature(
        name="seq",
        inputs=(TensorSpec("x", "float32", (-1, 4)),),
        outputs=(TensorSpec("y", "float32", (4,)),),  # no batch axis on the output
        dynamic_axes={"x": {"0": "n"}},
    )
    p = build_profile(sig, 8, ranges=axis_ranges(sig))
    assert not p.batched
    assert profile_shapes(sig.inputs[0], p) == ((1, 4), (1, 4), (DYNAMIC_AXIS_MAX, 4))


@pytest.mark.parametrize(
    ("max_batch", "samples", "batch"),
    [(8, 64, 8), (8, 5, 5), (64, 32, 32), (1, 3, 1)],
)
def test_calibration_profile_is_separate_and_sized_to_the_samples(
    max_batch: int, samples: int, batch: int
) -> None:
    ranges = (AxisRange("ids", 1, 1, 48, 256), AxisRange("mask", 1, 1, 48, 256))
    build = build_profile(TOKENS, max_batch, ranges=ranges)
    cal = calibration_profile(build, samples)
    assert (cal.min_batch, cal.opt_batch, cal.max_batch) == (batch, batch, batch)
    assert cal.other_axes == (AxisRange("ids", 1, 48, 48, 48), AxisRange("mask", 1, 48, 48, 48))
    assert build.max_batch == max_batch and build.other_axes == ranges  # build profile intact
    assert cal.max_batch <= samples  # never reads past the calibration data


def test_calibration_profile_of_an_unbatched_model_and_of_no_samples() -> None:
    assert calibration_profile(build_profile(UNBATCHED, 8), 10) == ShapeProfile(
        1, 1, 1, batched=False
    )
    with pytest.raises(ModelError, match="at least one sample"):
        calibration_profile(build_profile(IMAGES, 8), 0)


@pytest.mark.parametrize(
    ("rows", "calibration", "gate"),
    [(0, 0, 0), (1, 1, 0), (2, 1, 1), (64, 32, 32), (65, 33, 32), (1000, CALIBRATION_MAX, 872)],
)
def test_split_real_rows_is_disjoint(rows: int, calibration: int, gate: int) -> None:
    data = np.arange(rows, dtype=np.float32).reshape(rows, 1) if rows else None
    cal, gate_rows = split_real(data)
    assert (0 if cal is None else len(cal)) == calibration
    assert (0 if gate_rows is None else len(gate_rows)) == gate
    if cal is not None and gate_rows is not None:
        assert not set(cal.ravel()) & set(gate_rows.ravel())


@pytest.mark.parametrize("rows", [None, 1, 64])
def test_calibration_and_gate_samples_share_no_row(rows: int | None) -> None:
    real = None
    if rows:
        real = np.random.default_rng(7).random((rows, 1, 8, 8), dtype=np.float32)
    plan = plan_samples(IMAGES, real, 48, build_profile(IMAGES, 8))
    cal = {row.tobytes() for row in plan.calibration.arrays["input"]}
    gate = {row.tobytes() for row in plan.gate.arrays["input"]}
    assert plan.gate.count == 48
    assert plan.calibration.count >= 1
    assert not cal & gate
    assert plan.calibration.digest() != plan.gate.digest()
    if rows == 64:
        assert (plan.calibration.source, plan.calibration.count) == ("calibration", 32)
        assert (plan.gate.real_count, plan.gate.source) == (32, "calibration+random")
