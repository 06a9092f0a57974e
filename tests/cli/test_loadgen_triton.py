"""The load generator and the metrics scraper against a real tritonserver (slow)."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from dev_cluster.local_triton import triton_environment, tritonserver_argv
from gantry.autoscaler.collector import ServiceCollector
from gantry.autoscaler.scrape import PodTarget, scrape
from gantry_cli.loadgen.cli import load
from gantry_cli.loadgen.endpoints import FixedEndpoints
from gantry_cli.loadgen.profile import parse_profile
from gantry_cli.loadgen.runner import LoadRunner, random_inputs
from gantry_cli.loadgen.scenario import write_model
from gantry_cli.predict import model_signature
from tests.conftest import require_triton, wait_for

pytestmark = pytest.mark.slow

IP = "127.0.9.21"
SERVICE_MS = 10


def start_triton(repository: Path, ip: str, log: Path) -> subprocess.Popen[bytes]:
    """A tritonserver on `ip` (8000/8001/8002), Ready; fails when it cannot start."""
    require_triton()
    args = [
        f"--model-repository={repository}",
        f"--http-address={ip}",
        f"--grpc-address={ip}",
        f"--metrics-address={ip}",
        "--allow-gpu-metrics=false",
        "--metrics-config=summary_latencies=true",
    ]
    out = log.open("wb")
    proc = subprocess.Popen(
        tritonserver_argv(args),
        env=triton_environment(os.environ),
        stdout=out,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )

    def log_tail() -> str:
        return log.read_text(errors="replace")[-2000:]

    def ready() -> bool:
        if proc.poll() is not None:
            pytest.fail(f"tritonserver exited with {proc.returncode}: {log_tail()}")
        try:
            with urllib.request.urlopen(f"http://{ip}:8000/v2/health/ready", timeout=1) as r:
                return bool(r.status == 200)
        except OSError:
            return False

    try:
        wait_for(ready, 60, "tritonserver to become ready", every=0.3, on_timeout=log_tail)
    except BaseException:
        proc.kill()
        proc.wait()
        raise
    return proc


@pytest.fixture(scope="module")
def triton(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    root = tmp_path_factory.mktemp("triton")
    repository = write_model(root / "repo", "fixed", SERVICE_MS)
    proc = start_triton(repository, IP, root / "triton.log")
    yield IP
    proc.terminate()
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def test_bench_load_command_writes_results_and_plot(triton: str, tmp_path: Path) -> None:
    out = tmp_path / "run.json"
    result = CliRunner().invoke(
        load,
        [
            "--url",
            f"{triton}:8001",
            "--model",
            "fixed",
            "--profile",
            "0:20rps,2:40rps,4:0",
            "--output",
            str(out),
            "--slo-ms",
            "50",
        ],
    )
    assert result.exit_code == 0, result.output
    doc = json.loads(out.read_text())
    assert doc["kind"] == "rate" and len(doc["timeline"]) == 4
    # Requests went out and every one was answered. How close the open loop keeps to the
    # profile's rate is a figure of bench/perf_analyzer_compare.py, not asserted here.
    summary = doc["summary"]
    assert summary["sent"] > 0 and summary["errors"] == 0
    assert summary["ok"] == summary["sent"]
    assert doc["pod_share"] == {f"{triton}:8001": 1.0}
    assert [row["target_load"] for row in doc["timeline"]] == [20, 20, 40, 40]
    # Each answered second's p95 includes the model's fixed service time (a lower bound a
    # slow machine cannot break).
    answered = [row for row in doc["timeline"] if row["ok"]]
    assert answered and all(row["p95_ms"] >= SERVICE_MS for row in answered)
    assert out.with_suffix(".png").read_bytes()[:4] == b"\x89PNG"
    assert "share per pod" in result.output


def test_bench_load_bad_input_is_a_clear_error(triton: str) -> None:
    result = CliRunner().invoke(load, ["--url", f"{triton}:8001", "--profile", "0:1,1:0"])
    assert result.exit_code != 0 and "--model is required" in result.output
    result = CliRunner().invoke(
        load, ["--url", f"{triton}:8001", "--model", "fixed", "--profile", "0:x"]
    )
    assert result.exit_code != 0 and "bad profile point" in result.output
    result = CliRunner().invoke(
        load, ["--url", f"{triton}:8001", "--model", "nope", "--profile", "0:1,1:0"]
    )
    assert result.exit_code != 0 and "nope" in result.output


async def test_scraped_rates_match_the_load(triton: str) -> None:
    """Rates and latency from Triton's own counters agree with what was sent."""
    signature = await asyncio.to_thread(model_signature, f"{triton}:8001", "fixed")
    target = [PodTarget("pod", triton)]
    collector = ServiceCollector()
    first = await scrape(target, "fixed")
    collector.observe(first.samples, at=time.monotonic())
    runner = LoadRunner(
        parse_profile("0:30rps,3:0"),
        FixedEndpoints([f"{triton}:8001"]),
        "fixed",
        random_inputs(signature),
    )
    result = await runner.run()
    second = await scrape(target, "fixed")
    metrics = collector.observe(second.samples, at=time.monotonic())
    ok = sum(1 for r in result.records if r.ok)
    assert metrics.sampled_pods == 1 and not metrics.failed_pods
    assert metrics.windows[0].requests == ok
    # Every request sleeps SERVICE_MS in the model: the mean of Triton's own durations
    # cannot be lower, however loaded the machine.
    assert metrics.latency_mean_ms is not None and metrics.latency_mean_ms >= SERVICE_MS
    assert metrics.p95_source == "summary"
    assert metrics.latency_p95_ms is not None and metrics.latency_p95_ms > 0


def test_perf_analyzer_measures_the_local_triton(triton: str, tmp_path: Path) -> None:
    """The reference client `make tools` installs runs here (no GPU) and reads sane numbers;
    `bench/perf_analyzer_compare.py` compares it with `gantry bench load`."""
    from bench.perf_analyzer_compare import perf_analyzer
    from dev_cluster.local_triton import tools_dir

    executable = tools_dir() / "bin" / "perf_analyzer"
    if not executable.exists():
        pytest.fail("perf_analyzer is not installed under .tools: run `make tools`")
    load = {"kind": "concurrency", "value": 1}
    measured = perf_analyzer(executable, f"{triton}:8001", load, 3.0, tmp_path)
    # It answered requests, each taking at least the model's service time; the figures
    # themselves are bench/perf_analyzer_compare.py's.
    assert measured["throughput"] > 0
    assert measured["p50_ms"] >= SERVICE_MS
