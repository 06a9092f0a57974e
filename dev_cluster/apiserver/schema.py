"""Structural OpenAPI v3 schemas of CRDs: defaulting, pruning and validation.

The order and the messages follow kube-apiserver (defaults, then pruning, then schema
validation, then CEL rules), so a rejected custom resource reads the same as on a real
cluster, e.g. ``spec.workers: Invalid value: -1: spec.workers in body should be greater
than or equal to 1``.
"""

from __future__ import annotations

import copy
import re
from datetime import datetime
from typing import Any

from .errors import Cause, CauseList, go_value

Schema = dict[str, Any]

_ROOT_KEEP = ("apiVersion", "kind", "metadata")


def apply_defaults(schema: Schema, value: Any) -> Any:
    """Fill in ``default`` values where the parent object exists (recursively)."""
    if isinstance(value, dict):
        props: dict[str, Schema] = schema.get("properties") or {}
        for key, sub in props.items():
            if key not in value and "default" in sub:
                value[key] = copy.deepcopy(sub["default"])
            if key in value:
                value[key] = apply_defaults(sub, value[key])
        extra = schema.get("additionalProperties")
        if isinstance(extra, dict):
            for key in list(value):
                if key not in props:
                    value[key] = apply_defaults(extra, value[key])
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [apply_defaults(schema["items"], item) for item in value]
    return value


def prune(schema: Schema, value: Any, path: str = "", root: bool = True) -> list[str]:
    """Drop fields the schema does not declare; returns their paths (for strict validation)."""
    dropped: list[str] = []
    if isinstance(value, dict):
        if schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
            return dropped
        props: dict[str, Schema] = schema.get("properties") or {}
        extra = schema.get("additionalProperties")
        keep: tuple[str, ...] = ()
        if root or schema.get("x-kubernetes-embedded-resource"):
            keep = _ROOT_KEEP
        for key in list(value):
            sub_path = f"{path}.{key}" if path else key
            if root and key == "metadata":
                continue  # ObjectMeta is the server's, whatever the schema says
            if key in props:
                dropped += prune(props[key], value[key], sub_path, False)
            elif isinstance(extra, dict):
                dropped += prune(extra, value[key], sub_path, False)
            elif key in keep or extra is True:
                continue
            elif not schema.get("x-kubernetes-preserve-unknown-fields"):
                del value[key]
                dropped.append(sub_path)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            dropped += prune(schema["items"], item, f"{path}[{i}]", False)
    return dropped


_TYPE_NAMES = {
    "object": dict,
    "array": list,
    "string": str,
    "boolean": bool,
}


