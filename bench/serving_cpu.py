"""CPU serving throughput: fp32 vs INT8 vs fp16 in-process, and Triton over gRPC.

Prints two tables:
  1. ONNX Runtime in-process images/s for each precision at 1 and 2 intra-op threads, as
     a ratio of fp32, with the accuracy gate's numbers for that precision beside them
     (measured on gate samples disjoint from the calibration samples). `int8` is what
     is served: the symmetric Q/DQ artifact in its CPU encoding; `int8-qdq` is that
     artifact as TensorRT gets it, run by ORT as is; `int8-u8` is the earlier CPU-only
     recipe (unsigned asymmetric activations), for comparison;
  2. Triton (Python backend running onnxruntime, 1 thread) over gRPC at 1/8/32 concurrent
     clients, with and without dynamic batching, as a fraction of in-process fp32.

Models: the digits CNN (1×8×8 → 10, trained for a few seconds on scikit-learn's digits so
the gate's top-1 numbers mean something) and a ResNet-18-sized CNN (3×224×224 → 1000,
random weights) built from torch layers. Run: `.venv/bin/python bench/serving_cpu.py
[--seconds 2] [--skip-triton]`. A few minutes on 2 cores.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

import numpy as np

from dev_cluster.ports import pick_port
from model_repo import accuracy, ort_optimize, ort_runtime, quantize
from model_repo.pipeline import shape_profile
from model_repo.samples import SampleSet, plan_samples, real_rows
from model_repo.shapes import ShapeProfile, calibration_profile
from model_repo.signature import read_signature

PRECISIONS = ("fp32", "int8", "int8-qdq", "int8-u8", "fp16")


def _asymmetric_u8(src: Path, dst: Path, calibration: SampleSet, profile: ShapeProfile) -> None:
    """The pre-Q/DQ CPU recipe (uint8 asymmetric activations), for comparison only."""
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    from model_repo.quantize import _prepare, _SampleReader

    quantize_static(
        str(_prepare(src, dst.parent)),
        str(dst),
        _SampleReader(calibration, calibration_profile(profile, calibration.count)),
        quant_format=QuantFormat.QDQ,
        per_channel=True,
        activation_type=QuantType.QUInt8,
        weight_type=QuantType.QInt8,
    )


def digits_model(directory: Path) -> Path:
    """Train the digits CNN briefly and export it with real calibration samples."""
    import torch
    from sklearn.datasets import load_digits

    torch.manual_seed(0)
    torch.set_num_threads(1)  # a second thread only spins on a model this small
    data = load_digits()
    x = torch.tensor(data.images / 16.0, dtype=torch.float32).unsqueeze(1)
    y = torch.tensor(data.target)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(16, 32, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.MaxPool2d(2),
        torch.nn.Flatten(),
        torch.nn.Linear(32 * 16, 64),
        torch.nn.ReLU(),
        torch.nn.Linear(64, 10),
    )
    opt = torch.optim.Adam(model.parameters(), lr=3e-3)
    for _ in range(5):
        for i in range(0, len(x), 64):
            opt.zero_grad()
            torch.nn.functional.cross_entropy(model(x[i : i + 64]), y[i : i + 64]).backward()
            opt.step()
    model.eval()
    _export(model, torch.rand(1, 1, 8, 8), directory)
    np.save(directory / "calibration.npy", x[:256].numpy())
    return directory


def resnet18_model(directory: Path) -> Path:
    """A ResNet-18-shaped network (BasicBlocks 2-2-2-2, 11.7 M parameters)."""
    import torch
    from torch import nn

    class Block(nn.Module):
        def __init__(self, cin: int, cout: int, stride: int) -> None:
            super().__init__()
            self.body = nn.Sequential(
                nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
                nn.BatchNorm2d(cout),
                nn.ReLU(),
                nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
                nn.BatchNorm2d(cout),
            )
            self.skip: nn.Module = nn.Identity()
            if stride != 1 or cin != cout:
                self.skip = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.body(x) + self.skip(x))

    torch.manual_seed(0)
    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = 64
    for cout, stride in ((64, 1), (128, 2), (256, 2), (512, 2)):
        layers += [Block(cin, cout, stride), Block(cout, cout, 1)]
        cin = cout
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, 1000)]
    model = nn.Sequential(*layers).eval()
    _export(model, torch.rand(1, 3, 224, 224), directory)
    rng = np.random.default_rng(0)
    np.save(directory / "calibration.npy", rng.random((64, 3, 224, 224), dtype=np.float32))
    return directory


def _export(model: Any, example: Any, directory: Path) -> None:
    import torch

    directory.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (example,),
        str(directory / "model.onnx"),
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        opset_version=17,
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )


def throughput(path: Path, sample: np.ndarray, threads: int, seconds: float) -> float:
    """Images/s of batch-1 requests, back to back, in this process."""
    session = ort_runtime.session(path, threads=threads)
    feed = {"input": sample}
    for _ in range(3):
        session.run(None, feed)
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        session.run(None, feed)
        count += 1
    return count / (time.perf_counter() - start)


def in_process(
    name: str, model_dir: Path, work: Path, seconds: float, samples: int
) -> tuple[list[dict[str, Any]], float]:
    sig = read_signature(model_dir, name)
    rows = real_rows(sig, model_dir)
    profile = shape_profile(sig, rows, 32, None)
    plan = plan_samples(sig, rows, samples, profile)
    reference = accuracy.reference_outputs(model_dir / "model.onnx", plan.gate, True)
    one = plan.gate.arrays["input"][:1]
    rows: list[dict[str, Any]] = []
    base: dict[int, float] = {}
    for precision in PRECISIONS:
        built = work / f"{name}-{precision}.onnx"
        t0 = time.perf_counter()
        if precision == "int8-u8":
            _asymmetric_u8(model_dir / "model.onnx", built, plan.calibration, profile)
        elif precision == "int8-qdq":
            quantize.quantize(
                model_dir / "model.onnx", built, "int8", plan.calibration, profile, work
            )
        else:
            ort_optimize.build(
                model_dir / "model.onnx", built, precision, plan.calibration, profile
            )
        build_s = time.perf_counter() - t0
        gate = accuracy.measure_onnx(precision, built, reference, plan.gate, True)
        for threads in (1, 2):
            ips = throughput(built, one, threads, seconds)
            base.setdefault(threads, ips)
            rows.append(
                {
                    "model": name,
                    "precision": precision,
                    "threads": threads,
                    "ips": ips,
                    "ratio": ips / base[threads],
                    "maxAbsDiff": gate.max_abs_diff,
                    "top1": gate.top1_agreement,
                    "build_s": build_s,
                }
            )
    fp32_1thread = rows[0]["ips"]
    return rows, fp32_1thread


def _closed_loop(
    url: str, model: str, sample: np.ndarray, concurrency: int, seconds: float
) -> float:
    """Requests/s with `concurrency` requests always in flight (async gRPC, closed loop)."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(url)
    inputs = [grpcclient.InferInput("input", list(sample.shape), "FP32")]
    inputs[0].set_data_from_numpy(sample)
    lock = threading.Lock()
    state = {"done": 0, "inflight": 0, "measuring": False}
    stop_at = [0.0]
    finished = threading.Event()

    def callback(result: Any, error: Any) -> None:
        with lock:
            state["inflight"] -= 1
            if error is None and state["measuring"]:
                state["done"] += 1
            again = time.perf_counter() < stop_at[0]
            if again:
                state["inflight"] += 1
            elif state["inflight"] == 0:
                finished.set()
        if again:
            client.async_infer(model, inputs, callback)

    stop_at[0] = time.perf_counter() + seconds + 0.5
    with lock:
        state["inflight"] = concurrency
    for _ in range(concurrency):
        client.async_infer(model, inputs, callback)
    time.sleep(0.5)  # warm-up: let the pipeline fill before counting
    with lock:
        state["measuring"], start = True, time.perf_counter()
        state["done"] = 0
    finished.wait(timeout=seconds + 60)
    elapsed = time.perf_counter() - start
    client.close()
    return state["done"] / elapsed


