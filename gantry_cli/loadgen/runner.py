"""Send gRPC load to Triton following a profile, and record every request.

Open loop (rates): requests leave on schedule whatever happened to earlier ones, so an
overloaded server shows up as rising latency and errors, not as a politely slower
client (closed loops hide overload). In-flight requests are capped; a request that
would exceed the cap is counted as an error at once, never queued in the client.
Closed loop (concurrency): N clients, each sending its next request when the previous
one returned.

Every second the endpoint list is re-read (new replicas join the rotation) and the
replica count is polled; a `Tick` goes to the caller for live progress.
"""

from __future__ import annotations

import asyncio
import itertools
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from gantry_cli.loadgen.endpoints import Endpoint, Endpoints
from gantry_cli.loadgen.profile import Profile
from gantry_cli.loadgen.stats import Record, percentile

_NUMPY_TYPES = {
    "FP32": np.float32,
    "FP64": np.float64,
    "FP16": np.float16,
    "INT8": np.int8,
    "INT16": np.int16,
    "INT32": np.int32,
    "INT64": np.int64,
    "UINT8": np.uint8,
    "BOOL": np.bool_,
}


def random_inputs(
    signature: Any, rng: np.random.Generator | None = None
) -> dict[str, np.ndarray[Any, Any]]:
    """Random arrays matching the model's inputs; dynamic dimensions become 1."""
    rng = rng or np.random.default_rng(0)
    arrays: dict[str, np.ndarray[Any, Any]] = {}
    for tensor in signature.inputs:
        dtype = _NUMPY_TYPES.get(tensor.datatype)
        if dtype is None:
            raise ValueError(
                f"input '{tensor.name}' has type {tensor.datatype}, which the load generator "
                f"cannot fill (supported: {', '.join(_NUMPY_TYPES)})"
            )
        shape = tuple(1 if d < 0 else d for d in tensor.shape)
        if np.issubdtype(dtype, np.floating):
            arrays[tensor.name] = rng.random(shape).astype(dtype)
        elif dtype is np.bool_:
            arrays[tensor.name] = rng.random(shape) > 0.5
        else:
            arrays[tensor.name] = rng.integers(0, 10, size=shape).astype(dtype)
    return arrays


@dataclass(frozen=True)
class Tick:
    """What the last second looked like (live progress)."""

    t: float
    load: float
    ok_per_second: float
    errors: int
    p50_ms: float | None
    p95_ms: float | None
    replicas: int | None
    pods: int
    in_flight: int


@dataclass
class LoadResult:
    records: list[Record]
    duration: float
    replicas: dict[int, int | None] = field(default_factory=dict)
    target_load: list[float] = field(default_factory=list)
    errors: dict[str, int] = field(default_factory=dict)
    first_seen: dict[str, float] = field(default_factory=dict)  # pod → s when first Ready