def _type_of(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _type_ok(expected: str, value: Any) -> bool:
    if expected == "integer":
        return (isinstance(value, int) and not isinstance(value, bool)) or (
            isinstance(value, float) and value.is_integer()
        )
    if expected == "number":
        return isinstance(value, int | float) and not isinstance(value, bool)
    kind = _TYPE_NAMES.get(expected)
    return kind is None or isinstance(value, kind)


def _num(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else str(value)


def validate(schema: Schema, value: Any, path: str, errs: CauseList) -> None:
    """Check ``value`` against a structural schema, collecting kube-style field errors."""
    if value is None:
        if not schema.get("nullable") and schema.get("type"):
            errs.invalid_value(
                path, None, f'{path} in body must be of type {schema["type"]}: "null"'
            )
        return
    if schema.get("x-kubernetes-int-or-string"):
        if not isinstance(value, int | str) or isinstance(value, bool):
            errs.invalid_value(
                path, value, f'{path} in body must be of type int-or-string: "{_type_of(value)}"'
            )
            return
    elif (expected := schema.get("type")) and not _type_ok(expected, value):
        errs.invalid_value(
            path, value, f'{path} in body must be of type {expected}: "{_type_of(value)}"'
        )
        return
    _check_enum(schema, value, path, errs)
    if isinstance(value, int | float) and not isinstance(value, bool):
        _check_number(schema, value, path, errs)
    elif isinstance(value, str):
        _check_string(schema, value, path, errs)
    elif isinstance(value, list):
        _check_array(schema, value, path, errs)
    elif isinstance(value, dict):
        _check_object(schema, value, path, errs)


def _check_enum(schema: Schema, value: Any, path: str, errs: CauseList) -> None:
    enum = schema.get("enum")
    if enum is not None and value not in enum:
        allowed = ", ".join(go_value(v) for v in enum)
        errs.add(
            path,
            f"Unsupported value: {go_value(value)}: supported values: {allowed}",
            "FieldValueNotSupported",
        )


def _check_number(schema: Schema, value: float, path: str, errs: CauseList) -> None:
    if (low := schema.get("minimum")) is not None:
        if schema.get("exclusiveMinimum") and value <= low:
            errs.invalid_value(path, value, f"{path} in body should be greater than {_num(low)}")
        elif value < low:
            errs.invalid_value(
                path, value, f"{path} in body should be greater than or equal to {_num(low)}"
            )
    if (high := schema.get("maximum")) is not None:
        if schema.get("exclusiveMaximum") and value >= high:
            errs.invalid_value(path, value, f"{path} in body should be less than {_num(high)}")
        elif value > high:
            errs.invalid_value(
                path, value, f"{path} in body should be less than or equal to {_num(high)}"
            )
    if (mult := schema.get("multipleOf")) and (value / mult) != int(value / mult):
        errs.invalid_value(path, value, f"{path} in body should be a multiple of {_num(mult)}")
    fmt = schema.get("format")
    if fmt == "int32" and not -(2**31) <= value < 2**31:
        errs.invalid_value(path, value, f"{path} in body must be of type int32")


_FORMATS = {
    "date-time": lambda s: datetime.fromisoformat(s.replace("Z", "+00:00")),
    "date": lambda s: datetime.strptime(s, "%Y-%m-%d"),
}


def _check_string(schema: Schema, value: str, path: str, errs: CauseList) -> None:
    if (low := schema.get("minLength")) is not None and len(value) < low:
        errs.invalid_value(path, value, f"{path} in body should be at least {low} chars long")
    if (high := schema.get("maxLength")) is not None and len(value) > high:
        errs.add(path, f"Too long: may not be more than {high} bytes", "FieldValueTooLong")
    if (pattern := schema.get("pattern")) is not None and not re.search(pattern, value):
        errs.invalid_value(path, value, f"{path} in body should match '{pattern}'")
    check = _FORMATS.get(str(schema.get("format")))
    if check is not None:
        try:
            check(value)
        except ValueError:
            errs.invalid_value(
                path, value, f"{path} in body must be of type {schema['format']}: {go_value(value)}"
            )


def _check_array(schema: Schema, value: list[Any], path: str, errs: CauseList) -> None:
    if (low := schema.get("minItems")) is not None and len(value) < low:
        errs.invalid_value(path, len(value), f"{path} in body should have at least {low} items")
    if (high := schema.get("maxItems")) is not None and len(value) > high:
        errs.add(
            path, f"Too many: {len(value)}: must have at most {high} items", "FieldValueTooMany"
        )
    items = schema.get("items")
    if isinstance(items, dict):
        for i, item in enumerate(value):
            validate(items, item, f"{path}[{i}]", errs)
    if schema.get("x-kubernetes-list-type") in ("set", "map"):
        keys = schema.get("x-kubernetes-list-map-keys") or []
        seen: list[Any] = []
        for i, item in enumerate(value):
            ident = [item.get(k) for k in keys] if keys and isinstance(item, dict) else item
            if ident in seen:
                errs.add(
                    f"{path}[{i}]", f"Duplicate value: {go_value(item)}", "FieldValueDuplicate"
                )
            seen.append(ident)


def _check_object(schema: Schema, value: dict[str, Any], path: str, errs: CauseList) -> None:
    for key in schema.get("required") or []:
        if key not in value:
            errs.required(f"{path}.{key}" if path else key)
    props: dict[str, Schema] = schema.get("properties") or {}
    extra = schema.get("additionalProperties")
    for key, item in value.items():
        sub_path = f"{path}.{key}" if path else key
        if key in props:
            validate(props[key], item, sub_path, errs)
        elif isinstance(extra, dict):
            validate(extra, item, sub_path, errs)
    if (low := schema.get("minProperties")) is not None and len(value) < low:
        errs.invalid_value(
            path, len(value), f"{path} in body should have at least {low} properties"
        )
    if (high := schema.get("maxProperties")) is not None and len(value) > high:
        errs.add(
            path, f"Too many: {len(value)}: must have at most {high} items", "FieldValueTooMany"
        )


def validate_root(schema: Schema, obj: dict[str, Any]) -> list[Cause]:
    """Validate a whole custom resource; ``apiVersion``/``kind``/``metadata`` are the server's."""
    errs = CauseList()
    body = {k: v for k, v in obj.items() if k not in _ROOT_KEEP}
    props = {k: v for k, v in (schema.get("properties") or {}).items() if k not in _ROOT_KEEP}
    root = dict(schema, properties=props)
    root["required"] = [r for r in schema.get("required") or [] if r not in _ROOT_KEEP]
    _check_object(root, body, "", errs)
    return errs.causes
