"""`helm uninstall` then deleting the CRDs finishes while TrainingJobs and
InferenceServices (each with kopf's finalizer) exist: the chart's pre-delete hook removes
them while the operator still runs. On the dev cluster (a node runs the hook's pod)."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import wait_for

GROUP, VERSION = "gantry.dev", "v1alpha1"


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[Any]:
    from dev_cluster.cluster import DevCluster, operator_available

    if not operator_available():
        pytest.fail("the operator extra and helm are needed: run `make tools`")
    with DevCluster(tmp_path / "cluster", operator=True) as dev:
        yield dev


@pytest.mark.slow
def test_helm_uninstall_and_crd_deletion_finish_with_resources_present(cluster: Any) -> None:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    from dev_cluster.cluster import OPERATOR_NAMESPACE, helm_binary
    from tests.conftest import api_client_for

    api = api_client_for(cluster.kubeconfig)
    objects, core = client.CustomObjectsApi(api), client.CoreV1Api(api)
    core.create_namespace({"metadata": {"name": "ml"}})
    tj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": "stays"},
        "spec": {"command": ["python", "-c", "import time; time.sleep(600)"], "suspend": True},
    }
    isvc = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "InferenceService",
        "metadata": {"name": "waits"},
        "spec": {"model": {"trainingJobRef": {"name": "stays"}}},
    }
    objects.create_namespaced_custom_object(GROUP, VERSION, "ml", "trainingjobs", tj)
    objects.create_namespaced_custom_object(GROUP, VERSION, "ml", "inferenceservices", isvc)

    def finalized(plural: str, name: str) -> bool:
        obj = objects.get_namespaced_custom_object(GROUP, VERSION, "ml", plural, name)
        return bool(obj["metadata"].get("finalizers"))

    wait_for(lambda: finalized("trainingjobs", "stays"), 120, "the operator's finalizer")
    wait_for(lambda: finalized("inferenceservices", "waits"), 120, "the operator's finalizer")

    helm = helm_binary()
    assert helm is not None
    uninstall = subprocess.run(
        [helm, "uninstall", "gantry", "-n", OPERATOR_NAMESPACE, "--kubeconfig",
         str(cluster.kubeconfig), "--wait", "--timeout", "5m"],
        capture_output=True, text=True, timeout=400, check=False,
    )  # fmt: skip
    assert uninstall.returncode == 0, uninstall.stderr
    ext = client.ApiextensionsV1Api(api)
    for name in ("trainingjobs.gantry.dev", "inferenceservices.gantry.dev"):
        ext.delete_custom_resource_definition(name)

    def gone(name: str) -> bool:
        try:
            ext.read_custom_resource_definition(name)
        except ApiException as err:
            return err.status == 404
        return False

    for name in ("trainingjobs.gantry.dev", "inferenceservices.gantry.dev"):
        wait_for(lambda n=name: gone(n), 120, f"CRD {name} to be deleted")
    apps = client.AppsV1Api(api)
    assert apps.list_namespaced_deployment(OPERATOR_NAMESPACE).items == []
    assert client.BatchV1Api(api).list_namespaced_job("ml").items == []
