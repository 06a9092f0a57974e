"""The operator's load on the API server and its reaction times, per number of objects N.

    python bench/operator_scale.py                       # N = 10,100,500,1000; baseline ≤ 100
    python bench/operator_scale.py --n 10,100 --rest 30  # a quick look
    python bench/operator_scale.py --no-baseline         # the working tree's operator only

Two operators run, one after the other, each on its own dev cluster (`DevCluster`,
operator installed by the Helm chart, running as its ServiceAccount under the chart's
RBAC): **current**, the operator in this working tree, and **baseline**, the operator,
chart and CRDs of a git ref (`--baseline-ref`, default e6c8db5: per-object one-second
timers), checked out with `git worktree` into a temporary directory; the dev cluster puts
that checkout's `operator/` first on the operator pod's PYTHONPATH. The per-second polling
baseline would ask ~10,000 requests/s at N = 1,000, more than this 2-CPU machine serves,
so it runs only up to `--baseline-max-n` (default 100).

Each cluster grows through the N list (objects of a smaller N stay). At each N there are
N TrainingJobs and N InferenceServices in one namespace, a mix of what sits waiting:

- TrainingJobs with `spec.suspend: true` (one worker whose command is `true`);
- InferenceServices whose model is missing: a third `pvc://absent-<i>/model.onnx` (the
  claim does not exist: Failed, ClaimNotFound), a third `trainingJobRef` to a suspended
  TrainingJob (WaitingForModel), a third `trainingJobRef` to a TrainingJob that does not
  exist yet (TrainingJobNotFound); K of them (`--reactions`) reference the K TrainingJobs
  used for the reaction measurement below;
- `--ready R` (default 2) InferenceServices serving a real model (a small ONNX model on
  a claim, its optimize Job, one Triton pod, the autoscaler scraping it), created before
  the first N: cheap here (Ready in ~5 s, one tritonserver process each); `--ready 0`
  leaves them out.

What is measured at each N:

- **Requests at rest, counted by kube-apiserver**: the API server writes an audit log
  (`DevCluster(audit_log=…)`: level Metadata for the operator's ServiceAccount only,
  JSON, batched). Once the operator has written nothing but statuses for `--settle`
  seconds (at most `--settle-timeout`), the requests it starts during the next `--rest`
  seconds are counted by verb and resource; watches (long-running) are counted apart, as
  are 429 answers (over the whole stage, not only at rest). Requests per object per
  minute = all requests (watches included) / (TrainingJobs + InferenceServices) / minutes.
  The operator's slow resync (`config.resyncSeconds`, when its chart has one) is set to
  `--resync` (default 60 s, as long as the window, so every object resyncs once in it:
  an upper bound for the chart's default of 300 s; the dev cluster's own is an hour).
- **Operator CPU and memory at rest**: the operator pod is a process group started by the
  dev node agent (its pid is on record in `<state>/run/pids`); utime+stime from
  /proc/<pid>/stat over the window (100 % = one CPU) and VmRSS from /proc/<pid>/status,
  sampled every second (the largest is reported), summed over the group.
- **First status**: after the rest window, `--probes P` objects are created one at a time
  (alternately a suspended TrainingJob and an InferenceService with a missing claim);
  the time from sending the create to the bench's watch seeing `status.phase`. The same
  time for the N objects created in a burst at the start of the stage is reported apart
  ("burst": it measures throughput, not reaction).
- **Reactions to a child's change**: K suspended TrainingJobs are resumed one at a time;
  each starts one worker pod (torchrun running `true`) that finishes at once. Measured,
  all from the bench's own watches (so the watch delay cancels out): the worker pod
  reaching Succeeded → its TrainingJob's status reaching a terminal phase (a child's
  change); the TrainingJob's terminal phase → the InferenceService referencing it
  leaving "waiting for the TrainingJob" (NoModelExported: the job exports nothing; a
  neighbour's change); and the resume (spec.suspend: false) → the TrainingJob's status
  leaving Suspended (the owner's own spec change).

Percentiles are nearest-rank (with 10 samples p99 is the largest). Targets (the issue's),
printed pass/fail beside each figure: at rest ≤ 1 request per object per minute; reaction
p99 ≤ 1 s and first-status p99 ≤ 2 s at N = 1,000; operator RSS ≤ 300 MB at 2,000 objects
(N = 1,000); no 429s. The bench prints a table per N (current, baseline, baseline/current)
and writes `bench/results/operator_scale.json` and a plot of requests/s against N,
`bench/results/operator_scale.png`.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import importlib
import json
import math
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from dev_cluster.agent.api import (  # noqa: E402
    APIClient,
    APIError,
    Resource,
    ssl_context_from_kubeconfig,
)
from dev_cluster.cluster import CHART_DIR, CRD_DIR, OPERATOR_NAMESPACE, DevCluster  # noqa: E402

Obj = dict[str, Any]
API = "gantry.dev/v1alpha1"
NS = "scale"
TJ = Resource(API, "trainingjobs")
ISVC = Resource(API, "inferenceservices")
PODS = Resource("v1", "pods")
NAMESPACES = Resource("v1", "namespaces", namespaced=False)
CLAIMS = Resource("v1", "persistentvolumeclaims")
JOB_LABEL = "gantry.dev/trainingjob"
MUTATING = frozenset({"create", "update", "patch", "delete", "deletecollection"})
WAITING_FOR_JOB = frozenset({"TrainingJobRunning", "TrainingJobNotFound"})
TERMINAL = frozenset({"Succeeded", "Failed"})
DEFAULT_BASELINE_REF = "e6c8db5"
RESULTS = ROOT / "bench" / "results"

# The issue's targets.
TARGET_REQUESTS_PER_OBJECT_MINUTE = 1.0
TARGET_REACTION_P99_S = 1.0
TARGET_FIRST_STATUS_P99_S = 2.0
TARGET_RSS_MB = 300.0
TARGET_AT_OBJECTS = 2000  # N = 1,000 of each kind


# ---- statistics ---------------------------------------------------------------------------


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile; None without values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def summary(values: Sequence[float]) -> dict[str, Any]:
    return {
        "n": len(values),
        "p50": _round(percentile(values, 50), 3),
        "p99": _round(percentile(values, 99), 3),
        "max": _round(max(values) if values else None, 3),
    }


def _round(value: float | None, digits: int) -> float | None:
    return None if value is None else round(value, digits)


# ---- the API server's audit log -------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request the API server received, from its audit events."""

    at: float  # when the server received it (epoch seconds)
    verb: str
    resource: str  # "trainingjobs", "inferenceservices/status", …
    code: int


