"""``status``, ``scale`` and ``log`` subresources and their isolation from the main object."""

from __future__ import annotations

# Fixtures come from the shared helpers module.
# ruff: noqa: F811
import urllib.request
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client.rest import ApiException
from test_apiserver_helpers import GROUP, PLURAL, api, crd, http, server, trainingjob  # noqa: F401

from dev_cluster.apiserver import log_path

ARGS = (GROUP, "v1alpha1", "default", PLURAL)


def test_status_and_main_endpoint_isolation(api: client.ApiClient, crd: Any) -> None:
    co = client.CustomObjectsApi(api)
    co.create_namespaced_custom_object(*ARGS, dict(trainingjob("iso"), status={"phase": "X"}))
    obj = co.get_namespaced_custom_object(*ARGS, "iso")
    assert "status" not in obj  # status is reset on create
    obj = co.patch_namespaced_custom_object_status(
        *ARGS,
        "iso",
        {"spec": {"workers": 5}, "metadata": {"labels": {"x": "y"}}, "status": {"phase": "Run"}},
    )
    assert obj["spec"]["workers"] == 2 and "labels" not in obj["metadata"]
    assert obj["status"] == {"phase": "Run"}
    obj = co.patch_namespaced_custom_object(
        *ARGS, "iso", {"spec": {"workers": 3}, "status": {"phase": "Ignored"}}
    )
    assert obj["spec"]["workers"] == 3 and obj["status"] == {"phase": "Run"}
    full = dict(obj, status={"phase": "Done"})
    replaced = co.replace_namespaced_custom_object_status(*ARGS, "iso", full)
    assert replaced["status"] == {"phase": "Done"}


def test_custom_resource_scale(api: client.ApiClient, crd: Any) -> None:
    co = client.CustomObjectsApi(api)
    co.create_namespaced_custom_object(*ARGS, trainingjob("sc", workers=2))
    co.patch_namespaced_custom_object_status(
        *ARGS, "sc", {"status": {"workers": 1, "selector": "job=sc"}}
    )
    scale = co.get_namespaced_custom_object_scale(*ARGS, "sc")
    assert scale["kind"] == "Scale" and scale["apiVersion"] == "autoscaling/v1"
    assert scale["spec"] == {"replicas": 2}
    assert scale["status"] == {"replicas": 1, "selector": "job=sc"}
    co.patch_namespaced_custom_object_scale(*ARGS, "sc", {"spec": {"replicas": 4}})
    obj = co.get_namespaced_custom_object(*ARGS, "sc")
    assert obj["spec"]["workers"] == 4 and obj["metadata"]["generation"] == 2
    with pytest.raises(ApiException) as exc:
        co.patch_namespaced_custom_object_scale(*ARGS, "sc", {"spec": {"replicas": 100}})
    assert exc.value.status == 422  # the CRD's maximum still applies


def test_deployment_scale(api: client.ApiClient) -> None:
    apps = client.AppsV1Api(api)
    apps.create_namespaced_deployment(
        "default",
        {
            "metadata": {"name": "sd"},
            "spec": {
                "replicas": 1,
                "selector": {"matchLabels": {"app": "sd"}},
                "template": {
                    "metadata": {"labels": {"app": "sd"}},
                    "spec": {"containers": [{"name": "c", "image": "i"}]},
                },
            },
        },
    )
    scale = apps.read_namespaced_deployment_scale("sd", "default")
    assert scale.spec.replicas == 1 and scale.status.selector == "app=sd"
    apps.replace_namespaced_deployment_scale(
        "sd", "default", {"metadata": {"name": "sd"}, "spec": {"replicas": 3}}
    )
    assert apps.read_namespaced_deployment("sd", "default").spec.replicas == 3


def test_pod_log(api: client.ApiClient, server: Any) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(
        "default",
        {
            "metadata": {"name": "logpod"},
            "spec": {"containers": [{"name": "a", "image": "i"}, {"name": "b", "image": "i"}]},
        },
    )
    root = server.server.logs_root
    for restart, text in ((0, "first\n"), (1, "one\ntwo\nthree\n")):
        path = log_path(root, "default", "logpod", "a", restart)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    core.patch_namespaced_pod_status(
        "logpod",
        "default",
        {
            "status": {
                "containerStatuses": [
                    {
                        "name": "a",
                        "restartCount": 1,
                        "ready": True,
                        "image": "i",
                        "imageID": "",
                        "state": {"running": {}},
                    }
                ]
            }
        },
    )
    assert core.read_namespaced_pod_log("logpod", "default", container="a") == "one\ntwo\nthree\n"
    assert core.read_namespaced_pod_log("logpod", "default", container="a", tail_lines=1) == (
        "three\n"
    )
    assert (
        core.read_namespaced_pod_log("logpod", "default", container="a", previous=True) == "first\n"
    )
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod_log("logpod", "default")
    assert exc.value.status == 400 and "choose one of: [a b]" in exc.value.body
    with pytest.raises(ApiException) as exc:
        core.read_namespaced_pod_log("logpod", "default", container="b")
    assert "is waiting to start" in exc.value.body


def test_pod_log_follow_ends_when_container_stops(api: client.ApiClient, server: Any) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(
        "default",
        {"metadata": {"name": "follow"}, "spec": {"containers": [{"name": "main", "image": "i"}]}},
    )
    path = log_path(server.server.logs_root, "default", "follow", "main", 0)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("hello\n")
    url = f"{server.url}/api/v1/namespaces/default/pods/follow/log?follow=true"
    with urllib.request.urlopen(url, timeout=10) as resp:
        assert resp.readline() == b"hello\n"
        with path.open("a") as fh:
            fh.write("more\n")
        assert resp.readline() == b"more\n"
        http(
            server.url,
            "PATCH",
            "/api/v1/namespaces/default/pods/follow/status",
            {
                "status": {
                    "containerStatuses": [
                        {
                            "name": "main",
                            "restartCount": 0,
                            "state": {"terminated": {"exitCode": 0}},
                        }
                    ]
                }
            },
            "application/merge-patch+json",
        )
        assert resp.read() == b""


def test_pod_binding(api: client.ApiClient) -> None:
    core = client.CoreV1Api(api)
    core.create_namespaced_pod(
        "default",
        {"metadata": {"name": "tobind"}, "spec": {"containers": [{"name": "c", "image": "i"}]}},
    )
    core.create_namespaced_pod_binding(
        "tobind",
        "default",
        {"metadata": {"name": "tobind"}, "target": {"kind": "Node", "name": "node-1"}},
        _preload_content=False,
    )
    assert core.read_namespaced_pod("tobind", "default").spec.node_name == "node-1"
    with pytest.raises(ApiException) as exc:
        core.create_namespaced_pod_binding(
            "tobind",
            "default",
            {"metadata": {"name": "tobind"}, "target": {"kind": "Node", "name": "node-2"}},
            _preload_content=False,
        )
    assert exc.value.status == 409
