"""CRUD semantics over HTTP with the official client: stamping, errors, generation."""

# Fixtures come from the shared helpers module.
# ruff: noqa: F811

from __future__ import annotations

import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from test_apiserver_helpers import (  # noqa: F401
    GROUP,
    PLURAL,
    api,
    crd,
    http,
    server,
    trainingjob,
)


def _status(exc: ApiException) -> dict[str, Any]:
    return dict(json.loads(exc.body))


def test_system_namespaces_exist(api: client.ApiClient) -> None:
    names = {n.metadata.name for n in client.CoreV1Api(api).list_namespace().items}
    assert {"default", "kube-system", "kube-public", "kube-node-lease"} <= names


def test_create_stamps_metadata(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    a = core.create_namespaced_config_map("default", {"metadata": {"name": "stamp-a"}})
    b = core.create_namespaced_config_map("default", {"metadata": {"name": "stamp-b"}})
    assert a.metadata.uid and a.metadata.creation_timestamp
    assert a.metadata.namespace == "default"
    assert int(b.metadata.resource_version) > int(a.metadata.resource_version)
    listed = core.list_namespaced_config_map("default")
    assert int(listed.metadata.resource_version) >= int(b.metadata.resource_version)


def test_generate_name(api: client.ApiClient) -> None:
    cm = client.CoreV1Api(api).create_namespaced_config_map(
        "default", {"metadata": {"generateName": "gen-"}}
    )
    assert cm.metadata.name.startswith("gen-") and len(cm.metadata.name) == 9


def test_already_exists_and_not_found_wording(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map("default", {"metadata": {"name": "dup"}})
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_config_map("default", {"metadata": {"name": "dup"}})
    st = _status(exc.value)
    assert (exc.value.status, st["reason"], st["message"]) == (
        409,
        "AlreadyExists",
        'configmaps "dup" already exists',
    )
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_config_map("missing", "default")
    st = _status(exc.value)
    assert st["kind"] == "Status" and st["apiVersion"] == "v1" and st["status"] == "Failure"
    assert (st["code"], st["reason"], st["message"]) == (
        404,
        "NotFound",
        'configmaps "missing" not found',
    )
    assert st["details"] == {"name": "missing", "kind": "configmaps"}


def test_custom_resource_not_found_wording(api: client.ApiClient, crd: Any) -> None:
    co = client.CustomObjectsApi(api)
    with pytest.raises(ApiException) as exc:
        co.get_namespaced_custom_object(GROUP, "v1alpha1", "default", PLURAL, "x")
    assert _status(exc.value)["message"] == 'trainingjobs.gantry.dev "x" not found'


def test_missing_namespace_is_404(api: client.ApiClient) -> None:
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(api).create_namespaced_config_map("nope", {"metadata": {"name": "a"}})
    assert exc.value.status == 404
    assert _status(exc.value)["message"] == 'namespaces "nope" not found'


def test_namespace_mismatch_is_400(server: Any) -> None:
    code, body = http(
        server.url,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        {"metadata": {"name": "mm", "namespace": "kube-system"}},
    )
    assert code == 400 and body["reason"] == "BadRequest"
    assert "does not match the namespace" in body["message"]


def test_stale_update_conflicts(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "stale"}})
    stale_rv = cm.metadata.resource_version
    core.patch_namespaced_config_map("stale", "default", {"data": {"a": "1"}})
    body = {"metadata": {"name": "stale", "resourceVersion": stale_rv}, "data": {"b": "2"}}
    with pytest.raises(ApiException) as exc:
        core.replace_namespaced_config_map("stale", "default", body)
    st = _status(exc.value)
    assert (exc.value.status, st["reason"]) == (409, "Conflict")
    assert st["message"] == (
        'Operation cannot be fulfilled on configmaps "stale": the object has been modified; '
        "please apply your changes to the latest version and try again"
    )


def test_dry_run_writes_nothing(server: Any, api: client.ApiClient) -> None:
    code, body = http(
        server.url,
        "POST",
        "/api/v1/namespaces/default/configmaps?dryRun=All",
        {"metadata": {"name": "dry"}},
    )
    assert code == 201 and body["metadata"]["name"] == "dry"
    with pytest.raises(ApiException):
        client.CoreV1Api(api).read_namespaced_config_map("dry", "default")


def test_cluster_scoped_and_all_namespaces(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "other"}})
    core.create_namespaced_config_map("other", {"metadata": {"name": "in-other"}})
    names = {
        (c.metadata.namespace, c.metadata.name)
        for c in core.list_config_map_for_all_namespaces().items
    }
    assert ("other", "in-other") in names
    node = core.create_node({"metadata": {"name": "node-a"}})
    assert node.metadata.namespace is None


def test_generation_bumps_on_spec_only(api: client.ApiClient, crd: Any) -> None:
    co = client.CustomObjectsApi(api)
    args = (GROUP, "v1alpha1", "default", PLURAL)
    obj = co.create_namespaced_custom_object(*args, trainingjob("gen"))
    assert obj["metadata"]["generation"] == 1
    obj = co.patch_namespaced_custom_object(*args, "gen", {"metadata": {"labels": {"a": "b"}}})
    assert obj["metadata"]["generation"] == 1
    obj = co.patch_namespaced_custom_object_status(*args, "gen", {"status": {"phase": "Running"}})
    assert obj["metadata"]["generation"] == 1
    obj = co.patch_namespaced_custom_object(*args, "gen", {"spec": {"epochs": 5}})
    assert obj["metadata"]["generation"] == 2
    assert obj["status"] == {"phase": "Running"}


