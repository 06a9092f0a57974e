"""CEL ``x-kubernetes-validations`` rules of CRD schemas, evaluated with cel-python.

Rules see ``self`` (the value at their schema node) and, for transition rules, ``oldSelf``;
transition rules run only on update and only where an old value exists, as in Kubernetes.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

import celpy
from celpy.adapter import json_to_cel
from celpy.evaluation import CELEvalError

from .errors import Cause, CauseList

Schema = dict[str, Any]

_REASONS = {
    "FieldValueRequired": "Required value",
    "FieldValueForbidden": "Forbidden",
    "FieldValueDuplicate": "Duplicate value",
}
_OLD_SELF = re.compile(r"\boldSelf\b")
_ENV = celpy.Environment()


@lru_cache(maxsize=1024)
def _program(expr: str) -> Any:
    return _ENV.program(_ENV.compile(expr))


def compile_error(expr: str) -> str | None:
    """Why a rule does not compile, or None (CRD creation rejects bad rules)."""
    try:
        _program(expr)
    except Exception as exc:  # celpy raises its own parse/type errors
        return str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return None


def _type_name(schema: Schema, value: Any) -> str:
    if schema.get("type"):
        return str(schema["type"])
    return "object" if isinstance(value, dict) else type(value).__name__


def _evaluate(expr: str, activation: dict[str, Any]) -> tuple[Any, str | None]:
    try:
        result = _program(expr).evaluate({k: json_to_cel(v) for k, v in activation.items()})
    except Exception as exc:  # evaluation errors become field errors, never a 500
        return None, str(exc)
    if isinstance(result, CELEvalError):
        return None, str(result.args[0] if result.args else result)
    return result, None


def _check_rules(
    schema: Schema, value: Any, old: Any, has_old: bool, path: str, errs: CauseList
) -> None:
    for rule in schema.get("x-kubernetes-validations") or []:
        expr = str(rule.get("rule", ""))
        transition = bool(_OLD_SELF.search(expr))
        if transition and not has_old:
            continue
        activation = {"self": value}
        if transition:
            activation["oldSelf"] = old
        result, error = _evaluate(expr, activation)
        field = path or "<nil>"
        if fp := rule.get("fieldPath"):
            field = f"{path}{fp}" if path else str(fp).lstrip(".")
        if error is not None:
            errs.add(
                field,
                f"Invalid value: {_quoted(_type_name(schema, value))}: "
                f"{error} evaluating rule: {expr}",
            )
            continue
        if result is True or (isinstance(result, celpy.celtypes.BoolType) and bool(result)):
            continue
        message = str(rule.get("message") or f"failed rule: {expr}")
        if mexpr := rule.get("messageExpression"):
            text, merr = _evaluate(str(mexpr), activation)
            if merr is None and isinstance(text, str) and text.strip():
                message = str(text)
        reason = str(rule.get("reason") or "FieldValueInvalid")
        if reason in _REASONS:
            errs.add(field, f"{_REASONS[reason]}: {message}", reason)
        else:
            errs.add(field, f"Invalid value: {_quoted(_type_name(schema, value))}: {message}")


def _quoted(text: str) -> str:
    return f'"{text}"'


def check(schema: Schema, value: Any, old: Any, has_old: bool, path: str, errs: CauseList) -> None:
    """Walk the schema, running every node's rules against the new (and old) values."""
    if value is None:
        return
    _check_rules(schema, value, old, has_old, path, errs)
    if isinstance(value, dict):
        props: dict[str, Schema] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        old_map = old if has_old and isinstance(old, dict) else {}
        for key, item in value.items():
            sub = props.get(key) if key in props else extra if isinstance(extra, dict) else None
            if sub is None:
                continue
            sub_path = f"{path}.{key}" if path else key
            check(sub, item, old_map.get(key), key in old_map, sub_path, errs)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            check(schema["items"], item, None, False, f"{path}[{i}]", errs)


def check_root(schema: Schema, obj: dict[str, Any], old: dict[str, Any] | None) -> list[Cause]:
    """Run every CEL rule of a custom resource; the root's rules see the whole object."""
    errs = CauseList()
    check(
        schema, _root_view(obj), None if old is None else _root_view(old), old is not None, "", errs
    )
    return errs.causes


def _root_view(obj: dict[str, Any]) -> dict[str, Any]:
    """Root rules see only ``metadata.name`` and ``generateName``, as in Kubernetes."""
    meta = obj.get("metadata") or {}
    return dict(obj, metadata={k: meta[k] for k in ("name", "generateName") if k in meta})


def rules_in(schema: Any) -> list[str]:
    """Every rule string in a schema, for compile checks at CRD creation."""
    out: list[str] = []
    if isinstance(schema, dict):
        for rule in schema.get("x-kubernetes-validations") or []:
            if isinstance(rule, dict) and "rule" in rule:
                out.append(str(rule["rule"]))
        for key, sub in schema.items():
            if key in ("properties",) and isinstance(sub, dict):
                for item in sub.values():
                    out += rules_in(item)
            elif key in ("items", "additionalProperties"):
                out += rules_in(sub)
    return out
