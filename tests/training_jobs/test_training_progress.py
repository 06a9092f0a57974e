"""ProgressReporter: the PATCH it sends, rate limiting, and surviving a broken API."""

from __future__ import annotations

import json
import logging
import re
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
import torch

from training_jobs import DistributedContext, ProgressReporter
from training_jobs.kube import ApiTarget, discover_api
from training_jobs.progress import build_progress, estimate_eta

TOKEN = "s3cr3t-token-value"
MAIN = DistributedContext(
    rank=0, local_rank=0, world_size=2, device=torch.device("cpu"), backend="gloo", is_main=True
)


@dataclass
class FakeApi:
    """A tiny API server in a thread that records requests and answers ``status``."""

    server: ThreadingHTTPServer
    url: str
    requests: list[dict[str, Any]] = field(default_factory=list)
    status: int = 200


@pytest.fixture
def api() -> Iterator[FakeApi]:
    holder: dict[str, FakeApi] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_PATCH(self) -> None:
            fake = holder["api"]
            body = self.rfile.read(int(self.headers["Content-Length"]))
            fake.requests.append(
                {"path": self.path, "headers": dict(self.headers), "body": json.loads(body)}
            )
            reply = json.dumps({"kind": "Status", "message": "boom"}).encode()
            self.send_response(fake.status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(reply)))
            self.end_headers()
            self.wfile.write(reply)

        def log_message(self, format: str, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    fake = FakeApi(server=server, url=f"http://127.0.0.1:{server.server_address[1]}")
    holder["api"] = fake
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield fake
    server.shutdown()
    server.server_close()


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


def _reporter(
    url: str, sa_dir: Path, clock: FakeClock | None = None, **kw: Any
) -> ProgressReporter:
    env = {"GANTRY_API_URL": url, "GANTRY_SERVICEACCOUNT_DIR": str(sa_dir)}
    return ProgressReporter(
        total_epochs=kw.pop("total_epochs", 12),
        total_steps=kw.pop("total_steps", 120),
        job_name="digits",
        namespace=kw.pop("namespace", "ml"),
        api=discover_api(env),
        context=kw.pop("context", MAIN),
        clock=clock or FakeClock(),
        timeout=2.0,
        **kw,
    )


def test_patch_carries_the_progress_as_a_merge_patch(api: FakeApi, sa_dir: Path) -> None:
    clock = FakeClock()
    reporter = _reporter(api.url, sa_dir, clock)
    clock.now += 30.0  # 30 steps in 30 s -> 90 remaining steps take 90 s
    assert reporter.report(epoch=3, step=30, loss=0.2314, metrics={"test_accuracy": 0.97})

    (request,) = api.requests
    assert request["path"] == "/apis/gantry.dev/v1alpha1/namespaces/ml/trainingjobs/digits/status"
    assert request["headers"]["Content-Type"] == "application/merge-patch+json"
    assert request["headers"]["Authorization"] == f"Bearer {TOKEN}"
    progress = request["body"]["status"]["progress"]
    assert set(request["body"]) == {"status"} and set(request["body"]["status"]) == {"progress"}
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


def test_namespace_defaults_to_the_service_account_namespace(api: FakeApi, sa_dir: Path) -> None:
    reporter = _reporter(api.url, sa_dir, namespace=None)
    reporter.report(epoch=1, step=1)
    assert api.requests[0]["path"].startswith("/apis/gantry.dev/v1alpha1/namespaces/team-a/")


def test_rate_limited_but_the_final_report_always_goes(api: FakeApi, sa_dir: Path) -> None:
    clock = FakeClock()
    reporter = _reporter(api.url, sa_dir, clock, min_interval=5.0)
    assert reporter.report(epoch=0, step=1)
    clock.now += 1
    assert not reporter.report(epoch=0, step=2)
    clock.now += 1
    assert not reporter.report(epoch=0, step=3)
    assert len(api.requests) == 1
    assert reporter.latest is not None and reporter.latest["step"] == 3  # kept even if not sent
    clock.now += 5
    assert reporter.report(epoch=1, step=10)
    clock.now += 0.1
    assert reporter.report(epoch=12, step=120, final=True)
    assert [r["body"]["status"]["progress"]["step"] for r in api.requests] == [1, 10, 120]
    assert api.requests[-1]["body"]["status"]["progress"]["percent"] == 100


def test_connection_refused_warns_once_and_never_raises(
    sa_dir: Path, records: list[logging.LogRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    with socket.socket() as sock:  # a port nobody listens on
        sock.bind(("127.0.0.1", 0))
        url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    clock = FakeClock()
    reporter = _reporter(url, sa_dir, clock, min_interval=0.0)
    for step in range(1, 4):
        clock.now += 100
        assert reporter.report(epoch=0, step=step, final=True) is False
    warnings = [r for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1
    assert "could not report progress" in warnings[0].getMessage()
    everything = " ".join(r.getMessage() for r in records) + str(capsys.readouterr())
    assert TOKEN not in everything


def test_server_errors_warn_once_then_recovery_is_noted(
    api: FakeApi, sa_dir: Path, records: list[logging.LogRecord], capsys: pytest.CaptureFixture[str]
) -> None:
    api.status = 500
    clock = FakeClock()
    reporter = _reporter(api.url, sa_dir, clock, min_interval=1.0)
    assert not reporter.report(epoch=0, step=1)
    clock.now += 1.5
    assert not reporter.report(epoch=0, step=2)  # backing off: not even tried
    assert len(api.requests) == 1
    assert not reporter.report(epoch=0, step=3, final=True)  # final is always tried
    assert len(api.requests) == 2
    warnings = [r.getMessage() for r in records if r.levelno >= logging.WARNING]
    assert len(warnings) == 1 and "HTTP 500" in warnings[0] and "boom" in warnings[0]

    api.status = 200
    clock.now += 100
    assert reporter.report(epoch=1, step=4)
    assert any("works again" in r.getMessage() for r in records)
    everything = " ".join(r.getMessage() for r in records) + str(capsys.readouterr())
    assert TOKEN not in everything


def test_other_ranks_send_nothing(api: FakeApi, sa_dir: Path) -> None:
    worker = DistributedContext(
        rank=1,
        local_rank=1,
        world_size=2,
        device=torch.device("cpu"),
        backend="gloo",
        is_main=False,
    )
    reporter = _reporter(api.url, sa_dir, context=worker)
    assert not reporter.enabled
    assert not reporter.report(epoch=12, step=120, final=True)
    assert api.requests == []


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
