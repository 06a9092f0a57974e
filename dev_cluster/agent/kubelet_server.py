"""The kubelet API (HTTPS on 127.0.0.1): what kube-apiserver proxies `pods/log` to.

`kubectl logs` → kube-apiserver `GET pods/<name>/log` → this server's
`/containerLogs/<ns>/<pod>/<container>?follow=&previous=&tailLines=&limitBytes=`.
Only the API server's kubelet-client certificate is accepted (the real kubelet asks the
API server to authorize each caller; here the API server is the only caller).
`exec`, `attach` and `portforward` are not offered: containers are host processes.

Log files: `<logs root>/<namespace>/<pod>/<container>/<restartCount>.log`, written by the
container runner; `previous=true` reads `restartCount - 1`.
"""

from __future__ import annotations

import asyncio
import ssl
from collections import deque
from pathlib import Path
from typing import Any

from aiohttp import web

from .informer import Informer

Obj = dict[str, Any]
FOLLOW_POLL_S = 0.2
APISERVER_CLIENT = "kube-apiserver-kubelet-client"


def log_path(root: Path, namespace: str, pod: str, container: str, restart: int) -> Path:
    """The file holding one run (the `restart`-th restart) of one container."""
    return Path(root) / namespace / pod / container / f"{int(restart)}.log"


def tail(data: bytes, lines: int | None) -> bytes:
    """The last `lines` lines of `data` (all of it when `lines` is None)."""
    if lines is None:
        return data
    if lines <= 0:
        return b""
    kept: deque[bytes] = deque(data.splitlines(keepends=True), maxlen=lines)
    return b"".join(kept)


def _statuses(pod: Obj) -> list[Obj]:
    status = pod.get("status") or {}
    return [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]


def restart_count(pod: Obj, container: str) -> int:
    for st in _statuses(pod):
        if st.get("name") == container:
            return int(st.get("restartCount") or 0)
    return 0


def run_is_over(pod: Obj | None, container: str, restarts: int) -> bool:
    """Whether the run being followed ended (terminated, restarted, or the pod is gone)."""
    if pod is None:
        return True
    for st in _statuses(pod):
        if st.get("name") == container:
            return (
                "terminated" in (st.get("state") or {})
                or int(st.get("restartCount") or 0) != restarts
            )
    return False


def _int(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if not value:
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise web.HTTPBadRequest(text=f"invalid value for {name}: {value!r}") from exc


class KubeletServer:
    def __init__(
        self, pods: Informer, logs_root: Path, tls: ssl.SSLContext | None, port: int = 0
    ) -> None:
        self.pods = pods
        self.logs_root = logs_root
        self.tls = tls
        self.port = port
        self._runner: web.AppRunner | None = None

    def app(self) -> web.Application:
        app = web.Application(middlewares=[self._authenticate])
        app.router.add_get("/healthz", self._healthz)
        app.router.add_get("/containerLogs/{ns}/{pod}/{container}", self._logs)
        return app

    async def start(self) -> None:
        self._runner = web.AppRunner(self.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", self.port, ssl_context=self.tls)
        await site.start()
        sockets = getattr(site._server, "sockets", None) or []
        if sockets:
            self.port = int(sockets[0].getsockname()[1])

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    @web.middleware
    async def _authenticate(self, request: web.Request, handler: Any) -> web.StreamResponse:
        if self.tls is not None:
            peer = request.transport.get_extra_info("peercert") if request.transport else None
            subject = dict(x[0] for x in (peer or {}).get("subject", ()))
            if subject.get("commonName") != APISERVER_CLIENT:
                raise web.HTTPForbidden(text="only the API server may call the kubelet API")
        response: web.StreamResponse = await handler(request)
        return response

    async def _healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def _logs(self, request: web.Request) -> web.StreamResponse:
        ns, name, container = (request.match_info[k] for k in ("ns", "pod", "container"))
        pod = self.pods.get(ns, name)
        if pod is None:
            raise web.HTTPNotFound(text=f'pod "{name}" not found on this node')
        restarts = restart_count(pod, container)
        if request.query.get("previous") == "true":
            if restarts == 0:
                raise web.HTTPBadRequest(
                    text=f'previous terminated container "{container}" in pod "{name}" not found'
                )
            restarts -= 1
        path = log_path(self.logs_root, ns, name, container, restarts)
        if not path.exists():
            raise web.HTTPBadRequest(
                text=f'container "{container}" in pod "{name}" is waiting to start'
            )
        raw = path.read_bytes()
        data = tail(raw, _int(request, "tailLines"))
        limit = _int(request, "limitBytes")
        if limit is not None:
            data = data[:limit]
        if request.query.get("follow") != "true":
            return web.Response(body=data, content_type="text/plain")
        resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
        resp.enable_chunked_encoding()
        await resp.prepare(request)
        await resp.write(data)
        offset = len(raw)
        try:
            while request.transport is not None and not request.transport.is_closing():
                done = run_is_over(self.pods.get(ns, name), container, restarts)
                with path.open("rb") as fh:
                    fh.seek(offset)
                    chunk = fh.read()
                if chunk:
                    offset += len(chunk)
                    await resp.write(chunk)
                if done:
                    break  # read once more after the end was seen, so no output is lost
                if not chunk:
                    await asyncio.sleep(FOLLOW_POLL_S)
            await resp.write_eof()
        except ConnectionResetError:
            pass  # the client went away
        return resp
