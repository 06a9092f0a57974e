"""Discovery documents (``/api``, ``/apis``, group and resource lists) built from the registry.

Only the legacy (unaggregated) format is served: kubectl asks for aggregated discovery
first and falls back when the answer is plain JSON, as against older servers.
"""

from __future__ import annotations

from typing import Any

from .resources import ALL_VERBS, Registry, ResourceInfo

JSON = dict[str, Any]

VERSION_INFO: JSON = {
    "major": "1",
    "minor": "33",
    "gitVersion": "v1.33.0+gantry-dev",
    "gitCommit": "0000000000000000000000000000000000000000",
    "gitTreeState": "clean",
    "buildDate": "2025-04-23T00:00:00Z",
    "goVersion": "go1.24.2",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def core_versions(server_address: str) -> JSON:
    return {
        "kind": "APIVersions",
        "versions": ["v1"],
        "serverAddressByClientCIDRs": [
            {"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}
        ],
    }


def _group(name: str, versions: list[str]) -> JSON:
    entries = [{"groupVersion": f"{name}/{v}", "version": v} for v in versions]
    return {"name": name, "versions": entries, "preferredVersion": entries[0]}


def group_list(registry: Registry) -> JSON:
    groups = [
        _group(name, versions) for name, versions in registry.group_versions().items() if name
    ]
    return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}


def group(registry: Registry, name: str) -> JSON | None:
    versions = registry.group_versions().get(name)
    if not versions:
        return None
    return dict(_group(name, versions), kind="APIGroup", apiVersion="v1")


def _resource(info: ResourceInfo) -> list[JSON]:
    main: JSON = {
        "name": info.plural,
        "singularName": info.singular_name,
        "namespaced": info.namespaced,
        "kind": info.kind,
        "verbs": list(ALL_VERBS),
        "storageVersionHash": "",
    }
    if info.short_names:
        main["shortNames"] = list(info.short_names)
    if info.categories:
        main["categories"] = list(info.categories)
    out = [main]
    if info.status:
        out.append(
            {
                "name": f"{info.plural}/status",
                "singularName": "",
                "namespaced": info.namespaced,
                "kind": info.kind,
                "verbs": ["get", "patch", "update"],
            }
        )
    if info.scale is not None:
        out.append(
            {
                "name": f"{info.plural}/scale",
                "singularName": "",
                "namespaced": info.namespaced,
                "group": "autoscaling",
                "version": "v1",
                "kind": "Scale",
                "verbs": ["get", "patch", "update"],
            }
        )
    if info.log:
        out.append(
            {
                "name": f"{info.plural}/log",
                "singularName": "",
                "namespaced": True,
                "kind": "Pod",
                "verbs": ["get"],
            }
        )
        out.append(
            {
                "name": f"{info.plural}/binding",
                "singularName": "",
                "namespaced": True,
                "kind": "Binding",
                "verbs": ["create"],
            }
        )
    return out


def resource_list(registry: Registry, group_name: str, version: str) -> JSON | None:
    infos = sorted(registry.in_group_version(group_name, version), key=lambda i: i.plural)
    if not infos:
        return None
    return {
        "kind": "APIResourceList",
        "apiVersion": "v1",
        "groupVersion": f"{group_name}/{version}" if group_name else version,
        "resources": [entry for info in infos for entry in _resource(info)],
    }
