"""Runs one container as a host process with its own mounts, hostname and process group.

Each container runs as `unshare -Urmu sh -c '<mounts>; exec "$@"' sh ARGV...`: a private
mount namespace (so `mountPath`s such as `/data`, `/etc/hosts`, `/dev/termination-log`
are real bind mounts seen only by that container) and UTS namespace (its hostname), on
the host's network (so pod IPs on loopback work). Mount points that do not exist are
created on the host (empty directories/files, left in place); where one cannot be made
(a read-only place such as /proc or /sys), the container starts without that mount and
finds the volume's host path in `GANTRY_DEV_MOUNT_<MOUNT_PATH>` (e.g. /sys/x →
GANTRY_DEV_MOUNT_SYS_X), with a line in its log saying so. The process leads its own
process group so that stopping it stops everything it started.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shlex
import shutil
import signal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from .volumes import Mount

UNSHARE = shutil.which("unshare")


@dataclass(frozen=True)
class Sandbox:
    """What a container (or an exec probe inside it) sees."""

    mounts: tuple[Mount, ...]
    hostname: str
    working_dir: str
    fallback_dir: Path


def _is_within(path: str, ancestor: str) -> bool:
    return path == ancestor or path.startswith(ancestor.rstrip("/") + "/")


def mount_order(mounts: tuple[Mount, ...]) -> list[Mount]:
    """Parents before children; a mount that would hide another's source goes last."""
    sources = [str(m.source) for m in mounts]

    def key(m: Mount) -> tuple[bool, int]:
        hides = any(_is_within(s, m.target) for s in sources if s != str(m.source))
        return (hides, m.target.rstrip("/").count("/"))

    return sorted(mounts, key=key)


def hidden_paths(targets: list[str], needed: list[Path]) -> list[tuple[str, Path]]:
    """(mountPath, host path) pairs where a mount would hide what the node runs from."""
    return [(t, p) for t in targets for p in needed if _is_within(str(p), t.rstrip("/") or "/")]


def fallback_variable(target: str) -> str:
    """The env var that names a volume's host path when its mountPath cannot be made."""
    return "GANTRY_DEV_MOUNT_" + re.sub(r"[^A-Za-z0-9]", "_", target.strip("/")).upper()


SETPRIV = shutil.which("setpriv")


def with_parent_death(argv: Sequence[str]) -> list[str]:
    """`argv` that gets SIGKILL when the thread that started it goes, so a killed dev
    cluster (or test run) leaves no container or control-plane process behind.

    util-linux `setpriv --pdeathsig` sets it right before exec: unlike a Python
    `preexec_fn` it is safe in a multi-threaded process, and placed after `unshare`'s
    credential change (which clears the setting) it survives into the container."""
    return [SETPRIV, "--pdeathsig", "KILL", "--", *argv] if SETPRIV else list(argv)


# Used inside the container wrapper script, after `unshare` has changed credentials.
PARENT_DEATH_PREFIX = f"{shlex.quote(SETPRIV)} --pdeathsig KILL -- " if SETPRIV else ""


def wrapper_script(box: Sandbox) -> str:
    """The shell prologue that sets up mounts and hostname, then execs the command."""
    steps: list[str] = []
    for m in mount_order(box.mounts):
        src, dst = shlex.quote(str(m.source)), shlex.quote(m.target)
        if m.source.is_dir():
            prepare = f"mkdir -p {dst}"
        else:
            prepare = f"mkdir -p $(dirname {dst}) && {{ [ -e {dst} ] || : > {dst}; }}"
        var = fallback_variable(m.target)
        remount = f" && mount -o remount,bind,ro {dst}" if m.read_only else ""
        steps.append(
            f"if {{ {prepare} && mount --bind {src} {dst}; }} 2>/dev/null; then :{remount}; "
            f"else export {var}={src}; "
            f'echo "gantry dev node: cannot mount at {m.target}; the volume is at \\${var}" >&2; fi'
        )
    if box.hostname:
        steps.append(f"hostname {shlex.quote(box.hostname[:63])} 2>/dev/null || true")
    wd = shlex.quote(box.working_dir) if box.working_dir else ""
    fallback = shlex.quote(str(box.fallback_dir))
    cd = f"cd {wd} 2>/dev/null || cd {fallback} 2>/dev/null" if wd else f"cd {fallback} 2>/dev/null"
    steps.append(f"{{ {cd} || cd /; }}")
    return " && ".join(steps) + f' && exec {PARENT_DEATH_PREFIX}"$@"'


