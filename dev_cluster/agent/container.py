"""One container's life on the dev node: start, probe, exit, restart with back-off."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import probes, process
from .podstatus import now
from .process import Sandbox

Obj = dict[str, Any]
MAX_MESSAGE = 4096


@dataclass(frozen=True)
class Launch:
    """Everything needed to (re)start the container's process."""

    argv: list[str]
    env: dict[str, str]
    sandbox: Sandbox
    termination_file: Path
    log_file: Callable[[int], Path]
    registry: process.ProcessRegistry | None = None


@dataclass(frozen=True)
class Backoff:
    base: float = 10.0
    cap: float = 300.0

    def delay(self, restarts: int) -> float:
        return float(min(self.base * (2 ** min(restarts, 30)), self.cap))


def termination_message(container: Obj, exit_code: int, message_file: Path, log_file: Path) -> str:
    """The message file's content, or (FallbackToLogsOnError) the log's tail on failure."""
    try:
        text = message_file.read_bytes()[:MAX_MESSAGE].decode(errors="replace")
    except OSError:
        text = ""
    policy = container.get("terminationMessagePolicy") or "File"
    if not text and exit_code != 0 and policy == "FallbackToLogsOnError":
        try:
            lines = log_file.read_bytes().splitlines()[-80:]
        except OSError:
            lines = []
        text = b"\n".join(lines)[-2048:].decode(errors="replace")
    return text


