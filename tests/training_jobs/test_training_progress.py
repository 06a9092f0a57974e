"""ProgressReporter against a real kube-apiserver, as the job's trainer ServiceAccount.

Each test gets a namespace with a TrainingJob `digits`, the trainer ServiceAccount the
operator creates for it and a token for that account from the TokenRequest API, written
where the kubelet mounts it (GANTRY_SERVICEACCOUNT_DIR); KUBERNETES_SERVICE_HOST/PORT point
at the control plane. What the reporter sent is read back from the TrainingJob's status.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

import pytest
import torch

from dev_cluster.ports import pick_port
from tests.conftest import (
    create_trainer_account,
    create_training_job,
    grant_trainer_role,
    in_cluster_env,
    serviceaccount_dir,
)
from training_jobs import DistributedContext, ProgressReporter
from training_jobs.kube import ApiTarget, discover_api
from training_jobs.progress import build_progress, estimate_eta

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from dev_cluster.controlplane.threaded import ThreadedControlPlane

TOKEN = "s3cr3t-token-value"
MAIN = DistributedContext(
    rank=0, local_rank=0, world_size=2, device=torch.device("cpu"), backend="gloo", is_main=True
)


@dataclass
class Job:
    """A TrainingJob `digits` and its trainer's in-pod view of the API."""

    admin_api: ApiClient
    namespace: str
    env: dict[str, str]
    sa_dir: Path

    @property
    def token(self) -> str:
        return (self.sa_dir / "token").read_text()

    def status(self, name: str = "digits") -> dict[str, Any]:
        from kubernetes import client

        obj = client.CustomObjectsApi(self.admin_api).get_namespaced_custom_object(
            "gantry.dev", "v1alpha1", self.namespace, "trainingjobs", name
        )
        return dict(cast("dict[str, Any]", obj).get("status") or {})

    def progress(self) -> dict[str, Any] | None:
        return self.status().get("progress")

    def grant(self) -> None:
        grant_trainer_role(self.admin_api, self.namespace, "digits")


def _job(
    admin_api: ApiClient,
    control_plane: ThreadedControlPlane,
    namespace: str,
    tmp_path: Path,
) -> Job:
    create_training_job(admin_api, namespace, "digits")
    account = create_trainer_account(admin_api, namespace, "digits")
    sa_dir = serviceaccount_dir(
        admin_api, control_plane, namespace, account, tmp_path / "serviceaccount"
    )
    return Job(admin_api, namespace, in_cluster_env(control_plane, sa_dir), sa_dir)


@pytest.fixture
def ungranted(
    admin_api: ApiClient,
    control_plane: ThreadedControlPlane,
    crds: list[dict[str, Any]],
    namespace: str,
    tmp_path: Path,
) -> Job:
    """The trainer ServiceAccount exists, its Role is not bound yet."""
    return _job(admin_api, control_plane, namespace, tmp_path)


@pytest.fixture
def job(ungranted: Job) -> Job:
    """The trainer ServiceAccount with the operator's Role: get/patch this job's status."""
    ungranted.grant()
    return ungranted


@pytest.fixture
def records() -> Iterator[list[logging.LogRecord]]:
    captured: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            captured.append(record)

    handler = Collect(level=logging.DEBUG)
    logger = logging.getLogger("training_jobs")
    logger.addHandler(handler)
    yield captured
    logger.removeHandler(handler)


@pytest.fixture
def sa_dir(tmp_path: Path) -> Path:
    """Service-account files for tests that never reach an API server."""
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text(TOKEN + "\n")
    (directory / "namespace").write_text("team-a\n")
    return directory


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _reporter(env: dict[str, str], clock: FakeClock | None = None, **kw: Any) -> ProgressReporter:
    return ProgressReporter(
        total_epochs=kw.pop("total_epochs", 12),
        total_steps=kw.pop("total_steps", 120),
        job_name=kw.pop("job_name", "digits"),
        namespace=kw.pop("namespace", None),
        api=discover_api(env),
        context=kw.pop("context", MAIN),
        clock=clock or FakeClock(),
        timeout=10.0,
        **kw,
    )


