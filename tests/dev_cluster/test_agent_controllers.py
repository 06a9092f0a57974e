"""The workload controllers' decisions against an in-memory stand-in for the API."""

from __future__ import annotations

import itertools
from typing import Any

from dev_cluster.agent import api as k8s
from dev_cluster.agent.api import APIClient, Resource
from dev_cluster.agent.deployments import (
    HASH_LABEL,
    DeploymentController,
    ReplicaSetController,
    template_hash,
)
from dev_cluster.agent.informer import Informer
from dev_cluster.agent.kubelet import qos_class

Obj = dict[str, Any]


class FakeAPI(APIClient):
    """Records writes and answers them the way the API server would (enough for these tests)."""

    def __init__(self, informers: dict[str, Informer]) -> None:
        super().__init__("http://unused")
        self.informers = informers
        self.rv = itertools.count(100)
        self.names = itertools.count()
        self.calls: list[tuple[str, str, str]] = []

    def _stamp(self, obj: Obj) -> Obj:
        obj["metadata"]["resourceVersion"] = str(next(self.rv))
        return obj

    async def create(self, res: Resource, ns: str | None, body: Obj) -> Obj:
        meta = body["metadata"]
        if "name" not in meta:
            meta["name"] = meta["generateName"] + f"{next(self.names):05d}"
        meta.setdefault("uid", f"uid-{meta['name']}")
        meta.setdefault("creationTimestamp", f"2026-01-01T00:00:{next(self.names):02d}Z")
        self.calls.append(("create", res.plural, meta["name"]))
        return self._stamp(body)

    async def patch(
        self, res: Resource, ns: str | None, name: str, patch: Obj, sub: str = ""
    ) -> Obj:
        self.calls.append(("patch" + (f"/{sub}" if sub else ""), res.plural, name))
        current = dict(
            self.informers[res.plural].get(ns or "", name) or {"metadata": {"name": name}}
        )
        for key, value in patch.items():
            current[key] = (
                {**(current.get(key) or {}), **value} if isinstance(value, dict) else value
            )
        return self._stamp(current)

    async def delete(self, res: Resource, ns: str | None, name: str, **_: Any) -> Obj:
        self.calls.append(("delete", res.plural, name))
        return {"kind": "Status"}


def _informers() -> dict[str, Informer]:
    return {
        r.plural: Informer(APIClient("http://unused"), r)
        for r in (k8s.PODS, k8s.REPLICASETS, k8s.DEPLOYMENTS)
    }


def _deployment(strategy: str, replicas: int, image: str) -> Obj:
    template = {
        "metadata": {"labels": {"app": "x"}},
        "spec": {"containers": [{"name": "c", "image": image}]},
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment",
        "metadata": {"name": "d", "namespace": "ns", "uid": "d-uid", "generation": 2, "resourceVersion": "1"},
        "spec": {"replicas": replicas, "strategy": {"type": strategy}, "selector": {"matchLabels": {"app": "x"}},
                 "template": template},
    }  # fmt: skip


def _rs(owner: Obj, image: str, replicas: int) -> Obj:
    template = _deployment("Recreate", 1, image)["spec"]["template"]
    digest = template_hash(template)
    return {
        "metadata": {"name": f"d-{digest}", "namespace": "ns", "uid": f"rs-{image}", "resourceVersion": "2",
                     "labels": {"app": "x", HASH_LABEL: digest}, "creationTimestamp": "2025-01-01T00:00:00Z",
                     "annotations": {"deployment.kubernetes.io/revision": "1"},
                     "ownerReferences": [{"uid": owner["metadata"]["uid"], "controller": True}]},
        "spec": {"replicas": replicas, "template": template},
    }  # fmt: skip


def _pod(name: str, owner_uid: str, ready: bool, created: str) -> Obj:
    return {
        "metadata": {"name": name, "namespace": "ns", "uid": name, "resourceVersion": "3", "creationTimestamp": created,
                     "labels": {"app": "x"}, "ownerReferences": [{"uid": owner_uid, "controller": True}]},
        "spec": {"nodeName": "dev-node"},
        "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": "True" if ready else "False"}]},
    }  # fmt: skip


async def test_recreate_scales_old_to_zero_before_starting_new() -> None:
    inf = _informers()
    api = FakeAPI(inf)
    d = _deployment("Recreate", 2, "v2")
    old = _rs(d, "v1", 2)
    for obj, plural in ((d, "deployments"), (old, "replicasets")):
        inf[plural].objects[("ns", obj["metadata"]["name"])] = obj
    for i in range(2):
        pod = _pod(f"old-{i}", old["metadata"]["uid"], True, "2025-01-01T00:00:00Z")
        inf["pods"].objects[("ns", pod["metadata"]["name"])] = pod
    controller = DeploymentController(api, inf["deployments"], inf["replicasets"], inf["pods"])
    await controller.sync(d)
    new_name = f"d-{template_hash(d['spec']['template'])}"
    assert ("create", "replicasets", new_name) in api.calls
    assert inf["replicasets"].get("ns", old["metadata"]["name"])["spec"]["replicas"] == 0  # type: ignore[index]
    assert inf["replicasets"].get("ns", new_name)["spec"]["replicas"] == 0  # type: ignore[index]
    inf["pods"].objects.clear()  # the old pods are gone
    await controller.sync(d)
    assert inf["replicasets"].get("ns", new_name)["spec"]["replicas"] == 2  # type: ignore[index]


async def test_replicaset_scale_down_removes_unready_then_newest() -> None:
    inf = _informers()
    api = FakeAPI(inf)
    d = _deployment("RollingUpdate", 1, "v1")
    rs = _rs(d, "v1", 1)
    pods = [
        _pod("oldest-ready", rs["metadata"]["uid"], True, "2025-01-01T00:00:01Z"),
        _pod("newest-ready", rs["metadata"]["uid"], True, "2025-01-01T00:00:09Z"),
        _pod("unready", rs["metadata"]["uid"], False, "2025-01-01T00:00:02Z"),
    ]
    for pod in pods:
        inf["pods"].objects[("ns", pod["metadata"]["name"])] = pod
    await ReplicaSetController(api, inf["replicasets"], inf["pods"]).sync(rs)
    deleted = [name for verb, plural, name in api.calls if verb == "delete"]
    assert deleted == ["unready", "newest-ready"]


def test_qos_classes() -> None:
    both = {"cpu": "1", "memory": "1Gi"}
    assert qos_class({"containers": [{}]}) == "BestEffort"
    assert qos_class({"containers": [{"resources": {"limits": both}}]}) == "Guaranteed"
    assert (
        qos_class({"containers": [{"resources": {"requests": both, "limits": both}}]})
        == "Guaranteed"
    )
    assert qos_class({"containers": [{"resources": {"requests": {"cpu": "1"}}}]}) == "Burstable"