def sandboxed_argv(argv: Sequence[str], box: Sandbox) -> list[str]:
    if UNSHARE is None:
        raise RuntimeError("the dev node needs util-linux `unshare` to give pods their mounts")
    return [UNSHARE, "-Urmu", "sh", "-c", wrapper_script(box), "sh", *argv]


async def start(
    argv: Sequence[str], env: Mapping[str, str], box: Sandbox, log_file: Path
) -> asyncio.subprocess.Process:
    """Start the container process; stdout and stderr go to log_file."""
    log_file.parent.mkdir(parents=True, exist_ok=True)
    box.fallback_dir.mkdir(parents=True, exist_ok=True)
    with open(log_file, "ab") as out:
        return await asyncio.create_subprocess_exec(
            *sandboxed_argv(argv, box),
            stdin=asyncio.subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            env=dict(env),
            cwd=str(box.fallback_dir),
            start_new_session=True,
        )


def signal_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


async def stop(proc: asyncio.subprocess.Process, grace: float) -> int:
    """SIGTERM the process group, SIGKILL it after `grace` seconds; the exit code."""
    if proc.returncode is None:
        signal_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), max(grace, 0.0))
    signal_group(proc.pid, signal.SIGKILL)
    return await proc.wait()


def exit_code(returncode: int) -> int:
    """asyncio reports death by signal N as -N; Kubernetes reports 128+N."""
    return 128 - returncode if returncode < 0 else returncode


async def run_exec(
    argv: Sequence[str], env: Mapping[str, str], box: Sandbox, timeout: float
) -> tuple[int, bytes]:
    """Run a command in a container's view (exec probes, preStop); (exit code, output)."""
    proc = await asyncio.create_subprocess_exec(
        *sandboxed_argv(argv, box),
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env=dict(env),
        cwd=str(box.fallback_dir),
        start_new_session=True,
    )
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), timeout)
    except TimeoutError:
        return -1, b"timed out"
    finally:
        if proc.returncode is None:  # timed out or cancelled: nothing may outlive the check
            signal_group(proc.pid, signal.SIGKILL)
            await proc.wait()
    return exit_code(proc.returncode or 0), out


class ProcessRegistry:
    """Container process groups on record under `<state>/run/pids`, one file each.

    If an agent dies without stopping its pods (SIGKILL, power cut), the next agent
    on the same state directory stops the groups left on record before it starts."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory

    @staticmethod
    def _start_time(pid: int) -> str | None:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
        except OSError:
            return None
        return stat.rsplit(")", 1)[1].split()[19]

    def add(self, pid: int) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / str(pid)).write_text(self._start_time(pid) or "")

    def discard(self, pid: int) -> None:
        (self.directory / str(pid)).unlink(missing_ok=True)

    def reap_leftovers(self) -> list[int]:
        """SIGKILL recorded groups whose leader is still the process we started."""
        killed = []
        for entry in self.directory.glob("*") if self.directory.is_dir() else []:
            if not entry.name.isdigit():
                continue
            pid = int(entry.name)
            recorded = entry.read_text().strip()
            if recorded and self._start_time(pid) == recorded:
                signal_group(pid, signal.SIGKILL)
                killed.append(pid)
            entry.unlink(missing_ok=True)
        return killed
