"""What one reconcile pass decided, in one type shared by every reconciler (pure).

A Plan lists the children to apply (create, or server-side apply when they differ), the
objects to create only when absent (never updated nor owned: the models claim), the
children to delete, the status fields this reconciler owns, and the Events to post.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel


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
class Plan:
    apply: list[dict[str, Any]] = field(default_factory=list)
    create_if_absent: list[dict[str, Any]] = field(default_factory=list)
    delete: list[ObjectRef] = field(default_factory=list)
    status: dict[str, Any] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)


def status_fields(model: type[BaseModel], *, owned_by_others: Iterable[str]) -> tuple[str, ...]:
    """The status keys (wire names) a reconciler writes: every field of its status model
    except those another writer owns, so a new status field is never silently left out."""
    others = set(owned_by_others)
    names = (info.alias or name for name, info in model.model_fields.items())
    return tuple(n for n in names if n not in others)
