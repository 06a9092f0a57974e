"""A small asyncio client for the Kubernetes REST API.

The agent talks to the API only over HTTP, exactly as a kubelet or controller-manager
would, so the operator sees the same objects and events as on a real cluster. aiohttp is
used directly (instead of the synchronous `kubernetes` client) so that one event loop can
drive every watch and pod without a thread per request.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
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
JOBS = Resource("batch/v1", "jobs")
DEPLOYMENTS = Resource("apps/v1", "deployments")
REPLICASETS = Resource("apps/v1", "replicasets")
PDBS = Resource("policy/v1", "poddisruptionbudgets")


def server_from_kubeconfig(path: Path) -> str:
    """The server URL of the kubeconfig's current context."""
    try:
        config = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as exc:
        raise ValueError(f"cannot read kubeconfig {path}: {exc}") from exc
    if not isinstance(config, dict):
        raise ValueError(f"kubeconfig {path} is not a mapping")
    current = config.get("current-context")
    contexts = {c["name"]: c.get("context", {}) for c in config.get("contexts") or []}
    clusters = {c["name"]: c.get("cluster", {}) for c in config.get("clusters") or []}
    if current in contexts:
        cluster = clusters.get(contexts[current].get("cluster", ""), {})
    elif clusters:
        cluster = next(iter(clusters.values()))
    else:
        raise ValueError(f"kubeconfig {path} names no cluster")
    server = cluster.get("server")
    if not isinstance(server, str) or not server:
        raise ValueError(f"kubeconfig {path}: the cluster has no server URL")
    return server.rstrip("/")


class APIClient:
    """JSON over HTTP against one API server; the session is created lazily."""

    def __init__(self, server: str) -> None:
        self.server = server.rstrip("/")
        self._session: aiohttp.ClientSession | None = None
        self._closed = False

    async def _http(self) -> aiohttp.ClientSession:
        if self._closed:
            # A straggler after shutdown would otherwise open a session nobody closes.
            raise APIError(0, {"reason": "ClientClosed", "message": "the API client is closed"})
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=None, sock_connect=10)
            )
        return self._session

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

    async def list(self, res: Resource, ns: str | None = None) -> Obj:
        return await self.request("GET", res.path(ns))

    async def create(self, res: Resource, ns: str | None, body: Obj) -> Obj:
        return await self.request("POST", res.path(ns), body)

    async def patch(
        self, res: Resource, ns: str | None, name: str, patch: Obj, sub: str = ""
    ) -> Obj:
        return await self.request(
            "PATCH", res.path(ns, name, sub), patch, content_type="application/merge-patch+json"
        )

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

    async def watch(self, res: Resource, resource_version: str) -> AsyncIterator[Obj]:
        """Yield watch events after `resource_version`; raise WatchExpired on 410."""
        session = await self._http()
        params = {
            "watch": "1",
            "resourceVersion": resource_version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": "300",
        }
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
