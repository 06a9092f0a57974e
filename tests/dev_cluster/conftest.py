"""Fixtures for the dev-node tests: one dev cluster per test module (a start costs ~10 s).

Each test takes a fresh namespace (`ns`), so tests in one module do not see each other's
pods, Services or claims.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from kubernetes import client
from kubernetes.client import ApiClient

from dev_cluster.cluster import DevCluster
from tests.conftest import require_control_plane, wait_for


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[DevCluster]:
    """A dev cluster without the operator; crash-loop back-off starts at 0.2 s."""
    require_control_plane()
    with DevCluster(tmp_path_factory.mktemp("dev"), backoff_base=0.2) as running:
        yield running


@pytest.fixture(scope="module")
def api(cluster: DevCluster) -> Iterator[ApiClient]:
    admin = cluster.api_client()
    yield admin
    admin.close()


@pytest.fixture(scope="module")
def core(api: ApiClient) -> client.CoreV1Api:
    return client.CoreV1Api(api)


@pytest.fixture
def ns(core: client.CoreV1Api) -> Iterator[str]:
    """A fresh namespace with its `default` ServiceAccount; deleted afterwards."""
    name = f"t-{uuid.uuid4().hex[:8]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_for(
        lambda: core.list_namespaced_service_account(name).items,
        60,
        f"the default ServiceAccount in {name}",
    )
    yield name
    core.delete_namespace(name)
