"""Kubernetes ``Status`` errors, worded exactly as kube-apiserver words them.

Clients (kopf, the ``kubernetes`` client, kubectl) branch on ``reason`` and ``code`` and
show ``message`` to people, so all three must match the real server.
"""

from __future__ import annotations

import json
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Cause:
    """One field error of an Invalid status (``details.causes[]``)."""

    field: str
    message: str
    reason: str = "FieldValueInvalid"

    def render(self) -> str:
        """The ``<field>: <message>`` text the real server joins into its message."""
        return f"{self.field}: {self.message}" if self.field else self.message


class APIError(Exception):
    """An error the server answers with a ``Status`` object."""

    def __init__(
        self,
        code: int,
        reason: str,
        message: str,
        details: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.reason = reason
        self.message = message
        self.details = details

    def status(self) -> dict[str, Any]:
        """The ``Status`` object sent on the wire."""
        out: dict[str, Any] = {
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        }
        if self.details is not None:
            out["details"] = self.details
        return out


def qualified(plural: str, group: str) -> str:
    """``configmaps`` or ``trainingjobs.gantry.dev``: how messages name a resource."""
    return f"{plural}.{group}" if group else plural


def _details(name: str, group: str, kind: str) -> dict[str, Any]:
    out: dict[str, Any] = {"name": name, "kind": kind}
    if group:
        out["group"] = group
    return out


def not_found(plural: str, group: str, name: str) -> APIError:
    return APIError(
        404,
        "NotFound",
        f'{qualified(plural, group)} "{name}" not found',
        _details(name, group, plural),
    )


def already_exists(plural: str, group: str, name: str) -> APIError:
    return APIError(
        409,
        "AlreadyExists",
        f'{qualified(plural, group)} "{name}" already exists',
        _details(name, group, plural),
    )


def conflict(plural: str, group: str, name: str, why: str | None = None) -> APIError:
    why = why or (
        "the object has been modified; please apply your changes to the latest version "
        "and try again"
    )
    return APIError(
        409,
        "Conflict",
        f'Operation cannot be fulfilled on {qualified(plural, group)} "{name}": {why}',
        _details(name, group, plural),
    )


def invalid(kind: str, group: str, name: str, causes: list[Cause]) -> APIError:
    """422 Invalid; ``kind`` is the Kind (``TrainingJob``), as the real server words it."""
    who = f"{kind}.{group}" if group else kind
    rendered = [c.render() for c in causes]
    body = rendered[0] if len(rendered) == 1 else "[" + ", ".join(rendered) + "]"
    details = _details(name, group, kind)
    details["causes"] = [
        {"reason": c.reason, "message": c.message, "field": c.field} for c in causes
    ]
    return APIError(422, "Invalid", f'{who} "{name}" is invalid: {body}', details)


def bad_request(message: str) -> APIError:
    return APIError(400, "BadRequest", message)


def forbidden(plural: str, group: str, name: str, why: str) -> APIError:
    return APIError(
        403,
        "Forbidden",
        f'{qualified(plural, group)} "{name}" is forbidden: {why}',
        _details(name, group, plural),
    )


def method_not_allowed() -> APIError:
    return APIError(
        405, "MethodNotAllowed", "the server does not allow this method on the requested resource"
    )


def unsupported_media_type(content_type: str) -> APIError:
    return APIError(
        415,
        "UnsupportedMediaType",
        f"the body of the request was in an unknown format - "
        f"accepted media types include: application/json, application/yaml, "
        f"application/merge-patch+json, application/json-patch+json, "
        f"application/strategic-merge-patch+json, application/apply-patch+yaml "
        f"(got {content_type!r})",
    )


def expired(message: str) -> APIError:
    return APIError(410, "Expired", message)


def too_old_resource_version(requested: int, oldest: int) -> APIError:
    return expired(f"too old resource version: {requested} ({oldest})")


CONTINUE_EXPIRED = (
    "The provided continue parameter is too old to display a consistent list result. "
    "You can start a new list without the continue parameter, or use the continue token "
    "in this response to retrieve the remainder of the results. Continuing with the "
    "provided token results in an inconsistent list - objects that were created, modified, "
    "or deleted between the time the first chunk was returned and now may show up in the list."
)


def go_value(value: Any) -> str:
    """Render a value as Go's field errors do: strings quoted, objects by type name."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e21:
        return str(int(value))
    if isinstance(value, int | float):
        return json.dumps(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, dict):
        return '"object"'
    if isinstance(value, list):
        return '"array"'
    if value is None:
        return '"null"'
    return json.dumps(str(value))


@dataclass
class CauseList:
    """Collects field errors while a validator walks an object."""

    causes: list[Cause] = field(default_factory=list)

    def add(self, path: str, message: str, reason: str = "FieldValueInvalid") -> None:
        self.causes.append(Cause(path, message, reason))

    def invalid_value(self, path: str, value: Any, detail: str) -> None:
        self.add(path, f"Invalid value: {go_value(value)}: {detail}")

    def required(self, path: str) -> None:
        self.add(path, "Required value", "FieldValueRequired")


# Warnings for the current request (``Warning: 299 - "..."`` headers), e.g. unknown fields
# dropped under the default ``fieldValidation=Warn``.
WARNINGS: ContextVar[list[str] | None] = ContextVar("apiserver_warnings", default=None)


def warn(message: str) -> None:
    bucket = WARNINGS.get()
    if bucket is not None:
        bucket.append(message)
