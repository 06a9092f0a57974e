"""A small asyncio client for the Kubernetes REST API.

The node agent talks to kube-apiserver over HTTPS with a client certificate, as a kubelet
does. aiohttp is used directly (instead of the synchronous `kubernetes` client) so that
one event loop can drive every watch and pod without a thread per request.
"""

from __future__ import annotations

import base64
import json
import ssl
import tempfile
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import aiohttp
import yaml

Obj = dict[str, Any]


class APIError(Exception):
    """A non-2xx answer from the API server, with the Status it sent."""

    def __init__(self, status: int, body: Any) -> None:
        self.status = status
        self.body = body
        message = body.get("message") if isinstance(body, dict) else body
        super().__init__(f"HTTP {status}: {message}")


class WatchExpired(Exception):
    """The watch's resourceVersion is older than the server keeps (410 Gone): relist."""


@dataclass(frozen=True)
class Resource:
    """Where a kind lives in the REST API."""

    group_version: str  # "v1" or "apps/v1"
    plural: str
    namespaced: bool = True

    def path(self, namespace: str | None = None, name: str | None = None, sub: str = "") -> str:
        prefix = "/api/v1" if self.group_version == "v1" else f"/apis/{self.group_version}"
        parts = [prefix]
        if self.namespaced and namespace is not None:
            parts.append(f"namespaces/{namespace}")
        parts.append(self.plural)
        if name is not None:
            parts.append(name)
            if sub:
                parts.append(sub)
        return "/".join(parts)


PODS = Resource("v1", "pods")
SERVICES = Resource("v1", "services")
NODES = Resource("v1", "nodes", namespaced=False)
CONFIGMAPS = Resource("v1", "configmaps")
SECRETS = Resource("v1", "secrets")
PVCS = Resource("v1", "persistentvolumeclaims")
ENDPOINTS = Resource("v1", "endpoints")
EVENTS = Resource("v1", "events")
ENDPOINTSLICES = Resource("discovery.k8s.io/v1", "endpointslices")
PVS = Resource("v1", "persistentvolumes", namespaced=False)
SERVICEACCOUNTS = Resource("v1", "serviceaccounts")
LEASES = Resource("coordination.k8s.io/v1", "leases")
STORAGECLASSES = Resource("storage.k8s.io/v1", "storageclasses", namespaced=False)


def _current(config: dict[str, Any], path: Path) -> tuple[dict[str, Any], dict[str, Any]]:
    """(cluster, user) of the kubeconfig's current context."""
    current = config.get("current-context")
    contexts = {c["name"]: c.get("context", {}) for c in config.get("contexts") or []}
    clusters = {c["name"]: c.get("cluster", {}) for c in config.get("clusters") or []}
    users = {u["name"]: u.get("user", {}) for u in config.get("users") or []}
    if current in contexts:
        context = contexts[current]
        return clusters.get(context.get("cluster", ""), {}), users.get(context.get("user", ""), {})
    if clusters:
        return next(iter(clusters.values())), next(iter(users.values()), {})
    raise ValueError(f"kubeconfig {path} names no cluster")


def _pem_file(entry: dict[str, Any], key: str, directory: Path, name: str) -> str | None:
    """A kubeconfig's `<key>-data` written to a private file, or its `<key>` path."""
    data = entry.get(f"{key}-data")
    if data:
        target = directory / name
        target.write_bytes(base64.b64decode(data))
        target.chmod(0o600)
        return str(target)
    value = entry.get(key)
    return str(value) if value else None


def ssl_context_from_kubeconfig(path: Path) -> ssl.SSLContext | None:
    """TLS settings (CA, client certificate) of the kubeconfig's current context."""
    config = _load(path)
    cluster, user = _current(config, path)
    if not str(cluster.get("server", "")).startswith("https://"):
        return None
    with tempfile.TemporaryDirectory(prefix="gantry-kubeconfig-") as tmp:
        directory = Path(tmp)
        ca = _pem_file(cluster, "certificate-authority", directory, "ca.crt")
        cert = _pem_file(user, "client-certificate", directory, "client.crt")
        key = _pem_file(user, "client-key", directory, "client.key")
        context = ssl.create_default_context(cafile=ca)
        if cluster.get("insecure-skip-tls-verify"):
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        if cert and key:
            context.load_cert_chain(cert, key)
    return context


def _load(path: Path) -> dict[str, Any]:
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read kubeconfig {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"kubeconfig {path} is not a mapping")
    return config


def server_from_kubeconfig(path: Path) -> str:
    """The server URL of the kubeconfig's current context."""
    cluster, _ = _current(_load(path), path)
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise ValueError(f"kubeconfig {path}: the cluster has no server URL")
    return server.rstrip("/")


