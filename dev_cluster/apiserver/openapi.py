"""OpenAPI v3 documents, enough for kubectl's validation, ``explain`` and apply.

kubectl 1.33 asks ``/openapi/v3`` first. Every PATCH operation advertises the
``fieldValidation`` query parameter with its ``x-kubernetes-group-version-kind``, so
kubectl leaves validation to this server (``fieldValidation=Strict``) rather than
validating on the client. ``/openapi/v2`` (protobuf only in kubectl) is answered 404,
after which kubectl uses its compiled-in types for strategic merge patches.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from .resources import Registry, ResourceInfo

JSON = dict[str, Any]

_OBJECT_META: JSON = {
    "type": "object",
    "description": "Standard object's metadata.",
    "x-kubernetes-preserve-unknown-fields": True,
}


def _gv_path(group: str, version: str) -> str:
    return f"apis/{group}/{version}" if group else f"api/{version}"


def _definition_name(info: ResourceInfo) -> str:
    group = ".".join(reversed(info.group.split("."))) if info.group else "core"
    return (
        f"io.k8s.{group}.{info.version}.{info.kind}"
        if info.builtin
        else (f"{'.'.join(reversed(info.group.split('.')))}.{info.version}.{info.kind}")
    )


def _gvk(info: ResourceInfo) -> list[JSON]:
    return [{"group": info.group, "version": info.version, "kind": info.kind}]


def _schema(info: ResourceInfo) -> JSON:
    if info.schema is not None:
        schema: JSON = json.loads(json.dumps(info.schema))
        props = schema.setdefault("properties", {})
        props.setdefault(
            "apiVersion",
            {
                "type": "string",
                "description": "APIVersion defines "
                "the versioned schema of this representation of an object.",
            },
        )
        props.setdefault(
            "kind",
            {
                "type": "string",
                "description": "Kind is a string value "
                "representing the REST resource this object represents.",
            },
        )
        props["metadata"] = _OBJECT_META
    else:
        schema = {
            "type": "object",
            "description": f"{info.kind} (schema not published by the dev cluster).",
            "x-kubernetes-preserve-unknown-fields": True,
            "properties": {
                "apiVersion": {"type": "string"},
                "kind": {"type": "string"},
                "metadata": _OBJECT_META,
            },
        }
    schema["x-kubernetes-group-version-kind"] = _gvk(info)
    return schema


def _operation(info: ResourceInfo, verb: str) -> JSON:
    op: JSON = {
        "operationId": f"{verb}{info.kind}",
        "x-kubernetes-action": verb,
        "x-kubernetes-group-version-kind": _gvk(info)[0],
        "parameters": [
            {"name": "dryRun", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldManager", "in": "query", "schema": {"type": "string"}},
            {"name": "fieldValidation", "in": "query", "schema": {"type": "string"}},
        ],
        "responses": {"200": {"description": "OK"}},
    }
    if verb == "patch":
        op["parameters"].append({"name": "force", "in": "query", "schema": {"type": "boolean"}})
        op["requestBody"] = {
            "content": {
                ct: {"schema": {"type": "object"}}
                for ct in (
                    "application/json-patch+json",
                    "application/merge-patch+json",
                    "application/apply-patch+yaml",
                )
            }
        }
    return op


def group_version_doc(registry: Registry, group: str, version: str) -> JSON | None:
    infos = list(registry.in_group_version(group, version))
    if not infos:
        return None
    paths: JSON = {}
    schemas: JSON = {}
    prefix = "/" + _gv_path(group, version)
    for info in infos:
        ns = "/namespaces/{namespace}" if info.namespaced else ""
        item = f"{prefix}{ns}/{info.plural}/{{name}}"
        paths[f"{prefix}{ns}/{info.plural}"] = {"post": _operation(info, "post")}
        paths[item] = {
            "get": _operation(info, "get"),
            "put": _operation(info, "put"),
            "patch": _operation(info, "patch"),
        }
        schemas[_definition_name(info)] = _schema(info)
    return {
        "openapi": "3.0.0",
        "info": {"title": "Kubernetes", "version": "v1.33.0"},
        "paths": paths,
        "components": {"schemas": schemas},
    }


def root(registry: Registry) -> JSON:
    """``/openapi/v3``: one entry per group/version, with a hash that changes with content."""
    out: JSON = {}
    for group, versions in registry.group_versions().items():
        for version in versions:
            doc = group_version_doc(registry, group, version)
            digest = hashlib.sha512(json.dumps(doc, sort_keys=True).encode()).hexdigest()[:64]
            path = _gv_path(group, version)
            out[path] = {"serverRelativeURL": f"/openapi/v3/{path}?hash={digest.upper()}"}
    return {"paths": out}