class LoadRunner:
    """One run of one profile against one model."""

    def __init__(
        self,
        profile: Profile,
        endpoints: Endpoints,
        model: str,
        inputs: Mapping[str, np.ndarray[Any, Any]],
        *,
        timeout: float = 10.0,
        max_in_flight: int = 2000,
        on_tick: Callable[[Tick], None] | None = None,
    ) -> None:
        self.profile = profile
        self.endpoints = endpoints
        self.model = model
        self.inputs = dict(inputs)
        self.timeout = timeout
        self.max_in_flight = max_in_flight
        self.on_tick = on_tick
        self.records: list[Record] = []
        self.errors: dict[str, int] = {}
        self._pool: list[Endpoint] = []
        self._rotation = itertools.count()
        self._clients: dict[str, Any] = {}
        self._in_flight = 0
        self._start = 0.0
        self.first_seen: dict[str, float] = {}

    def _set_pool(self, pool: list[Endpoint]) -> None:
        """Use these endpoints from now on; remember when each first appeared (Ready)."""
        self._pool = pool
        for endpoint in pool:
            self.first_seen.setdefault(endpoint.name, round(self._now(), 3))

    def _now(self) -> float:
        return time.perf_counter() - self._start

    def _client(self, address: str) -> Any:
        client = self._clients.get(address)
        if client is None:
            import tritonclient.grpc.aio as grpc_aio

            client = grpc_aio.InferenceServerClient(url=address)
            self._clients[address] = client
        return client

    def _request(self) -> list[Any]:
        import tritonclient.grpc as grpcclient
        from tritonclient.utils import np_to_triton_dtype

        tensors = []
        for name, array in self.inputs.items():
            tensor = grpcclient.InferInput(name, list(array.shape), np_to_triton_dtype(array.dtype))
            tensor.set_data_from_numpy(array)
            tensors.append(tensor)
        return tensors

    def _error(self, kind: str, sent: float, pod: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1
        self.records.append(Record(sent, 0.0, False, pod))

    async def _send(self, request: list[Any]) -> None:
        sent = self._now()
        if not self._pool:
            self._error("no ready endpoint", sent, "-")
            return
        endpoint = self._pool[next(self._rotation) % len(self._pool)]
        self._in_flight += 1
        started = time.perf_counter()
        try:
            await self._client(endpoint.address).infer(
                self.model, request, client_timeout=self.timeout
            )
        except asyncio.CancelledError:
            raise
        except Exception as err:
            text = str(err).strip().splitlines()[0][:120] if str(err).strip() else ""
            self._error(text or type(err).__name__, sent, endpoint.name)
        else:
            latency = (time.perf_counter() - started) * 1000
            self.records.append(Record(sent, latency, True, endpoint.name))
        finally:
            self._in_flight -= 1

    async def _open_loop(self, request: list[Any]) -> None:
        tasks: set[asyncio.Task[None]] = set()
        next_at = 0.0
        while True:
            now = self._now()
            if now >= self.profile.end:
                break
            rate = self.profile.load_at(max(now, next_at))
            if rate <= 0:
                next_at = now + 0.05
                await asyncio.sleep(0.05)
                continue
            if next_at > now:
                await asyncio.sleep(next_at - now)
            if self._in_flight >= self.max_in_flight:
                self._error("client in-flight limit", self._now(), "-")
            else:
                task = asyncio.create_task(self._send(request))
                tasks.add(task)
                task.add_done_callback(tasks.discard)
            next_at = max(next_at, now - 1.0) + 1.0 / rate
        if tasks:
            await asyncio.wait(tasks, timeout=self.timeout + 1)

    async def _closed_loop(self, request: list[Any]) -> None:
        async def client(index: int) -> None:
            while (now := self._now()) < self.profile.end:
                if index < round(self.profile.load_at(now)):
                    await self._send(request)
                else:
                    await asyncio.sleep(0.05)

        await asyncio.gather(*(client(i) for i in range(int(self.profile.peak))))

    async def _refresher(self) -> dict[int, int | None]:
        """Every second: re-read endpoints and replicas, report a Tick; returns replicas."""
        replicas: dict[int, int | None] = {}
        second = 0
        seen = 0
        while self._now() < self.profile.end:
            try:
                self._set_pool(await self.endpoints.refresh() or self._pool)
                count = await self.endpoints.replicas()
            except Exception as err:  # the API may blip; keep the last known pool
                self.errors[f"endpoint refresh: {type(err).__name__}"] = (
                    self.errors.get(f"endpoint refresh: {type(err).__name__}", 0) + 1
                )
                count = replicas.get(second - 1)
            replicas[second] = count
            fresh = self.records[seen:]
            seen = len(self.records)
            ok = [r.latency_ms for r in fresh if r.ok]
            if self.on_tick is not None:
                self.on_tick(
                    Tick(
                        t=self._now(),
                        load=self.profile.load_at(self._now()),
                        ok_per_second=float(len(ok)),
                        errors=len(fresh) - len(ok),
                        p50_ms=percentile(ok, 50),
                        p95_ms=percentile(ok, 95),
                        replicas=count,
                        pods=len(self._pool),
                        in_flight=self._in_flight,
                    )
                )
            second += 1
            await asyncio.sleep(max(0.0, second - self._now()))
        return replicas

    async def run(self) -> LoadResult:
        # Imports, channels and the first endpoint list before the clock starts: a slow
        # start would otherwise be caught up as a burst the server sees as overload.
        request = self._request()
        pool = await self.endpoints.refresh()
        for endpoint in pool:
            self._client(endpoint.address)
        self._start = time.perf_counter()
        self._set_pool(pool)
        refresher = asyncio.create_task(self._refresher())
        try:
            if self.profile.kind == "rate":
                await self._open_loop(request)
            else:
                await self._closed_loop(request)
            replicas = await refresher
        finally:
            refresher.cancel()
            for client in self._clients.values():
                await client.close()
        seconds = int(self.profile.end + 0.999)
        return LoadResult(
            records=self.records,
            duration=self._now(),
            replicas=replicas,
            target_load=[self.profile.load_at(s + 0.5) for s in range(seconds)],
            errors=dict(self.errors),
            first_seen=dict(self.first_seen),
        )
