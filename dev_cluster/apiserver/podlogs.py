"""``GET pods/<name>/log``: container output from the files the node agent writes.

Supports ``container``, ``previous``, ``tailLines``, ``limitBytes`` and ``follow`` (the
stream ends when the container terminates or restarts, the pod goes, or the client
disconnects). The file layout is defined in :mod:`.logs`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from aiohttp import web

from . import errors, logs
from .engine import Engine
from .resources import ResourceInfo

JSON = dict[str, Any]
FOLLOW_POLL_S = 0.2


def default_container(pod: JSON) -> str:
    """The container kubectl means when it names none, or a 400 listing the choices."""
    containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    annotated = annotations.get("kubectl.kubernetes.io/default-container")
    if annotated:
        return str(annotated)
    if len(containers) == 1:
        return str(containers[0])
    raise errors.bad_request(
        f"a container name must be specified for pod {pod['metadata']['name']}, choose one "
        f"of: [{' '.join(str(c) for c in containers)}]"
    )


def restart_count(pod: JSON, container: str) -> int:
    """The container's current restart count (which log file is current)."""
    spec = pod.get("spec") or {}
    names = [
        c.get("name")
        for c in [*(spec.get("initContainers") or []), *(spec.get("containers") or [])]
    ]
    if container not in names:
        raise errors.bad_request(
            f"container {container} is not valid for pod {pod['metadata']['name']}"
        )
    status = pod.get("status") or {}
    for st in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
        if st.get("name") == container:
            return int(st.get("restartCount") or 0)
    return 0


def stopped(pod: JSON, container: str, restarts: int) -> bool:
    """Whether the run being followed is over (terminated, or replaced by a restart)."""
    status = pod.get("status") or {}
    for st in [
        *(status.get("initContainerStatuses") or []),
        *(status.get("containerStatuses") or []),
    ]:
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
        raise errors.bad_request(f"invalid value for {name}: {value!r}") from exc


async def serve(
    request: web.Request,
    engine: Engine,
    info: ResourceInfo,
    namespace: str,
    name: str,
    root: Path,
) -> web.StreamResponse:
    pod = engine.get(info, namespace, name)
    q = request.query
    container = q.get("container") or default_container(pod)
    restarts = restart_count(pod, container)
    if q.get("previous") == "true":
        if restarts == 0:
            raise errors.bad_request(
                f'previous terminated container "{container}" in pod "{name}" not found'
            )
        restarts -= 1
    path = logs.log_path(root, namespace, name, container, restarts)
    if not path.exists():
        raise errors.bad_request(
            f'container "{container}" in pod "{name}" is waiting to start: ContainerCreating'
        )
    raw = path.read_bytes()
    data = logs.tail(raw, _int(request, "tailLines"))
    limit = _int(request, "limitBytes")
    if limit is not None:
        data = data[:limit]
    if q.get("follow") != "true":
        return web.Response(body=data, content_type="text/plain")
    resp = web.StreamResponse(headers={"Content-Type": "text/plain"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    await resp.write(data)
    try:
        await _follow(
            request, resp, engine, info, namespace, name, path, container, restarts, len(raw)
        )
        await resp.write_eof()
    except ConnectionResetError:
        pass  # the client went away
    return resp


async def _follow(
    request: web.Request,
    resp: web.StreamResponse,
    engine: Engine,
    info: ResourceInfo,
    namespace: str,
    name: str,
    path: Path,
    container: str,
    restarts: int,
    offset: int,
) -> None:
    """Send what is appended after ``offset`` (the bytes already read) as it arrives."""
    while request.transport is not None and not request.transport.is_closing():
        pod = engine.store.get(info.group_resource, namespace, name)
        done = pod is None or stopped(pod, container, restarts)
        with path.open("rb") as fh:
            fh.seek(offset)
            chunk = fh.read()
        if chunk:
            offset += len(chunk)
            await resp.write(chunk)
        if done:
            return  # read once more after the stop was seen, so no output is lost
        if not chunk:
            await asyncio.sleep(FOLLOW_POLL_S)
