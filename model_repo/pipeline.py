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

from model_repo import accuracy, ort_optimize, samples, shapes, storage
from model_repo.accuracy import AccuracyResult, Thresholds
from model_repo.cache import CacheEntry, CacheKeyParts, EngineCache, cache_key, cpu_device
from model_repo.errors import ModelError
from model_repo.gpu import GpuInfo, node_selector
from model_repo.quantize import QUANTIZED
from model_repo.repository import publish
from model_repo.samples import SamplePlan, SampleSet
from model_repo.shapes import ShapeProfile
from model_repo.signature import MODEL_FILE, Signature, file_sha256, read_signature
from model_repo.triton_config import Backend, DynamicBatching, QueuePolicy, ServingOptions


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
    queue_policy: QueuePolicy | None = None
    instances: int = 1
    kind: Literal["cpu", "gpu"] = "cpu"
    warmup: bool = False
    intra_op_threads: int = 1
    pvc_root: Path = storage.DEFAULT_PVC_ROOT
    tensorrt_version: str | None = None  # the serving Triton's; another one is refused
    # model.onnx's digest as its TrainingJob recorded it; a different file is refused
    expected_sha256: str | None = None


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


def shape_profile(
    sig: Signature, rows: np.ndarray | None, max_batch: int, dynamic: DynamicBatching | None
) -> ShapeProfile:
    """Pure: the build profile from maxBatchSize, preferred sizes and the dynamic axes."""
    ranges = shapes.axis_ranges(
        sig, sig.metadata.get("dynamicAxisRanges"), samples.known_sizes(sig, rows)
    )
    preferred = dynamic.preferred_batch_sizes if dynamic else ()
    return shapes.build_profile(sig, max_batch, preferred, ranges)


class _Engine:
    """What differs between the TensorRT and ONNX Runtime paths."""

    def __init__(self, backend: Backend, tensorrt_version: str | None = None) -> None:
        self.kind: Literal["tensorrt", "onnxruntime"] = (
            "tensorrt" if backend == "tensorrt_plan" else "onnxruntime"
        )
        self.gpu: GpuInfo | None = None
        if self.kind == "tensorrt":
            from model_repo import cuda_runtime, tensorrt_build

            self.version = tensorrt_build.engine_version()
            tensorrt_build.check_version(tensorrt_version, self.version)
            available, reason = cuda_runtime.cuda_available()
            if not available:
                raise ModelError(f"TensorRT needs a CUDA device: {reason}", "Unsupported")
            self.gpu = cuda_runtime.gpu_info()
            self.device = self.gpu.capability
            self.recipe = tensorrt_build.RECIPE
            self.suffix = ".plan"
        else:
            self.version = ort_optimize.engine_version()
            self.device = cpu_device()
            self.recipe = ort_optimize.RECIPE
            self.suffix = ".onnx"

    def key_profile(self, profile: ShapeProfile) -> ShapeProfile:
        """The profile the artifact depends on.

        A TensorRT engine is built for its batch range and optimum; an ONNX Runtime model
        runs any batch size, so its key keeps only the other dynamic axes and a change of
        maxBatchSize or preferred sizes reuses the cached model.
        """
        if self.kind == "tensorrt":
            return profile
        return ShapeProfile(1, 1, 0, profile.other_axes, profile.batched)

    def build(
        self,
        src: Path,
        dst: Path,
        precision: str,
        sig: Signature,
        profile: ShapeProfile,
        calibration: SampleSet,
    ) -> None:
        if self.kind == "onnxruntime":
            ort_optimize.build(src, dst, precision, calibration, profile)
            return
        from model_repo import quantize, tensorrt_build

        source = src
        if precision in QUANTIZED:  # explicit quantization: TensorRT compiles the Q/DQ model
            source = dst.with_name(f"{dst.stem}-qdq.onnx")
            quantize.quantize(src, source, precision, calibration, profile, dst.parent)
        tensorrt_build.build_engine(source, dst, precision, sig, profile)

    def measure(
        self,
        precision: str,
        path: Path,
        sig: Signature,
        reference: dict[str, np.ndarray],
        gate: SampleSet,
        profile: ShapeProfile,
    ) -> AccuracyResult:
        if self.kind == "tensorrt":
            from model_repo import tensorrt_build

            return tensorrt_build.measure_plan(precision, path, sig, reference, gate, profile)
        return accuracy.measure_onnx(
            precision,
            path,
            reference,
            gate,
            profile.batched,
            is_reference=precision == "fp32",
            batch_size=shapes.gate_batch_size(profile),
        )


