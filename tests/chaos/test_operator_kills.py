"""The operator SIGKILLed again and again while a TrainingJob trains and its model is served.

The killer waits until the operator's new process answers on its health port, lets it
run a random 1–4 s (seeded: `GANTRY_CHAOS_SEED`), and SIGKILLs it; the node agent restarts
the container (the Deployment's restartPolicy Always, crash-loop back-off from 0.01 s, doubling).
Kills stop once the story has converged or after `MAX_KILLS`. A killed operator must not
restart training (attempts == 1), create a child twice or leave one behind.
"""

from __future__ import annotations

import os
import random
import threading
import time
from pathlib import Path

import pytest

from tests.chaos.chaos_testkit import (
    check_end_state,
    create_story,
    healthz,
    kill,
    operator_pid,
    operator_pod_ip,
    operator_restarts,
    report,
    story_cluster,
    wait_converged,
)
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

SEED = int(os.environ.get("GANTRY_CHAOS_SEED", "20261130"))
MAX_KILLS = 12


def test_operator_killed_repeatedly_during_train_and_serve(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    with story_cluster(tmp_path, backoff_base=0.01) as (cluster, kube, ledger):
        ip = operator_pod_ip(kube)
        assert ip is not None
        kills: list[float] = []
        stop = threading.Event()
        started = time.monotonic()

        def killer() -> None:
            last_pid: int | None = None
            while not stop.is_set() and len(kills) < MAX_KILLS:
                pid = operator_pid(cluster.state_dir)
                if pid is None or pid == last_pid or healthz(ip, timeout=1) == 0:
                    stop.wait(0.1)  # not restarted yet, or not serving yet
                    continue
                if stop.wait(rng.uniform(1.0, 4.0)):
                    return
                if kill(pid):
                    kills.append(time.monotonic() - started)
                    last_pid = pid

        thread = threading.Thread(target=killer, name="operator-killer", daemon=True)
        ledger.start()
        create_story(kube)
        thread.start()
        try:
            wait_converged(cluster, kube, ledger, "the story to converge under kills", timeout=900)
        finally:
            stop.set()
            thread.join(30)
        ended = time.monotonic() - started
        # the operator, left alone now, must not add anything: it comes back healthy and
        # the end state holds
        wait_for(lambda: healthz(ip) == 200, 120, "the operator healthy after the last kill")
        state = check_end_state(cluster, kube, ledger)
        restarts = operator_restarts(kube)
        assert restarts >= len(kills), f"{len(kills)} kills, {restarts} container restarts"
        report(
            "operator-sigkill",
            seed=SEED,
            kills=len(kills),
            kill_times_s=[round(k, 1) for k in kills],
            converged_s=round(ended, 1),
            after_last_kill_s=round(ended - kills[-1], 1) if kills else None,
            timeline=ledger.timeline(),
            duplicates=0,
            orphans=0,
            attempts=state.attempts,
            optimize_jobs=state.optimize_jobs,
            accuracy=state.accuracy,
            operator_restarts=restarts,
            failed_polls=ledger.failed_polls,
        )
        assert kills, "the operator was never killed"
