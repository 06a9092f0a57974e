"""The optimize pipeline: resolve → signature → (cache | build → gate) per rung → publish.

Each precision rung is looked up in the engine cache first; a miss builds it and measures
it against the fp32 reference; the walk stops at the first rung that passes the gate.
The result is a compact report (it becomes the optimize Job's termination message).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np

from model_repo import accuracy, ort_optimize, storage
from model_repo.accuracy import AccuracyResult, Thresholds
from model_repo.cache import (
    CacheEntry,
    CacheKeyParts,
    EngineCache,
    ShapeProfile,
    cache_key,
    cpu_device,
)
from model_repo.errors import ModelError
from model_repo.repository import publish
from model_repo.samples import SampleSet, model_samples, sample_shape
from model_repo.signature import MODEL_FILE, Signature, file_sha256, read_signature
from model_repo.triton_config import Backend, DynamicBatching, ServingOptions


@dataclass(frozen=True)
class OptimizeRequest:
    model: str  # a local directory, pvc://claim/path or s3://bucket/path
    repository: Path
    cache_dir: Path
    backend: Backend
    name: str | None = None
    precision: str = "fp32"
    max_batch_size: int = 1
    thresholds: Thresholds = field(default_factory=Thresholds)
    dynamic_batching: DynamicBatching | None = None
    instances: int = 1
    kind: Literal["cpu", "gpu"] = "cpu"
    warmup: bool = False
    intra_op_threads: int = 1
    pvc_root: Path = storage.DEFAULT_PVC_ROOT


@dataclass
class _Timer:
    seconds: dict[str, float] = field(default_factory=dict)

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        start = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[name] = round(self.seconds.get(name, 0.0) + time.perf_counter() - start, 3)


def shape_profile(sig: Signature, max_batch: int, dynamic: DynamicBatching | None) -> ShapeProfile:
    """Pure: batch 1…max, optimized for the largest preferred batch size that fits."""
    preferred = [s for s in (dynamic.preferred_batch_sizes if dynamic else ()) if s <= max_batch]
    opt = max(preferred) if preferred else max_batch
    if not sig.batched:
        return ShapeProfile(1, 1, 1, _other_axes(sig))
    return ShapeProfile(1, opt, max_batch, _other_axes(sig))


def _other_axes(sig: Signature) -> tuple[tuple[str, str, int], ...]:
    axes: list[tuple[str, str, int]] = []
    for spec in sig.inputs:
        offset = 1 if spec.batched else 0
        for index, dim in enumerate(spec.shape[offset:]):
            if dim < 0:
                axes.append((spec.name, str(index + offset), sample_shape(spec)[index]))
    return tuple(axes)


class _Engine:
    """What differs between the TensorRT and ONNX Runtime paths."""

    def __init__(self, backend: Backend) -> None:
        self.kind: Literal["tensorrt", "onnxruntime"] = (
            "tensorrt" if backend == "tensorrt_plan" else "onnxruntime"
        )
        if self.kind == "tensorrt":
            from model_repo import tensorrt_build

            self.version = tensorrt_build.engine_version()
            self.device = tensorrt_build.compute_capability()
            self.suffix = ".plan"
        else:
            self.version = ort_optimize.engine_version()
            self.device = cpu_device()
            self.suffix = ".onnx"

    def key_profile(self, profile: ShapeProfile) -> ShapeProfile:
        """The profile the artifact depends on.

        A TensorRT engine is built for its batch range and optimum; an ONNX Runtime model
        runs any batch size, so its key keeps only the other dynamic axes and a change of
        maxBatchSize or preferred sizes reuses the cached model.
        """
        if self.kind == "tensorrt":
            return profile
        return ShapeProfile(1, 1, 0, profile.other_axes)

    def build(
        self,
        src: Path,
        dst: Path,
        precision: str,
        sig: Signature,
        profile: ShapeProfile,
        samples: SampleSet,
    ) -> None:
        if self.kind == "tensorrt":
            from model_repo import tensorrt_build

            tensorrt_build.build_engine(src, dst, precision, sig, profile, samples)
        else:
            ort_optimize.build(src, dst, precision, samples, sig.batched)

    def measure(
        self,
        precision: str,
        path: Path,
        sig: Signature,
        reference: dict[str, np.ndarray],
        samples: SampleSet,
    ) -> AccuracyResult:
        if self.kind == "tensorrt":
            from model_repo import tensorrt_build

            return tensorrt_build.measure_plan(precision, path, sig, reference, samples, 32)
        return accuracy.measure_onnx(
            precision, path, reference, samples, sig.batched, is_reference=precision == "fp32"
        )


@dataclass
class _Run:
    """State one optimize run shares between its precision rungs."""

    sig: Signature
    model_dir: Path
    digest: str
    engine: _Engine
    profile: ShapeProfile
    cache: EngineCache
    samples: SampleSet
    timer: _Timer
    work: Path
    _reference: dict[str, np.ndarray] | None = None

    def reference(self) -> dict[str, np.ndarray]:
        """fp32 outputs of the original model, computed once and only when a rung needs it."""
        if self._reference is None:
            with self.timer.phase("reference"):
                try:
                    self._reference = accuracy.reference_outputs(
                        self.model_dir / MODEL_FILE, self.samples, self.sig.batched
                    )
                except Exception as err:  # onnxruntime raises its own exception types
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                    raise ModelError(
                        f"ONNX Runtime cannot run model.onnx: {first[:300]}", "Unsupported"
                    ) from err
        return self._reference

    def rung(self, precision: str) -> tuple[AccuracyResult, CacheEntry, bool, str]:
        """(measurement, cache entry, cache hit, key) for one precision."""
        engine = self.engine
        parts = CacheKeyParts(
            self.digest, engine.kind, engine.version, engine.device, precision, self.profile
        )
        key = cache_key(parts)
        entry = self.cache.lookup(key)
        recorded = entry.result.get("accuracy") if entry else None
        if entry is not None and recorded and int(recorded["samples"]) >= self.samples.count:
            return AccuracyResult.from_json(precision, recorded), entry, True, key
        reference = self.reference()
        if entry is not None:  # built before but measured on fewer samples: re-measure only
            with self.timer.phase("gate"):
                result = engine.measure(
                    precision, entry.model_path, self.sig, reference, self.samples
                )
            self.cache.update_result(key, {**entry.result, "accuracy": result.to_json()})
            return result, entry, True, key
        built = self.work / f"model-{precision}{engine.suffix}"
        with self.timer.phase("build"):
            engine.build(
                self.model_dir / MODEL_FILE, built, precision, self.sig, self.profile, self.samples
            )
        with self.timer.phase("gate"):
            result = engine.measure(precision, built, self.sig, reference, self.samples)
        with self.timer.phase("cache"):
            entry = self.cache.store(
                key,
                built,
                {
                    "precision": precision,
                    "accuracy": result.to_json(),
                    "engine": engine.kind,
                    "engineVersion": engine.version,
                    "device": engine.device,
                    "modelDigest": self.digest,
                    "profile": self.profile.to_json(),
                    "samplesSource": self.samples.source,
                },
            )
        return result, entry, False, key


def run(req: OptimizeRequest) -> dict[str, Any]:
    """Optimize, gate, cache and publish; returns the report (raises ModelError)."""
    timer = _Timer()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gantry-optimize-") as tmp:
        work = Path(tmp)
        with timer.phase("resolve"):
            if "://" in req.model:
                model_dir = storage.resolve(req.model, work / "model", req.pvc_root)
            else:
                model_dir = Path(req.model)
            sig = read_signature(model_dir, req.name)
            digest = file_sha256(model_dir / MODEL_FILE)
        engine = _Engine(req.backend)
        ladder, notes = accuracy.precision_ladder(req.precision, engine.kind)
        state = _Run(
            sig=sig,
            model_dir=model_dir,
            digest=digest,
            engine=engine,
            profile=engine.key_profile(
                shape_profile(sig, req.max_batch_size, req.dynamic_batching)
            ),
            cache=EngineCache(req.cache_dir),
            samples=model_samples(sig, model_dir, req.thresholds.samples),
            timer=timer,
            work=work,
        )
        results: dict[str, AccuracyResult] = {}
        tried: list[str] = []
        chosen: tuple[str, CacheEntry, bool, str] | None = None
        for precision in ladder:
            try:
                result, entry, hit, key = state.rung(precision)
            except ModelError as err:
                if precision == ladder[-1] or err.reason != "Unsupported":
                    raise
                notes.append(f"{precision} could not be built ({err})")
                continue
            tried.append(precision)
            results[precision] = result
            if not accuracy.violations(result, req.thresholds):
                chosen = (precision, entry, hit, key)
                break
        decision = accuracy.decide(results, req.thresholds, tried, notes)
        accuracy_json = {p: _rounded(r) for p, r in results.items()}
        if chosen is None or not decision.passed:
            raise GateFailure(decision.reason, accuracy_json)
        served, entry, hit, key = chosen
        options = ServingOptions(
            backend=req.backend,
            max_batch_size=req.max_batch_size,
            dynamic_batching=req.dynamic_batching,
            instances=req.instances,
            kind=req.kind,
            warmup=req.warmup,
            intra_op_threads=req.intra_op_threads,
        )
        with timer.phase("publish"):
            published = publish(
                req.repository,
                sig,
                options,
                entry.model_path,
                digest,
                key,
                extra={"precision": served, "backend": req.backend},
            )
    timer.seconds["total"] = round(time.perf_counter() - started, 3)
    return {
        "name": sig.name,
        "version": published.version,
        "digest": f"sha256:{digest}",
        "backend": req.backend,
        "engine": f"{engine.kind} {engine.version}",
        "device": engine.device,
        "requestedPrecision": req.precision,
        "servedPrecision": served,
        "cacheKey": key,
        "cacheHit": hit,
        "accuracy": accuracy_json,
        "samples": {"count": state.samples.count, "source": state.samples.source},
        "reason": decision.reason,
        "durationsSeconds": timer.seconds,
    }


def _rounded(result: AccuracyResult) -> dict[str, Any]:
    top1 = result.top1_agreement
    return {
        "maxAbsDiff": float(f"{result.max_abs_diff:.4g}"),
        "meanAbsDiff": float(f"{result.mean_abs_diff:.4g}"),
        "top1Agreement": None if top1 is None else round(top1, 4),
    }


class GateFailure(ModelError):
    """No precision passed the gate; carries the measured numbers for the report."""

    def __init__(self, message: str, accuracy_numbers: dict[str, Any]) -> None:
        super().__init__(message, "AccuracyGateFailed")
        self.accuracy = accuracy_numbers