def _epoch(stamp: str) -> float:
    return datetime.fromisoformat(stamp.replace("Z", "+00:00")).timestamp()


@dataclass
class AuditLog:
    """Reads the audit log incrementally: one `Request` per audit ID.

    With `omitStages: [RequestReceived]` a request logs one event when its response is
    complete; a watch (long-running) also logs one when its response starts. A watch is
    counted at its first event, anything else at ResponseComplete (or Panic).
    """

    path: Path
    offset: int = 0
    partial: bytes = b""
    requests: list[Request] = field(default_factory=list)
    watches_seen: set[str] = field(default_factory=set)
    malformed: int = 0

    def read_new(self) -> int:
        """Parse what was appended since the last call; the number of new requests."""
        try:
            with open(self.path, "rb") as log:
                log.seek(self.offset)
                chunk = log.read()
        except FileNotFoundError:
            return 0
        self.offset += len(chunk)
        data = self.partial + chunk
        lines = data.split(b"\n")
        self.partial = lines.pop()
        before = len(self.requests)
        for line in lines:
            if line.strip():
                self._event(line)
        return len(self.requests) - before

    def _event(self, line: bytes) -> None:
        try:
            event = json.loads(line)
            verb = str(event["verb"])
            stage = str(event["stage"])
            at = _epoch(str(event["requestReceivedTimestamp"]))
        except (ValueError, KeyError, TypeError):
            self.malformed += 1
            return
        if verb == "watch":
            audit_id = str(event.get("auditID"))
            if audit_id in self.watches_seen:
                return
            self.watches_seen.add(audit_id)
        elif stage not in ("ResponseComplete", "Panic"):
            return
        ref = event.get("objectRef") or {}
        resource = str(ref.get("resource") or event.get("requestURI") or "?")
        if ref.get("subresource"):
            resource += "/" + str(ref["subresource"])
        code = int((event.get("responseStatus") or {}).get("code") or 0)
        self.requests.append(Request(at, verb, resource, code))

    def between(self, start: float, end: float) -> list[Request]:
        return [r for r in self.requests if start <= r.at < end]

    def last_write(self) -> float:
        """When the operator last created, deleted or changed anything but a status."""
        return max(
            (
                r.at
                for r in self.requests
                if r.verb in MUTATING and not r.resource.endswith("/status")
            ),
            default=0.0,
        )

    def forget_before(self, moment: float) -> None:
        self.requests = [r for r in self.requests if r.at >= moment]


def dropped_audit_events(cluster: DevCluster) -> int:
    """Lines where kube-apiserver says its audit buffer was full (events lost)."""
    log = cluster.state_dir / "logs" / "control-plane" / "kube-apiserver.log"
    try:
        return log.read_text(errors="replace").count("audit buffer queue blocked")
    except OSError:
        return 0


