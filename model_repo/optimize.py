"""`python -m model_repo.optimize`: turn an exported model into a Triton model repository.

Run by the operator's optimize Job. The JSON report goes to stdout and to `--report`
(the operator passes the Kubernetes termination-message path, which keeps 4 KB); on a
user-facing failure the report is `{"error": ..., "reason": ...}` and the exit code is 2.
Any other exception (a bug, a library failing in a way nobody foresaw) is reported the
same way with reason `InternalError` and exit code 1, its traceback on stderr: the
operator always gets a report it can turn into a status condition.
"""

from __future__ import annotations

import argparse
import json
import sys
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any, cast

from model_repo.accuracy import PRECISIONS, Thresholds
from model_repo.errors import ModelError
from model_repo.pipeline import GateFailure, OptimizeRequest, run
from model_repo.storage import DEFAULT_PVC_ROOT
from model_repo.triton_config import BACKENDS, Backend, DynamicBatching, QueuePolicy

REPORT_LIMIT = 4096  # bytes Kubernetes keeps of a termination message


def _positive_int(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _sha256(text: str) -> str:
    value = text.removeprefix("sha256:").lower()
    if len(value) != 64 or any(c not in "0123456789abcdef" for c in value):
        raise argparse.ArgumentTypeError(f"not a sha256 hex digest: {text[:80]!r}")
    return value


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m model_repo.optimize", description=__doc__)
    p.add_argument(
        "--model-dir",
        required=True,
        help="exported model: a directory, pvc://claim/path or s3://bucket/path",
    )
    p.add_argument("--repository", required=True, type=Path, help="Triton model repository")
    p.add_argument("--name", help="model name in the repository (default: metadata name)")
    p.add_argument("--precision", choices=PRECISIONS, default="fp32")
    p.add_argument("--max-batch-size", type=_positive_int, default=1)
    p.add_argument("--backend", choices=BACKENDS, required=True)
    p.add_argument("--cache-dir", required=True, type=Path, help="engine cache directory")
    p.add_argument("--max-abs-diff", type=float, default=Thresholds.max_abs_diff)
    p.add_argument("--min-top1-agreement", type=float, default=Thresholds.min_top1_agreement)
    p.add_argument("--samples", type=_positive_int, default=Thresholds.samples)
    p.add_argument(
        "--dynamic-batching-json",
        help='e.g. {"preferredBatchSizes": [8, 16], "maxQueueDelayMicroseconds": 500}',
    )
    p.add_argument(
        "--queue-policy-json",
        help='a bounded queue, e.g. {"timeoutMicroseconds": 150000, "maxQueueSize": 16}',
    )
    p.add_argument("--instances", type=_positive_int, default=1)
    p.add_argument("--kind", choices=("cpu", "gpu"), default="cpu")
    p.add_argument(
        "--intra-op-threads",
        type=_positive_int,
        default=1,
        help="onnxruntime threads per instance (python backend; default 1)",
    )
    p.add_argument("--warmup", action="store_true", help="add a zero-filled warm-up sample")
    p.add_argument("--pvc-root", type=Path, default=DEFAULT_PVC_ROOT)
    p.add_argument(
        "--tensorrt-version",
        help="TensorRT version of the serving Triton (e.g. 10.3.0); another one is refused",
    )
    p.add_argument("--report", type=Path, help="also write the report here")
    p.add_argument(
        "--expect-sha256",
        type=_sha256,
        default=None,
        help="refuse a model.onnx whose digest differs (the one its TrainingJob recorded)",
    )
    return p


def request_from_args(args: argparse.Namespace) -> OptimizeRequest:
    dynamic = None
    if args.dynamic_batching_json:
        try:
            raw = json.loads(args.dynamic_batching_json)
        except json.JSONDecodeError as err:
            raise ModelError(f"--dynamic-batching-json is not JSON: {err}", "Unsupported") from err
        dynamic = DynamicBatching.from_json(raw)
    queue = None
    if args.queue_policy_json:
        try:
            queue = QueuePolicy.from_json(json.loads(args.queue_policy_json))
        except json.JSONDecodeError as err:
            raise ModelError(f"--queue-policy-json is not JSON: {err}", "Unsupported") from err
    return OptimizeRequest(
        model=args.model_dir,
        repository=args.repository,
        cache_dir=args.cache_dir,
        backend=cast(Backend, args.backend),
        name=args.name,
        precision=args.precision,
        max_batch_size=args.max_batch_size,
        thresholds=Thresholds(args.max_abs_diff, args.min_top1_agreement, args.samples),
        dynamic_batching=dynamic,
        queue_policy=queue,
        instances=args.instances,
        kind=args.kind,
        warmup=args.warmup,
        intra_op_threads=args.intra_op_threads,
        pvc_root=args.pvc_root,
        tensorrt_version=args.tensorrt_version,
        expected_sha256=args.expect_sha256,
    )


def compact(report: dict[str, Any]) -> str:
    """One JSON line under the termination-message limit (details dropped first)."""
    text = json.dumps(report, separators=(",", ":"), ensure_ascii=False)
    for dropped in ("durationsSeconds", "accuracy", "samples"):
        if len(text.encode()) <= REPORT_LIMIT:
            break
        report = {k: v for k, v in report.items() if k != dropped}
        text = json.dumps(report, separators=(",", ":"), ensure_ascii=False)
    if len(text.encode()) > REPORT_LIMIT and "reason" in report:
        report = {**report, "reason": str(report["reason"])[:1000]}
        text = json.dumps(report, separators=(",", ":"), ensure_ascii=False)
    return text


def _last_frame(err: BaseException) -> str:
    frames = traceback.extract_tb(err.__traceback__)
    if not frames:
        return ""
    last = frames[-1]
    return f" in {Path(last.filename).name}:{last.lineno} ({last.name})"


def main(argv: Sequence[str] | None = None) -> int:
    args = parser().parse_args(argv)
    code = 0
    try:
        report = run(request_from_args(args))
    except GateFailure as err:
        report, code = {"error": str(err), "reason": err.reason, "accuracy": err.accuracy}, 2
    except ModelError as err:
        report, code = {"error": str(err), "reason": err.reason}, 2
    except OSError as err:  # e.g. the repository or cache volume is read-only or full
        where = f" {err.filename}" if err.filename else ""
        message = f"cannot write{where}: {err.strerror}"
        report, code = {"error": message, "reason": "StorageError"}, 2
    except Exception as err:  # never a bare traceback: the operator needs a report
        traceback.print_exc(file=sys.stderr)
        where = _last_frame(err)
        message = f"unexpected {type(err).__name__}{where}: {str(err)[:600]}"
        report, code = {"error": message, "reason": "InternalError"}, 1
    text = compact(report)
    print(text)
    if args.report:
        try:
            args.report.write_text(text)
        except OSError as err:
            print(f"cannot write the report to {args.report}: {err.strerror}", file=sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
