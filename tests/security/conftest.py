"""The attack suite's fixtures: the chart's admission policies in force on the session
control plane (kube-apiserver with RBAC and ValidatingAdmissionPolicy enforced), and
fresh namespaces for session fixtures. Helpers are in security_testkit.py."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import CLUSTER_WIDE, OPERATOR_NAMESPACE, api_client_for, wait_for
from tests.security.security_testkit import (
    POLICY_KINDS,
    apply_as_admin,
    busybox,
    labelled_job,
    render_chart,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient


@pytest.fixture(scope="session")
def gantry_policies(
    admin_api: ApiClient,
    operator_kubeconfig: Path,
    namespace_factory: Callable[[], str],
    tmp_path_factory: pytest.TempPathFactory,
) -> list[dict[str, Any]]:
    """The chart's admission policies (whole-cluster install), in force for the operator."""
    from kubernetes import client

    docs = render_chart(
        tmp_path_factory.mktemp("policies"), CLUSTER_WIDE, namespace=OPERATOR_NAMESPACE
    )
    policies = [d for d in docs if d["kind"] in POLICY_KINDS]
    assert len(policies) == 4
    apply_as_admin(admin_api, policies)
    operator = client.BatchV1Api(api_client_for(operator_kubeconfig))
    probe_ns = namespace_factory()
    privileged = labelled_job("probe", {"containers": [busybox(privileged=True)]})

    def enforced() -> bool:
        from kubernetes.client.exceptions import ApiException

        try:
            operator.create_namespaced_job(probe_ns, privileged, dry_run="All")
        except ApiException as err:
            return "privileged" in str(err.body)
        return False

    wait_for(enforced, 60, "the chart's admission policy to be enforced")
    return policies


@pytest.fixture(scope="session")
def namespace_factory(admin_api: ApiClient) -> Iterator[Callable[[], str]]:
    """Fresh namespaces (with their default ServiceAccount) for session fixtures."""
    from kubernetes import client

    core = client.CoreV1Api(admin_api)
    made: list[str] = []

    def make() -> str:
        name = f"s-{uuid.uuid4().hex[:10]}"
        core.create_namespace({"metadata": {"name": name}})
        made.append(name)
        wait_for(
            lambda: any(
                sa.metadata.name == "default"
                for sa in core.list_namespaced_service_account(name).items
            ),
            30,
            f"the default ServiceAccount in {name}",
        )
        return name

    yield make
    for name in made:
        core.delete_namespace(name)
