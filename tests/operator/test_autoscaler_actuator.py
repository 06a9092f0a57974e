"""The actuation layer against an in-memory API: replicas, status, events, mode objects."""

from __future__ import annotations

import copy
import itertools
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from gantry.autoscaler.actuator import ServiceAutoscaler, autoscaling_status, report_patch
from gantry.autoscaler.scrape import PodTarget, ScrapeResult
from gantry.autoscaler.triton_metrics import TritonCounters


def _merge(into: dict[str, Any], patch: Mapping[str, Any]) -> None:
    for key, value in patch.items():
        if value is None:
            into.pop(key, None)
        elif isinstance(value, Mapping) and isinstance(into.get(key), dict):
            _merge(into[key], value)
        else:
            into[key] = copy.deepcopy(value)


class FakeKube:
    """Just enough of KubeClient: objects keyed by (plural, namespace, name)."""

    def __init__(self) -> None:
        self.objects: dict[tuple[str, str | None, str], dict[str, Any]] = {}
        self.patches: list[tuple[str, str, str | None, Mapping[str, Any]]] = []
        self.events: list[dict[str, Any]] = []

    def put(self, plural: str, obj: dict[str, Any]) -> None:
        meta = obj["metadata"]
        self.objects[(plural, meta.get("namespace"), meta["name"])] = obj

    def drop(self, plural: str) -> None:
        self.objects = {k: o for k, o in self.objects.items() if k[0] != plural}

    def get(self, api_version: str, plural: str, name: str, namespace: str | None = None) -> Any:
        found = self.objects.get((plural, namespace, name))
        return copy.deepcopy(found) if found is not None else None

    def list(
        self,
        api_version: str,
        plural: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        key, _, value = (label_selector or "=").partition("=")
        return [
            copy.deepcopy(o)
            for (p, ns, _n), o in self.objects.items()
            if p == plural
            and ns == namespace
            and (not key or (o["metadata"].get("labels") or {}).get(key) == value)
        ]

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        if obj.get("kind") == "Event":
            self.events.append(dict(obj))
        return dict(obj)

    def patch(
        self,
        api_version: str,
        plural: str,
        name: str,
        namespace: str | None,
        patch: Mapping[str, Any],
        *,
        subresource: str | None = None,
        patch_type: str = "merge",
    ) -> dict[str, Any]:
        self.patches.append((plural, subresource or "", name, patch))
        _merge(self.objects[(plural, namespace, name)], patch)
        return copy.deepcopy(self.objects[(plural, namespace, name)])

    def delete(
        self,
        api_version: str,
        plural: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
    ) -> bool:
        return self.objects.pop((plural, namespace, name), None) is not None

    def apply(self, desired: Mapping[str, Any]) -> tuple[dict[str, Any], str]:
        plural = {"HorizontalPodAutoscaler": "horizontalpodautoscalers"}.get(
            str(desired["kind"]), "scaledobjects"
        )
        self.put(plural, copy.deepcopy(dict(desired)))
        return dict(desired), "created"

    def create_applied(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        return self.apply(desired)[0]

    def server_side_apply(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        return self.apply(desired)[0]


class FakePods:
    """Triton pods whose counters advance by a request rate and latency per round."""

    def __init__(self) -> None:
        self.counters: dict[str, TritonCounters] = {}
        self.failing: set[str] = set()

    def serve(self, pod: str, requests: float, mean_ms: float) -> None:
        c = self.counters.get(pod, TritonCounters())
        self.counters[pod] = TritonCounters(
            success=c.success + requests,
            request_us=c.request_us + requests * mean_ms * 1000,
        )

    async def scrape(self, targets: Sequence[PodTarget], model: str) -> ScrapeResult:
        samples = {t.pod: self.counters.get(t.pod) for t in targets if t.pod not in self.failing}
        failures = {t.pod: "timed out" for t in targets if t.pod in self.failing}
        return ScrapeResult(samples=samples, failures=failures)


def isvc(autoscaling: dict[str, Any] | None) -> dict[str, Any]:
    spec: dict[str, Any] = {"model": {"storageUri": "pvc://m/digits"}}
    if autoscaling is not None:
        spec["autoscaling"] = autoscaling
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "digits", "namespace": "ml", "uid": "u1", "generation": 1},
        "spec": spec,
        "status": {"phase": "Ready", "ready": "1/1"},
    }


def set_pods(kube: FakeKube, replicas: int, ready: int) -> None:
    kube.put(
        "deployments",
        {"metadata": {"name": "digits-triton", "namespace": "ml"}, "spec": {"replicas": replicas}},
    )
    kube.drop("pods")
    for i in range(replicas):
        kube.put(
            "pods",
            {
                "metadata": {
                    "name": f"pod-{i}",
                    "namespace": "ml",
                    "labels": {"gantry.dev/inferenceservice": "digits"},
                },
                "status": {
                    "podIP": f"127.0.1.{i + 1}",
                    "conditions": [{"type": "Ready", "status": "True" if i < ready else "False"}],
                },
            },
        )


BUILTIN = {
    "minReplicas": 1,
    "maxReplicas": 4,
    "targets": {"latencyP95Ms": 50},
    "behavior": {"scaleDown": {"stabilizationSeconds": 10, "maxReplicasPerStep": 1}},
}


@pytest.fixture
def world() -> tuple[FakeKube, FakePods, list[float]]:
    kube, pods, clock = FakeKube(), FakePods(), [0.0]
    kube.put("inferenceservices", isvc(BUILTIN))
    set_pods(kube, 1, 1)
    return kube, pods, clock


def autoscaler(kube: FakeKube, pods: FakePods, clock: list[float]) -> ServiceAutoscaler:
    return ServiceAutoscaler(kube, "digits", "ml", scraper=pods.scrape, clock=lambda: clock[0])


async def test_builtin_scales_up_then_down_and_reports(
    world: tuple[FakeKube, FakePods, list[float]],
) -> None:
    kube, pods, clock = world
    scaler = autoscaler(kube, pods, clock)
    await scaler.run_round()  # first sample: no decision
    assert kube.objects[("deployments", "ml", "digits-triton")]["spec"]["replicas"] == 1
    clock[0] = 5
    pods.serve("pod-0", 500, 150)  # mean 150 ms → p95 estimate 225 ms ≫ 50 ms
    result = await scaler.run_round()
    assert result.scaled_to == 4  # +4 step, clamped to maxReplicas 4
    assert kube.objects[("deployments", "ml", "digits-triton")]["spec"]["replicas"] == 4
    assert [e["reason"] for e in kube.events] == ["ScaledUp"]
    status = kube.objects[("inferenceservices", "ml", "digits")]["status"]
    assert status["phase"] == "Ready" and status["ready"] == "1/1"  # untouched
    auto = status["autoscaling"]
    assert auto["mode"] == "builtin" and auto["desiredReplicas"] == 4
    assert auto["currentReplicas"] == 1 and auto["latencyP95Ms"] == 225
    assert auto["requestsPerSecond"] == 100 and auto["lastScaleTime"]
    assert "p95 225.0 ms > target 50.0 ms at 1 replicas → 4" in auto["lastDecision"]
    # every status write names only status.autoscaling
    for plural, sub, _name, patch in kube.patches:
        if sub == "status":
            assert plural == "inferenceservices" and list(patch) == ["status"]
            assert list(patch["status"]) == ["autoscaling"]

    # new pods not Ready yet: hold, no double counting of the step in progress
    set_pods(kube, 4, 1)
    clock[0] = 10
    pods.serve("pod-0", 500, 150)
    result = await scaler.run_round()
    assert result.decision is not None and result.decision.direction == "hold"
    assert "become Ready" in result.decision.reason

    # all Ready, load gone: scale down one step at a time after the 10 s window
    set_pods(kube, 4, 4)
    replicas = []
    for t in range(15, 90, 5):
        clock[0] = t
        for i in range(4):
            pods.serve(f"pod-{i}", 10, 5)
        await scaler.run_round()
        current = kube.objects[("deployments", "ml", "digits-triton")]["spec"]["replicas"]
        replicas.append(current)
        set_pods(kube, current, current)
    assert replicas[-1] == 1
    assert all(1 <= r <= 4 for r in replicas)
    assert [a - b for a, b in itertools.pairwise(replicas) if a != b] == [1, 1, 1]
    assert [e["reason"] for e in kube.events] == ["ScaledUp"] + ["ScaledDown"] * 3


async def test_idempotent_when_nothing_changes(
    world: tuple[FakeKube, FakePods, list[float]],
) -> None:
    kube, pods, clock = world
    scaler = autoscaler(kube, pods, clock)
    for t in (0, 5, 10, 15):
        clock[0] = t
        pods.serve("pod-0", 100, 30)  # p95 ≈ 45 ms: within tolerance
        await scaler.run_round()
    assert not [p for p in kube.patches if p[0] == "deployments"]
    assert kube.events == []


async def test_scrape_failure_of_one_pod_does_not_block(
    world: tuple[FakeKube, FakePods, list[float]],
) -> None:
    kube, pods, clock = world
    set_pods(kube, 3, 3)
    scaler = autoscaler(kube, pods, clock)
    await scaler.run_round()
    pods.failing = {"pod-2"}
    clock[0] = 5
    for i in range(3):
        pods.serve(f"pod-{i}", 100, 100)
    result = await scaler.run_round()
    assert result.failures == {"pod-2": "timed out"}
    assert result.scaled_to == 4


async def test_without_autoscaling_metrics_are_still_recorded() -> None:
    kube, pods, clock = FakeKube(), FakePods(), [0.0]
    kube.put("inferenceservices", isvc(None))
    set_pods(kube, 2, 2)
    scaler = autoscaler(kube, pods, clock)
    await scaler.run_round()
    clock[0] = 5
    pods.serve("pod-0", 50, 4)
    pods.serve("pod-1", 50, 4)
    await scaler.run_round()
    auto = kube.objects[("inferenceservices", "ml", "digits")]["status"]["autoscaling"]
    assert auto["requestsPerSecond"] == 20 and auto["latencyMeanMs"] == 4
    assert auto.get("mode") is None and "desiredReplicas" not in auto
    assert kube.objects[("deployments", "ml", "digits-triton")]["spec"]["replicas"] == 2


async def test_switching_modes_deletes_the_stale_owned_object() -> None:
    kube, pods, clock = FakeKube(), FakePods(), [0.0]
    hpa_mode = dict(BUILTIN, mode="hpa")
    kube.put("inferenceservices", isvc(hpa_mode))
    set_pods(kube, 1, 1)
    scaler = autoscaler(kube, pods, clock)
    await scaler.run_round()
    assert ("horizontalpodautoscalers", "ml", "digits") in kube.objects
    keda = isvc(dict(BUILTIN, mode="keda"))
    keda["metadata"]["generation"] = 2
    kube.put("inferenceservices", keda)
    # someone else's HPA of the same name is left alone
    await scaler.run_round()
    assert ("scaledobjects", "ml", "digits") in kube.objects
    assert ("horizontalpodautoscalers", "ml", "digits") not in kube.objects
    builtin = isvc(BUILTIN)
    builtin["metadata"]["generation"] = 3
    kube.put("inferenceservices", builtin)
    kube.put("horizontalpodautoscalers", {"metadata": {"name": "digits", "namespace": "ml"}})
    await scaler.run_round()
    assert ("scaledobjects", "ml", "digits") not in kube.objects
    assert ("horizontalpodautoscalers", "ml", "digits") in kube.objects  # not ours


async def test_switching_to_hpa_hands_the_running_count_over_first() -> None:
    """The HPA starts from spec.replicas: it must be what runs, not a stale 1."""
    kube, pods, clock = FakeKube(), FakePods(), [0.0]
    kube.put("inferenceservices", isvc(dict(BUILTIN, mode="hpa")))
    set_pods(kube, 4, 4)
    await autoscaler(kube, pods, clock).run_round()
    service = kube.objects[("inferenceservices", "ml", "digits")]
    assert service["spec"]["replicas"] == 4
    assert ("horizontalpodautoscalers", "ml", "digits") in kube.objects
    assert service["status"]["autoscaling"]["mode"] == "hpa", "the hand-over is reported"
    spec_patches = [p for p in kube.patches if p[0] == "inferenceservices" and not p[1]]
    assert spec_patches == [("inferenceservices", "", "digits", {"spec": {"replicas": 4}})]
    assert kube.objects[("deployments", "ml", "digits-triton")]["spec"]["replicas"] == 4


def test_status_patch_only_names_autoscaling() -> None:
    report = autoscaling_status("hpa", None, sampled_at="2026-01-01T00:00:00Z")
    assert report_patch({"status": {"phase": "Ready"}}, report) == {
        "status": {"autoscaling": {"mode": "hpa", "sampledAt": "2026-01-01T00:00:00Z"}}
    }


def test_a_new_sample_time_alone_is_not_written() -> None:
    shown = {"mode": "builtin", "sampledAt": "2026-01-01T00:00:00Z", "desiredReplicas": 2}
    isvc = {"status": {"autoscaling": shown}}
    later = autoscaling_status("builtin", None, sampled_at="2026-01-01T00:00:05Z", previous=shown)
    assert report_patch(isvc, later) == {}


def test_a_mode_switch_clears_the_old_modes_decision() -> None:
    shown = {"mode": "builtin", "desiredReplicas": 3, "lastDecision": "up: p95 over target"}
    report = autoscaling_status("hpa", None, sampled_at="2026-01-01T00:00:05Z", previous=shown)
    patch = report_patch({"status": {"autoscaling": shown}}, report)
    assert patch == {
        "status": {
            "autoscaling": {
                "mode": "hpa",
                "sampledAt": "2026-01-01T00:00:05Z",
                "desiredReplicas": None,
                "lastDecision": None,
            }
        }
    }


async def test_a_restarted_operator_remembers_its_last_scale_up() -> None:
    """Killed right after scaling 1 → 4: the new process must wait for those replicas to
    become Ready, not read 1 Ready pod under load as a reason to scale up again."""
    from datetime import UTC, datetime, timedelta

    from gantry.autoscaler.actuator import remembered_scale_at

    wall = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    policy = {**BUILTIN, "maxReplicas": 8}
    body = isvc(policy)
    body["status"]["autoscaling"] = {"lastScaleTime": "2026-11-30T11:59:57Z"}
    kube, pods, clock = FakeKube(), FakePods(), [100.0]
    kube.put("inferenceservices", body)
    set_pods(kube, 4, 1)
    scaler = ServiceAutoscaler(
        kube, "digits", "ml", scraper=pods.scrape, clock=lambda: clock[0], wall_clock=lambda: wall
    )
    await scaler.run_round()
    assert scaler.last_scale_at == 97.0  # 3 s before "now" on this process's clock
    clock[0] = 105.0
    pods.serve("pod-0", 500, 150)  # overloaded
    result = await scaler.run_round()
    assert result.decision is not None and result.decision.direction == "hold"
    assert "become Ready" in result.decision.reason
    assert kube.objects[("deployments", "ml", "digits-triton")]["spec"]["replicas"] == 4
    # pure: nothing written, garbage, or a time in the future leaves no memory
    assert remembered_scale_at({"status": {}}, {}, 1.0, wall) is None
    garbage = {"status": {"autoscaling": {"lastScaleTime": "x"}}}
    assert remembered_scale_at(garbage, {}, 1.0, wall) is None
    future = (wall + timedelta(seconds=5)).isoformat()
    ahead = {"status": {"autoscaling": {"lastScaleTime": future}}}
    assert remembered_scale_at(ahead, {}, 1.0, wall) is None


async def test_a_kill_between_scaling_and_the_status_write_is_remembered_too() -> None:
    """The scale time travels with the replicas (a Deployment annotation in the same
    patch): an operator killed before it wrote status.autoscaling still leaves it."""
    from datetime import UTC, datetime

    from gantry.autoscaler.actuator import LAST_SCALE_ANNOTATION

    wall = datetime(2026, 11, 30, 12, 0, 0, tzinfo=UTC)
    kube, pods, clock = FakeKube(), FakePods(), [100.0]
    kube.put("inferenceservices", isvc({**BUILTIN, "maxReplicas": 8}))  # no lastScaleTime
    set_pods(kube, 4, 1)
    deployment = kube.objects[("deployments", "ml", "digits-triton")]
    deployment["metadata"]["annotations"] = {LAST_SCALE_ANNOTATION: "2026-11-30T11:59:58Z"}
    scaler = ServiceAutoscaler(
        kube, "digits", "ml", scraper=pods.scrape, clock=lambda: clock[0], wall_clock=lambda: wall
    )
    await scaler.run_round()
    assert scaler.last_scale_at == 98.0
    clock[0] = 105.0
    pods.serve("pod-0", 500, 150)
    result = await scaler.run_round()
    assert result.decision is not None and "become Ready" in result.decision.reason
    assert deployment["spec"]["replicas"] == 4


async def test_scaling_writes_its_time_with_the_replicas() -> None:
    from gantry.autoscaler.actuator import LAST_SCALE_ANNOTATION

    kube, pods, clock = FakeKube(), FakePods(), [100.0]
    kube.put("inferenceservices", isvc({**BUILTIN, "maxReplicas": 8}))
    set_pods(kube, 1, 1)
    scaler = ServiceAutoscaler(kube, "digits", "ml", scraper=pods.scrape, clock=lambda: clock[0])
    for step in range(6):
        clock[0] = 100.0 + step
        pods.serve("pod-0", 500, 150)
        await scaler.run_round()
    patches = [p for p in kube.patches if p[0] == "deployments"]
    assert patches, "the overloaded service was scaled"
    body = patches[0][3]
    assert body["spec"]["replicas"] > 1
    assert LAST_SCALE_ANNOTATION in body["metadata"]["annotations"]
