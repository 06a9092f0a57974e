"""The dev node's kubelet: runs the pods bound to the node as local processes.

Each pod gets its own IP on the host's `lo` (see `ips`), a directory under
`<state>/pods`, its volumes, a hosts file, and one process per container (see `process`). Status is
written to the pod's `status` subresource; deletion follows the real contract: when the
API sets deletionTimestamp the kubelet runs preStop hooks, sends SIGTERM, SIGKILLs after
the grace period and then deletes the pod with gracePeriodSeconds=0. Init containers run
in order; one with `restartPolicy: Always` is a sidecar: once started it runs (and
restarts) beside the main containers and is stopped when they have finished for good.

Every container gets KUBERNETES_SERVICE_HOST/PORT pointing at kube-apiserver on
127.0.0.1 (there is no kube-proxy to route the `kubernetes` Service's ClusterIP), and
its projected service-account token comes from the TokenRequest API, bound to the pod and
refreshed before it expires, so in-pod clients authenticate as their ServiceAccount.
Pod IPs come in /24 blocks per cluster (see IPAllocator). Images are not pulled; one
whose registry cannot exist fails its pull as a kubelet's would (see `images`).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp

from . import api as k8s
from .api import APIClient, APIError
from .container import Backoff, ContainerRunner, Launch
from .envvars import ConfigError, container_argv, container_env
from .events import Recorder
from .hosts import PodAddress, write_in_place
from .images import VENV_BIN, ImageError, host_command, pull_error
from .informer import Informer
from .ips import IPAllocator
from .kubelet_server import log_path
from .podstatus import now, pod_conditions, pod_phase, seconds_since
from .probes import check
from .process import ProcessRegistry, Sandbox, hidden_paths, run_exec
from .quantity import parse_quantity
from .volumes import Mount, TokenSource, container_mounts, prepare_volumes, token_sources

log = logging.getLogger(__name__)
Obj = dict[str, Any]
HOST_IP = "127.0.0.1"
# what containers are started from; a mountPath over these would break every command
RUNTIME_PATHS = sorted(
    {
        Path(sys.prefix),
        Path(sys.base_prefix),
        Path(sys.executable).parent,
        Path(sys.executable).resolve().parent,
    }
)


@dataclass
class KubeletConfig:
    node_name: str
    state_dir: Path
    logs_root: Path
    api_server: str
    backoff: Backoff = field(default_factory=Backoff)
    # image pulls back off on their own schedule (the kubelet's: 10 s doubling to 300 s)
    image_backoff: Backoff = field(default_factory=Backoff)


QOS_RESOURCES = ("cpu", "memory")  # extended resources (nvidia.com/gpu) do not count


def qos_class(spec: Obj) -> str:
    """Guaranteed (cpu and memory limits everywhere, requests equal), BestEffort (no cpu or
    memory requests or limits anywhere), else Burstable: the API server's rule, which it
    applies at creation; the status field is immutable after that."""
    containers = [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    resources = [c.get("resources") or {} for c in containers]

    def amounts(r: Obj, kind: str) -> dict[str, Decimal]:
        given = r.get(kind) or {}
        return {n: parse_quantity(str(given[n])) for n in QOS_RESOURCES if n in given}

    if not any(amounts(r, "requests") or amounts(r, "limits") for r in resources):
        return "BestEffort"
    for r in resources:
        limits = amounts(r, "limits")
        requests = {**limits, **amounts(r, "requests")}
        if set(limits) != set(QOS_RESOURCES) or requests != limits:
            return "Burstable"
    return "Guaranteed"


def is_sidecar(init_container: Obj) -> bool:
    """An init container with restartPolicy Always runs beside the main containers."""
    return init_container.get("restartPolicy") == "Always"


LOST_MESSAGE = (
    "the node agent restarted: the processes of this pod's containers went with the "
    "earlier agent, and restartPolicy Never does not run them again"
)


def started_before(pod: Obj) -> bool:
    """Whether the pod's status says an agent already started its containers."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    return any({"running", "terminated"} & set(c.get("state") or {}) for c in statuses)


