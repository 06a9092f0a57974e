"""Where the operator connects: one target per process, shared by kopf and `KubeClient`.

Unset, the environment decides, the same way for both (`environment_configuration`): in a
pod, the pod's ServiceAccount over https, the server verified with the ServiceAccount's
CA; elsewhere KUBECONFIG or ~/.kube/config. Tests point a whole in-process operator at
another API server with `set_target(kubeconfig)`.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import kopf
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.config.incluster_config import InClusterConfigLoader

from gantry.k8s.client import KubeClient, RetryPolicy

SERVICEACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")

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


def environment_configuration(
    env: Mapping[str, str] | None = None, serviceaccount_dir: Path = SERVICEACCOUNT_DIR
) -> k8s_client.Configuration:
    """How the operator logs in when no target is set.

    In a pod (KUBERNETES_SERVICE_HOST set, a ServiceAccount token mounted):
    https://KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT with the projected token, re-read
    as the kubelet rotates it, and the server verified with the ServiceAccount's ca.crt (a
    missing CA is an error, never an unverified connection). KUBECONFIG does not override
    that, so an operator pod always acts as its own ServiceAccount. Elsewhere: KUBECONFIG,
    else ~/.kube/config.
    """
    env = os.environ if env is None else env
    configuration = k8s_client.Configuration()
    token = serviceaccount_dir / "token"
    if env.get("KUBERNETES_SERVICE_HOST") and token.is_file():
        InClusterConfigLoader(  # type: ignore[no-untyped-call]
            token_filename=str(token),
            cert_filename=str(serviceaccount_dir / "ca.crt"),
            environ=env,
        ).load_and_set(configuration)
        return configuration
    k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
        config_file=env.get("KUBECONFIG"), client_configuration=configuration
    )
    return configuration


def kube_client() -> KubeClient:
    """The process-wide client for the current target (thread-safe; built once)."""
    global _client
    from gantry.controller.settings import operator_config

    with _lock:
        if _client is None:
            if _target is None:
                configuration = environment_configuration()
            elif _is_url(_target):
                configuration = k8s_client.Configuration(host=_target.rstrip("/"))
                configuration.verify_ssl = False
            else:
                configuration = _kubeconfig_configuration(_target)
            # Enough connections for every reconcile thread to have one of its own.
            configuration.connection_pool_maxsize = operator_config().reconcile_workers + 4
            retry = RetryPolicy(read_timeout=operator_config().api_timeout_seconds)
            _client = KubeClient(k8s_client.ApiClient(configuration), retry=retry)
        return _client


def _connection_info(configuration: k8s_client.Configuration) -> kopf.ConnectionInfo:
    token = None
    api_key: dict[str, Any] = dict(configuration.api_key or {})
    for key in ("BearerToken", "authorization"):
        value = str(api_key.get(key) or "").strip()
        if value:
            # "Bearer <token>" from a kubeconfig, "bearer <token>" from the in-cluster loader
            scheme, _, rest = value.partition(" ")
            token = rest.strip() if rest and scheme.lower() == "bearer" else value
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
def login(**_: Any) -> kopf.ConnectionInfo:
    """kopf's credentials, read afresh on each (re-)login: the target, else the environment.

    kopf logs in again when the API answers 401, which picks up a rotated token.
    """
    target = _target
    if target is not None and _is_url(target):
        return kopf.ConnectionInfo(server=target.rstrip("/"), insecure=True)
    if target is not None:
        return _connection_info(_kubeconfig_configuration(target))
    return _connection_info(environment_configuration())