# ---- the operator's processes -------------------------------------------------------------


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def operator_leader(state: Path) -> int | None:
    """The operator container's process (the node agent keeps every container's pid)."""
    for entry in sorted((state / "run" / "pids").glob("*")):
        if not entry.name.isdigit():
            continue
        try:
            cmdline = Path(f"/proc/{entry.name}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"gantry.controller" in cmdline:
            return int(entry.name)
    return None


def _stat_fields(pid: int) -> list[str] | None:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None


def group_usage(leader: int) -> tuple[float, float]:
    """(CPU seconds, resident MB) of every process in the leader's process group."""
    cpu = 0.0
    rss_kib = 0
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        fields = _stat_fields(int(proc.name))
        if fields is None or int(fields[2]) != leader:  # fields[2]: the process group
            continue
        cpu += (int(fields[11]) + int(fields[12])) / CLOCK_TICKS  # utime + stime
        with contextlib.suppress(OSError):
            for line in (proc / "status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    rss_kib += int(line.split()[1])
    return cpu, rss_kib * 1024 / 1e6


def operator_pythonpath(leader: int) -> str:
    try:
        environ = Path(f"/proc/{leader}/environ").read_bytes().split(b"\0")
    except OSError:
        return "?"
    for item in environ:
        if item.startswith(b"PYTHONPATH="):
            return item.split(b"=", 1)[1].decode(errors="replace")
    return ""


# ---- watching the objects -------------------------------------------------------------------


@dataclass
class Waiter:
    plural: str
    match: Callable[[Obj], bool]
    future: asyncio.Future[float]


class Tracker:
    """The bench's own view of the namespace: list+watch TrainingJobs, InferenceServices
    and worker pods; when each object first had a status; waiters for conditions."""

    def __init__(self, cluster: DevCluster) -> None:
        self.server = cluster.url
        self.tls = ssl_context_from_kubeconfig(cluster.kubeconfig)
        self.objects: dict[str, dict[str, Obj]] = {"trainingjobs": {}, "inferenceservices": {}}
        self.pods: dict[str, Obj] = {}
        self.sent: dict[tuple[str, str], float] = {}
        self.first_status: dict[tuple[str, str], float] = {}
        self.waiters: list[Waiter] = []
        self.synced: dict[str, asyncio.Event] = {}
        self.tasks: list[asyncio.Task[None]] = []
        self.session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        self.session = aiohttp.ClientSession(
            connector=aiohttp.TCPConnector(ssl=self.tls if self.tls is not None else True),
            timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
        )
        for res, selector in ((TJ, ""), (ISVC, ""), (PODS, JOB_LABEL)):
            self.synced[res.plural] = asyncio.Event()
            self.tasks.append(asyncio.create_task(self._run(res, selector)))
        for event in self.synced.values():
            await asyncio.wait_for(event.wait(), 60)

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        for task in self.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.session is not None:
            await self.session.close()

    async def _get(self, path: str, params: Mapping[str, str]) -> Obj:
        assert self.session is not None
        url = f"{self.server}{path}?{urlencode(params)}"
        async with self.session.get(url, timeout=aiohttp.ClientTimeout(total=60)) as resp:
            if resp.status >= 300:
                raise APIError(resp.status, await resp.text())
            body: Obj = await resp.json()
            return body

    async def _stream(self, path: str, params: Mapping[str, str]) -> AsyncIterator[Obj]:
        assert self.session is not None
        url = f"{self.server}{path}?{urlencode(params)}"
        async with self.session.get(url) as resp:
            if resp.status >= 300:
                raise APIError(resp.status, await resp.text())
            async for raw in resp.content:
                if raw.strip():
                    yield json.loads(raw)

    async def _run(self, res: Resource, selector: str) -> None:
        path = res.path(NS)
        base = {"labelSelector": selector} if selector else {}
        while True:
            try:
                listed = await self._get(path, base)
                now = time.monotonic()
                for item in listed.get("items") or []:
                    self._seen(res.plural, item, now)
                self.synced[res.plural].set()
                version = str((listed.get("metadata") or {}).get("resourceVersion") or "")
                params = {
                    **base,
                    "watch": "1",
                    "resourceVersion": version,
                    "allowWatchBookmarks": "true",
                    "timeoutSeconds": "600",
                }
                async for event in self._stream(path, params):
                    kind, obj = event.get("type"), event.get("object") or {}
                    if kind == "ERROR":
                        break  # 410 Gone and the like: list again
                    if kind in ("ADDED", "MODIFIED"):
                        self._seen(res.plural, obj, time.monotonic())
                    elif kind == "DELETED":
                        self._forget(res.plural, obj)
            except asyncio.CancelledError:
                raise
            except (aiohttp.ClientError, APIError, TimeoutError, ValueError) as err:
                print(f"  (watch {res.plural}: {err}; watching again)", flush=True)
                await asyncio.sleep(1)

    def _seen(self, plural: str, obj: Obj, now: float) -> None:
        name = str(obj["metadata"]["name"])
        if plural == "pods":
            self.pods[name] = obj
        else:
            self.objects[plural][name] = obj
            key = (plural, name)
            if key not in self.first_status and (obj.get("status") or {}).get("phase"):
                self.first_status[key] = now
        for waiter in list(self.waiters):
            if waiter.future.done():  # cancelled: its wait timed out
                self.waiters.remove(waiter)
            elif waiter.plural == plural and waiter.match(obj):
                waiter.future.set_result(now)
                self.waiters.remove(waiter)

    def _forget(self, plural: str, obj: Obj) -> None:
        name = str(obj["metadata"]["name"])
        (self.pods if plural == "pods" else self.objects[plural]).pop(name, None)

    def when(self, plural: str, match: Callable[[Obj], bool]) -> asyncio.Future[float]:
        """A future set to the (monotonic) time the watch first shows a matching object."""
        future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
        self.waiters.append(Waiter(plural, match, future))
        return future

    def latency(self, plural: str, name: str) -> float | None:
        seen = self.first_status.get((plural, name))
        sent = self.sent.get((plural, name))
        return None if seen is None or sent is None else seen - sent

    def count(self, plural: str) -> int:
        return len(self.objects[plural])


# ---- the objects --------------------------------------------------------------------------


def training_job(name: str) -> Obj:
    return {
        "apiVersion": API,
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": NS},
        "spec": {
            "command": ["true"],
            "workers": 1,
            "resources": {"requests": {"cpu": "10m", "memory": "64Mi"}},
            "backoffLimit": 0,
            "suspend": True,
        },
    }


def inference_service(name: str, model: Obj, **spec: Any) -> Obj:
    return {
        "apiVersion": API,
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": NS},
        "spec": {"model": model, "optimization": {"precision": "fp32"}, **spec},
    }


def waiting_model(i: int) -> Obj:
    """Every third a missing claim, an existing suspended job, a job not created yet."""
    kind = i % 3
    if kind == 0:
        return {"storageUri": f"pvc://absent-{i}/model.onnx"}
    if kind == 1:
        return {"trainingJobRef": {"name": f"tj-{i}"}}
    return {"trainingJobRef": {"name": f"later-{i}"}}


def phase(obj: Obj) -> str:
    return str((obj.get("status") or {}).get("phase") or "")


def named(name: str, test: Callable[[Obj], bool]) -> Callable[[Obj], bool]:
    """A match for the object called `name` that passes `test`."""
    return lambda obj: obj["metadata"]["name"] == name and test(obj)


def model_condition_reason(obj: Obj) -> str:
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "ModelResolved":
            return str(cond.get("reason") or "")
    return ""


async def create(client: APIClient, tracker: Tracker, res: Resource, body: Obj) -> None:
    name = str(body["metadata"]["name"])
    tracker.sent[(res.plural, name)] = time.monotonic()
    await client.create(res, NS, body)


async def create_all(
    client: APIClient, tracker: Tracker, items: Sequence[tuple[Resource, Obj]], parallel: int = 16
) -> None:
    gate = asyncio.Semaphore(parallel)

    async def one(res: Resource, body: Obj) -> None:
        async with gate:
            await create(client, tracker, res, body)

    await asyncio.gather(*(one(res, body) for res, body in items))


# ---- one stage: N of each kind --------------------------------------------------------------


@dataclass
class Options:
    rest: float
    settle: float
    settle_timeout: float
    probes: int
    reactions: int
    ready: int
    status_timeout: float
    keep_state: bool = False


@dataclass
class Stage:
    """What one N needs from the cluster it runs on."""

    cluster: DevCluster
    client: APIClient
    tracker: Tracker
    audit: AuditLog
    options: Options
    made: int = 0  # stages so far (names of reaction and probe objects)
    ready: list[str] = field(default_factory=list)  # the services meant to be Ready


async def top_up(stage: Stage, n: int, reactions: list[str]) -> dict[str, Any]:
    """Create what is missing for N of each kind; the burst's first-status figures."""
    t = stage.tracker
    new_jobs: list[tuple[Resource, Obj]] = []
    new_services: list[tuple[Resource, Obj]] = []
    for name in reactions:
        new_jobs.append((TJ, training_job(name)))
        model = {"trainingJobRef": {"name": name}}
        new_services.append((ISVC, inference_service(name, model)))
    have_jobs = t.count("trainingjobs") + len(new_jobs)
    have_services = t.count("inferenceservices") + len(new_services)
    i = 0
    while have_jobs < n:
        name = f"tj-{i}"
        if name not in t.objects["trainingjobs"]:
            new_jobs.append((TJ, training_job(name)))
            have_jobs += 1
        i += 1
    i = 0
    while have_services < n:
        name = f"svc-{i}"
        if name not in t.objects["inferenceservices"]:
            new_services.append((ISVC, inference_service(name, waiting_model(i))))
            have_services += 1
        i += 1
    items = new_jobs + new_services
    start = time.monotonic()
    await create_all(stage.client, t, items)
    created = time.monotonic() - start
    keys = [(res.plural, str(body["metadata"]["name"])) for res, body in items]
    deadline = time.monotonic() + stage.options.status_timeout
    while any(k not in t.first_status for k in keys) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    missing = [k for k in keys if k not in t.first_status]
    latencies = [x for x in (t.latency(*k) for k in keys) if x is not None]
    all_seconds = max((t.first_status[k] for k in keys if k in t.first_status), default=start)
    return {
        "created": len(items),
        "create_seconds": round(created, 2),
        "all_status_seconds": round(all_seconds - start, 2) if not missing else None,
        "without_status": len(missing),
        "latency_s": summary(latencies),
    }


async def add_ready_services(stage: Stage, count: int) -> list[str]:
    """R InferenceServices serving a real model (optimize Job + one Triton pod)."""
    toolkit = importlib.import_module("tests.conftest")  # the tests' model exporter
    claim_manifest: Callable[..., Obj] = toolkit.claim_manifest
    export_digits_shaped_model: Callable[[Path, int], None] = toolkit.export_digits_shaped_model
    await stage.client.create(CLAIMS, NS, claim_manifest("models", NS, access_mode="ReadWriteMany"))
    root = stage.cluster.state_dir / "pvc" / NS / "models"
    await asyncio.to_thread(export_digits_shaped_model, root / "digits", 1)
    names = [f"ready-{i}" for i in range(count)]
    items = [
        (
            ISVC,
            inference_service(
                name,
                {"storageUri": "pvc://models/digits"},
                optimization={"precision": "fp32", "accuracy": {"samples": 16}},
            ),
        )
        for name in names
    ]
    ready = [
        stage.tracker.when(
            "inferenceservices", named(name, lambda o: phase(o) in ("Ready", "Failed"))
        )
        for name in names
    ]
    start = time.monotonic()
    await create_all(stage.client, stage.tracker, items)
    await asyncio.wait_for(asyncio.gather(*ready), 600)
    print(f"  {count} service(s) settled in {time.monotonic() - start:.1f} s", flush=True)
    for name in names:
        obj = stage.tracker.objects["inferenceservices"][name]
        if phase(obj) != "Ready":
            print(f"  ready service {name}: {phase(obj)}: {obj['status'].get('message')}")
    stage.ready = names
    return names


async def settle(stage: Stage) -> dict[str, Any]:
    """Wait until the operator has made no write but to a status for `settle` seconds
    (status writes may go on: a design that rewrites status periodically does so at rest)."""
    start = time.time()
    deadline = start + stage.options.settle_timeout
    while True:
        await asyncio.sleep(1)
        stage.audit.read_new()
        quiet_since = max(stage.audit.last_write(), start)
        now = time.time()
        if now - 1.5 - quiet_since >= stage.options.settle:  # 1 s: the audit batch delay
            return {"seconds": round(now - start, 1), "at_rest": True}
        if now > deadline:
            return {"seconds": round(now - start, 1), "at_rest": False}


async def rest_window(stage: Stage) -> dict[str, Any]:
    leader = operator_leader(stage.cluster.state_dir)
    if leader is None:
        raise RuntimeError("the operator's process was not found")
    cpu0, rss = group_usage(leader)
    rss_samples = [rss]
    start_wall, start = time.time(), time.monotonic()
    while time.monotonic() - start < stage.options.rest:
        await asyncio.sleep(1)
        rss_samples.append(group_usage(leader)[1])
    cpu1, _ = group_usage(leader)
    seconds = time.monotonic() - start
    end_wall = start_wall + seconds
    await asyncio.sleep(2.5)  # the audit log is written in batches, at least every second
    stage.audit.read_new()
    requests = stage.audit.between(start_wall, end_wall)
    watches = [r for r in requests if r.verb == "watch"]
    objects = stage.tracker.count("trainingjobs") + stage.tracker.count("inferenceservices")
    by_call = Counter(f"{r.verb} {r.resource}" for r in requests)
    return {
        "seconds": round(seconds, 1),
        "objects": objects,
        "requests": len(requests),
        "requests_per_s": round(len(requests) / seconds, 2),
        "watch_requests": len(watches),
        "requests_per_object_minute": round(len(requests) / objects / (seconds / 60), 3),
        "by_call": dict(by_call.most_common()),
        "throttled_429": sum(1 for r in requests if r.code == 429),
        "operator_cpu_percent": round((cpu1 - cpu0) / seconds * 100, 1),
        "operator_rss_mb": round(max(rss_samples), 1),
        "operator_pythonpath": operator_pythonpath(leader),
    }


async def first_status_probes(stage: Stage, count: int) -> dict[str, Any]:
    """Create objects one at a time; the time each takes to get a status."""
    latencies: list[float] = []
    timeouts = 0
    for i in range(count):
        name = f"probe-{stage.made}-{i}"
        res, body = (
            (TJ, training_job(name))
            if i % 2 == 0
            else (ISVC, inference_service(name, {"storageUri": f"pvc://absent-{name}/m.onnx"}))
        )
        seen = stage.tracker.when(res.plural, named(name, lambda o: bool(phase(o))))
        await create(stage.client, stage.tracker, res, body)
        try:
            await asyncio.wait_for(seen, stage.options.status_timeout)
        except TimeoutError:
            timeouts += 1
            continue
        latency = stage.tracker.latency(res.plural, name)
        if latency is not None:
            latencies.append(latency)
        await asyncio.sleep(0.5)
    return {**summary(latencies), "timeouts": timeouts}


async def react(stage: Stage, name: str, timeout: float = 180) -> dict[str, Any]:
    """Resume one suspended TrainingJob; when each change was seen (monotonic seconds)."""
    t = stage.tracker
    worker_done = t.when(
        "pods",
        lambda o: (
            ((o.get("metadata") or {}).get("labels") or {}).get(JOB_LABEL) == name
            and phase(o) in TERMINAL
        ),
    )
    job_done = t.when("trainingjobs", named(name, lambda o: phase(o) in TERMINAL))
    resumed = t.when("trainingjobs", named(name, lambda o: phase(o) not in ("", "Suspended")))
    service = t.when(
        "inferenceservices",
        named(name, lambda o: model_condition_reason(o) not in ("", *WAITING_FOR_JOB)),
    )
    sent = time.monotonic()
    await stage.client.patch(TJ, NS, name, {"spec": {"suspend": False}})
    out: dict[str, Any] = {"name": name}
    try:
        await asyncio.wait_for(asyncio.gather(worker_done, job_done, resumed, service), timeout)
    except TimeoutError:
        out["timeout"] = True
    for future in (worker_done, job_done, resumed, service):
        if not future.done():
            future.cancel()

    def at(future: asyncio.Future[float]) -> float | None:
        return future.result() if future.done() and not future.cancelled() else None

    w, j, r, s = at(worker_done), at(job_done), at(resumed), at(service)
    out["spec_to_status"] = None if r is None else r - sent
    out["worker_to_job"] = None if w is None or j is None else j - w
    out["job_to_service"] = None if j is None or s is None else s - j
    obj = t.objects["trainingjobs"].get(name) or {}
    out["job_phase"] = phase(obj)
    out["service_reason"] = model_condition_reason(t.objects["inferenceservices"].get(name) or {})
    return out


async def reactions(stage: Stage, names: Sequence[str]) -> dict[str, Any]:
    samples = []
    for name in names:
        samples.append(await react(stage, name))
        await asyncio.sleep(0.5)

    def figures(key: str) -> dict[str, Any]:
        return summary([s[key] for s in samples if s.get(key) is not None])

    return {
        "samples": len(samples),
        "worker_to_job": figures("worker_to_job"),
        "job_to_service": figures("job_to_service"),
        "spec_to_status": figures("spec_to_status"),
        "timeouts": sum(1 for s in samples if s.get("timeout")),
        "job_phases": dict(Counter(s["job_phase"] for s in samples)),
        "service_reasons": dict(Counter(s["service_reason"] for s in samples)),
    }


async def operator_restarts(client: APIClient) -> int:
    pods = await client.list(PODS, OPERATOR_NAMESPACE)
    return sum(
        int(cs.get("restartCount") or 0)
        for pod in pods.get("items") or []
        for cs in (pod.get("status") or {}).get("containerStatuses") or []
    )


async def run_stage(stage: Stage, n: int) -> dict[str, Any]:
    opts = stage.options
    stage.made += 1
    k = min(opts.reactions, max(1, n // 2))
    names = [f"react-{stage.made}-{i}" for i in range(k)]
    stage_start = time.time()
    print(f"  N={n}: creating objects", flush=True)
    burst = await top_up(stage, n, names)
    print(
        f"  N={n}: {burst['created']} created in {burst['create_seconds']} s, "
        f"all with a status after {burst['all_status_seconds']} s",
        flush=True,
    )
    rested = await settle(stage)
    print(
        f"  N={n}: at rest after {rested['seconds']} s (at rest: {rested['at_rest']})", flush=True
    )
    rest = await rest_window(stage)
    print(
        f"  N={n}: {rest['requests_per_s']} req/s at rest over {rest['seconds']} s, "
        f"operator CPU {rest['operator_cpu_percent']} %, RSS {rest['operator_rss_mb']} MB",
        flush=True,
    )
    source = stage.cluster.operator_source
    if source is not None and rest["operator_pythonpath"] != str(source):
        print(f"  WARNING: the operator runs with PYTHONPATH={rest['operator_pythonpath']!r}")
    probes = await first_status_probes(stage, opts.probes)
    print(f"  N={n}: first status p50 {probes['p50']} s p99 {probes['p99']} s", flush=True)
    react_figures = await reactions(stage, names)
    print(
        f"  N={n}: worker→job p99 {react_figures['worker_to_job']['p99']} s, "
        f"job→service p99 {react_figures['job_to_service']['p99']} s",
        flush=True,
    )
    await asyncio.sleep(2.5)
    stage.audit.read_new()
    stage_requests = stage.audit.between(stage_start, time.time())
    result = {
        "n": n,
        "burst": burst,
        "settle": rested,
        "rest": rest,
        "first_status": probes,
        "reactions": react_figures,
        "requests_stage": len(stage_requests),
        "requests_stage_by_verb": dict(Counter(r.verb for r in stage_requests).most_common()),
        "throttled_429_stage": sum(1 for r in stage_requests if r.code == 429),
        "ready_services": {
            name: phase(stage.tracker.objects["inferenceservices"].get(name) or {})
            for name in stage.ready
        },
        "operator_restarts": await operator_restarts(stage.client),
        "audit_events_dropped": dropped_audit_events(stage.cluster),
    }
    if not stage_requests:
        print(f"  N={n}: WARNING: the audit log holds no request of the operator", flush=True)
    stage.audit.forget_before(time.time() - 5)
    return result


async def run_design(
    label: str,
    ns: Sequence[int],
    options: Options,
    *,
    chart_dir: Path = CHART_DIR,
    crd_dir: Path = CRD_DIR,
    operator_source: Path | None = None,
    values: Mapping[str, Any] | None = None,
) -> dict[int, dict[str, Any]]:
    """One dev cluster with one operator, through every N in turn."""
    results: dict[int, dict[str, Any]] = {}
    state = Path(tempfile.mkdtemp(prefix=f"gantry-scale-{label}-"))
    audit_path = state / "audit" / "audit.log"
    print(f"{label}: starting a dev cluster in {state}", flush=True)
    cluster = DevCluster(
        state,
        operator=True,
        backoff_base=2.0,
        chart_dir=chart_dir,
        crd_dir=crd_dir,
        operator_source=operator_source,
        audit_log=audit_path,
        operator_values=values,
    )
    try:
        async with cluster:
            client = APIClient.from_kubeconfig(cluster.kubeconfig)
            tracker = Tracker(cluster)
            try:
                with contextlib.suppress(APIError):
                    await client.create(NAMESPACES, None, {"metadata": {"name": NS}})
                await tracker.start()
                stage = Stage(cluster, client, tracker, AuditLog(audit_path), options)
                if options.ready:
                    print(f"{label}: {options.ready} Ready InferenceService(s)", flush=True)
                    await add_ready_services(stage, options.ready)
                for n in ns:
                    results[n] = await run_stage(stage, n)
                    (state / "stage.json").write_text(json.dumps(results, indent=2))
            finally:
                await tracker.stop()
                await client.close()
    finally:
        if options.keep_state:
            print(f"{label}: state (audit log, logs) kept in {state}")
        else:
            shutil.rmtree(state, ignore_errors=True)
    return results


# ---- the baseline checkout ----------------------------------------------------------------


def git(*args: str) -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), *args], capture_output=True, text=True, check=True
    )
    return done.stdout.strip()


@contextlib.contextmanager
def baseline_checkout(ref: str) -> Iterator[Path]:
    """`git worktree add` of `ref` in a temporary directory, removed afterwards."""
    scratch = Path(tempfile.mkdtemp(prefix="gantry-baseline-"))
    path = scratch / "checkout"
    git("worktree", "add", "--detach", str(path), ref)
    try:
        yield path
    finally:
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "remove", "--force", str(path))
        shutil.rmtree(scratch, ignore_errors=True)
        with contextlib.suppress(subprocess.CalledProcessError):
            git("worktree", "prune")


