"""What one reconcile pass decided, in one type shared by every reconciler (pure).

A Plan lists the children to apply (create, or server-side apply when they differ), the
objects to create only when absent (never updated nor owned: the models claim), the
children to delete, the status as the resource's pydantic status model, and the Events
to post. The fields set on that model are the ones the pass decided; `status_patch`
turns them into the JSON merge patch that writes only what differs.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

StatusT = TypeVar("StatusT", bound=BaseModel)


@dataclass(frozen=True)
class Event:
    """A Kubernetes Event about the reconciled object."""

    reason: str
    message: str
    type: str = "Normal"


@dataclass(frozen=True)
class ObjectRef:
    """A child to delete, by REST coordinates."""

    api_version: str
    plural: str
    name: str

    @classmethod
    def job(cls, name: str) -> ObjectRef:
        return cls("batch/v1", "jobs", name)


@dataclass
class Plan(Generic[StatusT]):
    """One pass's decisions; `status` holds only the fields the pass owns and decided."""

    apply: list[dict[str, Any]] = field(default_factory=list)
    create_if_absent: list[dict[str, Any]] = field(default_factory=list)
    delete: list[ObjectRef] = field(default_factory=list)
    status: StatusT | None = None
    events: list[Event] = field(default_factory=list)

    def wire_status(self) -> dict[str, Any]:
        """The decided status fields as they go on the wire (camelCase JSON)."""
        return wire(self.status) if self.status is not None else {}


def wire(model: BaseModel) -> dict[str, Any]:
    """The fields set on `model`, as JSON with wire (alias) names; unset fields omitted."""
    return model.model_dump(mode="json", by_alias=True, exclude_unset=True)


def with_fields(model: StatusT, **fields: Any) -> StatusT:
    """`model` with `fields` (wire names) set, validated like the rest of it."""
    return type(model).model_validate(wire(model) | fields)


def _drop_nulls(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _drop_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_drop_nulls(v) for v in value]
    return value


def replacement_patch(old: Any, new: Any) -> Any:
    """A JSON merge patch that turns `old` into `new` (nulls delete vanished keys)."""
    if not isinstance(old, Mapping) or not isinstance(new, Mapping):
        return new
    patch: dict[str, Any] = {}
    for key in old.keys() - new.keys():
        patch[key] = None
    for key, value in new.items():
        if key not in old:
            patch[key] = value
        elif old[key] != value:
            patch[key] = replacement_patch(old[key], value)
    return patch


def status_patch(current: Mapping[str, Any], desired: BaseModel | None) -> dict[str, Any]:
    """The merge patch that makes `current` (the status as read) show `desired`.

    Every field set on `desired` replaces the written one when they differ (a field set
    to None, or a nested key it lacks, is removed); fields it does not set belong to
    other writers and are never touched. Empty when nothing differs.
    """
    if desired is None:
        return {}
    wanted = _drop_nulls(wire(desired))
    patch: dict[str, Any] = {}
    for key in desired.model_fields_set:
        info = type(desired).model_fields[key]
        name = info.alias or key
        old, new = current.get(name), wanted.get(name)
        if old != new:
            patch[name] = replacement_patch(old, new)
    return patch
