"""Running ONNX models in-process with ONNX Runtime (reference outputs and candidates)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort

from model_repo.samples import SampleSet


def session(
    path: Path,
    threads: int = 1,
    optimize: bool = True,
    providers: tuple[str, ...] = ("CPUExecutionProvider",),
) -> ort.InferenceSession:
    """A CPU session by default; one intra-op thread so parallel jobs and pods don't spin."""
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    if not optimize:
        opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    return ort.InferenceSession(str(path), sess_options=opts, providers=list(providers))


def run_samples(
    sess: ort.InferenceSession, samples: SampleSet, batched: bool, batch_size: int = 32
) -> dict[str, np.ndarray]:
    """All outputs for all samples, concatenated along the sample axis."""
    names = [o.name for o in sess.get_outputs()]
    collected: dict[str, list[np.ndarray]] = {n: [] for n in names}
    for feed in samples.feeds(batched, batch_size):
        for name, value in zip(names, sess.run(names, feed), strict=True):
            arr = np.asarray(value)
            collected[name].append(arr if batched else arr[np.newaxis, ...])
    return {n: np.concatenate(parts) for n, parts in collected.items()}
