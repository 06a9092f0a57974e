"""End-to-end on a real (kind) cluster: scripts/e2e-kind.sh builds the images, installs the
chart, trains the digits example, serves it on Triton and classifies over gRPC.

Runs only where a docker engine and kind exist (`pytest -m kind`); skipped otherwise.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = ROOT / "scripts" / "e2e-kind.sh"

pytestmark = [pytest.mark.kind, pytest.mark.slow]


def _unavailable() -> str | None:
    for tool in ("docker", "kind"):
        if shutil.which(tool) is None:
            return f"{tool} is not installed"
    engine = subprocess.run(["docker", "info"], capture_output=True, timeout=60, check=False)
    if engine.returncode != 0:
        return "the docker engine is not reachable"
    return None


@pytest.mark.timeout(3600)
def test_digits_train_serve_and_classify_on_kind() -> None:
    reason = _unavailable()
    if reason:
        pytest.skip(f"kind end-to-end needs docker and kind: {reason}")
    result = subprocess.run(
        ["bash", str(SCRIPT)], capture_output=True, text=True, timeout=3500, check=False
    )
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    match = re.search(r"accuracy: ([0-9.]+)", result.stdout)
    assert match is not None, result.stdout[-2000:]
    assert float(match.group(1)) >= 0.9
