"""The event-driven machinery without a cluster: wake-ups, loops, due times, ownership, retries."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from gantry.controller.reconcile_loop import (
    LatestBody,
    OwnerKey,
    Wakeups,
    next_timeout,
    run_loop,
)
from gantry.controller.watch_cache import owners_of
from gantry.k8s.children import (
    CONFLICT_CONDITION,
    foreign_objects,
    with_conflict_condition,
    write_child,
)
from gantry.k8s.client import KubeClient, RetryPolicy, retry_after_seconds
from gantry.k8s.errors import ApiError, Conflict
from gantry.trainingjob.state import next_due

OWNER_UID = "uid-1"
KEY = OwnerKey("TrainingJob", "ml", "train")


class Flag:
    """kopf's DaemonStopped, as far as the loop uses it."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def __bool__(self) -> bool:
        return self._event.is_set()

    def set(self) -> None:
        self._event.set()

    async def wait(self, timeout: float | None = None) -> bool:
        try:
            await asyncio.wait_for(self._event.wait(), timeout)
        except TimeoutError:
            return False
        return True


async def test_a_wake_up_runs_a_pass_without_waiting_for_the_resync() -> None:
    wakeups, stopped = Wakeups(), Flag()
    passes: list[int] = []
    ran = asyncio.Event()

    async def one_pass() -> float | None:
        passes.append(len(passes))
        ran.set()
        return None

    loop = asyncio.create_task(
        run_loop(KEY, stopped, one_pass, resync=lambda: 3600.0, wakeups=wakeups)
    )
    await asyncio.wait_for(ran.wait(), 5)
    assert passes == [0], "a pass runs at once"
    ran.clear()
    assert wakeups.wake(KEY, "jobs") is True
    await asyncio.wait_for(ran.wait(), 5)
    assert passes == [0, 1], "the event, not the hour-long resync, ran the second pass"
    assert wakeups.counts[("TrainingJob", "jobs")] == 1
    stopped.set()
    await asyncio.wait_for(loop, 5)
    assert wakeups.running() == 0 and wakeups.wake(KEY, "jobs") is False


async def test_a_pass_that_names_a_due_time_runs_again_then() -> None:
    wakeups, stopped = Wakeups(), Flag()
    passes = 0

    async def one_pass() -> float | None:
        nonlocal passes
        passes += 1
        if passes == 2:
            stopped.set()
        return 0.1  # e.g. a deadline 100 ms away

    await asyncio.wait_for(
        run_loop(KEY, stopped, one_pass, resync=lambda: 3600.0, wakeups=wakeups), 5
    )
    assert passes == 2


async def test_an_api_error_backs_off_and_the_loop_survives() -> None:
    wakeups, stopped = Wakeups(), Flag()
    outcomes: list[str] = []

    async def one_pass() -> float | None:
        if not outcomes:
            outcomes.append("error")
            raise ApiError(503, "ServiceUnavailable", "try later")
        outcomes.append("ok")
        stopped.set()
        return None

    await asyncio.wait_for(
        run_loop(KEY, stopped, one_pass, resync=lambda: 3600.0, wakeups=wakeups), 5
    )
    assert outcomes == ["error", "ok"]


async def test_dependents_are_woken_by_their_dependency() -> None:
    wakeups = Wakeups()
    service = OwnerKey("InferenceService", "ml", "digits")
    job = OwnerKey("TrainingJob", "ml", "train")
    event = wakeups.register(service)
    wakeups.depend(service, [job])
    assert wakeups.wake_dependents(job, "trainingjobs") == 1 and event.is_set()
    wakeups.depend(service, [])
    assert wakeups.wake_dependents(job, "trainingjobs") == 0
    second = wakeups.register(service)  # the autoscaler of the same service
    event.clear()
    wakeups.wake(service, "pods")
    assert event.is_set() and second.is_set(), "every loop of the object is woken"


def test_next_timeout_never_exceeds_the_resync() -> None:
    assert next_timeout(300, None) == 300
    assert next_timeout(300, 12.5) == 12.5
    assert next_timeout(300, 1e6) == 300
    assert next_timeout(300, -3) == pytest.approx(0.05)