def lost_status(container: Obj, previous: Obj | None) -> Obj:
    """A container whose process is gone with an earlier agent, as a kubelet reports one
    it cannot find (reason ContainerStatusUnknown, exit code 137)."""
    state = (previous or {}).get("state") or {}
    if "terminated" in state:  # it had ended already: its own record stands
        return dict(previous or {})
    return {
        "name": container.get("name"),
        "image": container.get("image", ""),
        "imageID": "",
        "ready": False,
        "restartCount": int((previous or {}).get("restartCount") or 0),
        "started": False,
        "state": {
            "terminated": {
                "exitCode": 137,
                "reason": "ContainerStatusUnknown",
                "message": LOST_MESSAGE,
                "startedAt": (state.get("running") or {}).get("startedAt"),
                "finishedAt": now(),
            }
        },
        "lastState": {},
    }


def waiting_reason(status: Obj | None, container: str) -> str | None:
    """The waiting reason a pod status shows for one (init or main) container."""
    statuses = [
        *((status or {}).get("initContainerStatuses") or []),
        *((status or {}).get("containerStatuses") or []),
    ]
    for cs in statuses:
        if cs.get("name") == container:
            reason = ((cs.get("state") or {}).get("waiting") or {}).get("reason")
            return str(reason) if reason is not None else None
    return None


# How long ErrImagePull shows before the back-off starts (a kubelet shows it until the
# pod's next sync).
PULL_ERROR_SECONDS = 1.0


def waiting_status(container: Obj, reason: str, message: str = "") -> Obj:
    """The status of a container that has not started yet."""
    waiting: Obj = {"reason": reason}
    if message:
        waiting["message"] = message
    return {
        "name": container.get("name"),
        "image": container.get("image", ""),
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "started": False,
        "state": {"waiting": waiting},
        "lastState": {},
    }


