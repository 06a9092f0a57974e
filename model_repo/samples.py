"""Input samples for calibration and for the accuracy gate.

Real samples (the training runtime's `calibration.npy`) come first because quantization
ranges and accuracy measured on real data are what matter; random samples fill in (drawn
within the real samples' range when there are any) so a bare ONNX still gets a gate.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_repo.errors import ModelError
from model_repo.signature import Signature, TensorSpec

DYNAMIC_DIM_DEFAULT = 1  # size used for dynamic non-batch dims when no real sample says


@dataclass(frozen=True)
class SampleSet:
    """One array per input name, all with the same leading (sample) dimension."""

    arrays: dict[str, np.ndarray]
    real_count: int  # how many samples came from calibration data

    @property
    def count(self) -> int:
        return next(iter(self.arrays.values())).shape[0] if self.arrays else 0

    @property
    def source(self) -> str:
        if self.real_count == 0:
            return "random"
        return "calibration" if self.real_count == self.count else "calibration+random"

    def feeds(self, batched: bool, batch_size: int) -> list[dict[str, np.ndarray]]:
        """Model feeds: slices of `batch_size` rows, or one declared-shape sample per feed."""
        if not batched:
            return [{k: v[i] for k, v in self.arrays.items()} for i in range(self.count)]
        return [
            {k: v[i : i + batch_size] for k, v in self.arrays.items()}
            for i in range(0, self.count, batch_size)
        ]


def sample_shape(spec: TensorSpec) -> tuple[int, ...]:
    """Shape of one sample (batch dim dropped when batched); dynamic dims get a default."""
    dims = spec.shape[1:] if spec.batched else spec.shape
    return tuple(d if d > 0 else DYNAMIC_DIM_DEFAULT for d in dims)


def load_calibration(path: Path, spec: TensorSpec) -> np.ndarray:
    try:
        data = np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as err:
        message = f"{path.name} is not a readable .npy array: {err}"
        raise ModelError(message, "CorruptModel") from err
    expected = spec.shape[1:] if spec.batched else spec.shape
    if data.ndim != len(expected) + 1 or any(
        e > 0 and e != a for e, a in zip(expected, data.shape[1:], strict=True)
    ):
        raise ModelError(
            f"{path.name} has shape {list(data.shape)}, expected [N, "
            f"{', '.join(str(d) for d in expected)}] for input '{spec.name}'",
            "CorruptModel",
        )
    return data.astype(spec.dtype, copy=False)


def _random(
    spec: TensorSpec, shape: tuple[int, ...], rng: np.random.Generator, low: float, high: float
) -> np.ndarray:
    dtype = np.dtype(spec.dtype)
    if dtype.kind == "f":
        return rng.uniform(low, high, size=shape).astype(dtype)
    if dtype.kind in "iu":
        return rng.integers(int(low), max(int(high), int(low) + 1), size=shape).astype(dtype)
    if dtype.kind == "b":
        return rng.integers(0, 2, size=shape).astype(dtype)
    raise ModelError(
        f"cannot make samples for input '{spec.name}' of dtype {spec.dtype}", "Unsupported"
    )


def build_samples(
    sig: Signature, count: int, calibration: np.ndarray | None, seed: int = 0
) -> SampleSet:
    """`count` samples per input: calibration rows for the first input, random for the rest."""
    if count < 1:
        raise ModelError("the number of samples must be at least 1", "Unsupported")
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    real = 0
    for index, spec in enumerate(sig.inputs):
        low, high = 0.0, 1.0
        if index == 0 and calibration is not None and len(calibration) > 0:
            real = min(count, len(calibration))
            head = calibration[:real]
            low, high = float(np.min(calibration)), float(np.max(calibration))
            rest = _random(spec, (count - real, *head.shape[1:]), rng, low, high)
            arrays[spec.name] = np.concatenate([head, rest]) if real < count else head
        else:
            arrays[spec.name] = _random(spec, (count, *sample_shape(spec)), rng, low, high)
    return SampleSet(arrays=arrays, real_count=real)


def model_samples(sig: Signature, model_dir: Path, count: int, seed: int = 0) -> SampleSet:
    """Samples for a model directory: its calibration file when present, random otherwise."""
    calibration = None
    if sig.calibration_file and (model_dir / sig.calibration_file).is_file():
        calibration = load_calibration(model_dir / sig.calibration_file, sig.inputs[0])
    elif (model_dir / "calibration.npy").is_file():
        calibration = load_calibration(model_dir / "calibration.npy", sig.inputs[0])
    return build_samples(sig, count, calibration, seed)
