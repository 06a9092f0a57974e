"""Writing children from a watch cache: create, server-side apply, delete — never others' objects.

The reconcilers hand over what should exist together with what the cache holds under the
same name. A child is written only when it differs from the cached copy (applying the same
state twice sends nothing the second time), and only when this owner controls it: an object
with the child's name that has no controller reference to this owner's UID belongs to
someone else, so it is neither patched, adopted nor deleted — the owner reports a
`ResourceConflict` naming it instead.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal, Protocol

from gantry.k8s.client import matches
from gantry.k8s.conditions import set_condition
from gantry.k8s.errors import Conflict

log = logging.getLogger(__name__)

CONFLICT_CONDITION = "ResourceConflict"

Outcome = Literal["created", "updated", "unchanged", "exists"]


class ChildWriter(Protocol):
    """The part of `KubeClient` that writes children."""

    def create_applied(self, desired: Mapping[str, Any]) -> dict[str, Any]: ...

    def server_side_apply(self, desired: Mapping[str, Any]) -> dict[str, Any]: ...


@dataclass(frozen=True)
class ForeignObject:
    """An object holding a child's name that this owner does not control."""

    kind: str
    name: str
    controller: str | None  # "Kind/name" of its controller, when it has one

    def describe(self) -> str:
        held = f"controlled by {self.controller}" if self.controller else "not created by Gantry"
        return f"{self.kind} '{self.name}' already exists ({held})"


def controller_of(obj: Mapping[str, Any]) -> Mapping[str, Any] | None:
    refs = (obj.get("metadata") or {}).get("ownerReferences") or []
    return next((r for r in refs if r.get("controller")), None)


def controlled_by(obj: Mapping[str, Any], owner_uid: str) -> bool:
    ref = controller_of(obj)
    return ref is not None and str(ref.get("uid")) == owner_uid


def foreign_objects(
    desired: Iterable[Mapping[str, Any]],
    current: Mapping[tuple[str, str], Mapping[str, Any] | None],
    owner_uid: str,
) -> list[ForeignObject]:
    """Desired children whose name is taken by an object this owner does not control."""
    found = []
    for child in desired:
        key = (str(child["kind"]), str(child["metadata"]["name"]))
        existing = current.get(key)
        if existing is None or controlled_by(existing, owner_uid):
            continue
        ref = controller_of(existing)
        holder = f"{ref.get('kind')}/{ref.get('name')}" if ref else None
        found.append(ForeignObject(key[0], key[1], holder))
    return found


def conflict_message(foreign: Iterable[ForeignObject], owner_kind: str) -> str:
    described = "; ".join(f.describe() for f in foreign)
    return (
        f"{described}: Gantry leaves objects it does not own untouched; rename or remove "
        f"them, or rename this {owner_kind}"
    )


def with_conflict_condition(
    conditions: list[dict[str, Any]],
    foreign: list[ForeignObject],
    owner_kind: str,
    *,
    now: str,
    generation: int | None,
) -> list[dict[str, Any]]:
    """Conditions with `ResourceConflict` set (True, naming the objects) or cleared."""
    if foreign:
        return set_condition(
            conditions,
            CONFLICT_CONDITION,
            True,
            CONFLICT_CONDITION,
            conflict_message(foreign, owner_kind),
            now=now,
            generation=generation,
        )
    return [c for c in conditions if c.get("type") != CONFLICT_CONDITION]


def write_child(
    client: ChildWriter, desired: Mapping[str, Any], current: Mapping[str, Any] | None
) -> Outcome:
    """Create `desired` when the cache has nothing, apply it when our fields differ.

    The caller has excluded foreign objects. Creation is create-only: if the name was taken
    meanwhile (our own earlier create not yet in the cache, or someone else's object), the
    server refuses (409) and the next pass, fed by the watch, decides — nothing is
    overwritten or adopted here.
    """
    if current is None:
        try:
            client.create_applied(desired)
        except Conflict:
            return "exists"
        return "created"
    if matches(current, desired):
        return "unchanged"
    client.server_side_apply(desired)
    return "updated"


def log_outcome(outcome: Outcome, desired: Mapping[str, Any]) -> None:
    if outcome in ("created", "updated"):
        meta = desired.get("metadata") or {}
        log.info("%s %s %s/%s", outcome, desired["kind"], meta.get("namespace"), meta.get("name"))
