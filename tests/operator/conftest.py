"""Fixtures shared by the operator's dev-cluster test modules."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest

from gantry.k8s.client import KubeClient

if TYPE_CHECKING:
    from dev_cluster.cluster import DevCluster


@pytest.fixture(scope="module")
def kube(cluster: DevCluster) -> Iterator[KubeClient]:
    """An admin client on the module's own `cluster` fixture (each module starts its own)."""
    client = KubeClient.for_kubeconfig(cluster.kubeconfig)
    yield client
    client.close()
