"""Label and field selectors, parsed from query strings and matched against objects."""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import APIError, bad_request

_KEY = r"[A-Za-z0-9](?:[-A-Za-z0-9_./]*[A-Za-z0-9])?"
_SET_RE = re.compile(rf"^\s*({_KEY})\s+(in|notin)\s*\(([^)]*)\)\s*$")
_CMP_RE = re.compile(rf"^\s*({_KEY})\s*(==|!=|=)\s*([-A-Za-z0-9_.]*)\s*$")
_EXISTS_RE = re.compile(rf"^\s*(!?)\s*({_KEY})\s*$")


@dataclass(frozen=True)
class Requirement:
    key: str
    op: str  # "=", "!=", "in", "notin", "exists", "!"
    values: frozenset[str] = frozenset()

    def matches(self, labels: Mapping[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.op == "exists":
            return present
        if self.op == "!":
            return not present
        if self.op in ("=", "in"):
            return present and value in self.values
        # "!=" and "notin" match objects without the label, as in Kubernetes.
        return not present or value not in self.values


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``in (...)`` parentheses."""
    parts: list[str] = []
    depth = 0
    cur = ""
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append(cur)
            cur = ""
        else:
            cur += ch
    parts.append(cur)
    return [p for p in parts if p.strip()]


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...] = ()

    def matches(self, labels: Mapping[str, str] | None) -> bool:
        labels = labels or {}
        return all(r.matches(labels) for r in self.requirements)


def parse_label_selector(text: str | None) -> LabelSelector:
    """Parse ``a=b,c!=d,e in (f,g),!h,i`` or raise a 400 with the reason."""
    if not text:
        return LabelSelector()
    reqs: list[Requirement] = []
    for part in _split_top_level(text):
        if m := _SET_RE.match(part):
            values = frozenset(v.strip() for v in m.group(3).split(",") if v.strip())
            reqs.append(Requirement(m.group(1), m.group(2), values))
        elif m := _CMP_RE.match(part):
            op = "!=" if m.group(2) == "!=" else "="
            reqs.append(Requirement(m.group(1), op, frozenset({m.group(3)})))
        elif m := _EXISTS_RE.match(part):
            reqs.append(Requirement(m.group(2), "!" if m.group(1) else "exists"))
        else:
            raise bad_request(
                f"unable to parse requirement: found '{part.strip()}', "
                "expected: in, notin, =, ==, !=, gt, lt"
            )
    return LabelSelector(tuple(reqs))


def selector_from_match(spec: Mapping[str, Any] | None) -> LabelSelector:
    """A ``metav1.LabelSelector`` (matchLabels + matchExpressions) as a selector."""
    if not spec:
        return LabelSelector()
    reqs = [
        Requirement(k, "=", frozenset({str(v)})) for k, v in (spec.get("matchLabels") or {}).items()
    ]
    ops = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}
    for expr in spec.get("matchExpressions") or []:
        op = ops.get(str(expr.get("operator")), "in")
        reqs.append(Requirement(str(expr["key"]), op, frozenset(expr.get("values") or ())))
    return LabelSelector(tuple(reqs))


def selector_to_string(spec: Mapping[str, Any] | None) -> str:
    """Render a ``metav1.LabelSelector`` the way ``Scale.status.selector`` carries it."""
    if not spec:
        return ""
    parts = [f"{k}={v}" for k, v in sorted((spec.get("matchLabels") or {}).items())]
    for expr in spec.get("matchExpressions") or []:
        op, key = expr.get("operator"), expr.get("key")
        vals = ",".join(sorted(expr.get("values") or ()))
        if op == "In":
            parts.append(f"{key} in ({vals})")
        elif op == "NotIn":
            parts.append(f"{key} notin ({vals})")
        elif op == "Exists":
            parts.append(str(key))
        elif op == "DoesNotExist":
            parts.append(f"!{key}")
    return ",".join(parts)


def _dig(obj: Mapping[str, Any], path: str) -> Any:
    cur: Any = obj
    for part in path.split("."):
        if not isinstance(cur, Mapping):
            return None
        cur = cur.get(part)
    return cur


def _as_field_string(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


# Fields each built-in kind can be selected by, beyond metadata.name/namespace.
_EXTRA_FIELDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("", "pods"): (
        "spec.nodeName",
        "spec.restartPolicy",
        "spec.schedulerName",
        "spec.serviceAccountName",
        "spec.hostNetwork",
        "status.phase",
        "status.podIP",
        "status.nominatedNodeName",
    ),
    ("", "events"): (
        "involvedObject.kind",
        "involvedObject.namespace",
        "involvedObject.name",
        "involvedObject.uid",
        "involvedObject.apiVersion",
        "involvedObject.resourceVersion",
        "involvedObject.fieldPath",
        "reason",
        "reportingComponent",
        "source",
        "type",
    ),
    ("events.k8s.io", "events"): (
        "regarding.kind",
        "regarding.namespace",
        "regarding.name",
        "regarding.uid",
        "reason",
        "type",
        "reportingController",
    ),
    ("", "secrets"): ("type",),
    ("", "namespaces"): ("status.phase",),
    ("", "nodes"): ("spec.unschedulable",),
    ("", "replicationcontrollers"): ("status.replicas",),
    ("apps", "replicasets"): ("status.replicas",),
    ("batch", "jobs"): ("status.successful",),
}


@dataclass(frozen=True)
class FieldSelector:
    terms: tuple[tuple[str, bool, str], ...] = ()  # (path, equal?, value)

    def matches(self, obj: Mapping[str, Any]) -> bool:
        for path, equal, value in self.terms:
            actual = _as_field_string(_field_value(obj, path))
            if (actual == value) != equal:
                return False
        return True

    def exact_name(self) -> str | None:
        for path, equal, value in self.terms:
            if path == "metadata.name" and equal:
                return value
        return None


def _field_value(obj: Mapping[str, Any], path: str) -> Any:
    if path == "source":
        return _dig(obj, "source.component")
    return _dig(obj, path)


def parse_field_selector(
    text: str | None, group: str, plural: str, custom: tuple[str, ...] | None = None
) -> FieldSelector:
    """Parse ``a=b,c!=d`` for one resource; unsupported fields are a 400 as in Kubernetes."""
    if not text:
        return FieldSelector()
    allowed = {"metadata.name", "metadata.namespace"}
    if custom is not None:
        allowed.update(custom)
    else:
        allowed.update(_EXTRA_FIELDS.get((group, plural), ()))
    terms: list[tuple[str, bool, str]] = []
    for part in text.split(","):
        if not part.strip():
            continue
        m = re.match(r"^\s*([^=!]+?)\s*(==|!=|=)\s*(.*?)\s*$", part)
        if not m:
            raise bad_request(f"invalid selector: '{text}'; can't understand '{part}'")
        path = m.group(1)
        if path not in allowed:
            raise _unsupported_field(path, group, plural, custom is not None, allowed)
        terms.append((path, m.group(2) != "!=", m.group(3)))
    return FieldSelector(tuple(terms))


def _unsupported_field(
    path: str, group: str, plural: str, custom: bool, allowed: set[str]
) -> APIError:
    if custom:
        names = ", ".join(f'"{a}"' for a in sorted(allowed))
        return bad_request(f'"{path}" is not a known field selector: only {names}')
    return bad_request(f"field label not supported: {path}")


Matcher = Callable[[Mapping[str, Any]], bool]


def object_matcher(labels: LabelSelector, fields: FieldSelector) -> Matcher:
    """One predicate for list filtering and watch delivery."""

    def match(obj: Mapping[str, Any]) -> bool:
        meta = obj.get("metadata") or {}
        return labels.matches(meta.get("labels")) and fields.matches(obj)

    return match
