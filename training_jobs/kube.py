"""Just enough Kubernetes API client to merge-patch a status, on the standard library.

The training image stays lean (no ``kubernetes`` package); in-cluster discovery follows
the standard service-account conventions: https to KUBERNETES_SERVICE_HOST/PORT, the server
verified with the service account's ``ca.crt``. The bearer token is read per request
(kubelet rotates it) and never logged.
"""

from __future__ import annotations

import contextlib
import json
import os
import ssl
import urllib.error
import urllib.request
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["ApiError", "ApiTarget", "discover_api", "merge_patch"]

SERVICEACCOUNT_DIR = "/var/run/secrets/kubernetes.io/serviceaccount"


class ApiError(RuntimeError):
    """The API could not be reached or refused the request (message carries no credentials)."""


@dataclass(frozen=True)
class ApiTarget:
    base_url: str
    token_file: Path | None = None
    ca_file: Path | None = None
    namespace: str | None = None
    """The pod's own namespace from the service account, used when none is given."""


def discover_api(env: Mapping[str, str] | None = None) -> ApiTarget | None:
    """The in-cluster API endpoint, or None outside a cluster.

    In a pod (``KUBERNETES_SERVICE_HOST`` set) that is always
    ``https://KUBERNETES_SERVICE_HOST:KUBERNETES_SERVICE_PORT``. Outside a cluster,
    ``GANTRY_API_URL`` names an API server to report to (a local run, tests).
    ``GANTRY_SERVICEACCOUNT_DIR`` overrides the service-account mount.
    """
    env = os.environ if env is None else env
    sa_dir = Path(env.get("GANTRY_SERVICEACCOUNT_DIR") or SERVICEACCOUNT_DIR)
    host = env.get("KUBERNETES_SERVICE_HOST")
    if host:
        port = env.get("KUBERNETES_SERVICE_PORT") or "443"
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        url = f"https://{host}:{port}"
    else:
        url = env.get("GANTRY_API_URL", "").rstrip("/")
        if not url:
            return None
    token = sa_dir / "token"
    ca = sa_dir / "ca.crt"
    ns_file = sa_dir / "namespace"
    namespace = None
    with contextlib.suppress(OSError):
        namespace = ns_file.read_text().strip() or None
    return ApiTarget(
        base_url=url,
        token_file=token if token.is_file() else None,
        ca_file=ca if ca.is_file() else None,
        namespace=namespace,
    )


def _opener(target: ApiTarget) -> urllib.request.OpenerDirector:
    # No proxies: the API server is reached directly, as client-go does for in-cluster config.
    handlers: list[urllib.request.BaseHandler] = [urllib.request.ProxyHandler({})]
    if target.base_url.startswith("https://"):
        context = ssl.create_default_context(cafile=str(target.ca_file) if target.ca_file else None)
        handlers.append(urllib.request.HTTPSHandler(context=context))
    return urllib.request.build_opener(*handlers)


def merge_patch(target: ApiTarget, path: str, body: Mapping[str, Any], timeout: float) -> None:
    """``PATCH`` ``path`` with a JSON merge patch; raises ``ApiError`` on any failure."""
    url = target.base_url + path
    headers = {"Content-Type": "application/merge-patch+json", "Accept": "application/json"}
    if target.token_file is not None:
        try:
            token = target.token_file.read_text().strip()
        except OSError as exc:
            raise ApiError(f"cannot read the service-account token file: {exc.strerror}") from None
        if token:
            headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(
        url, data=json.dumps(body).encode(), method="PATCH", headers=headers
    )
    try:
        with _opener(target).open(request, timeout=timeout) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        detail = _error_detail(exc)
        raise ApiError(f"PATCH {url} answered HTTP {exc.code} {exc.reason}{detail}") from None
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        raise ApiError(f"PATCH {url} failed: {reason}") from None


def _error_detail(exc: urllib.error.HTTPError) -> str:
    """The API's own ``message`` (a Status object), shortened; empty if there is none."""
    try:
        status = json.loads(exc.read(4096) or b"{}")
    except (ValueError, OSError):
        return ""
    message = status.get("message") if isinstance(status, dict) else None
    return f": {str(message)[:200]}" if message else ""
