"""kube-apiserver frozen with SIGSTOP for 60 s mid-story, then SIGCONT.

A frozen server accepts connections and answers nothing, so a client without timeouts
waits forever. Every operator call has a timeout; right after the thaw a child of the
TrainingJob (its workers' headless Service) is deleted, and the operator must put it back
within a deadline, then the story must reach the end state of an undisturbed run. The
operator's /healthz is sampled all along: it must answer 500 while the server is frozen
(its probe asks /version once, with a 5 s timeout); the kubelet's liveness probe may
restart the container meanwhile (counted).
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from tests.chaos.chaos_testkit import (
    NS,
    TJ,
    HealthSampler,
    check_end_state,
    create_story,
    operator_pod_ip,
    operator_restarts,
    report,
    story_cluster,
    view,
    wait_converged,
    wait_mid_training,
)
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

FROZEN_FOR = 60.0


def test_apiserver_frozen_for_a_minute_mid_story(tmp_path: Path) -> None:
    with story_cluster(tmp_path) as (cluster, kube, ledger):
        cp = cluster.control_plane
        assert cp is not None
        ip = operator_pod_ip(kube)
        assert ip is not None
        started = time.monotonic()
        sampler = HealthSampler(ip, started, timeout=8)
        samples = sampler.samples  # (t, /healthz status) all along
        ledger.start()
        create_story(kube)
        sampler.start()
        service = f"{TJ}-workers"
        try:
            wait_mid_training(cluster, kube, ledger)
            before = kube.get("v1", "services", service, NS)
            assert before is not None
            restarts_before = operator_restarts(kube)
            pid = cp.pids()["kube-apiserver"]
            frozen_at = time.monotonic() - started
            os.killpg(pid, signal.SIGSTOP)
            try:
                # a fixed outage, not a synchronisation: nothing waits on this sleep's result
                time.sleep(FROZEN_FOR)
            finally:
                os.killpg(pid, signal.SIGCONT)
            thawed = time.monotonic() - started

            def deleted() -> bool:
                try:
                    kube.delete("v1", "services", service, NS)
                except Exception:  # the thawed server may still be catching up
                    return False
                return True

            wait_for(deleted, 60, f"deleting Service {service} after the thaw", every=0.5)
            changed = time.monotonic() - started

            def recreated() -> bool:
                again = kube.get("v1", "services", service, NS)
                return bool(again and again["metadata"]["uid"] != before["metadata"]["uid"])

            wait_for(
                recreated,
                120,
                f"the operator to recreate Service {service}",
                every=0.5,
                on_timeout=view(cluster, kube, ledger),
            )
            reconciled = time.monotonic() - started
            wait_converged(cluster, kube, ledger, "the story to converge after the thaw")
            done = time.monotonic() - started
        finally:
            sampler.stop()
        restarts = operator_restarts(kube) - restarts_before
        state = check_end_state(cluster, kube, ledger)
        during = [c for t, c in samples if frozen_at < t < thawed]
        assert 500 in during, f"/healthz never answered 500 while frozen: {during}"
        report(
            "apiserver-sigstop",
            frozen_s=round(thawed - frozen_at, 1),
            change_reconciled_after_thaw_s=round(reconciled - changed, 1),
            converged_after_thaw_s=round(done - thawed, 1),
            converged_s=round(done, 1),
            healthz_while_frozen={str(c): during.count(c) for c in sorted(set(during))},
            operator_restarts_while_frozen=restarts,
            timeline=ledger.timeline(),
            duplicates=0,
            orphans=0,
            attempts=state.attempts,
            accuracy=state.accuracy,
            failed_polls=ledger.failed_polls,
        )