# ---- the report ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Figure:
    label: str
    get: Callable[[Mapping[str, Any]], float | None]
    unit: str = ""
    # (passes, what the target says) for a result at N, or None where no target applies
    target: Callable[[float, int], tuple[bool, str] | None] | None = None


def _dig(result: Mapping[str, Any], *keys: str) -> float | None:
    value: Any = result
    for key in keys:
        if not isinstance(value, Mapping) or key not in value:
            return None
        value = value[key]
    return None if value is None else float(value)


def _at_most(limit: float) -> Callable[[float, int], tuple[bool, str] | None]:
    def check(value: float, n: int) -> tuple[bool, str]:
        return value <= limit, f"≤ {limit:g}" if limit else "0"

    return check


def _at_scale(limit: float, unit: str) -> Callable[[float, int], tuple[bool, str] | None]:
    def check(value: float, n: int) -> tuple[bool, str]:
        where = "" if 2 * n >= TARGET_AT_OBJECTS else f" (target at N={TARGET_AT_OBJECTS // 2})"
        return value <= limit, f"≤ {limit:g}{unit}{where}"

    return check


FIGURES = [
    Figure("objects (TJ + ISVC)", lambda r: _dig(r, "rest", "objects")),
    Figure("requests/s at rest", lambda r: _dig(r, "rest", "requests_per_s")),
    Figure("  of which watches started", lambda r: _dig(r, "rest", "watch_requests")),
    Figure(
        "requests/object/minute at rest",
        lambda r: _dig(r, "rest", "requests_per_object_minute"),
        target=_at_most(TARGET_REQUESTS_PER_OBJECT_MINUTE),
    ),
    Figure(
        "429 answers (whole stage)",
        lambda r: _dig(r, "throttled_429_stage"),
        target=_at_most(0),
    ),
    Figure("operator CPU at rest", lambda r: _dig(r, "rest", "operator_cpu_percent"), " %"),
    Figure(
        "operator RSS at rest",
        lambda r: _dig(r, "rest", "operator_rss_mb"),
        " MB",
        target=_at_scale(TARGET_RSS_MB, " MB"),
    ),
    Figure("first status p50", lambda r: _dig(r, "first_status", "p50"), " s"),
    Figure(
        "first status p99",
        lambda r: _dig(r, "first_status", "p99"),
        " s",
        target=_at_scale(TARGET_FIRST_STATUS_P99_S, " s"),
    ),
    Figure("burst: all N with a status", lambda r: _dig(r, "burst", "all_status_seconds"), " s"),
    Figure("burst: first status p99", lambda r: _dig(r, "burst", "latency_s", "p99"), " s"),
    Figure(
        "worker pod done → TJ p50", lambda r: _dig(r, "reactions", "worker_to_job", "p50"), " s"
    ),
    Figure(
        "worker pod done → TJ p99",
        lambda r: _dig(r, "reactions", "worker_to_job", "p99"),
        " s",
        target=_at_scale(TARGET_REACTION_P99_S, " s"),
    ),
    Figure("TJ done → ISVC p50", lambda r: _dig(r, "reactions", "job_to_service", "p50"), " s"),
    Figure(
        "TJ done → ISVC p99",
        lambda r: _dig(r, "reactions", "job_to_service", "p99"),
        " s",
        target=_at_scale(TARGET_REACTION_P99_S, " s"),
    ),
    Figure("resume → TJ status p99", lambda r: _dig(r, "reactions", "spec_to_status", "p99"), " s"),
    Figure("operator restarts", lambda r: _dig(r, "operator_restarts")),
]