class PodWorker:
    """Drives one pod from admission to deletion."""

    def __init__(self, kubelet: Kubelet, pod: Obj) -> None:
        self.kubelet = kubelet
        self.pod = pod
        meta = pod["metadata"]
        self.ns = str(meta.get("namespace") or "default")
        self.name = str(meta["name"])
        self.uid = str(meta.get("uid"))
        self.dir = kubelet.config.state_dir / "pods" / self.ns / f"{self.name}-{self.uid[:8]}"
        self.hosts_file = self.dir / "etc-hosts"
        self.ip = ""
        self.start_time = now()
        self.init: list[ContainerRunner] = []
        self.main: list[ContainerRunner] = []
        self.init_done = not (pod["spec"].get("initContainers"))
        self.init_failed = False
        self.waiting: tuple[str, str] | None = ("ContainerCreating", "")
        self.pulls: dict[str, tuple[str, str]] = {}  # container → failed pull (reason, message)
        self.phase_override: tuple[str, str, str] | None = None
        self.lost: list[Obj] | None = None  # container statuses of a pod lost with an agent
        self.stopping = asyncio.Event()
        self._dirty = asyncio.Event()
        self._published: Obj | None = None
        self.task: asyncio.Task[None] | None = None
        self._token_task: asyncio.Task[None] | None = None
        self._sidecar_tasks: list[asyncio.Task[int]] = []

    @property
    def spec(self) -> Obj:
        return dict(self.pod.get("spec") or {})

    def grace(self) -> float:
        meta = self.pod.get("metadata") or {}
        if meta.get("deletionGracePeriodSeconds") is not None:
            return float(meta["deletionGracePeriodSeconds"])
        return float(self.spec.get("terminationGracePeriodSeconds", 30))

    def changed(self) -> None:
        self._dirty.set()

    # ---- status -------------------------------------------------------------------

    def status(self) -> Obj:
        restart_policy = str(self.spec.get("restartPolicy") or "Always")
        main_status = [c.status() for c in self.main]
        if self.lost is not None:
            main_status = self.lost
        elif not self.main:
            reason, message = self.waiting or ("PodInitializing", "")
            main_status = [
                waiting_status(c, *self.pulls.get(str(c.get("name")), (reason, message)))
                for c in self.spec.get("containers") or []
            ]
        phase = pod_phase(
            restart_policy,
            self.init_done,
            self.init_failed,
            main_status if self.main else [],
            [c.will_restart() for c in self.main],
        )
        out: Obj = {
            "phase": phase,
            "hostIP": HOST_IP,
            "hostIPs": [{"ip": HOST_IP}],
            "startTime": self.start_time,
            "qosClass": (self.pod.get("status") or {}).get("qosClass") or qos_class(self.spec),
            "containerStatuses": main_status,
        }
        if self.ip:
            out["podIP"] = self.ip
            out["podIPs"] = [{"ip": self.ip}]
        if self.spec.get("initContainers"):
            started = [c.status() for c in self.init]
            pending = (self.spec.get("initContainers") or [])[len(started) :]
            out["initContainerStatuses"] = started + [
                waiting_status(c, *self.pulls.get(str(c.get("name")), ("PodInitializing", "")))
                for c in pending
            ]
        if self.phase_override is not None:
            out["phase"], out["reason"], out["message"] = self.phase_override
        old = (self.pod.get("status") or {}).get("conditions") or []
        sidecars = [r.status() for r in self.init if not r.is_init]
        out["conditions"] = pod_conditions(
            old, out["phase"], self.init_done, main_status + sidecars
        )
        return out

    async def publisher(self) -> None:
        """Write status whenever it changes (coalescing bursts)."""
        while True:
            await self._dirty.wait()
            self._dirty.clear()
            status = self.status()
            if status == self._published:
                continue
            try:
                answer = await self.kubelet.client.patch(
                    k8s.PODS, self.ns, self.name, {"status": status}, sub="status"
                )
                self._published = status
                if answer.get("metadata", {}).get("uid") == self.uid:
                    self.pod = answer
                    self.kubelet.pods.upsert(answer)
            except APIError as exc:
                if exc.status == 404:
                    return
                # a refused status (422: invalid) is a kubelet bug that would leave the pod
                # looking stuck; say so instead of retrying silently
                report = log.warning if exc.status in (400, 403, 422) else log.debug
                report("status of %s/%s: %s", self.ns, self.name, exc)
                await asyncio.sleep(0.5)
                self._dirty.set()
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.5)
                self._dirty.set()

    # ---- lifecycle ----------------------------------------------------------------

    async def run(self) -> None:
        publisher = asyncio.create_task(self.publisher())
        body = asyncio.create_task(self._run())
        try:
            stopper = asyncio.create_task(self.stopping.wait())
            await asyncio.wait({body, stopper}, return_when=asyncio.FIRST_COMPLETED)
            if body.done():
                body.result()
                await stopper  # a finished pod stays until it is deleted
        finally:
            if self.kubelet.shutting_down:
                # the node goes away, not the pod: its status stays as it was (the next
                # agent runs its containers again, or reports them lost when the pod's
                # restartPolicy is Never: see `_run`)
                publisher.cancel()
            await self._stop_all()
            try:
                await asyncio.wait_for(asyncio.shield(body), 10)
            except (TimeoutError, asyncio.CancelledError):
                body.cancel()
            except Exception:
                log.exception("pod %s/%s failed", self.ns, self.name)
            await asyncio.sleep(0)
            self.changed()
            # give the final status a moment to be written before the pod goes
            for _ in range(0 if self.kubelet.shutting_down else 50):
                if not self._dirty.is_set() and self._published == self.status():
                    break
                await asyncio.sleep(0.05)
            publisher.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await publisher
            if self.stopping.is_set():
                await self.kubelet.finish_deletion(self)

    async def _run(self) -> None:
        if self.spec.get("restartPolicy") == "Never" and started_before(self.pod):
            # An earlier agent ran this pod; its containers stopped with it. A pod that
            # may not restart them is reported failed, never run a second time.
            status = self.pod.get("status") or {}
            self.start_time = status.get("startTime") or self.start_time
            previous = {c.get("name"): c for c in status.get("containerStatuses") or []}
            self.lost = [
                lost_status(c, previous.get(c.get("name")))
                for c in self.spec.get("containers") or []
            ]
            self.phase_override = ("Failed", "ContainerStatusUnknown", LOST_MESSAGE)
            self.kubelet.record(self.pod, "Pod", "ContainerStatusUnknown", LOST_MESSAGE, True)
            self.changed()
            return
        self.ip = self.kubelet.ips.allocate(self.uid, (self.pod.get("status") or {}).get("podIP"))
        self.dir.mkdir(parents=True, exist_ok=True)
        self.kubelet.write_hosts(self)
        self.changed()
        deadline = self.spec.get("activeDeadlineSeconds")
        watchdog = asyncio.create_task(self._deadline(float(deadline))) if deadline else None
        try:
            volumes = await self._prepare_volumes()
            if volumes is None:
                return
            self.waiting = ("PodInitializing", "") if self.spec.get("initContainers") else None
            for spec in self.spec.get("initContainers") or []:
                if is_sidecar(spec):
                    if not await self._start_sidecar(spec, volumes):
                        return
                    continue
                runner = await self._runner_when_ready(spec, volumes, is_init=True)
                if runner is None:
                    return
                self.init.append(runner)
                self.changed()
                code = await runner.run()
                if self.stopping.is_set():
                    return
                if code != 0:
                    self.init_failed = True
                    self.changed()
                    return
            self.init_done = True
            runners = []
            for spec in self.spec.get("containers") or []:
                runner = await self._runner_when_ready(spec, volumes)
                if runner is None:
                    return
                runners.append(runner)
            self.main = runners
            self.waiting = None
            self.changed()
            await asyncio.gather(*(r.run() for r in self.main))
            # the main containers are done for good: sidecars stop, as the kubelet does
            await self._stop_sidecars()
            self.changed()
        finally:
            for task in self._sidecar_tasks:
                task.cancel()
            if watchdog is not None:
                watchdog.cancel()
            if self._token_task is not None:
                self._token_task.cancel()

    async def _start_sidecar(self, spec: Obj, volumes: dict[str, Path]) -> bool:
        """Start a sidecar (an init container with restartPolicy Always) and wait until it
        has started (its startupProbe passed); it restarts whatever its exit code and runs
        beside the main containers. False when the pod stops first."""
        runner = await self._runner_when_ready(spec, volumes, sidecar=True)
        if runner is None:
            return False
        self.init.append(runner)
        self._sidecar_tasks.append(asyncio.create_task(runner.run()))
        self.changed()
        while not (runner.started and "running" in runner.state):
            if self.stopping.is_set():
                return False
            await asyncio.sleep(0.1)
        return True

    async def _stop_sidecars(self) -> None:
        sidecars = [r for r in self.init if r.restart_policy == "Always" and not r.is_init]
        for runner in sidecars:
            runner.stopping.set()
        await asyncio.gather(*(r.kill() for r in sidecars), return_exceptions=True)
        await asyncio.gather(*self._sidecar_tasks, return_exceptions=True)

    async def _runner_when_ready(
        self, spec: Obj, volumes: dict[str, Path], is_init: bool = False, sidecar: bool = False
    ) -> ContainerRunner | None:
        """Pull its image, then retry a container whose config is missing (e.g. its Secret
        comes later); None when the pod stops first."""
        if not await self._pull(spec):
            return None
        while not self.stopping.is_set():
            runner = self._runner(spec, volumes, is_init, sidecar)
            if runner is not None:
                return runner
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), 2.0)
        return None

    async def _pull(self, spec: Obj) -> bool:
        """The container's image pull: True at once for every image the node treats as
        present; for one whose registry cannot exist (`images.pull_error`), the kubelet's
        failed pull — ErrImagePull, then ImagePullBackOff for the back-off, then another
        attempt — until the pod stops (False)."""
        image = str(spec.get("image") or "")
        error = pull_error(image)
        if error is None:
            return True
        name = str(spec.get("name"))
        attempts = 0
        while not self.stopping.is_set():
            self._record("Pulling", f'Pulling image "{image}"')
            self._record("Failed", f'Failed to pull image "{image}": {error}', warning=True)
            self._record("Failed", "Error: ErrImagePull", warning=True)
            self.pulls[name] = ("ErrImagePull", error)
            self.changed()
            await self._published_as(name, "ErrImagePull")
            await self._stopped_within(PULL_ERROR_SECONDS)
            if self.stopping.is_set():
                break
            backoff = f'Back-off pulling image "{image}"'
            self.pulls[name] = ("ImagePullBackOff", backoff)
            self._record("BackOff", backoff)
            self._record("Failed", "Error: ImagePullBackOff", warning=True)
            self.changed()
            await self._stopped_within(self.kubelet.config.image_backoff.delay(attempts))
            attempts += 1
        return False

    def _record(self, reason: str, message: str, *, warning: bool = False) -> None:
        self.kubelet.record(self.pod, "Pod", reason, message, warning)

    async def _stopped_within(self, seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.stopping.wait(), seconds)

    async def _published_as(self, container: str, reason: str, limit: float = 10.0) -> None:
        """Until the API holds `reason` for the container (so that watchers see each
        state), the pod stops, or `limit` seconds."""
        loop = asyncio.get_running_loop()
        until = loop.time() + limit
        while not self.stopping.is_set() and loop.time() < until:
            if waiting_reason(self._published, container) == reason:
                return
            await asyncio.sleep(0.05)

    async def _deadline(self, seconds: float) -> None:
        await asyncio.sleep(max(seconds - seconds_since(self.start_time), 0))
        self.phase_override = (
            "Failed",
            "DeadlineExceeded",
            "Pod was active on the node longer than the specified deadline",
        )
        for runner in [*self.init, *self.main]:
            runner.stopping.set()
            await runner.kill()
        self.changed()

    async def _tokens(self) -> dict[tuple[str, str], bytes]:
        """TokenRequest tokens for the pod's projected serviceAccountToken sources."""
        out: dict[tuple[str, str], bytes] = {}
        account = str(self.spec.get("serviceAccountName") or "default")
        for source in token_sources(self.pod):
            audiences = [source.audience] if source.audience else []
            try:
                answer = await self.kubelet.client.request_token(
                    self.ns, account, audiences, source.seconds, self.pod
                )
            except APIError as exc:
                raise ConfigError(
                    f"cannot get a token for serviceaccount {account}: {exc}"
                ) from exc
            except (aiohttp.ClientError, OSError) as exc:
                raise ConfigError(f"cannot reach the API server for a token: {exc}") from exc
            out[(source.volume, source.path)] = str(answer["status"]["token"]).encode()
        return out

    async def _refresh_tokens(self, sources: list[TokenSource], volumes: dict[str, Path]) -> None:
        """Rewrite each token at 80 % of its lifetime, as the kubelet does."""
        if not sources:
            return
        while True:
            await asyncio.sleep(0.8 * min(s.seconds for s in sources))
            try:
                tokens = await self._tokens()
            except ConfigError as exc:
                log.warning("token refresh for %s/%s: %s", self.ns, self.name, exc)
                continue
            for (volume, path), token in tokens.items():
                if volume in volumes:
                    write_in_place(volumes[volume] / path, token.decode())

    async def _prepare_volumes(self) -> dict[str, Path] | None:
        k = self.kubelet
        while not self.stopping.is_set():
            try:
                volumes = prepare_volumes(
                    self.pod,
                    self.dir,
                    k.configmaps.objects,
                    k.secrets.objects,
                    k.pvcs.objects,
                    k.pvs.objects,
                    await self._tokens(),
                )
                self._token_task = asyncio.create_task(
                    self._refresh_tokens(token_sources(self.pod), volumes)
                )
                return volumes
            except (ConfigError, OSError) as exc:
                reason = "ContainerCreating"
                self.waiting = (reason, str(exc))
                self.changed()
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self.stopping.wait(), 1.0)
        return None

    def _base_env(self) -> dict[str, str]:
        host_path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin")
        port = str(urlsplit(self.kubelet.config.api_server).port or 443)
        env = {
            "PATH": f"{VENV_BIN}:{host_path}",
            "HOME": os.environ.get("HOME", "/root"),
            "HOSTNAME": str(self.spec.get("hostname") or self.name),
            "KUBERNETES_SERVICE_HOST": HOST_IP,
            "KUBERNETES_SERVICE_PORT": port,
            "KUBERNETES_SERVICE_PORT_HTTPS": port,
        }
        for passthrough in ("LANG", "LC_ALL", "TZ", "GANTRY_TOOLS_DIR", "TMPDIR"):
            if passthrough in os.environ:
                env[passthrough] = os.environ[passthrough]
        return env

    def _runner(
        self, spec: Obj, volumes: dict[str, Path], is_init: bool = False, sidecar: bool = False
    ) -> ContainerRunner | None:
        k = self.kubelet
        name = str(spec.get("name"))
        view = dict(self.pod)
        view["status"] = {**(self.pod.get("status") or {}), "podIP": self.ip, "hostIP": HOST_IP}
        try:
            env = container_env(
                view, spec, k.configmaps.objects, k.secrets.objects, self._base_env()
            )
            argv, env = host_command(str(spec.get("image") or ""), container_argv(spec, env), env)
            mounts = container_mounts(spec, volumes)
            conflicts = hidden_paths([m.target for m in mounts], RUNTIME_PATHS)
            if conflicts:
                target, hidden = conflicts[0]
                raise ConfigError(
                    f"mountPath {target} would hide {hidden}, which this dev node runs "
                    "containers from; choose another mountPath"
                )
        except (ConfigError, ImageError, ValueError, OSError) as exc:
            if self.waiting != ("CreateContainerConfigError", str(exc)):
                self.kubelet.record(self.pod, "Pod", "Failed", f"Error: {exc}", True)
            self.waiting = ("CreateContainerConfigError", str(exc))
            self.phase_override = None
            self.changed()
            return None
        term_file = self.dir / "termination" / name
        term_file.parent.mkdir(parents=True, exist_ok=True)
        term_file.touch()
        targets = {m.target for m in mounts}
        extra = [Mount(self.hosts_file, "/etc/hosts")] if "/etc/hosts" not in targets else []
        term_path = str(spec.get("terminationMessagePath") or "/dev/termination-log")
        extra.append(Mount(term_file, term_path))
        hostname = str(self.spec.get("hostname") or self.name)
        sandbox = Sandbox(
            mounts=tuple(extra + mounts),
            hostname=hostname,
            working_dir=str(spec.get("workingDir") or ""),
            fallback_dir=self.dir,
        )
        root = k.config.logs_root

        def log_file(restart: int) -> Path:
            return log_path(root, self.ns, self.name, name, restart)

        return ContainerRunner(
            spec,
            Launch(argv, env, sandbox, term_file, log_file, k.registry),
            self.ip,
            "Always" if sidecar else str(self.spec.get("restartPolicy") or "Always"),
            k.config.backoff,
            self.grace,
            self.changed,
            is_init=is_init,
            event=lambda reason, message, warning: k.record(
                self.pod, "Pod", reason, message, warning
            ),
        )

    async def _pre_stop(self, runner: ContainerRunner) -> None:
        hook = ((runner.spec.get("lifecycle") or {}).get("preStop")) or {}
        if not hook or runner.proc is None or runner.proc.returncode is not None:
            return
        # the hook's time counts against the grace period; a node shutdown allows 5 s
        limit = min(self.grace(), 5.0) if self.kubelet.shutting_down else self.grace()
        try:
            await asyncio.wait_for(self._run_hook(hook, runner), limit)
        except TimeoutError:
            log.debug("preStop of %s/%s ran out of time", self.name, runner.name)

    async def _run_hook(self, hook: Obj, runner: ContainerRunner) -> None:
        try:
            if "exec" in hook:
                argv = [str(a) for a in hook["exec"].get("command") or []]
                await run_exec(argv, runner.launch.env, runner.launch.sandbox, self.grace())
            elif "httpGet" in hook:
                await check(
                    {"httpGet": hook["httpGet"], "timeoutSeconds": self.grace()},
                    runner.spec,
                    self.ip,
                    _no_exec,
                )
            elif "sleep" in hook:
                await asyncio.sleep(min(float(hook["sleep"].get("seconds", 0)), self.grace()))
        except (OSError, ValueError) as exc:
            log.debug("preStop of %s/%s: %s", self.name, runner.name, exc)

    async def _stop_all(self) -> None:
        runners = [*self.init, *self.main]
        for r in runners:
            r.stopping.set()

        async def stop(r: ContainerRunner) -> None:
            if r.proc is not None and r.proc.returncode is None:
                self.kubelet.record(self.pod, "Pod", "Killing", f"Stopping container {r.name}")
            await self._pre_stop(r)
            await r.kill()

        await asyncio.gather(*(stop(r) for r in runners), return_exceptions=True)

    def request_stop(self) -> None:
        if not self.stopping.is_set():
            self.stopping.set()
            for r in [*self.init, *self.main]:
                r.stopping.set()
            self.changed()


