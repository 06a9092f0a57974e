"""A plain user script exports with PyTorch's documented default path in the training
environment (torch 2.13's default exporter is the dynamo one, which needs onnxscript)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

SCRIPT = """
import sys, torch
model = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(), torch.nn.Linear(16, 4)).eval()
torch.manual_seed(0)
torch.onnx.export(model, (torch.randn(1, 8),), sys.argv[1])  # PyTorch's defaults
torch.save(model.state_dict(), sys.argv[1] + ".pt")
"""


@pytest.mark.slow
def test_torch_onnx_export_with_defaults_works_in_the_training_environment(tmp_path: Path) -> None:
    script = tmp_path / "export.py"
    script.write_text(SCRIPT)
    out = tmp_path / "model.onnx"
    result = subprocess.run(
        [sys.executable, str(script), str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    x = np.ones((1, 8), dtype=np.float32)
    (y,) = session.run(None, {session.get_inputs()[0].name: x})
    assert y.shape == (1, 4)
