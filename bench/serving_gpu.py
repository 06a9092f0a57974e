"""GPU serving bench: TensorRT fp16/int8 vs ONNX Runtime CUDA vs torch eager, on one GPU.

    python bench/serving_gpu.py [--batch 32] [--seconds 5]

Models: the digits CNN (the example model's shape, 1×8×8 → 10) and a ResNet-50-sized
network (Bottleneck blocks 3-4-6-3, 25.6 M parameters, 3×224×224 → 1000), built from
torch layers (torchvision is not a dependency). Prints images/s per runtime and the ratios
against torch eager fp32, and writes bench/results/serving_gpu.json. The TensorRT rows run
the optimizer's own code (`model_repo.tensorrt_build`, `model_repo.quantize`, cuda-python
buffers, no torch); int8 is the symmetric Q/DQ model made on the CPU. Each runtime that
is missing (no CUDA torch, no `tensorrt`, no cuda-python, onnxruntime without the CUDA
execution provider) is reported with the reason and skipped, never silently.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def _bottleneck_resnet50() -> Any:
    import torch
    from torch import nn

    class Bottleneck(nn.Module):
        def __init__(self, cin: int, width: int, stride: int) -> None:
            super().__init__()
            cout = width * 4
            self.body = nn.Sequential(
                nn.Conv2d(cin, width, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, width, 3, stride, 1, bias=False),
                nn.BatchNorm2d(width),
                nn.ReLU(),
                nn.Conv2d(width, cout, 1, bias=False),
                nn.BatchNorm2d(cout),
            )
            self.skip: nn.Module = nn.Identity()
            if stride != 1 or cin != cout:
                self.skip = nn.Sequential(
                    nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
                )

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return torch.relu(self.body(x) + self.skip(x))

    layers: list[nn.Module] = [
        nn.Conv2d(3, 64, 7, 2, 3, bias=False),
        nn.BatchNorm2d(64),
        nn.ReLU(),
        nn.MaxPool2d(3, 2, 1),
    ]
    cin = 64
    for width, blocks, stride in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for i in range(blocks):
            layers.append(Bottleneck(cin, width, stride if i == 0 else 1))
            cin = width * 4
    layers += [nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(2048, 1000)]
    return nn.Sequential(*layers).eval()


def _digits_cnn() -> Any:
    from training_jobs.examples.digits import DigitsCNN

    return DigitsCNN().eval()


def _export(model: Any, shape: tuple[int, ...], directory: Path) -> Path:
    import torch

    path = directory / "model.onnx"
    torch.onnx.export(
        model,
        (torch.rand(1, *shape),),
        str(path),
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        opset_version=17,
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
    )
    return path


def _rate(run: Callable[[], None], sync: Callable[[], None], batch: int, seconds: float) -> float:
    for _ in range(5):
        run()
    sync()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        count += 1
    sync()
    return count * batch / (time.perf_counter() - start)


def torch_eager(
    model: Any, shape: tuple[int, ...], batch: int, seconds: float, half: bool
) -> float | str:
    import torch

    if not torch.cuda.is_available():
        return f"torch {torch.__version__} has no CUDA device (a CPU-only build?)"
    net = model.cuda().half() if half else model.cuda().float()
    x = torch.rand(batch, *shape, device="cuda", dtype=torch.float16 if half else torch.float32)

    def run() -> None:
        with torch.inference_mode():
            net(x)

    return _rate(run, torch.cuda.synchronize, batch, seconds)


def onnxruntime_cuda(onnx: Path, shape: tuple[int, ...], batch: int, seconds: float) -> float | str:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDA execution provider (install onnxruntime-gpu)"
    session = ort.InferenceSession(str(onnx), providers=["CUDAExecutionProvider"])
    if "CUDAExecutionProvider" not in session.get_providers():
        return "the CUDA execution provider failed to load (CUDA/cuDNN libraries missing?)"
    x = np.random.rand(batch, *shape).astype(np.float32)
    return _rate(lambda: session.run(None, {"input": x}), lambda: None, batch, seconds)


def tensorrt_rate(
    onnx: Path, precision: str, shape: tuple[int, ...], batch: int, seconds: float
) -> float | str:
    """Build with the optimizer's builder (profile 1…batch) and time execute_async_v3."""
    from model_repo import cuda_runtime, quantize, tensorrt_build
    from model_repo.errors import ModelError
    from model_repo.samples import build_samples
    from model_repo.shapes import build_profile
    from model_repo.signature import read_signature

    ok, reason = tensorrt_build.tensorrt_available()
    if not ok:
        return reason
    import tensorrt as trt

    sig = read_signature(onnx.parent, "bench")
    profile = build_profile(sig, batch, (batch,))
    source, plan = onnx, onnx.with_name(f"{precision}.plan")
    try:
        if precision in quantize.QUANTIZED:
            source = onnx.with_name(f"{precision}-qdq.onnx")
            calibration = build_samples(sig, 32, None, seed=1, profile=profile)
            quantize.quantize(onnx, source, precision, calibration, profile, onnx.parent)
        tensorrt_build.build_engine(source, plan, precision, sig, profile)
        engine = trt.Runtime(trt.Logger(trt.Logger.WARNING)).deserialize_cuda_engine(
            plan.read_bytes()
        )
        context = engine.create_execution_context()
        with cuda_runtime.device_buffers() as buffers, cuda_runtime.stream() as stream:
            x = np.random.rand(batch, *shape).astype(np.float32)
            if not context.set_input_shape("input", x.shape):
                return "the engine rejected the input shape"
            out_shape = tuple(int(d) for d in context.get_tensor_shape("logits"))
            out_bytes = int(np.prod(out_shape)) * 4
            for name, nbytes in (("input", x.nbytes), ("logits", out_bytes)):
                buf = cuda_runtime.DeviceBuffer(nbytes)
                buffers.append(buf)
                if not context.set_tensor_address(name, buf.ptr):
                    return f"TensorRT refused the address of {name}"
            buffers[0].upload(x)

            def run() -> None:
                if not context.execute_async_v3(stream):
                    raise ModelError("execute_async_v3 failed")

            return _rate(run, lambda: cuda_runtime.synchronize(stream), batch, seconds)
    except ModelError as err:
        return str(err)


