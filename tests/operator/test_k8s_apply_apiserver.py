"""`KubeClient.apply` on a real kube-apiserver: its canonical quantities are not changes."""

from __future__ import annotations

from typing import Any

from kubernetes.client import ApiClient

from gantry.k8s.client import KubeClient


def _deployment(namespace: str, cpu: str, memory: str) -> dict[str, Any]:
    labels = {"app": "quantities"}
    container = {
        "name": "triton",
        "image": "registry.example/triton:1",
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
    }
    volume = {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": memory}}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": "quantities", "namespace": namespace},
        "spec": {
            "replicas": 1,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": {"containers": [container], "volumes": [volume]},
            },
        },
    }


def test_reapplying_equal_quantities_changes_nothing(admin_api: ApiClient, namespace: str) -> None:
    kube = KubeClient(admin_api)
    desired = _deployment(namespace, cpu="1000m", memory="2048Mi")
    created, result = kube.apply(desired)
    assert result == "created"
    pod = created["spec"]["template"]["spec"]
    assert pod["containers"][0]["resources"] == {
        "requests": {"cpu": "1", "memory": "2Gi"},
        "limits": {"memory": "2Gi"},
    }, "the server stores quantities in canonical form"
    assert pod["volumes"][0]["emptyDir"]["sizeLimit"] == "2Gi"

    again, result = kube.apply(desired)
    assert result == "unchanged"
    assert again["metadata"]["resourceVersion"] == created["metadata"]["resourceVersion"]

    _, result = kube.apply(_deployment(namespace, cpu="1500m", memory="2048Mi"))
    assert result == "updated"
    stored = kube.get("apps/v1", "deployments", "quantities", namespace)
    assert stored is not None
    resources = stored["spec"]["template"]["spec"]["containers"][0]["resources"]
    assert resources["requests"] == {"cpu": "1500m", "memory": "2Gi"}
