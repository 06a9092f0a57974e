"""kopf 1.45 runs against the emulated API without API errors or retries."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import kopf
import pytest
from kubernetes import client
from test_apiserver_helpers import GROUP, PLURAL, api_client, trainingjob, trainingjob_crd

from dev_cluster.apiserver import running_apiserver

pytestmark = pytest.mark.slow
ARGS = (GROUP, "v1alpha1", "default", PLURAL)
PEERINGS_CRD: dict[str, Any] = {
    "apiVersion": "apiextensions.k8s.io/v1",
    "kind": "CustomResourceDefinition",
    "metadata": {"name": "clusterkopfpeerings.kopf.dev"},
    "spec": {
        "group": "kopf.dev",
        "scope": "Cluster",
        "names": {
            "plural": "clusterkopfpeerings",
            "singular": "clusterkopfpeering",
            "kind": "ClusterKopfPeering",
        },
        "versions": [
            {
                "name": "v1",
                "served": True,
                "storage": True,
                "schema": {
                    "openAPIV3Schema": {
                        "type": "object",
                        "x-kubernetes-preserve-unknown-fields": True,
                    }
                },
            }
        ],
    },
}


async def _until(check: Callable[[], Awaitable[Any]], what: str, timeout: float = 20) -> Any:
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        result = await check()
        if result:
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.05)


class _Records(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


async def test_kopf_operator_lifecycle() -> None:
    captured = _Records()
    root = logging.getLogger()
    root.addHandler(captured)
    old_level = root.level
    root.setLevel(logging.DEBUG)
    try:
        async with running_apiserver() as srv:
            await _scenario(srv.url)
    finally:
        root.removeHandler(captured)
        root.setLevel(old_level)
    kopf_records = [r for r in captured.records if r.name.startswith("kopf")]
    assert kopf_records, "kopf logged nothing: the operator did not run"
    problems = [
        f"{r.name} {r.levelname}: {r.getMessage()}"
        for r in kopf_records
        if r.levelno >= logging.WARNING
        or any(w in r.getMessage().lower() for w in ("retry", "retrying", "apierror", "backoff"))
    ]
    assert problems == []


async def _scenario(url: str) -> None:
    api = api_client(url)
    ext = client.ApiextensionsV1Api(api)
    co = client.CustomObjectsApi(api)
    await asyncio.to_thread(ext.create_custom_resource_definition, trainingjob_crd())
    await asyncio.to_thread(ext.create_custom_resource_definition, PEERINGS_CRD)
    # kopf expects its peering object to exist, as on a real cluster.
    await asyncio.to_thread(
        co.create_cluster_custom_object,
        "kopf.dev",
        "v1",
        "clusterkopfpeerings",
        {
            "apiVersion": "kopf.dev/v1",
            "kind": "ClusterKopfPeering",
            "metadata": {"name": "gantry-test"},
        },
    )
    registry = kopf.OperatorRegistry()
    seen: list[str] = []

    @kopf.on.login(registry=registry)
    def login(**_: Any) -> kopf.ConnectionInfo:
        return kopf.ConnectionInfo(server=url, insecure=True)

    @kopf.on.create(GROUP, "v1alpha1", PLURAL, registry=registry, id="create")
    def on_create(spec: Any, body: Any, patch: Any, **_: Any) -> dict[str, Any]:
        kopf.info(body, reason="Accepted", message=f"{spec['workers']} workers")
        patch.status["phase"] = "Running"
        seen.append("create")
        return {"workers": spec["workers"]}

    @kopf.on.update(GROUP, "v1alpha1", PLURAL, registry=registry, id="update")
    def on_update(spec: Any, **_: Any) -> dict[str, Any]:
        seen.append("update")
        return {"workers": spec["workers"]}

    @kopf.on.delete(GROUP, "v1alpha1", PLURAL, registry=registry, id="delete")
    def on_delete(**_: Any) -> None:
        seen.append("delete")

    stop = asyncio.Event()
    task = asyncio.create_task(
        kopf.operator(
            registry=registry, clusterwide=True, stop_flag=stop, peering_name="gantry-test"
        )
    )
    try:
        await _exercise(co, api, seen)
    finally:
        stop.set()
        await asyncio.wait_for(task, 30)
        api.close()


async def _exercise(co: client.CustomObjectsApi, api: client.ApiClient, seen: list[str]) -> None:
    async def get() -> Any:
        try:
            return await asyncio.to_thread(co.get_namespaced_custom_object, *ARGS, "op")
        except client.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    await asyncio.to_thread(co.create_namespaced_custom_object, *ARGS, trainingjob("op"))
    obj = await _until(lambda: _status_has(get, "create"), "the create handler's status")
    assert obj["status"]["phase"] == "Running"
    assert "kopf.zalando.org/KopfFinalizerMarker" in obj["metadata"]["finalizers"]
    await asyncio.to_thread(
        co.patch_namespaced_custom_object, *ARGS, "op", {"spec": {"workers": 3}}
    )
    obj = await _until(lambda: _status_has(get, "update"), "the update handler's status")
    assert obj["status"]["update"] == {"workers": 3}
    await asyncio.to_thread(co.delete_namespaced_custom_object, *ARGS, "op")

    async def gone() -> bool:
        return await get() is None

    await _until(gone, "the finalizer to be released")
    assert seen == ["create", "update", "delete"]
    events = await asyncio.to_thread(client.CoreV1Api(api).list_namespaced_event, "default")
    assert ("Accepted", "2 workers") in {(e.reason, e.message) for e in events.items}
    peering = await asyncio.to_thread(
        co.get_cluster_custom_object, "kopf.dev", "v1", "clusterkopfpeerings", "gantry-test"
    )
    assert peering["status"]  # kopf keeps its heartbeat there


async def _status_has(get: Callable[[], Awaitable[Any]], key: str) -> Any:
    obj = await get()
    return obj if obj and key in (obj.get("status") or {}) else None