def fmt(value: float | None, unit: str = "") -> str:
    if value is None:
        return "—"
    text = f"{value:,.0f}" if abs(value) >= 100 else f"{value:.3g}"
    return text + unit


def fmt_ratio(r: float | None) -> str:
    if r is None:
        return "—"
    if math.isinf(r):
        return "∞"  # the current operator measured 0
    return f"{r:,.0f}×" if r >= 10 else f"{r:.2g}×"


def ratio(base: float | None, cur: float | None) -> float | None:
    if base is None or cur is None:
        return None
    if cur == 0:
        return None if base == 0 else math.inf
    return base / cur


def report(
    current: Mapping[int, Mapping[str, Any]], baseline: Mapping[int, Mapping[str, Any]]
) -> tuple[list[str], dict[str, dict[str, float | None]], dict[str, dict[str, Any]]]:
    """The printed table, the ratios and the targets' verdicts (for the current operator)."""
    lines: list[str] = []
    ratios: dict[str, dict[str, float | None]] = {}
    verdicts: dict[str, dict[str, Any]] = {}
    for n in sorted(set(current) | set(baseline)):
        cur, base = current.get(n), baseline.get(n)
        lines.append("")
        lines.append(f"N = {n} TrainingJobs + {n} InferenceServices")
        lines.append(f"  {'figure':<34} {'current':>11} {'baseline':>11} {'ratio':>8}  target")
        ratios[str(n)] = {}
        verdicts[str(n)] = {}
        for fig in FIGURES:
            c = fig.get(cur) if cur is not None else None
            b = fig.get(base) if base is not None else None
            r = ratio(b, c)
            ratios[str(n)][fig.label.strip()] = None if r is None or math.isinf(r) else round(r, 2)
            verdict = ""
            if fig.target is not None and c is not None:
                checked = fig.target(c, n)
                if checked is not None:
                    ok, what = checked
                    verdict = f"{'pass' if ok else 'FAIL'} ({what})"
                    verdicts[str(n)][fig.label.strip()] = {"pass": ok, "target": what}
            rtext = fmt_ratio(r)
            lines.append(
                f"  {fig.label:<34} {fmt(c, fig.unit):>11} {fmt(b, fig.unit):>11} {rtext:>8}  {verdict}"
            )
    return lines, ratios, verdicts


