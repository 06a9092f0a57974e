"""kube-apiserver stopped mid-story for at least 30 s, then etcd restarted.

While the API server is away the operator's liveness endpoint must turn red (HTTP 500:
kopf re-runs its probe, which reads /version, at most every 10 s) and turn green again
once it is back; training pods keep running on the node meanwhile. etcd is restarted
right after (the API server loses its storage for a moment). The story must then reach
the end state of an undisturbed run (see chaos_testkit).
"""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from tests.chaos.chaos_testkit import (
    HealthSampler,
    check_end_state,
    create_story,
    healthz,
    on_cluster_loop,
    operator_pod_ip,
    report,
    story_cluster,
    wait_converged,
    wait_mid_training,
)
from tests.conftest import wait_for

pytestmark = pytest.mark.slow

DOWN_AT_LEAST = 30.0


async def test_a_failing_api_probe_fails_the_health_activity_at_once(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kopf's /healthz runs the probe activity; a probe that fails must end it with an
    error (HTTP 500), not have kopf retry it a minute later within the same request."""
    import asyncio

    import kopf
    from kopf._core.actions.lifecycles import all_at_once
    from kopf._core.engines.activities import ActivityError, run_activity
    from kopf._core.engines.indexing import OperatorIndexers
    from kopf._core.intents.causes import Activity

    from gantry.controller import health
    from gantry.k8s.errors import ApiError

    calls: list[float] = []

    class Unreachable:
        def version(self, timeout: float) -> dict[str, str]:
            calls.append(timeout)
            raise ApiError(0, "ConnectionError", "connection refused")

    monkeypatch.setattr(health, "kube_client", Unreachable)
    monkeypatch.setattr(health, "_last_failure", None)
    registry = kopf.OperatorRegistry()
    registry._activities.append(
        next(h for h in kopf.get_default_registry()._activities.get_all_handlers() if h.id == "api")
    )

    async def probe() -> None:
        await run_activity(
            lifecycle=all_at_once,
            registry=registry,
            settings=kopf.OperatorSettings(),
            activity=Activity.PROBE,
            indices=OperatorIndexers().indices,
            memo=kopf.Memo(),
        )

    with pytest.raises(ActivityError):
        await asyncio.wait_for(probe(), 30)
    # a second request right after fails from the remembered failure, without a call
    with pytest.raises(ActivityError):
        await asyncio.wait_for(probe(), 30)
    assert calls == [health.PROBE_TIMEOUT_SECONDS]


def test_apiserver_down_and_etcd_restarted_mid_story(tmp_path: Path) -> None:
    with story_cluster(tmp_path) as (cluster, kube, ledger):
        cp = cluster.control_plane
        assert cp is not None
        ip = operator_pod_ip(kube)
        assert ip is not None
        assert healthz(ip) == 200
        started = time.monotonic()
        sampler = HealthSampler(ip, started, timeout=2)
        samples = sampler.samples  # (t, /healthz status) all along
        ledger.start()
        create_story(kube)
        sampler.start()
        try:
            wait_mid_training(cluster, kube, ledger)
            down = time.monotonic() - started
            on_cluster_loop(cluster, cp.stop_component("kube-apiserver"), 60)

            def red_and_long_enough() -> bool:
                now = time.monotonic() - started
                red = any(t > down and code == 500 for t, code in samples)
                return red and now - down >= DOWN_AT_LEAST

            wait_for(
                red_and_long_enough,
                90,
                "/healthz to turn red (500) while the API is down",
                every=0.5,
                on_timeout=lambda: f"samples: {samples[-40:]}",
            )
            up = time.monotonic() - started
            on_cluster_loop(cluster, cp.start_component("kube-apiserver"), 180)
            api_back = time.monotonic() - started
            wait_for(
                lambda: any(t > api_back and c == 200 for t, c in samples),
                120,
                "/healthz green again",
                every=0.5,
                on_timeout=lambda: f"samples: {samples[-40:]}",
            )
            green = next(t for t, c in samples if t > api_back and c == 200)
            etcd_at = time.monotonic() - started
            on_cluster_loop(cluster, cp.restart_component("etcd"), 180)
            etcd_back = time.monotonic() - started
            wait_converged(cluster, kube, ledger, "the story to converge after the outage")
            done = time.monotonic() - started
        finally:
            sampler.stop()
        red = next(t for t, c in samples if t > down and c == 500)
        state = check_end_state(cluster, kube, ledger)
        report(
            "apiserver-down-etcd-restart",
            apiserver_down_s=round(api_back - down, 1),
            red_after_s=round(red - down, 1),
            green_after_restart_s=round(green - api_back, 1),
            etcd_restart_s=round(etcd_back - etcd_at, 1),
            converged_after_etcd_s=round(done - etcd_back, 1),
            converged_s=round(done, 1),
            stopped_at_s=round(down, 1),
            start_called_at_s=round(up, 1),
            timeline=ledger.timeline(),
            duplicates=0,
            orphans=0,
            attempts=state.attempts,
            accuracy=state.accuracy,
            failed_polls=ledger.failed_polls,
        )