def _gpu_name() -> str | None:
    from model_repo import cuda_runtime

    ok, _ = cuda_runtime.cuda_available()
    if ok:
        return cuda_runtime.gpu_info().name
    try:
        import torch

        return str(torch.cuda.get_device_name(0)) if torch.cuda.is_available() else None
    except ImportError:
        return None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    gpu = _gpu_name()
    if gpu is None:
        print("no CUDA device: this bench needs a GPU (it measures TensorRT, ORT CUDA, torch)")
        return 0
    print(f"GPU: {gpu}, batch {args.batch}, {args.seconds:.0f} s each")
    models = {
        "digits CNN (1x8x8)": (_digits_cnn, (1, 8, 8)),
        "ResNet-50-sized (3x224x224)": (_bottleneck_resnet50, (3, 224, 224)),
    }
    results: dict[str, dict[str, float | str]] = {}
    out = Path(__file__).resolve().parent / "results"
    out.mkdir(exist_ok=True)
    for title, (build, shape) in models.items():
        with tempfile.TemporaryDirectory() as tmp:
            onnx = _export(build(), shape, Path(tmp))
            b, s = args.batch, args.seconds
            rows: dict[str, float | str] = {
                "torch eager fp32": torch_eager(build(), shape, b, s, False),
                "torch eager fp16": torch_eager(build(), shape, b, s, True),
                "onnxruntime CUDA fp32": onnxruntime_cuda(onnx, shape, b, s),
                "TensorRT fp32": tensorrt_rate(onnx, "fp32", shape, b, s),
                "TensorRT fp16": tensorrt_rate(onnx, "fp16", shape, b, s),
                "TensorRT int8 (Q/DQ)": tensorrt_rate(onnx, "int8", shape, b, s),
            }
        results[title] = rows
        # written after each model, so a run cut short still shows what it measured
        (out / "serving_gpu.json").write_text(json.dumps({"gpu": gpu, "rows": results}, indent=2))
        base = rows["torch eager fp32"]
        print(f"\n{title}")
        print(f"  {'runtime':<24}{'images/s':>14}{'vs torch fp32':>16}")
        for name, value in rows.items():
            if isinstance(value, str):
                print(f"  {name:<24}{'—':>14}  (did not run: {value})")
            else:
                ratio = value / base if isinstance(base, float) else float("nan")
                print(f"  {name:<24}{value:>14,.0f}{ratio:>15.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
