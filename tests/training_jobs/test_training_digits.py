"""The digits example end to end under torchrun: accuracy, export, progress, recovery."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import numpy as np
import onnxruntime as ort
import pytest
import torch

from tests.conftest import (
    create_trainer_account,
    create_training_job,
    grant_trainer_role,
    in_cluster_env,
    serviceaccount_dir,
)
from training_jobs import read_metadata
from training_jobs.examples import digits
from training_jobs.examples.digits import DigitsCNN
from training_jobs.examples.digits_data import heldout_split

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from dev_cluster.controlplane.threaded import ThreadedControlPlane

RUN_TIMEOUT_S = 300


def _torchrun(nproc: int) -> list[str]:
    launcher = Path(sys.executable).with_name("torchrun")
    head = [str(launcher)] if launcher.exists() else [sys.executable, "-m", "torch.distributed.run"]
    return [*head, "--standalone", "--nnodes=1", f"--nproc-per-node={nproc}"]


def _run(
    tmp: Path,
    args: list[str],
    *,
    nproc: int = 2,
    attempt: int = 1,
    extra_env: dict[str, str] | None = None,
) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in {"RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT"}
        and not k.startswith("GANTRY_")
    }
    env.update(
        GANTRY_CHECKPOINT_DIR=str(tmp / "checkpoints"),
        GANTRY_OUTPUT_DIR=str(tmp / "model"),
        GANTRY_ATTEMPT=str(attempt),
        **(extra_env or {}),
    )
    return subprocess.run(
        [*_torchrun(nproc), "-m", "training_jobs.examples.digits", *args],
        env=env,
        cwd=tmp,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT_S,
        check=False,
    )


@pytest.fixture
def trainer_env(
    admin_api: ApiClient,
    control_plane: ThreadedControlPlane,
    crds: list[dict[str, Any]],
    namespace: str,
    tmp_path: Path,
) -> dict[str, str]:
    """A TrainingJob `digits` and what its worker pods see: the real API server's address
    and a token of the job's trainer ServiceAccount, under the operator's trainer Role."""
    create_training_job(admin_api, namespace, "digits")
    account = create_trainer_account(admin_api, namespace, "digits")
    grant_trainer_role(admin_api, namespace, "digits")
    sa_dir = serviceaccount_dir(admin_api, control_plane, namespace, account, tmp_path / "sa")
    return {
        **in_cluster_env(control_plane, sa_dir),
        "GANTRY_JOB_NAME": "digits",
        "GANTRY_JOB_NAMESPACE": namespace,
    }


def _newest_checkpoint_model(checkpoints: Path) -> DigitsCNN:
    newest = sorted(checkpoints.glob("ckpt-*.pt"))[-1]
    model = DigitsCNN()
    model.load_state_dict(torch.load(newest, weights_only=True)["model"])
    return model.eval()


@pytest.mark.slow
def test_two_workers_train_export_and_report(
    tmp_path: Path, trainer_env: dict[str, str], admin_api: ApiClient
) -> None:
    from kubernetes import client

    result = _run(
        tmp_path, ["--epochs", "12", "--lr", "0.01", "--batch-size", "64"], extra_env=trainer_env
    )
    assert result.returncode == 0, result.stderr[-4000:]
    assert "2 worker(s), backend gloo" in result.stderr
    token = (Path(trainer_env["GANTRY_SERVICEACCOUNT_DIR"]) / "token").read_text()
    assert token not in result.stdout + result.stderr
    assert "could not report progress" not in result.stderr

    meta = read_metadata(tmp_path / "model")
    assert meta["metrics"]["test_accuracy"] >= 0.90
    assert meta["labels"] == [str(d) for d in range(10)]
    assert meta["calibration"] == {"file": "calibration.npy", "count": 256}

    x_test, y_test = heldout_split()
    model = _newest_checkpoint_model(tmp_path / "checkpoints")
    session = ort.InferenceSession(
        str(tmp_path / "model" / "model.onnx"), providers=["CPUExecutionProvider"]
    )
    for batch in (1, 7):
        x = x_test[:batch]
        (onnx_logits,) = session.run(None, {"input": x})
        with torch.no_grad():
            torch_logits = model(torch.from_numpy(x)).numpy()
        assert np.abs(onnx_logits - torch_logits).max() <= 1e-4
    (all_logits,) = session.run(None, {"input": x_test})
    accuracy = float((all_logits.argmax(1) == y_test).mean())
    assert accuracy == pytest.approx(meta["metrics"]["test_accuracy"], abs=1e-6)

    job = cast(
        "dict[str, Any]",
        client.CustomObjectsApi(admin_api).get_namespaced_custom_object(
            "gantry.dev", "v1alpha1", trainer_env["GANTRY_JOB_NAMESPACE"], "trainingjobs", "digits"
        ),
    )
    assert "progress" in job.get("status", {}), "no progress reached the API"
    final = job["status"]["progress"]
    assert (final["epoch"], final["totalEpochs"], final["percent"]) == (12, 12, 100)
    assert final["step"] == final["totalSteps"]
    assert final["metrics"]["test_accuracy"] == pytest.approx(accuracy, abs=1e-6)
    assert final["summary"].startswith("epoch 12/12 loss ")


@pytest.mark.slow
def test_a_failed_attempt_resumes_from_its_checkpoint(tmp_path: Path) -> None:
    args = ["--epochs", "3", "--fail-at-epoch", "2"]
    first = _run(tmp_path, args, attempt=1)
    assert first.returncode != 0
    assert "failing on purpose at epoch 2" in first.stderr
    assert [p.name for p in (tmp_path / "checkpoints").glob("ckpt-*.pt")] == [
        "ckpt-e00001-s000000012.pt"
    ]
    assert not (tmp_path / "model" / "metadata.json").exists()

    second = _run(tmp_path, args, attempt=2)
    assert second.returncode == 0, second.stderr[-4000:]
    assert "starting at epoch 2/3" in second.stderr
    assert "epoch 1/3 loss" not in second.stderr  # epoch 1 was not trained again
    assert "epoch 3/3 loss" in second.stderr
    assert read_metadata(tmp_path / "model")["name"] == "digits-cnn"


@pytest.mark.slow
def test_plain_python_runs_single_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Without torchrun the example trains alone (run in-process: no interpreter start-up)."""
    for name in list(os.environ):
        if name.startswith("GANTRY_") or name in {"RANK", "WORLD_SIZE", "MASTER_ADDR"}:
            monkeypatch.delenv(name)
    monkeypatch.setenv("GANTRY_OUTPUT_DIR", str(tmp_path / "model"))
    assert digits.main(["--epochs", "1"]) == 0
    err = capsys.readouterr().err
    assert "1 worker(s), backend none" in err
    assert "checkpointing is disabled" in err
    assert read_metadata(tmp_path / "model")["files"]["model.onnx"]["bytes"] > 0


@pytest.mark.slow
@pytest.mark.gpu
def test_nccl_on_cuda(tmp_path: Path) -> None:
    if not torch.cuda.is_available():
        pytest.skip("no CUDA device: torch.cuda.is_available() is False")
    nproc = min(2, torch.cuda.device_count())
    result = _run(tmp_path, ["--epochs", "12"], nproc=nproc)
    assert result.returncode == 0, result.stderr[-4000:]
    assert f"{nproc} worker(s), backend nccl, device cuda:0" in result.stderr
    assert read_metadata(tmp_path / "model")["metrics"]["test_accuracy"] >= 0.90
