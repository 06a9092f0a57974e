"""`gantry predict`: inputs, output formatting and target resolution (no server needed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from click.testing import CliRunner

from gantry_cli.predict import (
    PredictError,
    TensorInfo,
    format_outputs,
    load_inputs,
    predict_command,
    ready_pod_address,
    resolve_target,
)

IMAGE = TensorInfo("input", "FP32", (-1, 1, 8, 8))


def test_npy_single_sample_gets_a_batch_axis(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.ones((1, 8, 8), dtype=np.float64))
    inputs = load_inputs(path, [IMAGE])
    assert inputs["input"].shape == (1, 1, 8, 8)
    assert inputs["input"].dtype == np.float32


def test_json_list_and_named_object(tmp_path: Path) -> None:
    sample = np.zeros((2, 1, 8, 8)).tolist()
    listed = tmp_path / "list.json"
    listed.write_text(json.dumps(sample))
    assert load_inputs(listed, [IMAGE])["input"].shape == (2, 1, 8, 8)
    named = tmp_path / "named.json"
    named.write_text(json.dumps({"input": sample}))
    assert load_inputs(named, [IMAGE])["input"].shape == (2, 1, 8, 8)


@pytest.mark.parametrize(
    ("content", "suffix", "needle"),
    [
        (json.dumps({"image": [[0.0]]}), ".json", "unknown inputs ['image']"),
        (json.dumps([[1, 2, 3]]), ".json", "the model expects [-1, 1, 8, 8]"),
        ("{not json", ".json", "cannot read"),
        ("x", ".txt", "use a .npy, .npz or .json"),
    ],
)
def test_bad_inputs_have_clear_messages(
    tmp_path: Path, content: str, suffix: str, needle: str
) -> None:
    path = tmp_path / f"in{suffix}"
    path.write_text(content)
    with pytest.raises(PredictError) as err:
        load_inputs(path, [IMAGE])
    assert needle in str(err.value)


def test_two_inputs_need_names(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((1, 3), dtype=np.float32))
    two = [TensorInfo("a", "FP32", (-1, 3)), TensorInfo("b", "FP32", (-1, 3))]
    with pytest.raises(PredictError, match="give them by name"):
        load_inputs(path, two)


def test_classifier_outputs_show_top_k_with_labels() -> None:
    logits = np.array([[0.0, 5.0, 1.0], [3.0, 0.0, 0.0]], dtype=np.float32)
    lines = format_outputs({"logits": logits}, ["cat", "dog", "emu"], top_k=2)
    assert lines[0] == "logits [2, 3]: top 2 per row"
    assert lines[1].startswith("  [0] dog (0.976), emu (0.018)")
    assert lines[2].startswith("  [1] cat (")
    plain = format_outputs({"score": np.array([1.5], dtype=np.float32)})
    assert plain == ["score [1]: [1.5]"]


class FakeKube:
    def __init__(self, isvc: dict[str, Any] | None, pods: list[dict[str, Any]]) -> None:
        self.isvc, self.pods = isvc, pods
        self.selectors: list[str | None] = []

    def get(self, api_version: str, plural: str, name: str, namespace: str) -> Any:
        return self.isvc

    def list(
        self, api_version: str, plural: str, namespace: str, *, label_selector: str | None = None
    ) -> Any:
        self.selectors.append(label_selector)
        return self.pods


def pod(name: str, ip: str, ready: bool) -> dict[str, Any]:
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    return {"metadata": {"name": name}, "status": {"podIP": ip, "conditions": [condition]}}


PODS = [pod("digits-triton-b", "127.0.1.4", ready=False), pod("digits-triton-c", "127.0.1.5", True)]
ISVC = {
    "status": {
        "phase": "Ready",
        "endpoints": {"grpc": "digits.ml.svc:8001"},
        "model": {"signature": {"labels": ["zero", "one"]}},
    }
}


def test_service_name_resolves_to_dns_in_cluster() -> None:
    target = resolve_target(FakeKube(ISVC, PODS), "digits", "ml", resolves=lambda host: True)
    assert target.url == "digits.ml.svc:8001"
    assert target.labels == ("zero", "one")


def test_service_name_falls_back_to_a_ready_pod_ip() -> None:
    kube = FakeKube(ISVC, PODS)
    target = resolve_target(kube, "digits", "ml", resolves=lambda host: False)
    assert target.url == "127.0.1.5:8001"
    assert kube.selectors == ["gantry.dev/inferenceservice=digits"]


def test_unready_or_missing_service_is_explained() -> None:
    waiting = {"status": {"phase": "Optimizing", "message": "optimize Job running"}}
    with pytest.raises(PredictError, match=r"no ready Triton pod \(phase Optimizing: optimize"):
        resolve_target(FakeKube(waiting, []), "digits", "ml", resolves=lambda h: False)
    with pytest.raises(PredictError, match="not found in namespace 'ml'"):
        resolve_target(FakeKube(None, []), "digits", "ml")
    assert ready_pod_address([{"metadata": {"name": "p"}, "status": {}}]) is None


def test_command_reports_unreachable_servers_cleanly(tmp_path: Path) -> None:
    path = tmp_path / "x.npy"
    np.save(path, np.zeros((1, 1, 8, 8), dtype=np.float32))
    result = CliRunner().invoke(
        predict_command, ["127.0.0.1:1", "--input", str(path), "--model", "m", "--timeout", "2"]
    )
    assert result.exit_code == 1
    assert "Error: 127.0.0.1:1 (model 'm')" in result.output
    assert "Traceback" not in result.output
