"""A real tritonserver (Python backend) serving repositories built by the optimizer."""

from __future__ import annotations

import os
import subprocess
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from dev_cluster.local_triton import loopback_args, triton_environment, tritonserver_argv
from dev_cluster.ports import pick_port
from model_repo.optimize import main as optimize_main
from tests.conftest import require_triton, wait_for

pytestmark = pytest.mark.slow

BATCHING = '{"preferredBatchSizes": [4, 8], "maxQueueDelayMicroseconds": 2000}'


def _ready(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False


@pytest.fixture(scope="module")
def repository(tmp_path_factory: pytest.TempPathFactory, digits_export: Path) -> Path:
    root = tmp_path_factory.mktemp("triton")
    for name, extra in (("digits", []), ("digits-batched", ["--dynamic-batching-json", BATCHING])):
        code = optimize_main(
            [
                "--model-dir",
                str(digits_export),
                "--repository",
                str(root / "repo"),
                "--name",
                name,
                "--precision",
                "fp32",
                "--max-batch-size",
                "16",
                "--backend",
                "python",
                "--cache-dir",
                str(root / "cache"),
                "--samples",
                "32",
                "--report",
                str(root / f"{name}.json"),
                *extra,
            ]
        )
        assert code == 0, (root / f"{name}.json").read_text()
    return root / "repo"


@pytest.fixture(scope="module")
def server(repository: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    require_triton()
    http, grpc, metrics = pick_port(), pick_port(), pick_port()
    log_path = tmp_path_factory.mktemp("triton-log") / "tritonserver.log"
    argv = tritonserver_argv(
        [
            *loopback_args(repository, http, grpc, metrics),
            "--metrics-config",
            "summary_latencies=true",
            "--strict-readiness=true",
        ]
    )
    with log_path.open("wb") as log:
        proc = subprocess.Popen(
            argv, env=triton_environment(os.environ), stdout=log, stderr=subprocess.STDOUT
        )

    def log_tail() -> str:
        return log_path.read_text(errors="replace")[-3000:]

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"tritonserver exited with {proc.returncode}:\n{log_tail()}")
        return _ready(f"http://127.0.0.1:{http}/v2/health/ready")

    try:
        wait_for(ready, 120, "tritonserver to become ready", on_timeout=log_tail)
        yield f"127.0.0.1:{grpc}"
    finally:
        proc.terminate()
        try:
            assert proc.wait(timeout=60) == 0
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise


def _reference(repository: Path, name: str, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(
        str(repository / name / "1" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    return np.asarray(session.run(["logits"], {"input": x})[0])


@pytest.mark.parametrize("name", ["digits", "digits-batched"])
@pytest.mark.parametrize("batch", [1, 7])
def test_grpc_inference_matches_onnxruntime(
    server: str, repository: Path, name: str, batch: int
) -> None:
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server)
    assert client.is_model_ready(name, "1")
    x = np.random.default_rng(batch).random((batch, 1, 8, 8), dtype=np.float32)
    inputs = [grpcclient.InferInput("input", list(x.shape), "FP32")]
    inputs[0].set_data_from_numpy(x)
    result = client.infer(name, inputs, outputs=[grpcclient.InferRequestedOutput("logits")])
    got = result.as_numpy("logits")
    assert got.shape == (batch, 10)
    np.testing.assert_allclose(got, _reference(repository, name, x), atol=1e-5, rtol=0)


def test_concurrent_requests_through_the_dynamic_batcher(server: str, repository: Path) -> None:
    """Requests the batcher merges into one execution still get their own rows back."""
    import tritonclient.grpc as grpcclient

    client = grpcclient.InferenceServerClient(server)
    rng = np.random.default_rng(7)
    samples = [rng.random((1 + i % 3, 1, 8, 8), dtype=np.float32) for i in range(12)]
    results: dict[int, np.ndarray] = {}
    errors: list[str] = []

    def done(index: int) -> Callable[[Any, Any], None]:
        def callback(result: Any, error: Any) -> None:
            if error is not None:
                errors.append(str(error))
            else:
                results[index] = result.as_numpy("logits")

        return callback

    for index, x in enumerate(samples):
        inputs = [grpcclient.InferInput("input", list(x.shape), "FP32")]
        inputs[0].set_data_from_numpy(x)
        client.async_infer("digits-batched", inputs, done(index))
    wait_for(
        lambda: len(results) + len(errors) >= len(samples),
        60,
        f"answers to {len(samples)} requests",
        every=0.02,
        on_timeout=lambda: f"{len(results)} answered, errors: {errors}",
    )
    assert not errors
    assert sorted(results) == list(range(len(samples)))
    for index, x in enumerate(samples):
        np.testing.assert_allclose(
            results[index], _reference(repository, "digits-batched", x), atol=1e-5, rtol=0
        )
    stats = client.get_inference_statistics("digits-batched", "1", as_json=True)
    assert int(stats["model_stats"][0]["inference_count"]) >= sum(len(x) for x in samples)