def test_latest_body_bridges_the_gap_until_the_watch_catches_up() -> None:
    latest = LatestBody()
    cached = {"metadata": {"resourceVersion": "10"}, "status": {"attempts": 1}}
    written = {"metadata": {"resourceVersion": "11"}, "status": {"attempts": 2}}
    latest.remember(cached, written)
    assert latest.pick(cached) == written, "the watch has not delivered our write yet"
    newer = {"metadata": {"resourceVersion": "12"}, "status": {"attempts": 2}}
    assert latest.pick(newer) == newer
    assert latest.pick(cached) == cached, "forgotten once the watch caught up"


def test_next_due_is_the_deadline_or_the_ttl() -> None:
    start = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    running = {
        "spec": {"activeDeadlineSeconds": 90, "ttlSecondsAfterFinished": 30},
        "status": {"phase": "Running", "startTime": "2026-11-30T12:00:00Z"},
    }
    assert next_due(running, start) == start + timedelta(seconds=90)
    suspended = {**running, "spec": {**running["spec"], "suspend": True}}
    assert next_due(suspended, start) is None, "the deadline does not run while suspended"
    done = {
        "spec": running["spec"],
        "status": {"phase": "Failed", "completionTime": "2026-11-30T12:05:00Z"},
    }
    assert next_due(done, start) == start + timedelta(minutes=5, seconds=30)
    assert next_due({"spec": {}, "status": {"phase": "Running"}}, start) is None


def test_owners_come_from_gantry_controller_refs_and_labels() -> None:
    job = {
        "metadata": {
            "namespace": "ml",
            "ownerReferences": [
                {
                    "apiVersion": "gantry.dev/v1alpha1",
                    "kind": "TrainingJob",
                    "name": "t",
                    "controller": True,
                },
                {"apiVersion": "apps/v1", "kind": "ReplicaSet", "name": "r", "controller": False},
            ],
        }
    }
    assert owners_of(job) == {OwnerKey("TrainingJob", "ml", "t")}
    pod = {"metadata": {"namespace": "ml", "labels": {"gantry.dev/inferenceservice": "d"}}}
    assert owners_of(pod) == {OwnerKey("InferenceService", "ml", "d")}
    foreign = {
        "metadata": {
            "namespace": "ml",
            "ownerReferences": [
                {"apiVersion": "apps/v1", "kind": "Deployment", "name": "x", "controller": True}
            ],
        }
    }
    assert owners_of(foreign) == set()


def _service(owner_uid: str | None, port: int = 80) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": "web", "namespace": "ml"}
    if owner_uid is not None:
        meta["ownerReferences"] = [
            {"uid": owner_uid, "controller": True, "kind": "X", "name": "web"}
        ]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": meta,
        "spec": {"ports": [{"port": port}]},
    }


def test_objects_this_owner_does_not_control_are_foreign() -> None:
    desired = [_service(OWNER_UID)]
    assert foreign_objects(desired, {("Service", "web"): None}, OWNER_UID) == []
    assert foreign_objects(desired, {("Service", "web"): _service(OWNER_UID)}, OWNER_UID) == []
    users = foreign_objects(desired, {("Service", "web"): _service(None)}, OWNER_UID)
    assert [(f.kind, f.name, f.controller) for f in users] == [("Service", "web", None)]
    others = foreign_objects(desired, {("Service", "web"): _service("uid-2")}, OWNER_UID)
    assert others[0].controller == "X/web"
    conditions = with_conflict_condition([], users, "InferenceService", now="t", generation=1)
    assert conditions[0]["type"] == CONFLICT_CONDITION and conditions[0]["status"] == "True"
    assert "Service 'web' already exists" in conditions[0]["message"]
    assert with_conflict_condition(conditions, [], "InferenceService", now="t", generation=1) == []


