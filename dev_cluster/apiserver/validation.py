"""Admission for every write: names, required fields of built-ins, CRDs, custom resources.

Built-in kinds get the checks that matter for Gantry's manifests (names, containers,
selectors); custom resources get their CRD's full structural schema and CEL rules.
"""

from __future__ import annotations

import re
from typing import Any

from . import cel_rules, schema
from .errors import Cause, CauseList, go_value, invalid
from .resources import ResourceInfo

_LABEL = r"[a-z0-9]([-a-z0-9]*[a-z0-9])?"
_SUBDOMAIN_RE = re.compile(rf"^{_LABEL}(\.{_LABEL})*$")
_LABEL_RE = re.compile(rf"^{_LABEL}$")
_SUBDOMAIN_MSG = (
    "a lowercase RFC 1123 subdomain must consist of lower case alphanumeric characters, "
    "'-' or '.', and must start and end with an alphanumeric character (e.g. 'example.com', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?(\\.[a-z0-9]([-a-z0-9]*"
    "[a-z0-9])?)*')"
)
_LABEL_MSG = (
    "a lowercase RFC 1123 label must consist of lower case alphanumeric characters or '-', "
    "and must start and end with an alphanumeric character (e.g. 'my-name',  or '123-abc', "
    "regex used for validation is '[a-z0-9]([-a-z0-9]*[a-z0-9])?')"
)
# Kinds whose names must be RFC 1123 labels rather than subdomains.
_LABEL_NAMED = {("", "namespaces"), ("", "services")}
# Kinds whose names are free-form path segments (RBAC).
_PATH_NAMED = {"roles", "rolebindings", "clusterroles", "clusterrolebindings"}


def _check_name(info: ResourceInfo, name: str, errs: CauseList) -> None:
    if info.plural in _PATH_NAMED and info.group == "rbac.authorization.k8s.io":
        if name in (".", "..") or "/" in name or "%" in name:
            errs.invalid_value("metadata.name", name, "may not contain '/' or '%'")
        return
    if (info.group, info.plural) in _LABEL_NAMED:
        if len(name) > 63 or not _LABEL_RE.match(name):
            detail = _LABEL_MSG if len(name) <= 63 else "must be no more than 63 characters"
            errs.invalid_value("metadata.name", name, detail)
        return
    if len(name) > 253:
        errs.invalid_value("metadata.name", name, "must be no more than 253 characters")
    elif not _SUBDOMAIN_RE.match(name):
        errs.invalid_value("metadata.name", name, _SUBDOMAIN_MSG)


def _check_labels(meta: dict[str, Any], errs: CauseList) -> None:
    for key, value in (meta.get("labels") or {}).items():
        if not isinstance(value, str):
            errs.invalid_value("metadata.labels", value, "label values must be strings")
        elif len(value) > 63 or not re.match(
            r"^(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?$", value
        ):
            errs.invalid_value(
                "metadata.labels",
                value,
                "a valid label must be an empty string or consist of alphanumeric characters, "
                "'-', '_' or '.', and must start and end with an alphanumeric character (e.g. "
                "'MyValue',  or 'my_value',  or '12345', regex used for validation is "
                "'(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])?')",
            )
        if not isinstance(key, str) or not re.match(
            r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?"
            r"[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$",
            str(key),
        ):
            errs.invalid_value(
                "metadata.labels",
                key,
                "name part must consist of alphanumeric characters, '-', '_' or '.'",
            )


def _check_pod_spec(spec: Any, path: str, errs: CauseList) -> None:
    if not isinstance(spec, dict):
        errs.required(path)
        return
    containers = spec.get("containers")
    if not containers:
        errs.required(f"{path}.containers")
        return
    names: set[str] = set()
    for group in ("initContainers", "containers"):
        for i, c in enumerate(spec.get(group) or []):
            cpath = f"{path}.{group}[{i}]"
            name = c.get("name") if isinstance(c, dict) else None
            if not name:
                errs.required(f"{cpath}.name")
            elif name in names:
                errs.add(
                    f"{cpath}.name", f"Duplicate value: {go_value(name)}", "FieldValueDuplicate"
                )
            else:
                names.add(name)
            if isinstance(c, dict) and not c.get("image"):
                errs.required(f"{cpath}.image")