def plot(
    current: Mapping[int, Mapping[str, Any]],
    baseline: Mapping[int, Mapping[str, Any]],
    path: Path,
) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for label, data, style in (("current", current, "o-"), ("baseline", baseline, "s--")):
        points = [(n, _dig(r, "rest", "requests_per_s")) for n, r in sorted(data.items())]
        xs = [n for n, y in points if y is not None]
        ys = [y for n, y in points if y is not None]
        if xs:
            ax.plot(xs, ys, style, label=f"{label} operator")
            for x, y in zip(xs, ys, strict=True):
                ax.annotate(f"{y:,.3g}", (x, y), textcoords="offset points", xytext=(4, 6))
    every = sorted(set(current) | set(baseline))
    if every:
        ax.plot(
            every,
            [2 * n * TARGET_REQUESTS_PER_OBJECT_MINUTE / 60 for n in every],
            ":",
            color="grey",
            label="target: 1 request/object/minute",
        )
    ax.set_xscale("log")
    ax.set_yscale("symlog", linthresh=0.1)  # 0 requests/s stays on the plot
    highest = max(
        (_dig(r, "rest", "requests_per_s") or 0.0 for d in (current, baseline) for r in d.values()),
        default=1.0,
    )
    ax.set_ylim(0, max(highest, 1.0) * 4)
    ax.set_xlabel("N (TrainingJobs and InferenceServices, each)")
    ax.set_ylabel("operator requests/s at rest (API server audit)")
    ax.set_title("Gantry operator: API load at rest")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