class APIClient:
    """JSON over HTTPS against one API server; the session is created lazily."""

    def __init__(self, server: str, tls: ssl.SSLContext | None = None) -> None:
        self.server = server.rstrip("/")
        self.tls = tls
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            # A straggler after shutdown would otherwise open a session nobody closes.
            raise APIError(0, {"reason": "ClientClosed", "message": "the API client is closed"})
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10),
                connector=aiohttp.TCPConnector(ssl=self.tls if self.tls is not None else True),
            )
        return self._session

    @classmethod
    def from_kubeconfig(cls, path: Path) -> APIClient:
        return cls(server_from_kubeconfig(path), ssl_context_from_kubeconfig(path))

    async def close(self) -> None:
        self._closed = True
        if self._session is not None:
            await self._session.close()

    async def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = "application/json",
    ) -> Obj:
        session = await self._http()
        url = self.server + path + (("?" + urlencode(params)) if params else "")
        data = None if body is None else json.dumps(body)
        headers = {"Content-Type": content_type, "Accept": "application/json"}
        async with session.request(
            method, url, data=data, headers=headers, timeout=aiohttp.ClientTimeout(total=30)
        ) as resp:
            text = await resp.text()
            try:
                payload: Any = json.loads(text) if text else {}
            except json.JSONDecodeError:
                payload = text
            if resp.status >= 300:
                raise APIError(resp.status, payload)
            return payload if isinstance(payload, dict) else {}

    async def get(self, res: Resource, ns: str | None, name: str) -> Obj:
        return await self.request("GET", res.path(ns, name))

    async def list(self, res: Resource, ns: str | None = None, field_selector: str = "") -> Obj:
        params = {"fieldSelector": field_selector} if field_selector else None
        return await self.request("GET", res.path(ns), params=params)

    async def create(self, res: Resource, ns: str | None, body: Obj, sub: str = "") -> Obj:
        path = res.path(ns) + (f"/{sub}" if sub else "")
        return await self.request("POST", path, body)

    async def patch(
        self, res: Resource, ns: str | None, name: str, patch: Obj, sub: str = ""
    ) -> Obj:
        return await self.request(
            "PATCH", res.path(ns, name, sub), patch, content_type="application/merge-patch+json"
        )

    async def apply(
        self, res: Resource, ns: str | None, name: str, body: Obj, manager: str, sub: str = ""
    ) -> Obj:
        """Server-side apply of `body` (the fields `manager` owns), forcing conflicts."""
        return await self.request(
            "PATCH",
            res.path(ns, name, sub),
            body,
            params={"fieldManager": manager, "force": "true"},
            content_type="application/apply-patch+yaml",
        )

    async def request_token(
        self, ns: str, service_account: str, audiences: Sequence[str], seconds: int, pod: Obj
    ) -> Obj:
        """A TokenRequest bound to `pod`: what a projected serviceAccountToken volume holds."""
        meta = pod["metadata"]
        body = {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": list(audiences),
                "expirationSeconds": seconds,
                "boundObjectRef": {
                    "apiVersion": "v1",
                    "kind": "Pod",
                    "name": meta["name"],
                    "uid": meta["uid"],
                },
            },
        }
        return await self.create(SERVICEACCOUNTS, ns, body, sub=f"{service_account}/token")

    async def replace(
        self, res: Resource, ns: str | None, name: str, body: Obj, sub: str = ""
    ) -> Obj:
        return await self.request("PUT", res.path(ns, name, sub), body)

    async def delete(
        self,
        res: Resource,
        ns: str | None,
        name: str,
        grace: int | None = None,
        propagation: str | None = None,
        uid: str | None = None,
    ) -> Obj:
        body: Obj = {"kind": "DeleteOptions", "apiVersion": "v1"}
        if grace is not None:
            body["gracePeriodSeconds"] = grace
        if propagation is not None:
            body["propagationPolicy"] = propagation
        if uid is not None:
            body["preconditions"] = {"uid": uid}
        return await self.request("DELETE", res.path(ns, name), body)

    async def watch(
        self, res: Resource, resource_version: str, field_selector: str = ""
    ) -> AsyncIterator[Obj]:
        """Yield watch events after `resource_version`; raise WatchExpired on 410."""
        session = await self._http()
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "300",
        }
        if field_selector:
            params["fieldSelector"] = field_selector
        url = self.server + res.path() + "?" + urlencode(params)
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=None)) as resp:
            if resp.status == 410:
                raise WatchExpired(res.plural)
            if resp.status >= 300:
                raise APIError(resp.status, await resp.text())
            async for raw in resp.content:
                line = raw.strip()
                if not line:
                    continue
                event = json.loads(line)
                if event.get("type") == "ERROR":
                    status = event.get("object") or {}
                    if status.get("code") == 410:
                        raise WatchExpired(res.plural)
                    raise APIError(int(status.get("code") or 500), status)
                yield event