def triton_rows(
    models: dict[str, Path], baselines: dict[str, float], work: Path, seconds: float
) -> list[dict[str, Any]]:
    from dev_cluster.local_triton import (
        loopback_args,
        triton_available,
        triton_environment,
        tritonserver_argv,
    )
    from model_repo.optimize import main as optimize_main

    if not triton_available():
        print("tritonserver is not installed under .tools/: skipping the Triton table")
        return []
    repo = work / "repo"
    batching = {"maxQueueDelayMicroseconds": 500, "preferredBatchSizes": [8, 16]}
    for name, model_dir in models.items():
        for suffix, extra in (("", []), ("-db", ["--dynamic-batching-json", json.dumps(batching)])):
            with contextlib.redirect_stdout(io.StringIO()):
                code = optimize_main(
                    [
                        "--model-dir",
                        str(model_dir),
                        "--repository",
                        str(repo),
                        "--name",
                        name + suffix,
                        "--backend",
                        "python",
                        "--max-batch-size",
                        "32",
                        "--cache-dir",
                        str(work / "cache"),
                        "--samples",
                        "32",
                        *extra,
                    ]
                )
            if code != 0:
                raise SystemExit(f"optimizing {name} failed")
    http, grpc, metrics = pick_port(), pick_port(), pick_port()
    argv = tritonserver_argv(loopback_args(repo, http, grpc, metrics))
    log = (work / "triton.log").open("wb")
    proc = subprocess.Popen(
        argv, env=triton_environment(os.environ), stdout=log, stderr=subprocess.STDOUT
    )
    rows: list[dict[str, Any]] = []
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{http}/v2/health/ready", timeout=1
                ) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"tritonserver did not start; see {work / 'triton.log'}")
            time.sleep(0.1)
        for name in models:
            shape = (1, 1, 8, 8) if name == "digits" else (1, 3, 224, 224)
            sample = np.random.default_rng(0).random(shape, dtype=np.float32)
            for suffix in ("", "-db"):
                for concurrency in (1, 8, 32):
                    rps = _closed_loop(
                        f"127.0.0.1:{grpc}", name + suffix, sample, concurrency, seconds
                    )
                    rows.append(
                        {
                            "model": name,
                            "dynamicBatching": bool(suffix),
                            "concurrency": concurrency,
                            "rps": rps,
                            "fraction": rps / baselines[name],
                        }
                    )
    finally:
        proc.terminate()
        proc.wait(timeout=60)
        log.close()
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--seconds", type=float, default=2.0, help="per measurement")
    parser.add_argument("--skip-triton", action="store_true")
    parser.add_argument("--skip-resnet", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="gantry-bench-") as tmp:
        work = Path(tmp)
        models = {"digits": digits_model(work / "digits")}
        if not args.skip_resnet:
            models["resnet18"] = resnet18_model(work / "resnet18")
        rows: list[dict[str, Any]] = []
        baselines: dict[str, float] = {}
        for name, model_dir in models.items():
            samples = 256 if name == "digits" else 32
            got, baselines[name] = in_process(name, model_dir, work, args.seconds, samples)
            rows += got
        print("\nONNX Runtime in-process, batch 1 (ratio = images/s ÷ fp32 at the same threads)")
        print(
            f"{'model':9} {'prec':8} {'thr':>3} {'img/s':>9} {'ratio':>6}  "
            f"{'gate max|Δ|':>11} {'top-1':>6} {'build s':>7}"
        )
        for r in rows:
            top1 = "-" if r["top1"] is None else f"{r['top1']:.3f}"
            print(
                f"{r['model']:9} {r['precision']:8} {r['threads']:>3} {r['ips']:>9.1f} "
                f"{r['ratio']:>5.2f}x  {r['maxAbsDiff']:>11.2g} {top1:>6} {r['build_s']:>7.1f}"
            )
        triton = [] if args.skip_triton else triton_rows(models, baselines, work, args.seconds)
        if triton:
            print(
                "\nTriton Python backend (onnxruntime fp32, 1 thread) over gRPC, batch-1 requests;"
                "\nfraction = requests/s ÷ in-process fp32 images/s at 1 thread"
            )
            print(f"{'model':9} {'dyn.batch':9} {'conc':>4} {'req/s':>9} {'fraction':>8}")
            for r in triton:
                print(
                    f"{r['model']:9} {'yes' if r['dynamicBatching'] else 'no':9} "
                    f"{r['concurrency']:>4} {r['rps']:>9.1f} {r['fraction']:>8.2f}"
                )
        out = Path(__file__).resolve().parent / "results"
        out.mkdir(exist_ok=True)
        (out / "serving_cpu.json").write_text(
            json.dumps({"inProcess": rows, "triton": triton}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
