"""Find the Ready Triton pods of a service and fetch their `/metrics`, all at once.

Targets come from the EndpointSlices of `<name>-headless` (label
`kubernetes.io/service-name`): only endpoints whose `ready` condition is true, which is
exactly the set of pods that receive traffic. Each pod is scraped on its pod IP with a
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


def ready_targets(slices: Iterable[Mapping[str, Any]]) -> list[PodTarget]:
    """Ready endpoints of EndpointSlices, one per pod, sorted by pod name (pure)."""
    found: dict[str, PodTarget] = {}
    for eps in slices:
        for endpoint in eps.get("endpoints") or []:
            conditions = endpoint.get("conditions") or {}
            # The API treats a missing `ready` as ready; terminating endpoints are not.
            if conditions.get("ready") is False or conditions.get("terminating") is True:
                continue
            addresses = endpoint.get("addresses") or []
            if not addresses:
                continue
            ref = endpoint.get("targetRef") or {}
            pod = str(ref.get("name") or addresses[0])
            found.setdefault(pod, PodTarget(pod=pod, ip=str(addresses[0])))
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
