"""The resource types the server knows: built-in kinds plus those of registered CRDs.

A :class:`ResourceInfo` carries everything discovery, routing, validation and the
subresources need to know about one resource of one group/version.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = (
    "create",
    "delete",
    "deletecollection",
    "get",
    "list",
    "patch",
    "update",
    "watch",
)


@dataclass(frozen=True)
class ScalePaths:
    """Where a resource keeps what its ``scale`` subresource reads and writes."""

    spec_replicas: str = ".spec.replicas"
    status_replicas: str = ".status.replicas"
    label_selector: str | None = None


@dataclass(frozen=True)
class ResourceInfo:
    """One resource (plural) of one group/version."""

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool
    singular: str = ""
    short_names: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    status: bool = False
    scale: ScalePaths | None = None
    log: bool = False
    builtin: bool = True
    # The CRD version's openAPIV3Schema, or None for built-in kinds.
    schema: dict[str, Any] | None = None
    printer_columns: tuple[dict[str, Any], ...] = ()
    selectable_fields: tuple[str, ...] = ()
    # The CRD's name, for custom resources.
    crd: str | None = None
    storage_version: bool = True

    @property
    def api_version(self) -> str:
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_resource(self) -> tuple[str, str]:
        """Objects are stored once per group + plural, whatever version is asked."""
        return (self.group, self.plural)

    @property
    def singular_name(self) -> str:
        return self.singular or self.kind.lower()


_SCALE = ScalePaths(".spec.replicas", ".status.replicas", ".status.selector")


def _b(
    group: str,
    version: str,
    plural: str,
    kind: str,
    namespaced: bool = True,
    short: tuple[str, ...] = (),
    categories: tuple[str, ...] = (),
    status: bool = False,
    scale: ScalePaths | None = None,
    log: bool = False,
) -> ResourceInfo:
    return ResourceInfo(
        group=group,
        version=version,
        plural=plural,
        kind=kind,
        namespaced=namespaced,
        short_names=short,
        categories=categories,
        status=status,
        scale=scale,
        log=log,
    )


_ALL = ("all",)

BUILTINS: tuple[ResourceInfo, ...] = (
    _b("", "v1", "namespaces", "Namespace", False, ("ns",), status=True),
    _b("", "v1", "pods", "Pod", short=("po",), categories=_ALL, status=True, log=True),
    _b("", "v1", "services", "Service", short=("svc",), categories=_ALL, status=True),
    _b("", "v1", "endpoints", "Endpoints", short=("ep",)),
    _b("", "v1", "configmaps", "ConfigMap", short=("cm",)),
    _b("", "v1", "secrets", "Secret"),
    _b("", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", short=("pvc",), status=True),
    _b("", "v1", "persistentvolumes", "PersistentVolume", False, ("pv",), status=True),
    _b("", "v1", "serviceaccounts", "ServiceAccount", short=("sa",)),
    _b("", "v1", "events", "Event", short=("ev",)),
    _b("", "v1", "nodes", "Node", False, ("no",), status=True),
    _b("", "v1", "resourcequotas", "ResourceQuota", short=("quota",), status=True),
    _b("", "v1", "limitranges", "LimitRange", short=("limits",)),
    _b(
        "apps",
        "v1",
        "deployments",
        "Deployment",
        short=("deploy",),
        categories=_ALL,
        status=True,
        scale=_SCALE,
    ),
    _b(
        "apps",
        "v1",
        "replicasets",
        "ReplicaSet",
        short=("rs",),
        categories=_ALL,
        status=True,
        scale=_SCALE,
    ),
    _b(
        "apps",
        "v1",
        "statefulsets",
        "StatefulSet",
        short=("sts",),
        categories=_ALL,
        status=True,
        scale=_SCALE,
    ),
    _b("apps", "v1", "daemonsets", "DaemonSet", short=("ds",), categories=_ALL, status=True),
    _b("batch", "v1", "jobs", "Job", categories=_ALL, status=True),
    _b("batch", "v1", "cronjobs", "CronJob", short=("cj",), categories=_ALL, status=True),
    _b("discovery.k8s.io", "v1", "endpointslices", "EndpointSlice"),
    _b("events.k8s.io", "v1", "events", "Event", short=("ev",)),
    _b("coordination.k8s.io", "v1", "leases", "Lease"),
    _b("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    _b("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    _b("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", False),
    _b("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", False),
    _b("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget", short=("pdb",), status=True),
    _b(
        "autoscaling",
        "v2",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        short=("hpa",),
        categories=_ALL,
        status=True,
    ),
    _b(
        "autoscaling",
        "v1",
        "horizontalpodautoscalers",
        "HorizontalPodAutoscaler",
        short=("hpa",),
        categories=_ALL,
        status=True,
    ),
    _b("networking.k8s.io", "v1", "ingresses", "Ingress", short=("ing",), status=True),
    _b("storage.k8s.io", "v1", "storageclasses", "StorageClass", False, ("sc",)),
    ResourceInfo(
        group="apiextensions.k8s.io",
        version="v1",
        plural="customresourcedefinitions",
        kind="CustomResourceDefinition",
        namespaced=False,
        short_names=("crd", "crds"),
        status=True,
    ),
)

# The preferred version of groups served in several versions.
PREFERRED_VERSIONS = {"autoscaling": "v2"}


def _scale_from_crd(sub: dict[str, Any]) -> ScalePaths | None:
    scale = sub.get("scale")
    if not isinstance(scale, dict):
        return None
    return ScalePaths(
        spec_replicas=str(scale.get("specReplicasPath", ".spec.replicas")),
        status_replicas=str(scale.get("statusReplicasPath", ".status.replicas")),
        label_selector=scale.get("labelSelectorPath"),
    )


def from_crd(crd: dict[str, Any]) -> list[ResourceInfo]:
    """The resources a (validated) CRD serves, one per served version."""
    spec = crd["spec"]
    names = spec["names"]
    out: list[ResourceInfo] = []
    for ver in spec.get("versions", []):
        if not ver.get("served", True):
            continue
        sub = ver.get("subresources") or {}
        schema = (ver.get("schema") or {}).get("openAPIV3Schema")
        out.append(
            ResourceInfo(
                group=spec["group"],
                version=ver["name"],
                plural=names["plural"],
                kind=names["kind"],
                singular=names.get("singular", names["kind"].lower()),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                short_names=tuple(names.get("shortNames", ())),
                categories=tuple(names.get("categories", ())),
                status="status" in sub,
                scale=_scale_from_crd(sub),
                builtin=False,
                schema=schema if isinstance(schema, dict) else None,
                printer_columns=tuple(ver.get("additionalPrinterColumns", ())),
                selectable_fields=tuple(
                    str(f.get("jsonPath", "")).lstrip(".") for f in ver.get("selectableFields", ())
                ),
                crd=crd["metadata"]["name"],
                storage_version=bool(ver.get("storage", False)),
            )
        )
    return out


@dataclass
class Registry:
    """Every resource currently served, built-ins first, then CRDs as they come and go."""

    _by_gvr: dict[tuple[str, str, str], ResourceInfo] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for info in BUILTINS:
            self._by_gvr[(info.group, info.version, info.plural)] = info

    def add_crd(self, crd: dict[str, Any]) -> None:
        self.remove_crd(crd["metadata"]["name"])
        for info in from_crd(crd):
            self._by_gvr[(info.group, info.version, info.plural)] = info

    def remove_crd(self, crd_name: str) -> None:
        for key in [k for k, v in self._by_gvr.items() if v.crd == crd_name]:
            del self._by_gvr[key]

    def get(self, group: str, version: str, plural: str) -> ResourceInfo | None:
        return self._by_gvr.get((group, version, plural))

    def for_crd(self, crd_name: str) -> list[ResourceInfo]:
        return [v for v in self._by_gvr.values() if v.crd == crd_name]

    def storage_info(self, group: str, plural: str) -> ResourceInfo | None:
        """The version objects of this group + plural are stored (and cascaded) in."""
        found = [v for v in self._by_gvr.values() if (v.group, v.plural) == (group, plural)]
        for info in found:
            if info.storage_version and (info.builtin is False or info.version == "v1"):
                return info
        return found[0] if found else None

    def by_kind(self, api_version: str, kind: str) -> ResourceInfo | None:
        for info in self._by_gvr.values():
            if info.api_version == api_version and info.kind == kind:
                return info
        return None

    def all(self) -> Iterator[ResourceInfo]:
        return iter(list(self._by_gvr.values()))

    def group_versions(self) -> dict[str, list[str]]:
        """Group → its served versions, preferred first."""
        out: dict[str, list[str]] = {}
        for info in self._by_gvr.values():
            versions = out.setdefault(info.group, [])
            if info.version not in versions:
                versions.append(info.version)
        for group, versions in out.items():
            pref = PREFERRED_VERSIONS.get(group)
            versions.sort(key=lambda v: (v != pref, _version_rank(v)))
        return out

    def in_group_version(self, group: str, version: str) -> Iterable[ResourceInfo]:
        return [v for v in self._by_gvr.values() if (v.group, v.version) == (group, version)]


def _version_rank(version: str) -> tuple[int, int, int]:
    """Kubernetes version priority: GA > beta > alpha, higher numbers first."""
    import re

    m = re.fullmatch(r"v(\d+)(?:(alpha|beta)(\d+))?", version)
    if not m:
        return (3, 0, 0)
    major = int(m.group(1))
    stage = {"": 0, "beta": 1, "alpha": 2}[m.group(2) or ""]
    minor = int(m.group(3) or 0)
    return (stage, -major, -minor)