@dataclass
class _Run:
    """State one optimize run shares between its precision rungs."""

    sig: Signature
    model_dir: Path
    digest: str
    engine: _Engine
    profile: ShapeProfile  # what the engine is built for and the gate batches by
    cache: EngineCache
    plan: SamplePlan
    timer: _Timer
    work: Path
    thresholds: Thresholds
    _reference: dict[str, np.ndarray] | None = None

    def reference(self) -> dict[str, np.ndarray]:
        """fp32 outputs of the original model, computed once and only when a rung needs it."""
        if self._reference is None:
            with self.timer.phase("reference"):
                try:
                    self._reference = accuracy.reference_outputs(
                        self.model_dir / MODEL_FILE, self.plan.gate, self.profile.batched
                    )
                except Exception as err:  # onnxruntime raises its own exception types
                    first = (str(err).strip().splitlines() or [type(err).__name__])[0]
                    raise ModelError(
                        f"ONNX Runtime cannot run model.onnx: {first[:300]}", "Unsupported"
                    ) from err
        return self._reference

    def key(self, precision: str) -> str:
        engine = self.engine
        return cache_key(
            CacheKeyParts(
                model_digest=self.digest,
                engine=engine.kind,
                engine_version=engine.version,
                device=engine.device,
                precision=precision,
                profile=engine.key_profile(self.profile),
                gpu_product=engine.gpu.product if engine.gpu else "",
                recipe=engine.recipe,
                calibration_digest=self.plan.calibration.digest() if precision in QUANTIZED else "",
            )
        )

    def _measure(self, precision: str, path: Path) -> AccuracyResult:
        with self.timer.phase("gate"):
            return self.engine.measure(
                precision, path, self.sig, self.reference(), self.plan.gate, self.profile
            )

    def rung(self, precision: str) -> tuple[AccuracyResult, CacheEntry, bool, str]:
        """(measurement, cache entry, cache hit, key) for one precision."""
        key = self.key(precision)
        gate_digest = self.plan.gate.digest()
        entry = self.cache.lookup(key)
        recorded = entry.result.get("accuracy") if entry else None
        if entry is not None and recorded and entry.result.get("gateDigest") == gate_digest:
            return AccuracyResult.from_json(precision, recorded), entry, True, key
        if entry is not None:  # built before but measured on other samples: re-measure only
            result = self._measure(precision, entry.model_path)
            self.cache.update_result(
                key, {**entry.result, "accuracy": result.to_json(), "gateDigest": gate_digest}
            )
            return result, entry, True, key
        built = self.work / f"model-{precision}{self.engine.suffix}"
        with self.timer.phase("build"):
            self.engine.build(
                self.model_dir / MODEL_FILE,
                built,
                precision,
                self.sig,
                self.profile,
                self.plan.calibration,
            )
        result = self._measure(precision, built)
        with self.timer.phase("cache"):
            entry = self.cache.store(key, built, self._record(precision, result, gate_digest))
        return result, entry, False, key

    def _record(self, precision: str, result: AccuracyResult, gate_digest: str) -> dict[str, Any]:
        engine = self.engine
        return {
            "precision": precision,
            "accuracy": result.to_json(),
            "gateDigest": gate_digest,
            "engine": engine.kind,
            "engineVersion": engine.version,
            "recipe": engine.recipe,
            "device": engine.device,
            "gpuProduct": engine.gpu.product if engine.gpu else None,
            "modelDigest": self.digest,
            "profile": self.profile.to_json(),
            "samplesSource": self.plan.gate.source,
            "calibrationDigest": (
                self.plan.calibration.digest() if precision in QUANTIZED else None
            ),
        }


