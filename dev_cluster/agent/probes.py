"""Container probes (httpGet, tcpSocket, exec) with the kubelet's thresholds."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

import aiohttp

Obj = dict[str, Any]
ExecFn = Callable[[list[str], float], Awaitable[int]]


@dataclass(frozen=True)
class ProbeSpec:
    initial_delay: float
    period: float
    timeout: float
    failure_threshold: int
    success_threshold: int


def probe_spec(probe: Obj) -> ProbeSpec:
    return ProbeSpec(
        initial_delay=float(probe.get("initialDelaySeconds") or 0),
        period=float(probe.get("periodSeconds") or 10),
        timeout=float(probe.get("timeoutSeconds") or 1),
        failure_threshold=int(probe.get("failureThreshold") or 3),
        success_threshold=int(probe.get("successThreshold") or 1),
    )


def resolve_port(port: object, container: Obj) -> int:
    """A probe port: a number, or the name of one of the container's ports."""
    if isinstance(port, int):
        return port
    text = str(port)
    if text.isdigit():
        return int(text)
    for p in container.get("ports") or []:
        if p.get("name") == text:
            return int(p["containerPort"])
    raise ValueError(f"probe port {text!r} is not a container port name")


async def check(probe: Obj, container: Obj, pod_ip: str, exec_fn: ExecFn) -> bool:
    """Run the probe once; True on success."""
    timeout = probe_spec(probe).timeout
    try:
        if "httpGet" in probe:
            get = probe["httpGet"]
            host = get.get("host") or pod_ip
            scheme = str(get.get("scheme") or "HTTP").lower()
            port = resolve_port(get.get("port"), container)
            url = f"{scheme}://{host}:{port}{get.get('path') or '/'}"
            headers = {h["name"]: h["value"] for h in get.get("httpHeaders") or []}
            async with (
                aiohttp.ClientSession() as session,
                session.get(
                    url, headers=headers, timeout=aiohttp.ClientTimeout(total=timeout), ssl=False
                ) as resp,
            ):
                return 200 <= resp.status < 400
        if "tcpSocket" in probe:
            sock = probe["tcpSocket"]
            host = sock.get("host") or pod_ip
            _, writer = await asyncio.wait_for(
                asyncio.open_connection(host, resolve_port(sock.get("port"), container)), timeout
            )
            writer.close()
            return True
        if "exec" in probe:
            return await exec_fn([str(a) for a in probe["exec"].get("command") or []], timeout) == 0
        if "grpc" in probe:
            return False
    except (aiohttp.ClientError, OSError, TimeoutError, ValueError):
        return False
    return True


class ProbeState:
    """Counts consecutive results and flips at the thresholds, as the kubelet does."""

    def __init__(self, spec: ProbeSpec, initial: bool) -> None:
        self.spec = spec
        self.result = initial
        self.successes = 0
        self.failures = 0

    def record(self, ok: bool) -> bool:
        """Record one result; True when the overall result changed."""
        before = self.result
        if ok:
            self.successes += 1
            self.failures = 0
            if self.successes >= self.spec.success_threshold:
                self.result = True
        else:
            self.failures += 1
            self.successes = 0
            if self.failures >= self.spec.failure_threshold:
                self.result = False
        return before != self.result


def probes_of(container: Mapping[str, Any]) -> dict[str, Obj]:
    return {
        kind: container[key]
        for kind, key in (
            ("startup", "startupProbe"),
            ("liveness", "livenessProbe"),
            ("readiness", "readinessProbe"),
        )
        if container.get(key)
    }