class RecordingWriter:
    def __init__(self, taken: bool = False) -> None:
        self.calls: list[tuple[str, str]] = []
        self.taken = taken

    def create_applied(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("create", desired["metadata"]["name"]))
        if self.taken:
            raise Conflict(409, "AlreadyExists", "exists")
        return dict(desired)

    def server_side_apply(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        self.calls.append(("apply", desired["metadata"]["name"]))
        return dict(desired)


def test_applying_the_same_state_twice_writes_once() -> None:
    writer = RecordingWriter()
    desired = _service(OWNER_UID)
    assert write_child(writer, desired, None) == "created"
    # What the server holds afterwards: our fields plus its defaults.
    stored = _service(OWNER_UID)
    stored["spec"]["ports"][0].update(protocol="TCP", targetPort=80)
    stored["spec"]["clusterIP"] = "10.0.0.7"
    assert write_child(writer, desired, stored) == "unchanged"
    assert write_child(writer, _service(OWNER_UID, 81), stored) == "updated"
    assert writer.calls == [("create", "web"), ("apply", "web")]
    assert write_child(RecordingWriter(taken=True), desired, None) == "exists"


class StubApi:
    """The two ApiClient methods KubeClient uses, answering from a script."""

    class Response:
        def __init__(self, status: int, headers: dict[str, str]) -> None:
            self.status, self.reason, self._headers = status, "x", headers

        def read(self) -> bytes:
            return b"{}" if self.status < 300 else b'{"reason": "TooManyRequests"}'

        def getheader(self, name: str) -> str | None:
            return self._headers.get(name)

    def __init__(self, script: list[tuple[int, dict[str, str]]]) -> None:
        self.script, self.timeouts = script, []
        self.configuration = type("C", (), {"host": "https://stub"})()

    def param_serialize(self, method: str, path: str, **kw: Any) -> tuple[Any, ...]:
        return method, path, kw.get("header_params"), None, None

    def call_api(self, method: str, url: str, **kw: Any) -> StubApi.Response:
        self.timeouts.append(kw.get("_request_timeout"))
        status, headers = self.script.pop(0)
        return StubApi.Response(status, headers)


def test_throttled_calls_are_retried_with_the_servers_retry_after() -> None:
    slept: list[float] = []
    api = StubApi([(429, {"Retry-After": "2"}), (503, {}), (200, {})])
    client = KubeClient(api, retry=RetryPolicy(read_timeout=7), sleep=slept.append)  # type: ignore[arg-type]
    assert client.get("v1", "pods", "p", "ml") == {}
    assert len(slept) == 2 and slept[0] >= 2, "Retry-After is a floor"
    assert api.timeouts == [(5.0, 7)] * 3, "every call has a timeout"
    failing = StubApi([(500, {})] * 5)
    client = KubeClient(failing, retry=RetryPolicy(attempts=3), sleep=slept.append)  # type: ignore[arg-type]
    with pytest.raises(ApiError) as err:
        client.get("v1", "pods", "p", "ml")
    assert err.value.status == 500 and len(failing.script) == 2, "gave up after 3 tries"
    not_found = StubApi([(404, {})])
    assert KubeClient(not_found, sleep=slept.append).get("v1", "pods", "p") is None  # type: ignore[arg-type]


def test_retry_after_parsing_and_jitter_bounds() -> None:
    assert retry_after_seconds("3") == 3 and retry_after_seconds(None) is None
    assert retry_after_seconds("soon") is None and retry_after_seconds("-1") is None
    policy = RetryPolicy(base_delay=0.2, max_delay=5)
    assert all(0 <= policy.delay(n) <= 5 for n in range(10))
    assert policy.delay(0, retry_after=1.5) >= 1.5


def test_reconcile_back_off_is_exponential_jittered_and_capped() -> None:
    from gantry.controller.reconcile_loop import CONFLICT_BACKOFF_SECONDS, error_backoff

    for failures, step in ((1, 0.5), (2, 1.0), (3, 2.0), (10, 30.0), (50, 30.0)):
        waits = {error_backoff(failures) for _ in range(50)}
        assert all(step / 2 <= w <= step for w in waits), (failures, waits)
        assert len(waits) > 1, "jittered"
    assert all(0.05 <= error_backoff(1, CONFLICT_BACKOFF_SECONDS) <= 0.1 for _ in range(20))


def test_the_transport_does_not_retry_behind_the_retry_policy() -> None:
    """urllib3's hidden retries would multiply every timeout; RetryPolicy alone retries."""
    from kubernetes.client import ApiClient, Configuration

    api = ApiClient(Configuration(host="https://127.0.0.1:9"))
    KubeClient(api)
    assert api.rest_client.pool_manager.connection_pool_kw["retries"] is False
