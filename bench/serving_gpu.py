"""GPU serving bench: TensorRT fp16 vs ONNX Runtime CUDA vs torch eager, on one GPU.

    .venv/bin/python bench/serving_gpu.py [--batch 32] [--seconds 5]

Models: the digits CNN (the example model's shape, 1×8×8 → 10) and a ResNet-50-sized
network (Bottleneck blocks 3-4-6-3, 25.6 M parameters, 3×224×224 → 1000), built from
torch layers (torchvision is not a dependency). Prints images/s per runtime and the ratios
against torch eager fp32. Each runtime that is missing (no CUDA device, no `tensorrt`
module, onnxruntime without the CUDA execution provider) is reported as such and skipped:
the TensorRT row needs the optimizer image (NGC TensorRT), which our CI machines lack.
"""

from __future__ import annotations

import argparse
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


def _rate(run: Callable[[], None], batch: int, seconds: float) -> float:
    import torch

    for _ in range(5):
        run()
    torch.cuda.synchronize()
    count, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        run()
        count += 1
    torch.cuda.synchronize()
    return count * batch / (time.perf_counter() - start)


def torch_eager(
    model: Any, shape: tuple[int, ...], batch: int, seconds: float, half: bool
) -> float:
    import torch

    net = model.cuda().half() if half else model.cuda().float()
    x = torch.rand(batch, *shape, device="cuda", dtype=torch.float16 if half else torch.float32)

    def run() -> None:
        with torch.inference_mode():
            net(x)

    return _rate(run, batch, seconds)


def onnxruntime_cuda(onnx: Path, shape: tuple[int, ...], batch: int, seconds: float) -> float | str:
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        return "onnxruntime has no CUDA execution provider (install onnxruntime-gpu)"
    session = ort.InferenceSession(str(onnx), providers=["CUDAExecutionProvider"])
    x = np.random.rand(batch, *shape).astype(np.float32)
    return _rate(lambda: session.run(None, {"input": x}), batch, seconds)


def tensorrt_fp16(onnx: Path, shape: tuple[int, ...], batch: int, seconds: float) -> float | str:
    from model_repo.tensorrt_build import tensorrt_available

    ok, reason = tensorrt_available()
    if not ok:
        return reason
    import tensorrt as trt
    import torch

    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx.read_bytes()):
        return "TensorRT could not parse the model"
    config = builder.create_builder_config()
    config.set_flag(trt.BuilderFlag.FP16)
    profile = builder.create_optimization_profile()
    dims = [1, *shape], [batch, *shape], [batch, *shape]
    profile.set_shape("input", *(trt.Dims(d) for d in dims))
    config.add_optimization_profile(profile)
    plan = builder.build_serialized_network(network, config)
    engine = trt.Runtime(logger).deserialize_cuda_engine(plan)
    context = engine.create_execution_context()
    x = torch.rand(batch, *shape, device="cuda")
    context.set_input_shape("input", tuple(x.shape))
    out_dims = context.get_tensor_shape("logits")
    y = torch.empty(tuple(out_dims), device="cuda")
    context.set_tensor_address("input", int(x.data_ptr()))
    context.set_tensor_address("logits", int(y.data_ptr()))
    stream = torch.cuda.Stream()
    return _rate(lambda: context.execute_async_v3(stream.cuda_stream), batch, seconds)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    import torch

    if not torch.cuda.is_available():
        print("no CUDA device: this bench needs a GPU (it measures TensorRT, ORT CUDA, torch)")
        return 0
    print(f"GPU: {torch.cuda.get_device_name(0)}, batch {args.batch}, {args.seconds:.0f} s each")
    models = {
        "digits CNN (1x8x8)": (_digits_cnn, (1, 8, 8)),
        "ResNet-50-sized (3x224x224)": (_bottleneck_resnet50, (3, 224, 224)),
    }
    for title, (build, shape) in models.items():
        with tempfile.TemporaryDirectory() as tmp:
            onnx = _export(build(), shape, Path(tmp))
            rows: dict[str, float | str] = {
                "torch eager fp32": torch_eager(build(), shape, args.batch, args.seconds, False),
                "torch eager fp16": torch_eager(build(), shape, args.batch, args.seconds, True),
                "onnxruntime CUDA fp32": onnxruntime_cuda(onnx, shape, args.batch, args.seconds),
                "TensorRT fp16": tensorrt_fp16(onnx, shape, args.batch, args.seconds),
            }
        base = rows["torch eager fp32"]
        print(f"\n{title}")
        print(f"  {'runtime':<24}{'images/s':>14}{'vs torch fp32':>16}")
        for name, value in rows.items():
            if isinstance(value, str):
                print(f"  {name:<24}{'—':>14}  ({value})")
            else:
                ratio = value / base if isinstance(base, float) else float("nan")
                print(f"  {name:<24}{value:>14,.0f}{ratio:>15.2f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