async def _no_exec(argv: list[str], timeout: float) -> int:
    return 1


class Kubelet:
    """Starts a PodWorker for each pod bound to the node; finishes deletions."""

    def __init__(
        self,
        client: APIClient,
        config: KubeletConfig,
        pods: Informer,
        configmaps: Informer,
        secrets: Informer,
        pvcs: Informer,
        pvs: Informer,
        refresh_hosts: Callable[[], None],
    ) -> None:
        self.client = client
        self.config = config
        self.pods = pods
        self.configmaps = configmaps
        self.secrets = secrets
        self.pvcs = pvcs
        self.pvs = pvs
        self.refresh_hosts = refresh_hosts
        self.ips = IPAllocator()
        self.registry = ProcessRegistry(config.state_dir / "run" / "pids")
        self.record = Recorder(client, "kubelet")
        self.workers: dict[str, PodWorker] = {}
        self._deleting: set[str] = set()
        self._background: set[asyncio.Task[None]] = set()
        self.render_hosts: Callable[[PodAddress], str] | None = None
        self.shutting_down = False

    def reconcile(self) -> None:
        seen: set[str] = set()
        for pod in self.pods.items():
            spec, meta = pod.get("spec") or {}, pod.get("metadata") or {}
            if spec.get("nodeName") != self.config.node_name:
                continue
            uid = str(meta.get("uid"))
            seen.add(uid)
            worker = self.workers.get(uid)
            terminal = (pod.get("status") or {}).get("phase") in ("Succeeded", "Failed")
            if worker is None:
                if terminal or meta.get("deletionTimestamp"):
                    if meta.get("deletionTimestamp") and uid not in self._deleting:
                        self._deleting.add(uid)
                        self._background.add(asyncio.create_task(self._delete_now(pod)))
                    continue
                worker = PodWorker(self, pod)
                self.workers[uid] = worker
                worker.task = asyncio.create_task(worker.run())
            else:
                worker.pod = pod
            if meta.get("deletionTimestamp"):
                worker.request_stop()
        for uid, worker in list(self.workers.items()):
            if uid not in seen:
                worker.request_stop()

    async def _delete_now(self, pod: Obj) -> None:
        meta = pod["metadata"]
        with contextlib.suppress(APIError, aiohttp.ClientError, OSError):
            await self.client.delete(
                k8s.PODS, meta.get("namespace"), meta["name"], grace=0, uid=meta.get("uid")
            )

    async def finish_deletion(self, worker: PodWorker) -> None:
        with contextlib.suppress(APIError, aiohttp.ClientError, OSError):
            await self.client.delete(k8s.PODS, worker.ns, worker.name, grace=0, uid=worker.uid)
        self.workers.pop(worker.uid, None)
        self.ips.release(worker.uid)
        shutil.rmtree(worker.dir, ignore_errors=True)
        self.refresh_hosts()

    def viewer(self, worker: PodWorker) -> PodAddress:
        spec = worker.spec
        return PodAddress(
            worker.ns,
            worker.name,
            worker.ip,
            True,
            str(spec.get("hostname") or ""),
            str(spec.get("subdomain") or ""),
        )

    def write_hosts(self, worker: PodWorker) -> None:
        """The pod's hosts file must exist before its first container starts."""
        content = self.render_hosts(self.viewer(worker)) if self.render_hosts else ""
        write_in_place(worker.hosts_file, content or "127.0.0.1\tlocalhost\n")
        self.refresh_hosts()

    def running(self) -> list[tuple[PodAddress, Path]]:
        return [(self.viewer(w), w.hosts_file) for w in self.workers.values() if w.ip]

    async def shutdown(self) -> None:
        """Stop every container (SIGTERM, then SIGKILL after at most 5 s)."""
        self.shutting_down = True
        tasks = []
        for worker in list(self.workers.values()):
            for r in [*worker.init, *worker.main]:
                r.stopping.set()
                r.grace = lambda: 5.0
            if worker.task is not None:
                worker.task.cancel()
                tasks.append(worker.task)
        await asyncio.gather(*tasks, return_exceptions=True)
        for worker in list(self.workers.values()):
            for r in [*worker.init, *worker.main]:
                with contextlib.suppress(Exception):
                    await r.kill()
        self.ips.close()