class ContainerRunner:
    """Runs a container, keeps its status, restarts it as the pod's restartPolicy says."""

    def __init__(
        self,
        spec: Obj,
        launch: Launch,
        pod_ip: str,
        restart_policy: str,
        backoff: Backoff,
        grace: Callable[[], float],
        changed: Callable[[], None],
        is_init: bool = False,
        event: Callable[[str, str, bool], None] | None = None,
    ) -> None:
        self.spec = spec
        self.name = str(spec.get("name"))
        self.launch = launch
        self.pod_ip = pod_ip
        self.restart_policy = restart_policy
        self.backoff = backoff
        self.grace = grace
        self.changed = changed
        self.is_init = is_init
        self.restart_count = 0
        self.state: Obj = {"waiting": {"reason": "ContainerCreating"}}
        self.last_state: Obj = {}
        self.ready = False
        self.started = False
        self.proc: asyncio.subprocess.Process | None = None
        self.stopping = asyncio.Event()
        self.done = False  # will not run again
        self._kill_reason: str | None = None
        self._crashes = 0  # back-off steps; reset after a run of 10 minutes, as the kubelet does
        self.event = event or (lambda reason, message, warning: None)

    def status(self) -> Obj:
        out: Obj = {
            "name": self.name,
            "image": self.spec.get("image", ""),
            "imageID": "",
            "ready": self.ready,
            "restartCount": self.restart_count,
            "started": self.started,
            "state": self.state,
            "lastState": self.last_state,
        }
        if self.proc is not None:
            out["containerID"] = f"dev://{self.proc.pid}"
        return out

    def will_restart(self) -> bool:
        return not self.done

    def _should_restart(self, code: int) -> bool:
        if self.stopping.is_set():
            return False
        if self.is_init:
            return self.restart_policy != "Never" and code != 0
        return self.restart_policy == "Always" or (self.restart_policy == "OnFailure" and code != 0)

    async def run(self) -> int:
        """Run until the container will not be restarted; the last exit code."""
        code = 0
        while True:
            code = await self._run_once()
            if not self._should_restart(code):
                break
            delay = self.backoff.delay(self._crashes)
            self._crashes += 1
            self.last_state, self.state = (
                self.state,
                {
                    "waiting": {
                        "reason": "CrashLoopBackOff",
                        "message": f"back-off {delay:g}s restarting failed container={self.name}",
                    }
                },
            )
            self.restart_count += 1
            self.event("BackOff", f"Back-off restarting failed container {self.name}", True)
            self.changed()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stopping.wait(), delay)
            if self.stopping.is_set():
                self.state, self.last_state = self.last_state, {}
                self.restart_count -= 1
                break
        self.done = True
        self.changed()
        return code

    async def _run_once(self) -> int:
        self._kill_reason = None
        self.launch.termination_file.write_bytes(b"")
        log_file = self.launch.log_file(self.restart_count)
        try:
            self.proc = await process.start(
                self.launch.argv, self.launch.env, self.launch.sandbox, log_file
            )
        except OSError as exc:
            self.state = {
                "terminated": {
                    "exitCode": 128,
                    "reason": "StartError",
                    "message": str(exc),
                    "startedAt": now(),
                    "finishedAt": now(),
                }
            }
            self.changed()
            return 128
        if self.launch.registry is not None:
            self.launch.registry.add(self.proc.pid)
        started_at = now()
        began = asyncio.get_running_loop().time()
        self.event("Started", f"Started container {self.name}", False)
        self.state = {"running": {"startedAt": started_at}}
        checks = probes.probes_of(self.spec) if not self.is_init else {}
        self.started = "startup" not in checks
        self.ready = not self.is_init and not checks.get("readiness") and self.started
        self.changed()
        probe_task = asyncio.create_task(self._probe(checks)) if checks else None
        returncode = await self.proc.wait()
        process.signal_group(self.proc.pid, signal.SIGKILL)
        if self.launch.registry is not None:
            self.launch.registry.discard(self.proc.pid)
        if probe_task is not None:
            probe_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await probe_task
        code = process.exit_code(returncode)
        if asyncio.get_running_loop().time() - began >= 600:
            self._crashes = 0
        message = termination_message(self.spec, code, self.launch.termination_file, log_file)
        terminated: Obj = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": started_at,
            "finishedAt": now(),
            "containerID": f"dev://{self.proc.pid}",
        }
        if returncode < 0:
            terminated["signal"] = -returncode
        if message:
            terminated["message"] = message
        self.state = {"terminated": terminated}
        self.ready = False
        self.started = False
        self.changed()
        return code

    async def kill(self, reason: str | None = None) -> None:
        """Stop the current process (preStop is the pod's business)."""
        self._kill_reason = reason
        if self.proc is not None and self.proc.returncode is None:
            await process.stop(self.proc, self.grace())

    async def _exec(self, argv: list[str], timeout: float) -> int:
        code, _ = await process.run_exec(argv, self.launch.env, self.launch.sandbox, timeout)
        return code

    async def _probe(self, checks: Mapping[str, Obj]) -> None:
        if "startup" in checks:
            if not await self._probe_until("startup", checks["startup"]):
                self.event("Unhealthy", "Startup probe failed", True)
                self.event(
                    "Killing",
                    f"Container {self.name} failed startup probe, will be restarted",
                    False,
                )
                await self.kill("startup probe failed")
                return
            self.started = True
            self.ready = "readiness" not in checks
            self.changed()
        tasks = [
            asyncio.create_task(self._probe_until(kind, checks[kind]))
            for kind in ("liveness", "readiness")
            if kind in checks
        ]
        try:
            for finished in asyncio.as_completed(tasks):
                if not await finished:
                    self.event("Unhealthy", "Liveness probe failed", True)
                    self.event(
                        "Killing",
                        f"Container {self.name} failed liveness probe, will be restarted",
                        False,
                    )
                    await self.kill("liveness probe failed")
                    return
        finally:
            for t in tasks:
                t.cancel()

    async def _probe_until(self, kind: str, probe: Obj) -> bool:
        """Startup: until success (True) or failure threshold (False).
        Liveness: until failure (False). Readiness: forever, updating `ready`."""
        spec = probes.probe_spec(probe)
        state = probes.ProbeState(spec, initial=kind == "liveness")
        await asyncio.sleep(spec.initial_delay)
        while True:
            ok = await probes.check(probe, self.spec, self.pod_ip, self._exec)
            changed = state.record(ok)
            if kind == "startup":
                if state.result and ok:
                    return True
                if not ok and not state.result and state.failures >= spec.failure_threshold:
                    return False
            elif kind == "liveness":
                if changed and not state.result:
                    return False
            elif changed or self.ready != state.result:
                if changed and not state.result:
                    self.event("Unhealthy", "Readiness probe failed", True)
                self.ready = state.result
                self.changed()
            await asyncio.sleep(spec.period)