def test_delete_collection_with_selector(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    for i, tier in enumerate(["x", "x", "y"]):
        core.create_namespaced_config_map(
            "default", {"metadata": {"name": f"coll-{i}", "labels": {"tier": tier}}}
        )
    core.delete_collection_namespaced_config_map("default", label_selector="tier=x")
    left = core.list_namespaced_config_map("default", label_selector="tier").items
    assert [c.metadata.name for c in left] == ["coll-2"]


def test_finalizers_block_deletion(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_config_map(
        "default", {"metadata": {"name": "fin", "finalizers": ["example.com/hold"]}}
    )
    core.delete_namespaced_config_map("fin", "default")
    held = core.read_namespaced_config_map("fin", "default")
    assert held.metadata.deletion_timestamp is not None
    assert held.metadata.deletion_grace_period_seconds == 0
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_config_map(
            "fin", "default", {"metadata": {"finalizers": ["example.com/hold", "new"]}}
        )
    assert exc.value.status == 422
    assert "no new finalizers can be added" in _status(exc.value)["message"]
    core.patch_namespaced_config_map("fin", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as gone:
        core.read_namespaced_config_map("fin", "default")
    assert gone.value.status == 404


def _pod(name: str, node: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"containers": [{"name": "main", "image": "busybox"}]}
    if node:
        spec["nodeName"] = node
    return {"metadata": {"name": name}, "spec": spec}


def test_bound_pod_deletion_waits_for_the_agent(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_pod("default", _pod("unbound"))
    core.delete_namespaced_pod("unbound", "default")
    with pytest.raises(ApiException):
        core.read_namespaced_pod("unbound", "default")
    core.create_namespaced_pod("default", _pod("bound", node="node-a"))
    core.delete_namespaced_pod("bound", "default")
    pod = core.read_namespaced_pod("bound", "default")
    assert pod.metadata.deletion_timestamp is not None
    assert pod.metadata.deletion_grace_period_seconds == 30
    assert pod.status.phase == "Pending"
    core.delete_namespaced_pod("bound", "default", grace_period_seconds=0)
    with pytest.raises(ApiException):
        core.read_namespaced_pod("bound", "default")


def test_invalid_builtin_name(api: client.ApiClient) -> None:
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(api).create_namespaced_config_map(
            "default", {"metadata": {"name": "Bad_Name"}}
        )
    st = _status(exc.value)
    assert exc.value.status == 422 and st["reason"] == "Invalid"
    assert st["message"].startswith(
        'ConfigMap "Bad_Name" is invalid: metadata.name: Invalid value: "Bad_Name": '
        "a lowercase RFC 1123 subdomain"
    )
    assert st["details"]["causes"][0]["field"] == "metadata.name"


def test_pod_without_containers_is_invalid(api: client.ApiClient) -> None:
    with pytest.raises(ApiException) as exc:
        client.CoreV1Api(api).create_namespaced_pod(
            "default", {"metadata": {"name": "empty"}, "spec": {"containers": []}}
        )
    assert _status(exc.value)["message"] == (
        'Pod "empty" is invalid: spec.containers: Required value'
    )


def test_protobuf_and_yaml_bodies(server: Any) -> None:
    code, body = http(
        server.url,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "metadata:\n  name: from-yaml\ndata:\n  k: v\n",
        content_type="application/yaml",
    )
    assert code == 201 and body["data"] == {"k": "v"}
    code, body = http(
        server.url,
        "POST",
        "/api/v1/namespaces/default/configmaps",
        "\x00garbage",
        content_type="application/cbor",
    )
    assert code == 415 and body["reason"] == "UnsupportedMediaType"


def test_unknown_paths_and_methods(server: Any) -> None:
    code, body = http(server.url, "GET", "/apis/nothing.example/v1/things")
    assert code == 404 and body["reason"] == "NotFound"
    code, body = http(
        server.url, "POST", "/api/v1/namespaces/default/configmaps/x", {"metadata": {"name": "x"}}
    )
    assert code == 405 and body["reason"] == "MethodNotAllowed"
    code, body = http(server.url, "GET", "/api/v1/configmaps?labelSelector=a%20in%20(")
    assert code == 400 and body["reason"] == "BadRequest"


def test_pod_finalizer_after_agent_deletion(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    pod = _pod("held-pod", node="node-a")
    pod["metadata"]["finalizers"] = ["example.com/hold"]
    core.create_namespaced_pod("default", pod)
    core.delete_namespaced_pod("held-pod", "default")
    core.delete_namespaced_pod("held-pod", "default", grace_period_seconds=0)
    assert core.read_namespaced_pod("held-pod", "default").metadata.deletion_timestamp
    core.patch_namespaced_pod("held-pod", "default", {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod("held-pod", "default")
    assert exc.value.status == 404
