"""Where the operator connects: one target per process, shared by kopf and `KubeClient`.

Unset, the environment decides (KUBECONFIG, else the in-cluster service account). Tests
point a whole in-process operator at an emulated API server with `set_target(url)`.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import Any

import kopf
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config

from gantry.k8s.client import KubeClient

_lock = threading.Lock()
_target: str | None = None
_client: KubeClient | None = None


def set_target(target: str | None) -> None:
    """Use an API URL (http[s]://…) or a kubeconfig path; None returns to the environment."""
    global _target, _client
    with _lock:
        _target = target
        _client = None


def _is_url(target: str) -> bool:
    return target.startswith(("http://", "https://"))


def _kubeconfig_configuration(path: str) -> k8s_client.Configuration:
    if not Path(path).is_file():
        raise FileNotFoundError(f"kubeconfig {path} does not exist")
    configuration = k8s_client.Configuration()
    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=path, client_configuration=configuration
    )
    return configuration


def kube_client() -> KubeClient:
    """The process-wide client for the current target (thread-safe; built once)."""
    global _client
    with _lock:
        if _client is None:
            if _target is None:
                _client = KubeClient()
            elif _is_url(_target):
                _client = KubeClient.for_url(_target)
            else:
                _client = KubeClient(k8s_client.ApiClient(_kubeconfig_configuration(_target)))
        return _client


def _connection_info(configuration: k8s_client.Configuration) -> kopf.ConnectionInfo:
    token = None
    api_key: dict[str, Any] = dict(configuration.api_key or {})
    for key in ("authorization", "BearerToken"):
        value = api_key.get(key)
        if value:
            token = str(value).removeprefix("Bearer ").strip()
            break
    return kopf.ConnectionInfo(
        server=str(configuration.host),
        ca_path=configuration.ssl_ca_cert or None,
        insecure=not configuration.verify_ssl,
        certificate_path=configuration.cert_file or None,
        private_key_path=configuration.key_file or None,
        token=token,
    )


@kopf.on.login()
def login(
    *, logger: logging.Logger | logging.LoggerAdapter[Any], **kwargs: Any
) -> kopf.ConnectionInfo | None:
    """kopf's credentials: the explicit target, else KUBECONFIG or in-cluster."""
    target = _target
    if target is not None and _is_url(target):
        return kopf.ConnectionInfo(server=target.rstrip("/"), insecure=True)
    if target is not None:
        return _connection_info(_kubeconfig_configuration(target))
    kubeconfig = os.environ.get("KUBECONFIG")
    if kubeconfig and not os.environ.get("KUBERNETES_SERVICE_HOST"):
        return _connection_info(_kubeconfig_configuration(kubeconfig))
    info: kopf.ConnectionInfo | None = kopf.login_via_client(logger=logger, **kwargs)
    return info