# ---- main ---------------------------------------------------------------------------------


def chart_config(chart: Path) -> dict[str, Any]:
    """The `config` values a chart ships with (its values.yaml)."""
    values = yaml.safe_load((chart / "values.yaml").read_text()) or {}
    config = values.get("config") if isinstance(values, dict) else None
    return dict(config) if isinstance(config, dict) else {}


def parse_ns(text: str) -> list[int]:
    values = sorted({int(x) for x in text.split(",") if x.strip()})
    if not values or values[0] < 1:
        raise argparse.ArgumentTypeError("N must be positive integers, e.g. 10,100")
    return values


async def run(args: argparse.Namespace) -> dict[str, Any]:
    options = Options(
        rest=args.rest,
        settle=args.settle,
        settle_timeout=args.settle_timeout,
        probes=args.probes,
        reactions=args.reactions,
        ready=args.ready,
        status_timeout=args.status_timeout,
        keep_state=args.keep_state,
    )
    out: dict[str, Any] = {
        "cpus": os.cpu_count(),
        "ns": args.n,
        "options": options.__dict__,
        "current": {"source": "working tree", "head": git("rev-parse", "--short", "HEAD")},
    }
    dirty = git("status", "--porcelain", "--", "operator", "charts", "crds")
    out["current"]["uncommitted_changes"] = bool(dirty)
    values: dict[str, Any] = {}
    chart_default = chart_config(CHART_DIR).get("resyncSeconds")
    if chart_default is None:
        print("the chart has no config.resyncSeconds: --resync does not apply")
        out["resync_seconds"] = None
    else:
        values = {"config": {"resyncSeconds": args.resync}}
        out["resync_seconds"] = args.resync
        print(
            f"resyncSeconds {args.resync:g} (the chart's default: {chart_default}); "
            f"rest window {args.rest:g} s",
            flush=True,
        )
        if args.rest < args.resync:
            print(
                "  note: the rest window is shorter than the resync: a resync may fall outside it"
            )
    out["current"]["results"] = {}
    if args.no_current:
        print("current: skipped (--no-current)")
    else:
        out["current"]["results"] = await run_design("current", args.n, options, values=values)
    baseline_ns = [n for n in args.n if n <= args.baseline_max_n]
    out["baseline"] = {"ref": None, "results": {}}
    if args.no_baseline:
        print("baseline: skipped (--no-baseline)")
    elif not baseline_ns:
        print(f"baseline: no N ≤ --baseline-max-n {args.baseline_max_n}: skipped")
    else:
        commit = git("rev-parse", "--short", args.baseline_ref)
        out["baseline"]["ref"] = commit
        out["baseline"]["ns"] = baseline_ns
        print(
            f"baseline: {args.baseline_ref} ({commit}) at N = {', '.join(map(str, baseline_ns))} "
            f"only (--baseline-max-n {args.baseline_max_n}: the polling design would swamp "
            "this machine beyond)",
            flush=True,
        )
        with baseline_checkout(args.baseline_ref) as checkout:
            out["baseline"]["results"] = await run_design(
                "baseline",
                baseline_ns,
                options,
                chart_dir=checkout / "charts" / "gantry",
                crd_dir=checkout / "crds",
                operator_source=checkout / "operator",
                values=values,  # its chart drops what its schema does not declare
            )
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--n", type=parse_ns, default=[10, 100, 500, 1000], help="N list, e.g. 10,100"
    )
    parser.add_argument("--baseline-ref", default=DEFAULT_BASELINE_REF)
    parser.add_argument("--baseline-max-n", type=int, default=100)
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--no-current", action="store_true", help="run the baseline only")
    parser.add_argument("--rest", type=float, default=60.0, help="seconds counted at rest")
    parser.add_argument(
        "--resync",
        type=float,
        default=60.0,
        help="the operator's resyncSeconds (default 60, as long as --rest: every object "
        "resyncs once in the window, an upper bound of the chart's slower default)",
    )
    parser.add_argument("--settle", type=float, default=10.0, help="seconds without a write before")
    parser.add_argument("--settle-timeout", type=float, default=120.0)
    parser.add_argument("--probes", type=int, default=10, help="first-status samples per N")
    parser.add_argument("--reactions", type=int, default=10, help="reaction samples per N (≤ N/2)")
    parser.add_argument(
        "--ready", type=int, default=2, help="Ready InferenceServices (Triton pods)"
    )
    parser.add_argument("--status-timeout", type=float, default=600.0)
    parser.add_argument("--keep-state", action="store_true", help="keep each cluster's state")
    parser.add_argument(
        "--from-json", type=Path, help="print the table and plot of an earlier run's JSON"
    )
    parser.add_argument("--out", type=Path, default=RESULTS / "operator_scale.json")
    args = parser.parse_args()
    started = time.monotonic()
    if args.from_json is not None:
        out = json.loads(args.from_json.read_text())  # report again, measure nothing
    else:
        out = asyncio.run(run(args))
        out["seconds"] = round(time.monotonic() - started)
    current = {int(k): v for k, v in out["current"]["results"].items()}
    baseline = {int(k): v for k, v in out["baseline"]["results"].items()}
    lines, ratios, verdicts = report(current, baseline)
    out["ratios_baseline_over_current"] = ratios
    out["targets_current"] = verdicts
    print("\n".join(lines))
    if baseline:
        print(
            f"\nbaseline = {out['baseline']['ref']} at N ≤ {max(baseline)}; "
            "ratio = baseline / current (∞: the current operator measured 0)"
        )
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(out, indent=2, default=str))
    png = args.out.with_suffix(".png")
    plot(current, baseline, png)
    for path in (args.out, png):
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        print(f"written {shown}")


if __name__ == "__main__":
    main()
