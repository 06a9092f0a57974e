"""How the operator logs in: in a pod as its ServiceAccount over verified TLS, else KUBECONFIG."""

from __future__ import annotations

from pathlib import Path

import pytest
from kubernetes.config import ConfigException

from gantry.controller.connection import _connection_info, environment_configuration

TOKEN = "eyJhbGciOiJSUzI1NiJ9.projected"
IN_POD = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}


@pytest.fixture
def serviceaccount(tmp_path: Path) -> Path:
    """The files the kubelet projects into /var/run/secrets/kubernetes.io/serviceaccount."""
    directory = tmp_path / "serviceaccount"
    directory.mkdir()
    (directory / "token").write_text(TOKEN)
    (directory / "ca.crt").write_text("-----BEGIN CERTIFICATE-----\n")
    (directory / "namespace").write_text("gantry-system")
    return directory


@pytest.fixture
def admin_kubeconfig(tmp_path: Path) -> Path:
    path = tmp_path / "admin.kubeconfig"
    path.write_text(
        """
apiVersion: v1
kind: Config
clusters: [{name: c, cluster: {server: "http://127.0.0.1:8080"}}]
users: [{name: admin, user: {token: admin-token}}]
contexts: [{name: x, context: {cluster: c, user: admin}}]
current-context: x
"""
    )
    return path


def test_in_a_pod_the_operator_is_its_service_account_over_verified_https(
    serviceaccount: Path, admin_kubeconfig: Path
) -> None:
    # A KUBECONFIG leaking into the pod's environment must not turn the operator into admin.
    env = {**IN_POD, "KUBECONFIG": str(admin_kubeconfig), "GANTRY_API_URL": "http://127.0.0.1:1"}
    configuration = environment_configuration(env, serviceaccount)
    assert configuration.host == "https://127.0.0.1:6443"
    assert configuration.verify_ssl is True
    assert configuration.ssl_ca_cert == str(serviceaccount / "ca.crt")
    info = _connection_info(configuration)
    assert info.server == "https://127.0.0.1:6443"
    assert info.token == TOKEN
    assert info.insecure is False and info.ca_path == str(serviceaccount / "ca.crt")
    assert info.certificate_path is None and info.private_key_path is None


def test_in_a_pod_without_the_service_account_ca_there_is_no_connection(
    serviceaccount: Path,
) -> None:
    (serviceaccount / "ca.crt").unlink()
    with pytest.raises(ConfigException, match="certification file does not exist"):
        environment_configuration(IN_POD, serviceaccount)


def test_outside_a_pod_kubeconfig_decides(admin_kubeconfig: Path, tmp_path: Path) -> None:
    no_account = tmp_path / "no-serviceaccount"
    for env in (
        {"KUBECONFIG": str(admin_kubeconfig)},
        {**IN_POD, "KUBECONFIG": str(admin_kubeconfig)},
    ):
        # KUBERNETES_SERVICE_HOST alone (no mounted token) is not a pod: a laptop inside a
        # cluster's network, say.
        info = _connection_info(environment_configuration(env, no_account))
        assert info.server == "http://127.0.0.1:8080"
        assert info.token == "admin-token"