def test_patch_merges_the_progress_into_the_status(job: Job) -> None:
    from kubernetes import client

    custom = client.CustomObjectsApi(job.admin_api)
    custom.patch_namespaced_custom_object_status(
        "gantry.dev", "v1alpha1", job.namespace, "trainingjobs", "digits",
        {"status": {"phase": "Running", "attempts": 1}},
    )  # fmt: skip
    clock = FakeClock()
    reporter = _reporter(job.env, clock, namespace=job.namespace)
    clock.now += 30.0  # 30 steps in 30 s -> 90 remaining steps take 90 s
    assert reporter.report(epoch=3, step=30, loss=0.2314, metrics={"test_accuracy": 0.97})

    status = job.status()
    assert status["phase"] == "Running" and status["attempts"] == 1, "a merge patch keeps the rest"
    progress = status["progress"]
    updated = progress.pop("updatedAt")
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", updated)
    assert progress == {
        "epoch": 3,
        "totalEpochs": 12,
        "step": 30,
        "totalSteps": 120,
        "loss": 0.2314,
        "metrics": {"test_accuracy": 0.97},
        "etaSeconds": 90,
        "percent": 25,
        "summary": "epoch 3/12 loss 0.231",
    }
    assert reporter.latest is not None and reporter.latest["step"] == 30


def test_namespace_defaults_to_the_service_account_namespace(job: Job) -> None:
    reporter = _reporter(job.env, namespace=None)
    assert reporter.report(epoch=1, step=1)
    progress = job.progress()
    assert progress is not None and progress["step"] == 1


def test_the_token_may_patch_this_job_only(job: Job, records: list[logging.LogRecord]) -> None:
    """The operator's Role names the job: another job's status is forbidden to its trainer."""
    create_training_job(job.admin_api, job.namespace, "other")
    reporter = _reporter(job.env, job_name="other", min_interval=0.0)
    assert not reporter.report(epoch=1, step=1, final=True)
    assert "progress" not in job.status("other")
    (warning,) = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert "HTTP 403" in warning and "digits-trainer" in warning
    assert job.token not in warning


def test_rate_limited_but_the_final_report_always_goes(job: Job) -> None:
    clock = FakeClock()
    reporter = _reporter(job.env, clock, min_interval=5.0)
    sent = [reporter.report(epoch=0, step=1)]
    clock.now += 1
    sent.append(reporter.report(epoch=0, step=2))
    clock.now += 1
    sent.append(reporter.report(epoch=0, step=3))
    assert sent == [True, False, False]
    assert (job.progress() or {})["step"] == 1, "only the first report reached the API"
    assert reporter.latest is not None and reporter.latest["step"] == 3  # kept even if not sent
    clock.now += 5
    assert reporter.report(epoch=1, step=10)
    assert (job.progress() or {})["step"] == 10
    clock.now += 0.1
    assert reporter.report(epoch=12, step=120, final=True)
    progress = job.progress() or {}
    assert (progress["step"], progress["percent"]) == (120, 100)