def _resolve(req: OptimizeRequest, work: Path) -> tuple[Path, Signature, str]:
    if "://" in req.model:
        model_dir = storage.resolve(req.model, work / "model", req.pvc_root)
    else:
        model_dir = Path(req.model)
    sig = read_signature(model_dir, req.name)
    digest = file_sha256(model_dir / MODEL_FILE)
    if req.expected_sha256 and digest != req.expected_sha256:
        raise ModelError(
            f"{MODEL_FILE} is not the file its TrainingJob exported: sha256 "
            f"{digest[:16]}… where {req.expected_sha256[:16]}… was recorded (changed since?)",
            "DigestMismatch",
        )
    return storage.self_contained(model_dir, work, MODEL_FILE), sig, digest


def _walk(
    state: _Run, ladder: list[str], notes: list[str]
) -> tuple[dict[str, AccuracyResult], list[str], tuple[str, CacheEntry, bool, str] | None]:
    """Try rungs in order until one passes; a rung that cannot be built falls through."""
    results: dict[str, AccuracyResult] = {}
    tried: list[str] = []
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
        if not accuracy.violations(result, state.thresholds):
            return results, tried, (precision, entry, hit, key)
    return results, tried, None


def run(req: OptimizeRequest) -> dict[str, Any]:
    """Optimize, gate, cache and publish; returns the report (raises ModelError)."""
    timer = _Timer()
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="gantry-optimize-") as tmp:
        work = Path(tmp)
        with timer.phase("resolve"):
            model_dir, sig, digest = _resolve(req, work)
        engine = _Engine(req.backend, req.tensorrt_version)
        rows = samples.real_rows(sig, model_dir)
        profile = shape_profile(sig, rows, req.max_batch_size, req.dynamic_batching)
        ladder, notes = accuracy.precision_ladder(req.precision, engine.kind, engine.gpu)
        state = _Run(
            sig=sig,
            model_dir=model_dir,
            digest=digest,
            engine=engine,
            profile=profile,
            cache=EngineCache(req.cache_dir),
            plan=samples.plan_samples(sig, rows, req.thresholds.samples, profile),
            timer=timer,
            work=work,
            thresholds=req.thresholds,
        )
        results, tried, chosen = _walk(state, ladder, notes)
        decision = accuracy.decide(results, req.thresholds, tried, notes)
        accuracy_json = {p: _rounded(r) for p, r in results.items()}
        if chosen is None or not decision.passed:
            raise GateFailure(decision.reason, accuracy_json)
        served, entry, hit, key = chosen
        options = ServingOptions(
            backend=req.backend,
            max_batch_size=req.max_batch_size,
            dynamic_batching=req.dynamic_batching,
            queue_policy=req.queue_policy,
            instances=req.instances,
            kind=req.kind,
            warmup=req.warmup,
            intra_op_threads=req.intra_op_threads,
            profile=profile,
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
    report: dict[str, Any] = {
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
        "samples": _samples_json(state.plan, served),
        "reason": decision.reason,
        "durationsSeconds": timer.seconds,
    }
    if engine.gpu is not None:
        report["gpuProduct"] = engine.gpu.product
        report["nodeSelector"] = node_selector(engine.gpu)
    return report


def _samples_json(plan: SamplePlan, served: str) -> dict[str, Any]:
    out: dict[str, Any] = {"count": plan.gate.count, "source": plan.gate.source}
    if served in QUANTIZED:
        out["calibration"] = {"count": plan.calibration.count, "source": plan.calibration.source}
    return out


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
