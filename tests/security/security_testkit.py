"""The attack suite's helpers: the chart rendered, documents applied as admin, identities
with their own kubeconfig, and the manifests the attacks send."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from tests.conftest import (
    TOKEN_SECONDS,
    create_ignoring_conflict,
    mint_token,
    write_token_kubeconfig,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from dev_cluster.controlplane.threaded import ThreadedControlPlane

POLICY_KINDS = ("ValidatingAdmissionPolicy", "ValidatingAdmissionPolicyBinding")
RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
GANTRY_LABELS = {"app.kubernetes.io/managed-by": "gantry", "app.kubernetes.io/part-of": "gantry"}


def render_chart(
    tmp: Path, values: Mapping[str, Any], *, release: str = "gantry", namespace: str
) -> list[dict[str, Any]]:
    """`helm template` of charts/gantry with `values` (hooks included)."""
    from tests.chart.chart_testkit import documents, helm_binary, run_helm, write_values

    helm = helm_binary()
    if helm is None:
        pytest.fail("helm is not installed: `make tools` puts it in .tools/bin")
    path = write_values(tmp / f"{release}-{uuid.uuid4().hex[:6]}.yaml", values)
    result = run_helm(
        helm, "template", release, "charts/gantry", "--namespace", namespace, "--values", str(path)
    )
    assert result.returncode == 0, result.stderr
    return documents(result.stdout)


def apply_as_admin(api: ApiClient, docs: list[dict[str, Any]]) -> None:
    """Create each document (one that exists is replaced by a fresh create after delete)."""
    from kubernetes import dynamic

    client = dynamic.DynamicClient(api)  # type: ignore[no-untyped-call]
    for doc in docs:
        resource = client.resources.get(api_version=doc["apiVersion"], kind=doc["kind"])
        namespace = doc["metadata"].get("namespace")
        if namespace:
            from kubernetes import client as k8s

            create_ignoring_conflict(
                k8s.CoreV1Api(api).create_namespace, {"metadata": {"name": namespace}}
            )
        existing = None
        try:
            existing = resource.get(name=doc["metadata"]["name"], namespace=namespace)
        except Exception:
            existing = None
        if existing is not None:
            body = {**doc, "metadata": {**doc["metadata"]}}
            body["metadata"]["resourceVersion"] = existing.metadata.resourceVersion
            resource.replace(body=body, namespace=namespace)
        else:
            resource.create(body=doc, namespace=namespace)


def token_kubeconfig(
    admin_api: ApiClient, cp: ThreadedControlPlane, tmp: Path, namespace: str, account: str
) -> Path:
    token = mint_token(admin_api, namespace, account, TOKEN_SECONDS)
    return write_token_kubeconfig(
        tmp / f"{namespace}-{account}.kubeconfig",
        cp.url,
        cp.control_plane.pki.ca.cert,
        f"system:serviceaccount:{namespace}:{account}",
        token,
    )


def refusal(call: Callable[[], object]) -> tuple[int, str]:
    """(HTTP status, message) of a call the API server must refuse."""
    from kubernetes.client.exceptions import ApiException

    try:
        call()
    except ApiException as err:
        return int(err.status or 0), str(err.body or "")
    pytest.fail("the API server accepted what it must refuse")


def labelled_job(name: str, pod_spec: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": "batch/v1",
        "kind": "Job",
        "metadata": {"name": name, "labels": dict(GANTRY_LABELS)},
        "spec": {"template": {"spec": {"restartPolicy": "Never", **pod_spec}}},
    }


def busybox(**security: Any) -> dict[str, Any]:
    container: dict[str, Any] = {"name": "c", "image": "busybox", "command": ["true"]}
    if security:
        container["securityContext"] = security
    return container
