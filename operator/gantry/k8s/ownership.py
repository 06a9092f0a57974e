"""Owner references and Gantry's labels: children are owned so deletion cascades."""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

MANAGED_BY = "gantry"
PART_OF = "gantry"


def owner_reference(owner: Mapping[str, Any], *, controller: bool = True) -> dict[str, Any]:
    """An ownerReference to `owner`; it must carry apiVersion, kind, name and uid."""
    meta = owner.get("metadata") or {}
    missing = [
        key
        for key, value in (
            ("apiVersion", owner.get("apiVersion")),
            ("kind", owner.get("kind")),
            ("metadata.name", meta.get("name")),
            ("metadata.uid", meta.get("uid")),
        )
        if not value
    ]
    if missing:
        raise ValueError(f"cannot reference an owner without {', '.join(missing)}")
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": controller,
        "blockOwnerDeletion": True,
    }


def adopt(
    child: dict[str, Any],
    owner: Mapping[str, Any],
    *,
    labels: Mapping[str, str] | None = None,
) -> dict[str, Any]:
    """A copy of `child` in the owner's namespace, owned by it and labelled as Gantry's.

    An existing controller reference to another owner is replaced: one object has one
    controller. Labels given here win over the child's own.
    """
    adopted = copy.deepcopy(child)
    meta = adopted.setdefault("metadata", {})
    owner_meta = owner.get("metadata") or {}
    if owner_meta.get("namespace"):
        meta["namespace"] = owner_meta["namespace"]
    ref = owner_reference(owner)
    others = [
        r
        for r in meta.get("ownerReferences") or []
        if r.get("uid") != ref["uid"] and not r.get("controller")
    ]
    meta["ownerReferences"] = [*others, ref]
    merged = dict(meta.get("labels") or {})
    merged.setdefault("app.kubernetes.io/managed-by", MANAGED_BY)
    merged.setdefault("app.kubernetes.io/part-of", PART_OF)
    merged.setdefault("app.kubernetes.io/instance", str(owner_meta.get("name", "")))
    merged.update(labels or {})
    meta["labels"] = merged
    return adopted
