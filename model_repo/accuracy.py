"""The accuracy gate: measure a candidate against the fp32 reference, then decide.

`compare` and `decide` are pure (table-tested); `measure_onnx` is the thin runner. The
gate measures, never guesses: a lower precision is served only if its numbers on real
(or, failing that, random) inputs stay within the service's thresholds, else the next
higher precision is tried, and the decision says why with the numbers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from model_repo import ort_runtime
from model_repo.gpu import GpuInfo
from model_repo.samples import SampleSet

PRECISIONS = ("fp8", "int8", "fp16", "fp32")
_NEXT_HIGHER = {"int8": "fp16", "fp8": "fp16", "fp16": "fp32"}


@dataclass(frozen=True)
class Thresholds:
    max_abs_diff: float = 0.01
    min_top1_agreement: float = 0.99
    samples: int = 256


@dataclass(frozen=True)
class AccuracyResult:
    """Measured difference of one candidate from the reference."""

    precision: str
    max_abs_diff: float
    mean_abs_diff: float
    top1_agreement: float | None  # None when no output is classifier-shaped
    samples: int
    reference: bool = False  # the candidate IS the reference (ORT fp32): always passes

    def to_json(self) -> dict[str, Any]:
        return {
            "maxAbsDiff": self.max_abs_diff,
            "meanAbsDiff": self.mean_abs_diff,
            "top1Agreement": self.top1_agreement,
            "samples": self.samples,
            "reference": self.reference,
        }

    @classmethod
    def from_json(cls, precision: str, data: Mapping[str, Any]) -> AccuracyResult:
        top1 = data.get("top1Agreement")
        return cls(
            precision=precision,
            max_abs_diff=float(data["maxAbsDiff"]),
            mean_abs_diff=float(data["meanAbsDiff"]),
            top1_agreement=None if top1 is None else float(top1),
            samples=int(data["samples"]),
            reference=bool(data.get("reference", False)),
        )


@dataclass(frozen=True)
class GateDecision:
    passed: bool
    requested: str
    served: str | None  # None when nothing passed
    reason: str
    results: tuple[AccuracyResult, ...]

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "results": [asdict(r) for r in self.results]}


def precision_ladder(
    requested: str,
    engine: Literal["tensorrt", "onnxruntime"],
    gpu: GpuInfo | None = None,
) -> tuple[list[str], list[str]]:
    """Precisions to try in order, and notes on rungs this engine and device cannot offer.

    fp8 is offered only by TensorRT on a GPU with FP8 tensor cores (compute capability
    ≥ 8.9); elsewhere it falls to the next rung and the note says why. (Whether the Q/DQ
    fp8 model can be made at all is found out by building it: a failure there also falls
    through, with its own reason.)
    """
    if requested not in PRECISIONS:
        raise ValueError(f"unknown precision {requested!r}: use one of {', '.join(PRECISIONS)}")
    ladder = [requested]
    while ladder[-1] in _NEXT_HIGHER:
        ladder.append(_NEXT_HIGHER[ladder[-1]])
    notes: list[str] = []
    if "fp8" in ladder:
        if engine == "onnxruntime":
            ladder.remove("fp8")
            notes.append("fp8 is not available on CPU (ONNX Runtime has no fp8 kernels)")
        elif gpu is not None and not gpu.has_fp8:
            ladder.remove("fp8")
            notes.append(
                f"fp8 needs compute capability ≥ 8.9 (this GPU, {gpu.name}, is {gpu.capability})"
            )
    return ladder, notes


def _classifier_shaped(arr: np.ndarray) -> bool:
    return arr.ndim == 2 and arr.shape[1] > 1 and arr.dtype.kind == "f"


def compare(
    precision: str,
    reference: Mapping[str, np.ndarray],
    candidate: Mapping[str, np.ndarray],
    is_reference: bool = False,
) -> AccuracyResult:
    """Pure: max/mean |Δ| over all outputs, and top-1 agreement over classifier outputs."""
    max_abs = 0.0
    total, count = 0.0, 0
    agreements: list[float] = []
    samples = 0
    for name, ref in reference.items():
        if name not in candidate:
            raise ValueError(f"candidate has no output {name!r}")
        ref64 = np.asarray(ref, dtype=np.float64)
        cand64 = np.asarray(candidate[name], dtype=np.float64)
        if ref64.shape != cand64.shape:
            raise ValueError(f"output {name!r}: shape {cand64.shape} != reference {ref64.shape}")
        diff = np.abs(ref64 - cand64)
        if diff.size:
            # NaN in a candidate means it is broken, not "close": count it as infinitely off.
            worst = float("inf") if np.isnan(diff).any() else float(diff.max())
            max_abs = max(max_abs, worst)
            total += float(np.nansum(diff))
            count += diff.size
        samples = max(samples, ref64.shape[0] if ref64.ndim else 1)
        if _classifier_shaped(np.asarray(ref)):
            agreements.append(float(np.mean(ref64.argmax(axis=1) == cand64.argmax(axis=1))))
    return AccuracyResult(
        precision=precision,
        max_abs_diff=max_abs,
        mean_abs_diff=total / count if count else 0.0,
        top1_agreement=min(agreements) if agreements else None,
        samples=samples,
        reference=is_reference,
    )


def violations(result: AccuracyResult, thresholds: Thresholds) -> list[str]:
    """Pure: what is out of bounds, phrased for humans; empty when the result passes."""
    if result.reference:
        return []
    out = []
    if not result.max_abs_diff <= thresholds.max_abs_diff:
        out.append(f"max |Δ| {_num(result.max_abs_diff)} > {_num(thresholds.max_abs_diff)}")
    top1 = result.top1_agreement
    if top1 is not None and top1 < thresholds.min_top1_agreement:
        out.append(f"top-1 agreement {top1:.3f} < {thresholds.min_top1_agreement:g}")
    return out


def _num(value: float) -> str:
    return f"{value:.2g}" if value < 1e-3 else f"{value:.3g}"


def _summary(result: AccuracyResult) -> str:
    if result.reference:
        return "the fp32 reference"
    parts = [f"max |Δ| {_num(result.max_abs_diff)}"]
    if result.top1_agreement is not None:
        parts.append(f"top-1 {result.top1_agreement:.3f}")
    return ", ".join(parts)


def decide(
    results: Mapping[str, AccuracyResult],
    thresholds: Thresholds,
    ladder: Sequence[str],
    notes: Sequence[str] = (),
) -> GateDecision:
    """Pure: serve the first rung of the ladder whose measurement passes.

    Rungs are walked in order; a rung without a measurement ends the walk (the runner
    measures lazily and stops at the first pass), so the decision never trusts an
    unmeasured precision.
    """
    if not ladder:
        raise ValueError("the precision ladder is empty")
    failures: list[str] = []
    tried: list[AccuracyResult] = []
    for precision in ladder:
        result = results.get(precision)
        if result is None:
            failures.append(f"{precision} was not measured")
            break
        tried.append(result)
        bad = violations(result, thresholds)
        if not bad:
            lead = list(notes) + failures
            tail = f"serving {precision} ({_summary(result)})"
            if not lead:
                tail = f"{precision} passed the accuracy gate ({_summary(result)})"
            return GateDecision(True, ladder[0], precision, "; ".join([*lead, tail]), tuple(tried))
        failures.append(f"{precision} failed the accuracy gate ({', '.join(bad)})")
    reason = "; ".join([*notes, *failures, "no precision passed the accuracy gate"])
    return GateDecision(False, ladder[0], None, reason, tuple(tried))


def measure_onnx(
    precision: str,
    candidate: Path,
    reference: Mapping[str, np.ndarray],
    samples: SampleSet,
    batched: bool,
    is_reference: bool = False,
    batch_size: int = 32,
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
) -> AccuracyResult:
    """Run an ONNX candidate on the samples and compare with the reference outputs."""
    sess = ort_runtime.session(candidate, providers=providers)
    outputs = ort_runtime.run_samples(sess, samples, batched, batch_size)
    return compare(precision, reference, outputs, is_reference)


def reference_outputs(model: Path, samples: SampleSet, batched: bool) -> dict[str, np.ndarray]:
    """fp32 outputs of the original model, without graph rewrites: the ground truth."""
    return ort_runtime.run_samples(ort_runtime.session(model, optimize=False), samples, batched)
