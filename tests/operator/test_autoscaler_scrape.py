"""Scrape targets from Ready pods, and concurrent scrapes over real HTTP."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from gantry.autoscaler.scrape import PodTarget, ready_targets, scrape

CAPTURE = (Path(__file__).parent / "data" / "autoscaler_triton_metrics.txt").read_text()


def pod(name: str, ip: str | None, ready: str | None, **meta: Any) -> dict[str, Any]:
    conditions = [] if ready is None else [{"type": "Ready", "status": ready}]
    status: dict[str, Any] = {"conditions": conditions}
    if ip:
        status["podIP"] = ip
    return {"metadata": {"name": name, **meta}, "status": status}


def test_ready_targets_only_ready_pods() -> None:
    pods = [
        pod("b", "10.0.0.2", "True"),
        pod("a", "10.0.0.1", "True"),
        pod("c", "10.0.0.3", "False"),
        pod("d", "10.0.0.4", "True", deletionTimestamp="2026-01-01T00:00:00Z"),
        pod("e", None, "True"),
        pod("f", "10.0.0.6", None),
    ]
    assert ready_targets(pods) == [PodTarget("a", "10.0.0.1"), PodTarget("b", "10.0.0.2")]
    assert PodTarget("x", "fd00::1").url() == "http://[fd00::1]:8002/metrics"


@pytest.fixture
async def pods() -> AsyncIterator[int]:
    """Three pods on one port: 127.0.8.1 healthy, .2 answers 500, .3 never answers."""
    hang = asyncio.Event()

    async def good(_: web.Request) -> web.Response:
        return web.Response(text=CAPTURE)

    async def broken(_: web.Request) -> web.Response:
        return web.Response(status=500, text="boom")

    async def stuck(_: web.Request) -> web.Response:
        await hang.wait()
        return web.Response(text="")

    runners = []
    port = 0
    for ip, handler in (("127.0.8.1", good), ("127.0.8.2", broken), ("127.0.8.3", stuck)):
        app = web.Application()
        app.router.add_get("/metrics", handler)
        runner = web.AppRunner(app, shutdown_timeout=0.1)
        await runner.setup()
        site = web.TCPSite(runner, ip, port)
        await site.start()
        if port == 0:
            port = runner.addresses[0][1]
        runners.append(runner)
    yield port
    hang.set()
    for runner in runners:
        await runner.cleanup()


async def test_scrape_collects_good_pods_and_reports_failures(pods: int) -> None:
    targets = [
        PodTarget("good", "127.0.8.1"),
        PodTarget("broken", "127.0.8.2"),
        PodTarget("stuck", "127.0.8.3"),
        PodTarget("gone", "127.0.8.4"),
    ]
    result = await scrape(targets, "digits", port=pods, timeout=0.5)
    assert set(result.samples) == {"good"}
    counters = result.samples["good"]
    assert counters is not None and counters.success == 200
    assert result.failures["broken"] == "HTTP 500"
    assert result.failures["stuck"] == "timed out after 0.5 s"
    assert "gone" in result.failures


async def test_scrape_of_a_pod_without_the_model(pods: int) -> None:
    result = await scrape([PodTarget("good", "127.0.8.1")], "other", port=pods, timeout=1)
    assert result.samples == {"good": None} and result.failures == {}
