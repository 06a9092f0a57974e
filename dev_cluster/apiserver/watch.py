"""Watch streams: newline-delimited JSON events in resourceVersion order.

Semantics of ``resourceVersion``: unset or ``"0"`` first sends the current objects as
ADDED; a specific version replays every later change still in history; an older one
gets a single ERROR event carrying a 410 Expired Status, as the real server does.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Callable, Mapping
from typing import Any

from aiohttp import web

from .engine import Engine, view
from .errors import APIError
from .resources import ResourceInfo
from .store import Change

JSON = dict[str, Any]
Matcher = Callable[[Mapping[str, Any]], bool]
INITIAL_EVENTS_END = "k8s.io/initial-events-end"


def _event(kind: str, obj: JSON) -> bytes:
    return json.dumps({"type": kind, "object": obj}, separators=(",", ":")).encode() + b"\n"


def _bookmark(info: ResourceInfo, rv: int, initial_end: bool = False) -> bytes:
    meta: JSON = {"resourceVersion": str(rv)}
    if initial_end:
        meta["annotations"] = {INITIAL_EVENTS_END: "true"}
    return _event("BOOKMARK", {"kind": info.kind, "apiVersion": info.api_version, "metadata": meta})


def _encode(
    change: Change, kind: str, info: ResourceInfo, render: Callable[[JSON], JSON] | None
) -> bytes:
    """One event line; plain events are encoded once and shared by every watcher."""
    if render is not None:
        return _event(kind, render(view(info, change.obj)))
    key = (kind, info.api_version)
    cached = change.encoded.get(key)
    if cached is None:
        cached = change.encoded[key] = _event(kind, view(info, change.obj))
    return cached


def _as_seen(change: Change, match: Matcher) -> str | None:
    """The event type a filtered watcher sees: objects leaving the filter are DELETED."""
    if change.type != "MODIFIED":
        return change.type
    now_in = match(change.obj)
    was_in = change.prev is not None and match(change.prev)
    if now_in and was_in:
        return "MODIFIED"
    if now_in:
        return "ADDED"
    return "DELETED" if was_in else None


async def stream(
    request: web.Request,
    engine: Engine,
    info: ResourceInfo,
    namespace: str | None,
    match: Matcher,
    bookmark_interval: float,
    render: Callable[[JSON], JSON] | None = None,
) -> web.StreamResponse:
    """Serve one watch until ``timeoutSeconds``, server shutdown or client disconnect.

    ``render`` turns each object into what is sent (a Table row for kubectl ``get -w``).
    """
    shown = render or (lambda o: o)
    q = request.query
    rv_param = q.get("resourceVersion", "")
    send_initial = q.get("sendInitialEvents") == "true" or rv_param in ("", "0")
    bookmarks = q.get("allowWatchBookmarks") == "true"
    timeout = float(q["timeoutSeconds"]) if q.get("timeoutSeconds") else None
    resp = web.StreamResponse(headers={"Content-Type": "application/json"})
    resp.enable_chunked_encoding()
    await resp.prepare(request)
    store = engine.store
    initial: list[JSON] = []
    try:
        since = None if send_initial else int(rv_param)
    except ValueError:
        since = None
    try:
        if since is None:
            initial = [
                view(info, o) for o in store.list(info.group_resource, namespace) if match(o)
            ]
        watcher = store.watch(info.group_resource, namespace, match, since)
    except APIError as exc:
        await resp.write(_event("ERROR", exc.status()))
        await resp.write_eof()
        return resp
    start_rv = store.rv
    deadline = None if timeout is None else time.monotonic() + timeout
    try:
        for obj in initial:
            await resp.write(_event("ADDED", shown(obj)))
        if q.get("sendInitialEvents") == "true" and bookmarks:
            await resp.write(_bookmark(info, start_rv, initial_end=True))
        last_sent = start_rv
        next_bookmark = time.monotonic() + bookmark_interval
        while True:
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if request.transport is None or request.transport.is_closing():
                break
            wait = min(1.0, next_bookmark - now)
            if deadline is not None:
                wait = min(wait, deadline - now)
            batch: list[Change | None] = []
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(max(wait, 0.0)):
                    batch.append(await watcher.queue.get())
            # Under load, send every queued event in one write instead of one each.
            while (
                batch and batch[-1] is not None and not watcher.queue.empty() and len(batch) < 1000
            ):
                batch.append(watcher.queue.get_nowait())
            chunks = []
            for change in batch:
                if change is None:
                    break
                kind = _as_seen(change, match)
                if kind is not None:
                    chunks.append(_encode(change, kind, info, render))
                    last_sent = change.rv
            if chunks:
                await resp.write(b"".join(chunks))
            if batch and batch[-1] is None:
                break
            if time.monotonic() >= next_bookmark:
                if bookmarks:
                    rv = store.rv if watcher.queue.empty() else last_sent
                    await resp.write(_bookmark(info, rv))
                next_bookmark = time.monotonic() + bookmark_interval
    except ConnectionResetError:
        return resp  # the client went away
    finally:
        store.unwatch(watcher)
    with contextlib.suppress(ConnectionResetError):
        await resp.write_eof()
    return resp