def test_connection_refused_warns_once_and_never_raises(
    sa_dir: Path, records: list[logging.LogRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    port = pick_port()  # nobody listens on it
    env = {
        "KUBERNETES_SERVICE_HOST": "127.0.0.1",
        "KUBERNETES_SERVICE_PORT": str(port),
        "GANTRY_SERVICEACCOUNT_DIR": str(sa_dir),
    }
    clock = FakeClock()
    reporter = _reporter(env, clock, min_interval=0.0)
    for step in range(1, 4):
        clock.now += 100
        assert reporter.report(epoch=0, step=step, final=True) is False
    warnings = [r for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "could not report progress" in warnings[0].getMessage()
    everything = " ".join(r.getMessage() for r in records) + str(capsys.readouterr())
    assert TOKEN not in everything


def test_refusals_warn_once_back_off_then_recovery_is_noted(
    ungranted: Job, records: list[logging.LogRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    """Until the operator's Role is bound the API answers 403; then reports go through."""
    clock = FakeClock()
    reporter = _reporter(ungranted.env, clock, min_interval=1.0)
    assert not reporter.report(epoch=0, step=1)
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "HTTP 403" in warnings[0] and "forbidden" in warnings[0]

    ungranted.grant()
    clock.now += 1.5
    assert not reporter.report(epoch=0, step=2), "backing off: not even tried"
    assert ungranted.progress() is None
    assert reporter.report(epoch=0, step=3, final=True), "a final report is always tried"
    assert (ungranted.progress() or {})["step"] == 3
    assert any("works again" in r.getMessage() for r in records)
    assert len([r for r in records if r.levelno >= logging.WARNING]) == 1
    everything = " ".join(r.getMessage() for r in records) + str(capsys.readouterr())
    assert ungranted.token not in everything


def test_the_server_is_verified_with_the_service_account_ca(
    job: Job, records: list[logging.LogRecord]
) -> None:
    (job.sa_dir / "ca.crt").unlink()
    reporter = _reporter(job.env, min_interval=0.0)
    assert not reporter.report(epoch=0, step=1, final=True)
    (warning,) = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert "CERTIFICATE_VERIFY_FAILED" in warning
    assert job.progress() is None


def test_other_ranks_send_nothing(job: Job) -> None:
    worker = DistributedContext(
        rank=1,
        local_rank=1,
        world_size=2,
        device=torch.device("cpu"),
        backend="gloo",
        is_main=False,
    )
    reporter = _reporter(job.env, context=worker)
    assert not reporter.enabled
    assert not reporter.report(epoch=12, step=120, final=True)
    assert job.progress() is None


def test_outside_a_cluster_progress_is_only_kept(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("GANTRY_JOB_NAME", "GANTRY_API_URL", "KUBERNETES_SERVICE_HOST"):
        monkeypatch.delenv(name, raising=False)
    reporter = ProgressReporter(total_epochs=2, context=MAIN)
    assert not reporter.enabled
    assert not reporter.report(epoch=1, step=5, loss=0.5)
    assert reporter.latest is not None and reporter.latest["summary"] == "epoch 1/2 loss 0.500"


def test_build_progress_is_pure_and_json_safe() -> None:
    now = datetime(2026, 11, 30, 4, 0, 0, 123456, tzinfo=UTC)
    progress = build_progress(
        epoch=2,
        total_epochs=4,
        step=7,
        total_steps=None,
        loss=float("nan"),
        metrics={"acc": 0.5, "bad": float("inf")},
        eta_seconds=None,
        now=now,
    )
    assert progress == {
        "epoch": 2,
        "totalEpochs": 4,
        "step": 7,
        "metrics": {"acc": 0.5},
        "percent": 50,
        "summary": "epoch 2/4",
        "updatedAt": "2026-11-30T04:00:00Z",
    }
    json.dumps(progress, allow_nan=False)


@pytest.mark.parametrize(
    ("done", "remaining", "elapsed", "eta"),
    [(10, 30, 5.0, 15), (0, 30, 5.0, None), (10, 0, 5.0, 0), (10, 5, 0.0, None), (3, 1, 1.0, 0)],
)
def test_estimate_eta(done: int, remaining: int, elapsed: float, eta: int | None) -> None:
    assert estimate_eta(done, remaining, elapsed) == eta


def test_discover_api_in_cluster_and_overrides(sa_dir: Path) -> None:
    (sa_dir / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    in_cluster = discover_api(
        {
            "KUBERNETES_SERVICE_HOST": "10.0.0.1",
            "KUBERNETES_SERVICE_PORT": "6443",
            "GANTRY_SERVICEACCOUNT_DIR": str(sa_dir),
        }
    )
    assert in_cluster == ApiTarget(
        base_url="https://10.0.0.1:6443",
        token_file=sa_dir / "token",
        ca_file=sa_dir / "ca.crt",
        namespace="team-a",
    )
    ipv6 = discover_api(
        {"KUBERNETES_SERVICE_HOST": "fd00::1", "GANTRY_SERVICEACCOUNT_DIR": "/nope"}
    )
    assert ipv6 is not None and ipv6.base_url == "https://[fd00::1]:443" and ipv6.token_file is None
    # In a pod, an API URL in the environment never replaces the service's verified https.
    pod = discover_api(
        {"GANTRY_API_URL": "http://127.0.0.1:6443/", "KUBERNETES_SERVICE_HOST": "127.0.0.1"}
    )
    assert pod is not None and pod.base_url == "https://127.0.0.1:443"
    outside = discover_api({"GANTRY_API_URL": "http://127.0.0.1:6443/"})
    assert outside is not None and outside.base_url == "http://127.0.0.1:6443"
    assert discover_api({}) is None


def test_bad_totals_are_rejected() -> None:
    with pytest.raises(ValueError, match="total_epochs"):
        ProgressReporter(total_epochs=0, context=MAIN)
    with pytest.raises(ValueError, match="total_steps"):
        ProgressReporter(total_epochs=1, total_steps=0, context=MAIN)
