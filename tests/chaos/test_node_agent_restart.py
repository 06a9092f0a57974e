"""The node agent (the dev node's kubelet) restarted while a TrainingJob trains.

A killed worker process and a deleted worker pod are covered by
tests/operator/test_trainingjob_devcluster.py (each costs one more attempt that resumes
from the checkpoint); the new fault here is the node agent itself going away and coming
back. Stopping it stops every container on the node (the dev node has no container
runtime that outlives it); the new agent finds the pods still bound to the node. Worker
pods (restartPolicy Never) must then be reported lost — failed, so the operator starts
another attempt that resumes from the checkpoint — never run a second time in the same
pod behind everyone's back; the operator's own pod (restartPolicy Always) restarts.
Every torchrun worker process is recorded (job, attempt, rank → pids) to prove it.
"""

from __future__ import annotations

import re
import threading
import time
from pathlib import Path

import pytest

from tests.chaos.chaos_testkit import (
    NS,
    TJ,
    check_end_state,
    create_story,
    report,
    story_cluster,
    wait_converged,
    wait_mid_training,
)

pytestmark = pytest.mark.slow


def worker_processes() -> dict[tuple[str, str], set[int]]:
    """Training processes of the story's job now: (attempt, rank) → pids; a process a
    worker starts itself (its environment inherited) counts as its parent's."""
    keys: dict[int, tuple[tuple[str, str], int]] = {}  # pid → ((attempt, rank), ppid)
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            environ = (proc / "environ").read_bytes().split(b"\0")
            ppid = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        env = dict(e.decode(errors="replace").partition("=")[::2] for e in environ if b"=" in e)
        if env.get("GANTRY_JOB_NAME") == TJ and "RANK" in env and "LOCAL_RANK" in env:
            keys[int(proc.name)] = ((env.get("GANTRY_ATTEMPT", "?"), env["RANK"]), ppid)
    found: dict[tuple[str, str], set[int]] = {}
    for pid, (key, ppid) in keys.items():
        if keys.get(ppid, (None, 0))[0] != key:
            found.setdefault(key, set()).add(pid)
    return found


def test_node_agent_restarted_mid_training(tmp_path: Path) -> None:
    with story_cluster(tmp_path) as (cluster, kube, ledger):
        seen: dict[tuple[str, str], set[int]] = {}
        stop = threading.Event()
        started = time.monotonic()

        def record() -> None:
            while not stop.is_set():
                for key, pids in worker_processes().items():
                    seen.setdefault(key, set()).update(pids)
                stop.wait(0.2)

        recorder = threading.Thread(target=record, name="worker-recorder", daemon=True)
        ledger.start()
        create_story(kube)
        recorder.start()
        try:
            wait_mid_training(cluster, kube, ledger)
            before = {k: set(v) for k, v in seen.items()}
            restart_at = time.monotonic() - started
            cluster.run_on_loop(cluster.restart_agent(), 180)
            restarted = time.monotonic() - started
            wait_converged(cluster, kube, ledger, "the story to converge after the restart")
            done = time.monotonic() - started
        finally:
            stop.set()
            recorder.join(10)
        # attempt 1's workers ran once each: never again inside their pods
        doubled = {k: sorted(v) for k, v in seen.items() if k[0] == "1" and v != before.get(k)}
        assert not doubled, f"attempt 1's workers ran again after the restart: {doubled}"
        # they were reported lost instead, and attempt 2 resumed from the checkpoint
        pods = kube.list("v1", "pods", NS, label_selector=f"gantry.dev/trainingjob={TJ}")
        events = kube.list("v1", "events", NS)
        lost = sorted(
            e["involvedObject"]["name"]
            for e in events
            if e.get("reason") == "ContainerStatusUnknown"
            and e["involvedObject"]["name"].startswith(f"{TJ}-a1-")
        )
        assert lost, "no attempt-1 worker was reported lost"
        restarting = [
            e.get("message") or ""
            for e in events
            if e["involvedObject"].get("name") == TJ and e.get("reason") == "Restarting"
        ]
        state = check_end_state(cluster, kube, ledger, attempts=2)
        rank0 = next(
            p
            for p in pods
            if p["metadata"]["labels"].get("gantry.dev/attempt") == "2"
            and p["metadata"]["labels"].get("batch.kubernetes.io/job-completion-index") == "0"
        )
        log = kube.pod_log(NS, rank0["metadata"]["name"])
        resumed = re.search(r"resumed from checkpoint \S+: starting at epoch (\d+)/", log)
        assert resumed and int(resumed.group(1)) >= 2, log[-2000:]
        report(
            "node-agent-restart",
            restart_at_s=round(restart_at, 1),
            agent_restart_s=round(restarted - restart_at, 1),
            converged_after_restart_s=round(done - restarted, 1),
            attempts=state.attempts,
            resumed_at_epoch=int(resumed.group(1)),
            worker_processes={f"a{a}/r{r}": len(p) for (a, r), p in sorted(seen.items())},
            reported_lost=lost,
            restarting=restarting,
            timeline=ledger.timeline(),
            duplicates=0,
            orphans=0,
            accuracy=state.accuracy,
        )
