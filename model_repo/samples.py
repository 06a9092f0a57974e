"""Input samples for calibration and for the accuracy gate, kept disjoint.

Real samples (the training runtime's `calibration.npy`) come first because quantization
ranges and accuracy measured on real data are what matter. They are split: the first
half calibrates, the rest is measured by the gate, so the gate never scores a model on
the very rows its quantization ranges were fitted to. Random samples fill in (drawn within
the real samples' range when there are any, from different seeds for the two sets) so a
bare ONNX still gets a calibration and a gate.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from model_repo.errors import ModelError
from model_repo.shapes import ShapeProfile, sample_dims
from model_repo.signature import Signature, TensorSpec

CALIBRATION_MAX = 128  # real rows used for calibration at most (the rest go to the gate)
CALIBRATION_RANDOM = 32  # random calibration samples when the export ships none
_CALIBRATION_SEED_OFFSET = 1_000_003  # random calibration rows never repeat gate rows


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

    def digest(self) -> str:
        """sha256 over names, dtypes, shapes and bytes: what the cache keys calibration on."""
        h = hashlib.sha256()
        for name in sorted(self.arrays):
            arr = np.ascontiguousarray(self.arrays[name])
            h.update(f"{name}:{arr.dtype.str}:{arr.shape};".encode())
            h.update(arr.tobytes())
        return h.hexdigest()

    def feeds(self, batched: bool, batch_size: int) -> list[dict[str, np.ndarray]]:
        """Model feeds: slices of `batch_size` rows, or one declared-shape sample per feed."""
        if not batched:
            return [{k: v[i] for k, v in self.arrays.items()} for i in range(self.count)]
        return [
            {k: v[i : i + batch_size] for k, v in self.arrays.items()}
            for i in range(0, self.count, batch_size)
        ]


def load_calibration(path: Path, spec: TensorSpec, batched: bool | None = None) -> np.ndarray:
    """Real rows for `spec`: shape [N, *one sample] (batched: the batch axis is N)."""
    try:
        data = np.asarray(np.load(path, allow_pickle=False))
    except (OSError, ValueError) as err:
        message = f"{path.name} is not a readable .npy array: {err}"
        raise ModelError(message, "CorruptModel") from err
    batched = spec.batched if batched is None else batched
    expected = spec.shape[1:] if batched else spec.shape
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


@dataclass(frozen=True)
class SamplePlan:
    """Disjoint sample sets: `calibration` fits quantization ranges, `gate` is measured."""

    calibration: SampleSet
    gate: SampleSet


def _default_profile(sig: Signature) -> ShapeProfile:
    return ShapeProfile(1, 1, 1, batched=sig.batched)


def build_samples(
    sig: Signature,
    count: int,
    calibration: np.ndarray | None,
    seed: int = 0,
    profile: ShapeProfile | None = None,
    value_range: tuple[float, float] | None = None,
) -> SampleSet:
    """`count` samples per input: real rows for the first input, random for the rest.

    Random samples take the profile's optimum for dynamic axes; when real rows exist,
    every input's sample shape follows theirs where the profile has no say.
    """
    if count < 1:
        raise ModelError("the number of samples must be at least 1", "Unsupported")
    profile = profile or _default_profile(sig)
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    real = 0
    low, high = value_range or _value_range(calibration)
    for index, spec in enumerate(sig.inputs):
        if index == 0 and calibration is not None and len(calibration) > 0:
            real = min(count, len(calibration))
            head = calibration[:real]
            rest = _random(spec, (count - real, *head.shape[1:]), rng, low, high)
            arrays[spec.name] = np.concatenate([head, rest]) if real < count else head
        else:
            arrays[spec.name] = _random(spec, (count, *sample_dims(spec, profile)), rng, low, high)
    return SampleSet(arrays=arrays, real_count=real)


def _value_range(rows: np.ndarray | None) -> tuple[float, float]:
    if rows is None or len(rows) == 0:
        return 0.0, 1.0
    return float(np.min(rows)), float(np.max(rows))


def split_real(rows: np.ndarray | None) -> tuple[np.ndarray | None, np.ndarray | None]:
    """Pure: (calibration rows, gate rows), disjoint — half each, calibration capped."""
    if rows is None or len(rows) == 0:
        return None, None
    cut = min((len(rows) + 1) // 2, CALIBRATION_MAX)
    gate = rows[cut:]
    return rows[:cut], gate if len(gate) else None


def plan_samples(
    sig: Signature,
    rows: np.ndarray | None,
    gate_count: int,
    profile: ShapeProfile | None = None,
    seed: int = 0,
) -> SamplePlan:
    """Calibration and gate samples that share no row."""
    cal_rows, gate_rows = split_real(rows)
    cal_count = len(cal_rows) if cal_rows is not None else CALIBRATION_RANDOM
    span = _value_range(rows)
    calibration = build_samples(
        sig, cal_count, cal_rows, seed + _CALIBRATION_SEED_OFFSET, profile, span
    )
    gate = build_samples(sig, gate_count, gate_rows, seed, profile, span)
    return SamplePlan(calibration, gate)


def real_rows(sig: Signature, model_dir: Path) -> np.ndarray | None:
    """The export's real samples for the first input, when it ships any."""
    if sig.calibration_file and (model_dir / sig.calibration_file).is_file():
        return load_calibration(model_dir / sig.calibration_file, sig.inputs[0], sig.batched)
    if (model_dir / "calibration.npy").is_file():
        return load_calibration(model_dir / "calibration.npy", sig.inputs[0], sig.batched)
    return None


def known_sizes(sig: Signature, rows: np.ndarray | None) -> dict[str, int]:
    """dim_param → size, read from the real rows of the first input (e.g. {"seq": 128})."""
    if rows is None or not sig.inputs:
        return {}
    spec = sig.inputs[0]
    first = 1 if sig.batched else 0
    sizes: dict[str, int] = {}
    for axis, param in sig.dynamic_axes.get(spec.name, {}).items():
        index = int(axis) - first + 1  # position in rows, whose axis 0 is the sample axis
        if int(axis) >= first and 0 < index < rows.ndim:
            sizes[param] = int(rows.shape[index])
    return sizes
