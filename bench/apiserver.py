"""Throughput and latency of the emulated Kubernetes API server.

Starts ``python -m dev_cluster.apiserver`` in its own process and drives it over HTTP
with aiohttp: creates per second (16 concurrent clients), merge patches per second,
list latency at 1,000 objects, and watch-event latency seen by 10 concurrent watchers
(from sending the create to each watcher reading its ADDED event). This is the ceiling
against which the operator's throughput is measured.

    .venv/bin/python bench/apiserver.py [--objects 1000] [--watchers 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import time
from typing import Any

import aiohttp

CMS = "/api/v1/namespaces/default/configmaps"


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def _ms(seconds: float) -> str:
    return f"{seconds * 1000:8.2f} ms"


async def _watch(
    session: aiohttp.ClientSession,
    url: str,
    rv: str,
    sent: dict[str, float],
    lat: list[float],
    expect: int,
    ready: asyncio.Event,
) -> None:
    params = {"watch": "true", "resourceVersion": rv, "timeoutSeconds": "120"}
    async with session.get(url + CMS, params=params) as resp:
        ready.set()
        seen = 0
        async for line in resp.content:
            if not line.strip():
                continue
            event = json.loads(line)
            if event["type"] != "ADDED":
                continue
            name = event["object"]["metadata"]["name"]
            lat.append(time.perf_counter() - sent[name])
            seen += 1
            if seen >= expect:
                return


async def _run(url: str, objects: int, watchers: int, concurrency: int) -> dict[str, Any]:
    results: dict[str, Any] = {}
    connector = aiohttp.TCPConnector(limit=concurrency + watchers + 4)
    async with aiohttp.ClientSession(connector=connector) as session:
        async with session.get(url + CMS) as resp:
            rv = (await resp.json())["metadata"]["resourceVersion"]
        sent: dict[str, float] = {}
        lat: list[float] = []
        readies = [asyncio.Event() for _ in range(watchers)]
        watch_tasks = [
            asyncio.create_task(_watch(session, url, rv, sent, lat, objects, readies[i]))
            for i in range(watchers)
        ]
        await asyncio.gather(*(r.wait() for r in readies))
        queue: asyncio.Queue[int] = asyncio.Queue()
        for i in range(objects):
            queue.put_nowait(i)
        create_lat: list[float] = []

        async def creator() -> None:
            while not queue.empty():
                i = queue.get_nowait()
                name = f"bench-{i:05d}"
                body = {
                    "metadata": {"name": name, "labels": {"bench": "yes"}},
                    "data": {"payload": "x" * 200},
                }
                sent[name] = t0 = time.perf_counter()
                async with session.post(url + CMS, json=body) as resp:
                    assert resp.status == 201, await resp.text()
                    await resp.read()
                create_lat.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(creator() for _ in range(concurrency)))
        elapsed = time.perf_counter() - start
        results["creates_per_s"] = objects / elapsed
        results["create_p50"] = _pct(create_lat, 0.5)
        results["create_p99"] = _pct(create_lat, 0.99)
        await asyncio.wait_for(asyncio.gather(*watch_tasks), 120)
        results["watch_p50"] = _pct(lat, 0.5)
        results["watch_p99"] = _pct(lat, 0.99)
        results["watch_events"] = len(lat)

        patch_lat: list[float] = []
        names = list(sent)

        async def patcher(offset: int) -> None:
            for i in range(offset, len(names), concurrency):
                t0 = time.perf_counter()
                async with session.patch(
                    f"{url}{CMS}/{names[i]}",
                    data=json.dumps({"data": {"step": str(i)}}),
                    headers={"Content-Type": "application/merge-patch+json"},
                ) as resp:
                    assert resp.status == 200, await resp.text()
                    await resp.read()
                patch_lat.append(time.perf_counter() - t0)

        start = time.perf_counter()
        await asyncio.gather(*(patcher(i) for i in range(concurrency)))
        results["patches_per_s"] = len(names) / (time.perf_counter() - start)

        for label, query in (
            ("list_all", ""),
            ("list_page500", "?limit=500"),
            ("list_selector", "?labelSelector=bench%3Dyes&limit=100"),
        ):
            times = []
            for _ in range(15):
                t0 = time.perf_counter()
                async with session.get(url + CMS + query) as resp:
                    await resp.read()
                times.append(time.perf_counter() - t0)
            results[label] = statistics.median(times)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--objects", type=int, default=1000)
    parser.add_argument("--watchers", type=int, default=10)
    parser.add_argument("--concurrency", type=int, default=16)
    args = parser.parse_args()
    proc = subprocess.Popen(
        [sys.executable, "-m", "dev_cluster.apiserver", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env=dict(os.environ, PYTHONUNBUFFERED="1"),
    )
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise SystemExit("the API server did not start")
        r = asyncio.run(_run(url, args.objects, args.watchers, args.concurrency))
    finally:
        proc.terminate()
        proc.wait(30)
    print(
        f"emulated API server at {args.objects} objects, {args.watchers} watchers, "
        f"{args.concurrency} concurrent clients ({os.cpu_count()} CPUs)"
    )
    print(f"  creates/s                {r['creates_per_s']:10.0f}")
    print(f"  create latency p50/p99   {_ms(r['create_p50'])} / {_ms(r['create_p99'])}")
    print(f"  merge patches/s          {r['patches_per_s']:10.0f}")
    print(f"  watch event latency p50  {_ms(r['watch_p50'])}  ({r['watch_events']} events)")
    print(f"  watch event latency p99  {_ms(r['watch_p99'])}")
    print(f"  list {args.objects} objects (median) {_ms(r['list_all'])}")
    print(f"  list limit=500 (median)  {_ms(r['list_page500'])}")
    print(f"  list selector limit=100  {_ms(r['list_selector'])}")


if __name__ == "__main__":
    main()
