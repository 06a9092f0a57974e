"""Shape profiles: which shapes an engine accepts, and which batches the gate and calibration use.

All pure. A TensorRT engine accepts exactly its optimization profile's range, so the
profile, the accuracy gate's batches and the calibration batches are derived here from the
same three facts — the service's `maxBatchSize`, the model's dynamic axes and how many
samples there are — instead of being hard-coded in three places that can disagree:

- the build profile spans batch 1…maxBatchSize and, for every dynamic non-batch axis (a
  sequence length, an image side), the range `metadata.json` declares under
  `dynamicAxisRanges` or 1…`DYNAMIC_AXIS_MAX`; `config.pbtxt` advertises -1 for those
  axes, so the engine must accept more than one size;
- the gate never sends a batch larger than the profile's maximum;
- calibration has a profile of its own, sized to the calibration samples (never larger
  than them, so nothing reads past the data), and separate from the build profile.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from model_repo.errors import ModelError
from model_repo.signature import Signature, TensorSpec

DYNAMIC_AXIS_MAX = 256  # upper bound of an undeclared dynamic non-batch axis
DYNAMIC_AXIS_OPT = 1  # its optimum when no real sample says otherwise


@dataclass(frozen=True)
class AxisRange:
    """A dynamic non-batch axis of one tensor and the sizes the engine accepts."""

    tensor: str
    axis: int
    min: int
    opt: int
    max: int

    def to_json(self) -> list[Any]:
        return [self.tensor, self.axis, self.min, self.opt, self.max]


@dataclass(frozen=True)
class ShapeProfile:
    """Batch range the engine is built for, plus the ranges of other dynamic axes.

    A model without a batch axis has `batched=False` and batch 1…1 (no leading axis is
    added to its tensors).
    """

    min_batch: int
    opt_batch: int
    max_batch: int
    other_axes: tuple[AxisRange, ...] = ()
    batched: bool = True

    def to_json(self) -> dict[str, Any]:
        return {
            "batched": self.batched,
            "minBatch": self.min_batch,
            "optBatch": self.opt_batch,
            "maxBatch": self.max_batch,
            "otherAxes": [a.to_json() for a in self.other_axes],
        }

    def axis(self, tensor: str, axis: int) -> AxisRange | None:
        return next((a for a in self.other_axes if (a.tensor, a.axis) == (tensor, axis)), None)


def _declared_range(declared: Mapping[str, Any], tensor: str, axis: int) -> tuple[int, ...] | None:
    raw = (declared.get(tensor) or {}).get(str(axis))
    if raw is None:
        return None
    try:
        values = tuple(int(v) for v in raw)
    except (TypeError, ValueError):
        values = ()
    if len(values) != 3 or not 1 <= values[0] <= values[1] <= values[2]:
        raise ModelError(
            f"metadata.json dynamicAxisRanges[{tensor}][{axis}] must be [min, opt, max] "
            f"with 1 ≤ min ≤ opt ≤ max, got {raw!r}",
            "CorruptModel",
        )
    return values


def axis_ranges(
    sig: Signature,
    declared: Mapping[str, Any] | None = None,
    known_sizes: Mapping[str, int] | None = None,
) -> tuple[AxisRange, ...]:
    """Ranges for every dynamic non-batch axis of the inputs.

    `declared` is metadata.json's `dynamicAxisRanges` ({tensor: {axis: [min, opt, max]}});
    `known_sizes` maps a dim_param (e.g. "seq") to a size seen in real samples, which
    becomes the optimum of an undeclared axis, so tensors sharing a dim_param agree.
    """
    declared = declared or {}
    known = known_sizes or {}
    out: list[AxisRange] = []
    first = 1 if sig.batched else 0
    for spec in sig.inputs:
        for axis in range(first, len(spec.shape)):
            if spec.shape[axis] > 0:
                continue
            values = _declared_range(declared, spec.name, axis)
            if values is None:
                param = sig.dynamic_axes.get(spec.name, {}).get(str(axis))
                opt = known.get(param, DYNAMIC_AXIS_OPT) if param else DYNAMIC_AXIS_OPT
                values = (1, opt, max(opt, DYNAMIC_AXIS_MAX))
            out.append(AxisRange(spec.name, axis, *values))
    return tuple(out)


def build_profile(
    sig: Signature,
    max_batch: int,
    preferred: Sequence[int] = (),
    ranges: tuple[AxisRange, ...] = (),
) -> ShapeProfile:
    """The engine's profile: batch 1…max_batch, optimized for the largest preferred size."""
    if max_batch < 1:
        raise ModelError("maxBatchSize must be at least 1", "Unsupported")
    if not sig.batched:
        return ShapeProfile(1, 1, 1, ranges, batched=False)
    fitting = [s for s in preferred if s <= max_batch]
    return ShapeProfile(1, max(fitting) if fitting else max_batch, max_batch, ranges)


def gate_batch_size(profile: ShapeProfile) -> int:
    """The gate's batch: the largest the engine accepts (1 sample at a time if unbatched)."""
    return profile.max_batch if profile.batched else 1


def calibration_profile(profile: ShapeProfile, samples: int) -> ShapeProfile:
    """A profile of its own for calibration: one fixed batch no larger than the samples.

    Other axes are pinned to their optimum, the size the samples are drawn at.
    """
    if samples < 1:
        raise ModelError("calibration needs at least one sample", "Unsupported")
    pinned = tuple(AxisRange(a.tensor, a.axis, a.opt, a.opt, a.opt) for a in profile.other_axes)
    if not profile.batched:
        return ShapeProfile(1, 1, 1, pinned, batched=False)
    batch = min(profile.max_batch, samples)
    return ShapeProfile(batch, batch, batch, pinned)


def sample_dims(spec: TensorSpec, profile: ShapeProfile) -> tuple[int, ...]:
    """Shape of one sample of `spec` (no batch axis): dynamic axes at their optimum."""
    first = 1 if profile.batched else 0
    dims: list[int] = []
    for axis in range(first, len(spec.shape)):
        size = spec.shape[axis]
        if size <= 0:
            found = profile.axis(spec.name, axis)
            size = found.opt if found else DYNAMIC_AXIS_OPT
        dims.append(size)
    return tuple(dims)


def profile_shapes(
    spec: TensorSpec, profile: ShapeProfile
) -> tuple[tuple[int, ...], tuple[int, ...], tuple[int, ...]]:
    """(min, opt, max) full shapes of one input, as TensorRT's set_shape takes them."""
    shapes: list[list[int]] = [[], [], []]
    if profile.batched:
        for shape, size in zip(
            shapes, (profile.min_batch, profile.opt_batch, profile.max_batch), strict=True
        ):
            shape.append(size)
    first = 1 if profile.batched else 0
    for axis in range(first, len(spec.shape)):
        size = spec.shape[axis]
        found = profile.axis(spec.name, axis) if size <= 0 else None
        sizes = (found.min, found.opt, found.max) if found else (max(size, 1),) * 3
        for shape, value in zip(shapes, sizes, strict=True):
            shape.append(value)
    return tuple(shapes[0]), tuple(shapes[1]), tuple(shapes[2])
