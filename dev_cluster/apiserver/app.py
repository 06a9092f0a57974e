"""The aiohttp application: HTTP in, :class:`~.engine.Engine` calls, JSON out.

Request bodies may be JSON or YAML; every error is a ``Status`` object. Bearer tokens
and client certificates are accepted and ignored: RBAC is not enforced.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from aiohttp import web

from . import (
    discovery,
    errors,
    openapi,
    podlogs,
    protobuf,
    routing,
    subresources,
    tables,
    watch,
)
from .engine import DeleteOptions, Engine, WriteOptions
from .errors import APIError
from .routing import Target
from .selectors import object_matcher, parse_field_selector, parse_label_selector

JSON = dict[str, Any]
log = logging.getLogger(__name__)

PATCH_TYPES = {
    "application/merge-patch+json": "merge",
    "application/json-patch+json": "json",
    "application/strategic-merge-patch+json": "strategic",
    "application/apply-patch+yaml": "apply",
    "application/apply-patch+cbor": "apply-cbor",
}


@dataclass
class Settings:
    """Knobs of one server instance."""

    logs_root: Path
    bookmark_interval: float = 30.0


def _dumps(obj: Any) -> str:
    return json.dumps(obj, separators=(",", ":"))


def respond(obj: Any, status: int = 200) -> web.Response:
    return web.Response(text=_dumps(obj), status=status, content_type="application/json")


def error_response(exc: APIError) -> web.Response:
    return respond(exc.status(), exc.code)


async def read_body(request: web.Request) -> Any:
    """JSON or YAML bodies; anything else (protobuf, CBOR) is a 415 so clients fall back."""
    ctype = request.content_type
    raw = await request.read()
    if not raw:
        raise errors.bad_request("the body of the request is empty")
    if "protobuf" in ctype:
        return protobuf.decode(raw, ctype)
    if "cbor" in ctype:
        raise errors.unsupported_media_type(ctype)
    try:
        if "yaml" in ctype:
            return yaml.safe_load(raw)
        return json.loads(raw)
    except (ValueError, yaml.YAMLError) as exc:
        raise errors.bad_request(f"the body of the request could not be decoded: {exc}") from exc


def _write_options(request: web.Request) -> WriteOptions:
    q = request.query
    return WriteOptions(
        dry_run="All" in q.getall("dryRun", []),
        field_manager=q.get("fieldManager"),
        field_validation=q.get("fieldValidation", ""),
    )


def _int_param(request: web.Request, name: str) -> int | None:
    value = request.query.get(name)
    if value in (None, ""):
        return None
    try:
        return int(value)
    except ValueError as exc:
        raise errors.bad_request(f"invalid value for {name}: {value!r}") from exc


def _include(request: web.Request) -> str:
    return request.query.get("includeObject", "Metadata")


class Handlers:
    """Route handlers bound to one engine."""

    def __init__(self, engine: Engine, settings: Settings) -> None:
        self.engine = engine
        self.registry = engine.registry
        self.settings = settings

    # discovery
    async def version(self, request: web.Request) -> web.Response:
        return respond(discovery.VERSION_INFO)

    async def healthz(self, request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def api(self, request: web.Request) -> web.Response:
        host = request.host or "127.0.0.1"
        return respond(discovery.core_versions(host))

    async def apis(self, request: web.Request) -> web.Response:
        return respond(discovery.group_list(self.registry))

    async def openapi_v3(self, request: web.Request) -> web.Response:
        return respond(openapi.root(self.registry))

    async def openapi_v3_gv(self, request: web.Request) -> web.Response:
        parts = request.match_info["path"].split("/")
        if parts[0] == "api" and len(parts) == 2:
            doc = openapi.group_version_doc(self.registry, "", parts[1])
        elif parts[0] == "apis" and len(parts) == 3:
            doc = openapi.group_version_doc(self.registry, parts[1], parts[2])
        else:
            doc = None
        if doc is None:
            return web.Response(status=404, text="404 page not found")
        return respond(doc)

    async def not_found(self, request: web.Request) -> web.Response:
        return web.Response(status=404, text="404 page not found\n")

    # resources
    async def dispatch(self, request: web.Request) -> web.StreamResponse:
        path = request.path
        parts = [p for p in path.split("/") if p]
        if parts and parts[0] == "api" and len(parts) == 2:
            doc = discovery.resource_list(self.registry, "", parts[1])
            return respond(doc) if doc else await self.not_found(request)
        if parts and parts[0] == "apis" and len(parts) in (2, 3):
            doc = (
                discovery.group(self.registry, parts[1])
                if len(parts) == 2
                else discovery.resource_list(self.registry, parts[1], parts[2])
            )
            return respond(doc) if doc else await self.not_found(request)
        try:
            target = routing.parse(self.registry, path)
            return await self._resource(request, target)
        except APIError as exc:
            return error_response(exc)

    async def _resource(self, request: web.Request, t: Target) -> web.StreamResponse:
        method = request.method
        if t.subresource is not None:
            return await self._subresource(request, t)
        if t.name is None:
            if method == "GET":
                return await self._list_or_watch(request, t)
            if method == "POST":
                if t.info.namespaced and t.namespace is None:
                    raise errors.method_not_allowed()
                obj = self.engine.create(
                    t.info, t.namespace or "", await read_body(request), _write_options(request)
                )
                return respond(obj, 201)
            if method == "DELETE":
                match = self._matcher(request, t)
                return respond(
                    self.engine.delete_collection(
                        t.info, t.namespace, match, await self._delete_options(request)
                    )
                )
            raise errors.method_not_allowed()
        ns = t.namespace or ""
        if t.watch and method == "GET":
            return await self._list_or_watch(request, t)
        if method == "GET":
            obj = self.engine.get(t.info, ns, t.name)
            if tables.wants_table(request.headers.get("Accept", "")):
                meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
                return respond(tables.table(t.info, [obj], meta, _include(request)))
            return respond(obj)
        if method == "PUT":
            return respond(
                self.engine.update(
                    t.info, ns, t.name, await read_body(request), _write_options(request)
                )
            )
        if method == "PATCH":
            return await self._patch(request, t, None)
        if method == "DELETE":
            obj = self.engine.delete(t.info, ns, t.name, await self._delete_options(request))
            return respond(obj)
        raise errors.method_not_allowed()

    def _matcher(self, request: web.Request, t: Target) -> watch.Matcher:
        q = request.query
        custom = None
        if not t.info.builtin:
            custom = t.info.selectable_fields
        fields = parse_field_selector(q.get("fieldSelector"), t.info.group, t.info.plural, custom)
        labels = parse_label_selector(q.get("labelSelector"))
        return object_matcher(labels, fields)

    async def _list_or_watch(self, request: web.Request, t: Target) -> web.StreamResponse:
        q = request.query
        match = self._matcher(request, t)
        if t.name is not None:
            name = t.name
            inner = match
            match = lambda o: o["metadata"]["name"] == name and inner(o)  # noqa: E731
        as_table = tables.wants_table(request.headers.get("Accept", ""))
        if t.watch or q.get("watch") in ("true", "1"):
            render = self._table_renderer(request, t) if as_table else None
            return await watch.stream(
                request,
                self.engine,
                t.info,
                t.namespace,
                match,
                self.settings.bookmark_interval,
                render,
            )
        result = self.engine.list(
            t.info, t.namespace, match, _int_param(request, "limit"), q.get("continue")
        )
        if as_table:
            return respond(
                tables.table(t.info, result["items"], result["metadata"], _include(request))
            )
        return respond(result)

    @staticmethod
    def _table_renderer(request: web.Request, t: Target) -> Callable[[JSON], JSON]:
        info, include = t.info, _include(request)

        def render(obj: JSON) -> JSON:
            meta = {"resourceVersion": obj["metadata"].get("resourceVersion", "")}
            return tables.table(info, [obj], meta, include)

        return render

    async def _delete_options(self, request: web.Request) -> DeleteOptions:
        body: JSON = {}
        if request.can_read_body:
            raw = await request.read()
            if raw.strip():
                try:
                    loaded = json.loads(raw)
                except ValueError as exc:
                    raise errors.bad_request(f"invalid DeleteOptions: {exc}") from exc
                body = loaded if isinstance(loaded, dict) else {}
        q = request.query
        propagation = q.get("propagationPolicy") or body.get("propagationPolicy")
        orphan = q.get("orphanDependents") or body.get("orphanDependents")
        if propagation is None and orphan in (True, "true"):
            propagation = "Orphan"
        grace = _int_param(request, "gracePeriodSeconds")
        if grace is None and body.get("gracePeriodSeconds") is not None:
            grace = int(body["gracePeriodSeconds"])
        pre = body.get("preconditions") or {}
        if propagation not in (None, "Background", "Foreground", "Orphan"):
            raise errors.bad_request(f"invalid propagationPolicy: {propagation}")
        return DeleteOptions(
            propagation=propagation,
            grace_period=grace,
            uid=pre.get("uid"),
            resource_version=pre.get("resourceVersion"),
            dry_run="All" in q.getall("dryRun", []) or "All" in (body.get("dryRun") or []),
        )

    async def _patch(self, request: web.Request, t: Target, sub: str | None) -> web.Response:
        patch_type = PATCH_TYPES.get(request.content_type)
        if patch_type is None or patch_type == "apply-cbor":
            raise errors.unsupported_media_type(request.content_type)
        body = await read_body(request)
        ns, name = t.namespace or "", t.name or ""
        if sub == "scale":
            current = subresources.get_scale(self.engine, t.info, ns, name)
            if patch_type == "apply":
                patch_type = "merge"
            scale = self.engine.patched(t.info, current, patch_type, body)
            return respond(
                subresources.update_scale(
                    self.engine, t.info, ns, name, scale, _write_options(request)
                )
            )
        obj, created = self.engine.patch(
            t.info, ns, name, patch_type, body, _write_options(request), sub
        )
        return respond(obj, 201 if created else 200)

    async def _subresource(self, request: web.Request, t: Target) -> web.StreamResponse:
        sub, method, ns, name = t.subresource, request.method, t.namespace or "", t.name or ""
        info = t.info
        if (sub == "status" and info.status) or (sub == "finalize" and info.plural == "namespaces"):
            if method == "GET":
                return respond(self.engine.get(info, ns, name))
            if method == "PUT":
                return respond(
                    self.engine.update(
                        info,
                        ns,
                        name,
                        await read_body(request),
                        _write_options(request),
                        "status" if sub == "status" else None,
                    )
                )
            if method == "PATCH":
                return await self._patch(request, t, "status" if sub == "status" else None)
            raise errors.method_not_allowed()
        if sub == "scale" and info.scale is not None:
            if method == "GET":
                return respond(subresources.get_scale(self.engine, info, ns, name))
            if method == "PUT":
                return respond(
                    subresources.update_scale(
                        self.engine,
                        info,
                        ns,
                        name,
                        await read_body(request),
                        _write_options(request),
                    )
                )
            if method == "PATCH":
                return await self._patch(request, t, "scale")
            raise errors.method_not_allowed()
        if sub == "log" and info.log and method == "GET":
            return await podlogs.serve(
                request,
                self.engine,
                t.info,
                t.namespace or "",
                t.name or "",
                self.settings.logs_root,
            )
        if sub == "binding" and info.log and method == "POST":
            subresources.bind(
                self.engine, info, ns, name, await read_body(request), _write_options(request)
            )
            return respond(
                {
                    "kind": "Status",
                    "apiVersion": "v1",
                    "metadata": {},
                    "status": "Success",
                    "code": 201,
                },
                201,
            )
        raise APIError(404, "NotFound", "the server could not find the requested resource", {})


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


@web.middleware
async def status_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """Every failure becomes a Status; unexpected ones are 500 with the reason, never a crash."""
    warnings: list[str] = []
    token = errors.WARNINGS.set(warnings)
    try:
        response = await handler(request)
        if warnings and not response.prepared:
            for text in warnings:
                response.headers.add("Warning", f"299 - {json.dumps(text)}")
        return response
    except APIError as exc:
        return error_response(exc)
    except web.HTTPException:
        raise
    except Exception as exc:
        log.exception("internal error serving %s %s", request.method, request.path)
        return error_response(APIError(500, "InternalError", f"Internal error occurred: {exc}"))
    finally:
        errors.WARNINGS.reset(token)


def build_app(engine: Engine, settings: Settings) -> web.Application:
    h = Handlers(engine, settings)
    app = web.Application(middlewares=[status_errors], client_max_size=64 * 1024 * 1024)
    app.router.add_get("/version", h.version)
    app.router.add_get("/version/", h.version)
    for probe in ("/healthz", "/livez", "/readyz"):
        app.router.add_get(probe, h.healthz)
    for prefix in ("/api", "/api/"):
        app.router.add_get(prefix, h.api)
    for prefix in ("/apis", "/apis/"):
        app.router.add_get(prefix, h.apis)
    app.router.add_get("/openapi/v3", h.openapi_v3)
    app.router.add_get("/openapi/v3/{path:.+}", h.openapi_v3_gv)
    app.router.add_get("/openapi/v2", h.not_found)
    app.router.add_route("*", "/api/{tail:.+}", h.dispatch)
    app.router.add_route("*", "/apis/{tail:.+}", h.dispatch)
    return app
