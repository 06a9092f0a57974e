"""KubeClient against a real kube-apiserver: CRUD, apply, errors, events, logs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from gantry.k8s.client import KubeClient
from gantry.k8s.errors import ApiError, Conflict, Invalid, NotFound
from gantry.k8s.events import event

if TYPE_CHECKING:
    from dev_cluster.controlplane.threaded import ThreadedControlPlane


@pytest.fixture(scope="module")
def client(control_plane: ThreadedControlPlane) -> Iterator[KubeClient]:
    kube = KubeClient.for_kubeconfig(control_plane.kubeconfig)
    yield kube
    kube.close()


def service(namespace: str, port: int = 80) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc", "namespace": namespace, "labels": {"app": "demo"}},
        "spec": {"ports": [{"port": port}], "selector": {"app": "demo"}},
    }


def test_apply_creates_then_is_idempotent_then_updates(client: KubeClient, namespace: str) -> None:
    created, result = client.apply(service(namespace))
    assert result == "created" and created["metadata"]["uid"]
    # The server filled in what we left out: these defaults must not count as differences.
    assert created["spec"]["type"] == "ClusterIP" and created["spec"]["clusterIP"]
    assert created["spec"]["ports"][0]["protocol"] == "TCP"
    assert created["spec"]["ports"][0]["targetPort"] == 80
    _, again = client.apply(service(namespace))
    assert again == "unchanged", "server defaults (type, clusterIP, protocol) are not differences"
    updated, changed = client.apply(service(namespace, 81))
    assert changed == "updated" and updated["spec"]["ports"][0]["port"] == 81
    got = client.get("v1", "services", "svc", namespace)
    assert got is not None and [p["port"] for p in got["spec"]["ports"]] == [81], (
        "a field dropped from the desired object is removed: one apply manager owns it all"
    )
    owners = {(m["manager"], m["operation"]) for m in got["metadata"]["managedFields"]}
    assert owners == {("gantry", "Apply")}
    assert [
        s["metadata"]["name"]
        for s in client.list("v1", "services", namespace, label_selector="app=demo")
    ] == ["svc"]
    assert client.list("v1", "services", namespace, label_selector="app=other") == []
    assert client.delete("v1", "services", "svc", namespace) is True
    assert client.delete("v1", "services", "svc", namespace) is False
    assert client.get("v1", "services", "svc", namespace) is None


def test_errors_carry_status_and_message(client: KubeClient, namespace: str) -> None:
    client.create(service(namespace))
    with pytest.raises(Conflict) as conflict:
        client.create(service(namespace))
    assert conflict.value.status == 409 and "already exists" in conflict.value.message
    bad = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "Bad_Name", "namespace": namespace},
    }
    with pytest.raises(Invalid, match="Bad_Name") as invalid:
        client.create(bad)
    assert invalid.value.status == 422
    with pytest.raises(NotFound):
        client.patch("v1", "services", "absent", namespace, {"metadata": {"labels": {"a": "b"}}})
    with pytest.raises(NotFound, match="absent-namespace"):
        client.create(service("absent-namespace"))
    with pytest.raises(ValueError, match="patch_type"):
        client.patch("v1", "services", "svc", namespace, {}, patch_type="bogus")


def test_status_subresource_and_json_patch(client: KubeClient, namespace: str) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": namespace},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    created = client.create(pod)
    # No node in this control plane: the scheduler cannot place the pod, it stays Pending.
    assert created["status"]["phase"] == "Pending"
    assert created["spec"]["containers"][0]["imagePullPolicy"] == "Always"  # a server default
    patched = client.patch(
        "v1", "pods", "p", namespace, {"status": {"phase": "Running"}}, subresource="status"
    )
    assert patched["status"]["phase"] == "Running"
    ignored = client.patch("v1", "pods", "p", namespace, {"status": {"phase": "Failed"}})
    assert ignored["status"]["phase"] == "Running", "status changes only via the subresource"
    labelled = client.patch(
        "v1",
        "pods",
        "p",
        namespace,
        [{"op": "add", "path": "/metadata/labels", "value": {"x": "1"}}],
        patch_type="json",
    )
    assert labelled["metadata"]["labels"] == {"x": "1"}
    with pytest.raises(NotFound):
        client.pod_log(namespace, "absent-pod")
    # A pod no node runs has no log yet: the API server answers an empty one.
    assert client.pod_log(namespace, "p") == ""


def test_event_is_posted_about_the_object(client: KubeClient, namespace: str) -> None:
    cm, _ = client.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cm", "namespace": namespace},
        }
    )
    event(client, cm, "Tested", "hello " * 400, "Warning")
    events = [e for e in client.list("v1", "events", namespace) if e["reason"] == "Tested"]
    assert len(events) == 1
    assert events[0]["involvedObject"]["uid"] == cm["metadata"]["uid"]
    assert events[0]["type"] == "Warning" and len(events[0]["message"]) <= 1024


def test_connection_refused_is_an_api_error() -> None:
    kube = KubeClient.for_url("http://127.0.0.1:9")
    kube.api.configuration.retries = 0
    with pytest.raises(ApiError) as err:
        kube.get("v1", "pods", "p", "default")
    assert err.value.status == 0


def test_an_unverified_server_certificate_is_refused(control_plane: ThreadedControlPlane) -> None:
    """`for_url` without a CA must not silently trust the server when asked to verify."""
    kube = KubeClient.for_url(control_plane.url, verify_ssl=True)
    kube.api.configuration.retries = 0
    with pytest.raises(ApiError) as err:
        kube.get("v1", "namespaces", "default")
    assert err.value.status == 0 and "certificate" in err.value.message.lower()
    kube.close()


def test_anonymous_requests_are_refused(control_plane: ThreadedControlPlane) -> None:
    kube = KubeClient.for_url(control_plane.url)
    with pytest.raises(ApiError) as err:
        kube.list("v1", "pods", "default")
    assert err.value.status in (401, 403)
    kube.close()


def test_missing_credentials_are_reported_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(ApiError, match="no Kubernetes credentials"):
        KubeClient()
