"""Gate and calibration samples: real rows first, random ones within their range after."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from model_repo.errors import ModelError
from model_repo.samples import build_samples, load_calibration
from model_repo.signature import Signature, TensorSpec

SIG = Signature(
    name="m",
    inputs=(TensorSpec("input", "float32", (-1, 1, 8, 8)), TensorSpec("ids", "int64", (-1, -1))),
    outputs=(TensorSpec("y", "float32", (-1, 10)),),
    dynamic_axes={},
)


def test_calibration_rows_first_then_random_within_their_range() -> None:
    real = np.linspace(2.0, 3.0, 4 * 64, dtype=np.float32).reshape(4, 1, 8, 8)
    samples = build_samples(SIG, 10, real)
    x = samples.arrays["input"]
    assert x.shape == (10, 1, 8, 8)
    np.testing.assert_array_equal(x[:4], real)
    assert x[4:].min() >= 2.0 and x[4:].max() <= 3.0
    assert samples.arrays["ids"].shape == (10, 1) and samples.arrays["ids"].dtype == np.int64
    assert (samples.real_count, samples.source) == (4, "calibration+random")


def test_random_only_and_feeds() -> None:
    samples = build_samples(SIG, 5, None)
    assert samples.source == "random"
    feeds = samples.feeds(batched=True, batch_size=2)
    assert [f["input"].shape[0] for f in feeds] == [2, 2, 1]
    unbatched = samples.feeds(batched=False, batch_size=2)
    assert len(unbatched) == 5 and unbatched[0]["input"].shape == (1, 8, 8)


def test_calibration_file_with_the_wrong_shape(tmp_path: Path) -> None:
    np.save(tmp_path / "calibration.npy", np.zeros((3, 8, 8), dtype=np.float32))
    with pytest.raises(ModelError, match=r"has shape \[3, 8, 8\], expected \[N, 1, 8, 8\]"):
        load_calibration(tmp_path / "calibration.npy", SIG.inputs[0])
    (tmp_path / "bad.npy").write_bytes(b"not numpy")
    with pytest.raises(ModelError, match=r"is not a readable \.npy array"):
        load_calibration(tmp_path / "bad.npy", SIG.inputs[0])
