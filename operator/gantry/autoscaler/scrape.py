"""Find the Ready Triton pods of a service and fetch their `/metrics`, all at once.

Targets are the pods the headless Service `<name>-headless` selects whose `Ready`
condition is True and that are not terminating: exactly the pods the EndpointSlice
controller lists as ready endpoints, i.e. the pods that receive traffic. They are read
from the pods themselves, not from EndpointSlices: the API server rejects endpoint
addresses in 127.0.0.0/8, so where pods live on loopback addresses (the dev cluster)
the slices stay empty while the pods serve. Each pod is scraped on its pod IP with a
bounded timeout; one slow or broken pod is reported as failed and never delays or
poisons the others.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import aiohttp

from gantry.autoscaler.triton_metrics import MetricsParseError, TritonCounters, parse_triton_metrics
from gantry.inferenceservice.names import METRICS_PORT

DEFAULT_TIMEOUT_SECONDS = 2.0
MAX_BODY_BYTES = 4 * 1024 * 1024


class ScrapeError(RuntimeError):
    """A pod answered, but not with usable metrics."""


@dataclass(frozen=True)
class PodTarget:
    pod: str
    ip: str

    def url(self, port: int = METRICS_PORT) -> str:
        host = f"[{self.ip}]" if ":" in self.ip else self.ip
        return f"http://{host}:{port}/metrics"


def is_ready_pod(pod: Mapping[str, Any]) -> bool:
    """Ready condition True, a pod IP, not terminating: a ready endpoint (pure)."""
    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    if meta.get("deletionTimestamp") or not status.get("podIP"):
        return False
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )


def ready_targets(pods: Iterable[Mapping[str, Any]]) -> list[PodTarget]:
    """The ready pods among `pods`, sorted by pod name (pure)."""
    found = {
        str(pod["metadata"]["name"]): PodTarget(
            pod=str(pod["metadata"]["name"]), ip=str(pod["status"]["podIP"])
        )
        for pod in pods
        if is_ready_pod(pod)
    }
    return [found[name] for name in sorted(found)]


@dataclass(frozen=True)
class ScrapeResult:
    samples: dict[str, TritonCounters | None]  # pod → counters (None: model not loaded)
    failures: dict[str, str]  # pod → why


async def _fetch(session: aiohttp.ClientSession, target: PodTarget, port: int) -> str:
    async with session.get(target.url(port)) as response:
        if response.status != 200:
            raise ScrapeError(f"HTTP {response.status}")
        body = await response.content.read(MAX_BODY_BYTES + 1)
        if len(body) > MAX_BODY_BYTES:
            raise ScrapeError(f"metrics larger than {MAX_BODY_BYTES} bytes")
        return body.decode("utf-8", "replace")


async def scrape(
    targets: Sequence[PodTarget],
    model: str,
    *,
    port: int = METRICS_PORT,
    timeout: float = DEFAULT_TIMEOUT_SECONDS,
    session: aiohttp.ClientSession | None = None,
) -> ScrapeResult:
    """Scrape every target concurrently; failures are collected, never raised."""
    own = session is None
    client = session or aiohttp.ClientSession(
        timeout=aiohttp.ClientTimeout(total=timeout, connect=min(timeout, 1.0))
    )
    try:
        texts = await asyncio.gather(
            *(asyncio.wait_for(_fetch(client, t, port), timeout) for t in targets),
            return_exceptions=True,
        )
    finally:
        if own:
            await client.close()
    samples: dict[str, TritonCounters | None] = {}
    failures: dict[str, str] = {}
    for target, text in zip(targets, texts, strict=True):
        if isinstance(text, BaseException):
            if isinstance(text, asyncio.CancelledError):
                raise text
            failures[target.pod] = _describe(text, timeout)
            continue
        try:
            samples[target.pod] = parse_triton_metrics(text, model)
        except MetricsParseError as err:
            failures[target.pod] = str(err)
    return ScrapeResult(samples=samples, failures=failures)


def _describe(err: BaseException, timeout: float) -> str:
    if isinstance(err, TimeoutError | asyncio.TimeoutError):
        return f"timed out after {timeout:g} s"
    if isinstance(err, ScrapeError):
        return str(err)
    return f"{type(err).__name__}: {err}" if str(err) else type(err).__name__
