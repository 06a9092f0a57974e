"""Kubernetes-style conditions (metav1.Condition), computed without I/O."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any


def rfc3339(moment: datetime) -> str:
    """`moment` as Kubernetes writes times: UTC, second precision, trailing Z."""
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def now_rfc3339() -> str:
    """The current time as Kubernetes writes it."""
    return rfc3339(datetime.now(UTC))


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp as an aware datetime; None when absent or malformed."""
    if not value:
        return None
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _status_text(status: bool | str) -> str:
    if isinstance(status, bool):
        return "True" if status else "False"
    if status not in ("True", "False", "Unknown"):
        raise ValueError(f"condition status must be True, False or Unknown, not {status!r}")
    return status


def get_condition(conditions: Sequence[Mapping[str, Any]], type_: str) -> Mapping[str, Any] | None:
    """The condition of this type, or None when it was never set."""
    for condition in conditions:
        if condition.get("type") == type_:
            return condition
    return None


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: bool | str,
    reason: str,
    message: str,
    *,
    now: str,
    generation: int | None = None,
) -> list[dict[str, Any]]:
    """Return a new list with the condition set, in place of any earlier one of that type.

    `lastTransitionTime` moves only when the status changes, so watchers can tell how long
    a condition has held; reason and message always take the newest values.
    """
    text = _status_text(status)
    previous = get_condition(conditions, type_)
    changed = previous is None or previous.get("status") != text
    transition = now if changed or previous is None else previous.get("lastTransitionTime", now)
    updated: dict[str, Any] = {
        "type": type_,
        "status": text,
        "reason": reason,
        "message": message,
        "lastTransitionTime": transition,
    }
    if generation is not None:
        updated["observedGeneration"] = generation
    result: list[dict[str, Any]] = []
    placed = False
    for condition in conditions:
        if condition.get("type") == type_:
            if not placed:
                result.append(updated)
                placed = True
        else:
            result.append(dict(condition))
    if not placed:
        result.append(updated)
    return result
