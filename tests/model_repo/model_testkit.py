"""Small real models for the model_repo tests (digits-shaped: 1×8×8 → 10 classes)."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper


def export_digits_cnn(directory: Path, with_metadata: bool = True, seed: int = 0) -> Path:
    """Export a small CNN like the training runtime does (model.onnx, calibration, metadata)."""
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 8, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1),
        torch.nn.Flatten(),
        torch.nn.Linear(16, 10),
    ).eval()
    directory.mkdir(parents=True, exist_ok=True)
    torch.onnx.export(
        model,
        (torch.rand(2, 1, 8, 8),),
        str(directory / "model.onnx"),
        dynamo=False,
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
    )
    if with_metadata:
        calibration = np.random.default_rng(seed).random((64, 1, 8, 8), dtype=np.float32)
        np.save(directory / "calibration.npy", calibration)
        write_metadata(directory, name="digits-cnn")
    return directory


def write_metadata(directory: Path, name: str, **overrides: object) -> None:
    files = {
        f: {
            "sha256": hashlib.sha256((directory / f).read_bytes()).hexdigest(),
            "bytes": (directory / f).stat().st_size,
        }
        for f in ("model.onnx", "calibration.npy")
        if (directory / f).is_file()
    }
    metadata = {
        "formatVersion": 1,
        "name": name,
        "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 1, 8, 8]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 10]}],
        "dynamicAxes": {"input": {"0": "batch"}, "logits": {"0": "batch"}},
        "labels": [str(i) for i in range(10)],
        "files": files,
        "calibration": {"file": "calibration.npy", "count": 64},
        "metrics": {"test_accuracy": 0.97},
        **overrides,
    }
    (directory / "metadata.json").write_text(json.dumps(metadata))


def tiny_onnx(path: Path, batch: int | str = "batch", inputs: bool = True) -> Path:
    """A graph-only model (no torch): input [batch, 4] → Relu → output [batch, 4]."""
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [batch, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [batch, 4])
    if inputs:
        graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "tiny", [x], [y])
    else:
        const = helper.make_node(
            "Constant", [], ["y"], value=helper.make_tensor("c", TensorProto.FLOAT, [1, 4], [0] * 4)
        )
        y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
        graph = helper.make_graph([const], "tiny", [], [y])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(model, str(path))
    return path
