"""Turn a request path into the resource, namespace, name and subresource it addresses."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import APIError, not_found
from .resources import Registry, ResourceInfo


@dataclass(frozen=True)
class Target:
    info: ResourceInfo
    namespace: str | None  # None: every namespace (or cluster-scoped)
    name: str | None
    subresource: str | None
    watch: bool  # the legacy /watch/ prefix


def _not_found_path() -> APIError:
    return APIError(404, "NotFound", "the server could not find the requested resource", {})


def parse(registry: Registry, path: str) -> Target:
    """Resolve ``/api/v1/...`` or ``/apis/<group>/<version>/...``; 404 for unknown paths."""
    parts = [p for p in path.split("/") if p]
    if len(parts) >= 2 and parts[0] == "api":
        group, version, rest = "", parts[1], parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise _not_found_path()
    watch = False
    if rest and rest[0] == "watch":
        watch, rest = True, rest[1:]
    if not rest:
        raise _not_found_path()

    def info_for(plural: str) -> ResourceInfo:
        info = registry.get(group, version, plural)
        if info is None:
            raise _not_found_path()
        return info

    if rest[0] == "namespaces" and len(rest) >= 3:
        candidate = registry.get(group, version, rest[2])
        if candidate is not None and candidate.namespaced:
            if len(rest) > 5:
                raise _not_found_path()
            return Target(
                candidate,
                rest[1],
                rest[3] if len(rest) > 3 else None,
                rest[4] if len(rest) > 4 else None,
                watch,
            )
        if group == "" and len(rest) == 3:
            # /api/v1/namespaces/<name>/status or /finalize
            return Target(info_for("namespaces"), None, rest[1], rest[2], watch)
        raise _not_found_path()
    if len(rest) > 3:
        raise _not_found_path()
    info = info_for(rest[0])
    name = rest[1] if len(rest) > 1 else None
    sub = rest[2] if len(rest) > 2 else None
    if info.namespaced and name is not None:
        # A namespaced resource addressed without a namespace only exists as a collection.
        raise not_found(info.plural, info.group, name)
    return Target(info, None, name, sub, watch)
