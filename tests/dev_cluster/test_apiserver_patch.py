"""Patch formats: JSON merge, JSON patch (with test), strategic merge, server-side apply."""

# Fixtures come from the shared helpers module.
# ruff: noqa: F811

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from test_apiserver_helpers import GROUP, PLURAL, api, crd, http, server, trainingjob  # noqa: F401

from dev_cluster.apiserver.patching import merge_patch, strategic_merge_patch

DEPLOYMENT: dict[str, Any] = {
    "metadata": {"name": "web"},
    "spec": {
        "replicas": 1,
        "selector": {"matchLabels": {"app": "web"}},
        "template": {
            "metadata": {"labels": {"app": "web"}},
            "spec": {
                "containers": [
                    {
                        "name": "main",
                        "image": "a:1",
                        "env": [{"name": "A", "value": "1"}],
                        "ports": [{"containerPort": 80}],
                        "volumeMounts": [{"name": "v", "mountPath": "/data"}],
                    },
                    {"name": "side", "image": "s:1"},
                ],
                "volumes": [{"name": "v", "emptyDir": {}}],
            },
        },
    },
}


def test_merge_patch_rules() -> None:
    assert merge_patch({"a": 1, "b": {"c": 2, "d": 3}}, {"b": {"c": None, "e": 4}, "f": [1]}) == {
        "a": 1,
        "b": {"d": 3, "e": 4},
        "f": [1],
    }


def test_strategic_merge_keys_and_directives() -> None:
    base = DEPLOYMENT["spec"]["template"]["spec"]
    patch = {
        "containers": [
            {
                "name": "main",
                "env": [{"name": "B", "value": "2"}, {"name": "A", "value": "9"}],
                "ports": [{"containerPort": 81}],
            },
            {"name": "side", "$patch": "delete"},
            {"name": "new", "image": "n:1"},
        ],
        "volumes": [{"name": "w", "emptyDir": {}}],
        "$setElementOrder/containers": [],
    }
    out = strategic_merge_patch(base, patch)
    names = [c["name"] for c in out["containers"]]
    assert names == ["main", "new"]
    main = out["containers"][0]
    assert main["env"] == [{"name": "A", "value": "9"}, {"name": "B", "value": "2"}]
    assert [p["containerPort"] for p in main["ports"]] == [80, 81]
    assert main["volumeMounts"] == [{"name": "v", "mountPath": "/data"}]
    assert [v["name"] for v in out["volumes"]] == ["v", "w"]
    replaced = strategic_merge_patch(base, {"volumes": [{"$patch": "replace"}, {"name": "z"}]})
    assert replaced["volumes"] == [{"name": "z"}]
    fin = strategic_merge_patch(
        {"finalizers": ["a", "b"]}, {"$deleteFromPrimitiveList/finalizers": ["a"]}
    )
    assert fin == {"finalizers": ["b"]}


def test_patch_types_over_http(api: client.ApiClient, server: Any) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment("default", DEPLOYMENT)
    path = "/apis/apps/v1/namespaces/default/deployments/web"
    code, body = http(
        server.url,
        "PATCH",
        path,
        {"spec": {"template": {"spec": {"containers": [{"name": "main", "image": "a:2"}]}}}},
        "application/strategic-merge-patch+json",
    )
    assert code == 200
    containers = body["spec"]["template"]["spec"]["containers"]
    assert [(c["name"], c["image"]) for c in containers] == [("main", "a:2"), ("side", "s:1")]
    assert containers[0]["env"] == [{"name": "A", "value": "1"}]
    # JSON merge patch replaces lists wholesale.
    code, body = http(
        server.url,
        "PATCH",
        path,
        {"spec": {"template": {"spec": {"containers": [{"name": "only", "image": "o:1"}]}}}},
        "application/merge-patch+json",
    )
    assert [c["name"] for c in body["spec"]["template"]["spec"]["containers"]] == ["only"]
    rv = body["metadata"]["resourceVersion"]
    ops = [
        {"op": "test", "path": "/metadata/resourceVersion", "value": rv},
        {"op": "replace", "path": "/spec/replicas", "value": 4},
    ]
    code, body = http(server.url, "PATCH", path, ops, "application/json-patch+json")
    assert code == 200 and body["spec"]["replicas"] == 4
    code, body = http(server.url, "PATCH", path, ops, "application/json-patch+json")
    assert code == 422 and body["reason"] == "Invalid"
    code, body = http(server.url, "PATCH", path, {"x": 1}, "text/plain")
    assert code == 415


def test_merge_patch_with_stale_resource_version_conflicts(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    cm = core.create_namespaced_config_map("default", {"metadata": {"name": "pv"}})
    core.patch_namespaced_config_map("pv", "default", {"data": {"a": "1"}})
    with pytest.raises(ApiException) as exc:
        core.patch_namespaced_config_map(
            "pv",
            "default",
            {"metadata": {"resourceVersion": cm.metadata.resource_version}, "data": {"b": "2"}},
        )
    assert exc.value.status == 409


def test_strategic_patch_on_custom_resource_is_415(
    api: client.ApiClient, crd: Any, server: Any
) -> None:
    client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, "v1alpha1", "default", PLURAL, trainingjob("smp")
    )
    code, body = http(
        server.url,
        "PATCH",
        f"/apis/{GROUP}/v1alpha1/namespaces/default/{PLURAL}/smp",
        {"spec": {"epochs": 2}},
        "application/strategic-merge-patch+json",
    )
    assert code == 415 and body["reason"] == "UnsupportedMediaType"


def test_server_side_apply_creates_then_merges(server: Any, crd: Any) -> None:
    path = f"/apis/{GROUP}/v1alpha1/namespaces/default/{PLURAL}/ssa?fieldManager=test&force=true"
    manifest = (
        "apiVersion: gantry.dev/v1alpha1\nkind: TrainingJob\nmetadata:\n  name: ssa\n"
        "spec:\n  image: t:1\n  workers: 2\n"
    )
    code, body = http(server.url, "PATCH", path, manifest, "application/apply-patch+yaml")
    assert code == 201 and body["spec"]["workers"] == 2 and body["spec"]["epochs"] == 1
    code, body = http(
        server.url,
        "PATCH",
        path,
        manifest.replace("workers: 2", "workers: 3"),
        "application/apply-patch+yaml",
    )
    assert code == 200 and body["spec"]["workers"] == 3
    assert body["metadata"]["generation"] == 2
