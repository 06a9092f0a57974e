"""KubeClient against the emulated API server: CRUD, apply, errors, events, logs."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from gantry.k8s import Conflict, Invalid, KubeClient, NotFound, event

testing = pytest.importorskip("dev_cluster.apiserver.testing", reason="no emulated API server")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KubeClient]:
    state: Path = tmp_path_factory.mktemp("apiserver")
    with testing.start_in_thread(state_dir=state) as server:
        kube = KubeClient.for_url(server.url)
        yield kube
        kube.close()


def service(port: int = 80) -> dict[str, object]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": "svc", "namespace": "default", "labels": {"app": "demo"}},
        "spec": {"ports": [{"port": port}], "selector": {"app": "demo"}},
    }


def test_apply_creates_then_is_idempotent_then_updates(client: KubeClient) -> None:
    created, result = client.apply(service())
    assert result == "created" and created["metadata"]["uid"]
    _, again = client.apply(service())
    assert again == "unchanged", "server defaults (type, clusterIP) are not differences"
    updated, changed = client.apply(service(81))
    assert changed == "updated" and updated["spec"]["ports"][0]["port"] == 81
    got = client.get("v1", "services", "svc", "default")
    assert got is not None and got["spec"]["ports"][0]["port"] == 81
    assert [
        s["metadata"]["name"]
        for s in client.list("v1", "services", "default", label_selector="app=demo")
    ] == ["svc"]
    assert client.list("v1", "services", "default", label_selector="app=other") == []
    assert client.delete("v1", "services", "svc", "default") is True
    assert client.delete("v1", "services", "svc", "default") is False
    assert client.get("v1", "services", "svc", "default") is None


def test_errors_carry_status_and_message(client: KubeClient) -> None:
    client.create(service())
    with pytest.raises(Conflict) as conflict:
        client.create(service())
    assert conflict.value.status == 409 and "already exists" in conflict.value.message
    bad = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "Bad_Name", "namespace": "default"},
    }
    with pytest.raises(Invalid, match="Bad_Name"):
        client.create(bad)
    with pytest.raises(NotFound):
        client.patch("v1", "services", "absent", "default", {"metadata": {"labels": {"a": "b"}}})
    with pytest.raises(ValueError, match="patch_type"):
        client.patch("v1", "services", "svc", "default", {}, patch_type="bogus")
    client.delete("v1", "services", "svc", "default")


def test_status_subresource_and_json_patch(client: KubeClient) -> None:
    pod = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "p", "namespace": "default"},
        "spec": {"containers": [{"name": "c", "image": "busybox"}]},
    }
    client.create(pod)
    patched = client.patch(
        "v1", "pods", "p", "default", {"status": {"phase": "Running"}}, subresource="status"
    )
    assert patched["status"]["phase"] == "Running"
    labelled = client.patch(
        "v1",
        "pods",
        "p",
        "default",
        [{"op": "add", "path": "/metadata/labels", "value": {"x": "1"}}],
        patch_type="json",
    )
    assert labelled["metadata"]["labels"] == {"x": "1"}
    with pytest.raises(NotFound):
        client.pod_log("default", "absent-pod")
    client.delete("v1", "pods", "p", "default")


def test_event_is_posted_about_the_object(client: KubeClient) -> None:
    cm, _ = client.apply(
        {
            "apiVersion": "v1",
            "kind": "ConfigMap",
            "metadata": {"name": "cm", "namespace": "default"},
        }
    )
    event(client, cm, "Tested", "hello " * 400, "Warning")
    events = [e for e in client.list("v1", "events", "default") if e["reason"] == "Tested"]
    assert len(events) == 1
    assert events[0]["involvedObject"]["uid"] == cm["metadata"]["uid"]
    assert events[0]["type"] == "Warning" and len(events[0]["message"]) <= 1024


def test_connection_refused_is_an_api_error() -> None:
    from gantry.k8s import ApiError

    kube = KubeClient.for_url("http://127.0.0.1:9")
    kube.api.configuration.retries = 0
    with pytest.raises(ApiError) as err:
        kube.get("v1", "pods", "p", "default")
    assert err.value.status == 0


def test_missing_credentials_are_reported_clearly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from gantry.k8s import ApiError

    monkeypatch.delenv("KUBERNETES_SERVICE_HOST", raising=False)
    monkeypatch.setenv("KUBECONFIG", str(tmp_path / "absent"))
    with pytest.raises(ApiError, match="no Kubernetes credentials"):
        KubeClient()