def _check_builtin(info: ResourceInfo, obj: dict[str, Any], errs: CauseList) -> None:
    spec = obj.get("spec")
    gr = (info.group, info.plural)
    if gr == ("", "pods"):
        _check_pod_spec(spec, "spec", errs)
    elif gr in {
        ("apps", "deployments"),
        ("apps", "replicasets"),
        ("apps", "statefulsets"),
        ("apps", "daemonsets"),
    }:
        spec = spec if isinstance(spec, dict) else {}
        if not spec.get("selector"):
            errs.required("spec.selector")
        template = spec.get("template") or {}
        _check_pod_spec(template.get("spec"), "spec.template.spec", errs)
        replicas = spec.get("replicas")
        if isinstance(replicas, int) and replicas < 0:
            errs.invalid_value("spec.replicas", replicas, "must be greater than or equal to 0")
        labels = (template.get("metadata") or {}).get("labels") or {}
        wanted = (spec.get("selector") or {}).get("matchLabels") or {}
        if wanted and any(labels.get(k) != v for k, v in wanted.items()):
            errs.invalid_value(
                "spec.template.metadata.labels",
                labels,
                "`selector` does not match template `labels`",
            )
    elif gr == ("batch", "jobs"):
        template = (spec or {}).get("template") if isinstance(spec, dict) else None
        _check_pod_spec((template or {}).get("spec"), "spec.template.spec", errs)
    elif gr == ("", "services"):
        for i, port in enumerate((spec or {}).get("ports") or []):
            if not isinstance(port, dict) or "port" not in port:
                errs.required(f"spec.ports[{i}].port")
    elif gr == ("apiextensions.k8s.io", "customresourcedefinitions"):
        _check_crd(obj, errs)


def _check_crd(crd: dict[str, Any], errs: CauseList) -> None:
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    group = spec.get("group")
    plural = names.get("plural")
    if not group:
        errs.required("spec.group")
    if not plural:
        errs.required("spec.names.plural")
    if not names.get("kind"):
        errs.required("spec.names.kind")
    if spec.get("scope") not in ("Namespaced", "Cluster"):
        errs.add(
            "spec.scope",
            f"Unsupported value: {go_value(spec.get('scope'))}: supported "
            'values: "Cluster", "Namespaced"',
            "FieldValueNotSupported",
        )
    name = (crd.get("metadata") or {}).get("name")
    if group and plural and name != f"{plural}.{group}":
        errs.invalid_value("metadata.name", name, 'must be spec.names.plural+"."+spec.group')
    versions = spec.get("versions") or []
    if not versions:
        errs.required("spec.versions")
    storage = [v for v in versions if v.get("storage")]
    if versions and len(storage) != 1:
        errs.invalid_value(
            "spec.versions",
            versions and "array",
            "must have exactly one version marked as storage version",
        )
    for i, ver in enumerate(versions):
        openapi = (ver.get("schema") or {}).get("openAPIV3Schema")
        if not isinstance(openapi, dict):
            errs.required(f"spec.versions[{i}].schema.openAPIV3Schema")
            continue
        for rule in cel_rules.rules_in(openapi):
            if (err := cel_rules.compile_error(rule)) is not None:
                errs.invalid_value(
                    f"spec.versions[{i}].schema.openAPIV3Schema.x-kubernetes-validations[0].rule",
                    rule,
                    f"compilation failed: {err}",
                )


def validate_object(
    info: ResourceInfo, obj: dict[str, Any], old: dict[str, Any] | None = None
) -> None:
    """Raise 422 Invalid with every field error, the way the real server reports them."""
    errs = CauseList()
    meta = obj.get("metadata") or {}
    name = str(meta.get("name") or "")
    if name:
        _check_name(info, name, errs)
    _check_labels(meta, errs)
    if info.builtin:
        _check_builtin(info, obj, errs)
    elif info.schema is not None:
        errs.causes.extend(schema.validate_root(info.schema, obj))
        if not errs.causes:
            errs.causes.extend(cel_rules.check_root(info.schema, obj, old))
    _raise(info, name, errs.causes)


def _raise(info: ResourceInfo, name: str, causes: list[Cause]) -> None:
    if causes:
        raise invalid(info.kind, info.group, name, causes)


def admit_custom(info: ResourceInfo, obj: dict[str, Any]) -> list[str]:
    """Default then prune a custom resource in place; returns the pruned field paths."""
    if info.builtin or info.schema is None:
        return []
    schema.apply_defaults(info.schema, obj)
    return schema.prune(info.schema, obj)
