"""Small pure helpers on object metadata: timestamps, names, dotted paths."""

from __future__ import annotations

import copy
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

JSON = dict[str, Any]

_NAME_CHARS = "bcdfghjklmnpqrstvwxz2456789"


def now() -> str:
    """RFC 3339 to the second, as Kubernetes stamps creationTimestamp."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def micro_now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def new_uid() -> str:
    return str(uuid.uuid4())


def generated_name(prefix: str) -> str:
    """``generateName`` + 5 random characters from Kubernetes' alphabet."""
    return prefix[:58] + "".join(secrets.choice(_NAME_CHARS) for _ in range(5))


def spec_of(obj: JSON) -> JSON:
    """Everything that counts as "spec" for metadata.generation: all but metadata/status."""
    return {k: v for k, v in obj.items() if k not in ("metadata", "status", "apiVersion", "kind")}


def get_path(obj: Any, path: str) -> Any:
    """Read a ``.spec.replicas``-style path; None when any part is missing."""
    cur = obj
    for part in path.strip(".").split("."):
        if not isinstance(cur, dict):
            return None
        cur = cur.get(part)
    return cur


def set_path(obj: JSON, path: str, value: Any) -> None:
    """Write a ``.spec.replicas``-style path, creating parent objects."""
    parts = path.strip(".").split(".")
    cur = obj
    for part in parts[:-1]:
        nxt = cur.get(part)
        if not isinstance(nxt, dict):
            nxt = {}
            cur[part] = nxt
        cur = nxt
    cur[parts[-1]] = value


def clone(obj: JSON) -> JSON:
    return copy.deepcopy(obj)


def deleting(obj: JSON) -> bool:
    return bool(obj["metadata"].get("deletionTimestamp"))
