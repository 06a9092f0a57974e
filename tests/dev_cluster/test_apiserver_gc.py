"""Garbage collection (background, foreground, orphan), namespace and CRD cleanup, discovery."""

from __future__ import annotations

# Fixtures come from the shared helpers module.
# ruff: noqa: F811
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from test_apiserver_helpers import (  # noqa: F401
    GROUP,
    PLURAL,
    api,
    http,
    server,
    trainingjob,
    trainingjob_crd,
    wait_for,
)


def _owner_ref(obj: Any, block: bool = False) -> dict[str, Any]:
    meta = obj.metadata
    return {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": meta.name,
        "uid": meta.uid,
        "blockOwnerDeletion": block,
    }


def _exists(read: Any, *args: Any) -> bool:
    try:
        read(*args)
    except ApiException as exc:
        assert exc.status == 404
        return False
    return True


def _family(core: client.CoreV1Api, prefix: str, block: bool = False) -> Any:
    owner = core.create_namespaced_config_map("default", {"metadata": {"name": f"{prefix}-own"}})
    for i in range(2):
        core.create_namespaced_secret(
            "default",
            {
                "metadata": {
                    "name": f"{prefix}-dep{i}",
                    "ownerReferences": [_owner_ref(owner, block)],
                    "finalizers": ["example.com/slow"] if block and i == 0 else [],
                }
            },
        )
    return owner


def test_background_cascade(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    _family(core, "bg")
    core.delete_namespaced_config_map("bg-own", "default")
    assert not _exists(core.read_namespaced_config_map, "bg-own", "default")
    for i in range(2):
        wait_for(
            lambda i=i: not _exists(core.read_namespaced_secret, f"bg-dep{i}", "default"),
            what=f"bg-dep{i} to be collected",
        )


def test_foreground_waits_for_blocking_dependents(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    _family(core, "fg", block=True)
    core.delete_namespaced_config_map("fg-own", "default", propagation_policy="Foreground")
    owner = core.read_namespaced_config_map("fg-own", "default")
    assert "foregroundDeletion" in owner.metadata.finalizers
    assert owner.metadata.deletion_timestamp is not None
    wait_for(lambda: not _exists(core.read_namespaced_secret, "fg-dep1", "default"))
    # fg-dep0 is held by its own finalizer, so the owner must still be there.
    dep0 = core.read_namespaced_secret("fg-dep0", "default")
    assert dep0.metadata.deletion_timestamp is not None
    assert _exists(core.read_namespaced_config_map, "fg-own", "default")
    core.patch_namespaced_secret("fg-dep0", "default", {"metadata": {"finalizers": None}})
    wait_for(
        lambda: not _exists(core.read_namespaced_config_map, "fg-own", "default"),
        what="the owner to go after its dependents",
    )


def test_orphan_prunes_owner_references(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    _family(core, "or")
    core.delete_namespaced_config_map("or-own", "default", propagation_policy="Orphan")
    assert not _exists(core.read_namespaced_config_map, "or-own", "default")
    for i in range(2):
        dep = core.read_namespaced_secret(f"or-dep{i}", "default")
        assert not dep.metadata.owner_references


def test_cascade_across_kinds_to_pods(api: client.ApiClient) -> None:
    core, apps = client.CoreV1Api(api), client.AppsV1Api(api)
    rs = apps.create_namespaced_replica_set(
        "default",
        {
            "metadata": {"name": "rs1"},
            "spec": {
                "selector": {"matchLabels": {"a": "b"}},
                "template": {
                    "metadata": {"labels": {"a": "b"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        },
    )
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {
                "name": "rs1-pod",
                "ownerReferences": [
                    {
                        "apiVersion": "apps/v1",
                        "kind": "ReplicaSet",
                        "name": "rs1",
                        "uid": rs.metadata.uid,
                        "controller": True,
                    }
                ],
            },
            "spec": {"containers": [{"name": "c", "image": "i"}]},
        },
    )
    apps.delete_namespaced_replica_set("rs1", "default")
    wait_for(lambda: not _exists(core.read_namespaced_pod, "rs1-pod", "default"))


def test_namespace_deletion_empties_it(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "doomed"}})
    core.create_namespaced_config_map(
        "doomed", {"metadata": {"name": "held", "finalizers": ["example.com/hold"]}}
    )
    core.create_namespaced_secret("doomed", {"metadata": {"name": "s"}})
    core.delete_namespace("doomed")
    ns = core.read_namespace("doomed")
    assert ns.status.phase == "Terminating"
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("doomed", {"metadata": {"name": "late"}})
    assert exc.value.status == 403
    wait_for(lambda: not _exists(core.read_namespaced_secret, "s", "doomed"))
    assert _exists(core.read_namespace, "doomed")
    core.patch_namespaced_config_map("held", "doomed", {"metadata": {"finalizers": None}})
    wait_for(lambda: not _exists(core.read_namespace, "doomed"), what="namespace removal")


def _resources(server: Any, path: str) -> set[str]:
    code, body = http(server.url, "GET", path)
    return {r["name"] for r in body.get("resources", [])} if code == 200 else set()


def test_discovery_follows_crds_and_crd_deletion_cascades(
    api: client.ApiClient, server: Any
) -> None:
    ext = client.ApiextensionsV1Api(api)
    crd = trainingjob_crd()
    crd["metadata"]["name"] = "gcjobs.gantry.dev"
    crd["spec"]["names"] = {
        "plural": "gcjobs",
        "singular": "gcjob",
        "kind": "GcJob",
        "shortNames": ["gcj"],
        "categories": ["gantry"],
    }
    ext.create_custom_resource_definition(crd)
    code, groups = http(server.url, "GET", "/apis")
    assert GROUP in {g["name"] for g in groups["groups"]}
    code, doc = http(server.url, "GET", f"/apis/{GROUP}/v1alpha1")
    entry = next(r for r in doc["resources"] if r["name"] == "gcjobs")
    assert entry["kind"] == "GcJob" and entry["namespaced"] is True
    assert entry["shortNames"] == ["gcj"] and entry["categories"] == ["gantry"]
    assert {"gcjobs/status", "gcjobs/scale"} <= {r["name"] for r in doc["resources"]}
    co = client.CustomObjectsApi(api)
    body = trainingjob("one")
    body["kind"] = "GcJob"
    co.create_namespaced_custom_object(GROUP, "v1alpha1", "default", "gcjobs", body)
    ext.delete_custom_resource_definition("gcjobs.gantry.dev")
    wait_for(
        lambda: "gcjobs" not in _resources(server, f"/apis/{GROUP}/v1alpha1"),
        what="discovery to drop gcjobs",
    )
    code, _ = http(server.url, "GET", f"/apis/{GROUP}/v1alpha1/namespaces/default/gcjobs/one")
    assert code == 404
    code, version = http(server.url, "GET", "/version")
    assert (version["major"], version["minor"]) == ("1", "33")
