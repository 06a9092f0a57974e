"""API errors with the status the server answered, so callers branch on meaning."""

from __future__ import annotations

import json
from typing import Any


class ApiError(Exception):
    """A request the API server refused; `status` is the HTTP status (0: no answer)."""

    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(f"{status} {reason}: {message}")
        self.status = status
        self.reason = reason
        self.message = message
        # Seconds the server asked us to wait (429/503 `Retry-After`), when it said.
        self.retry_after: float | None = None


class NotFound(ApiError):
    """404: the object (or its kind) does not exist."""


class Conflict(ApiError):
    """409: already exists, or a stale resourceVersion."""


class Invalid(ApiError):
    """422: the server rejected the object's content."""


_BY_STATUS: dict[int, type[ApiError]] = {404: NotFound, 409: Conflict, 422: Invalid}


def from_status(status: int, body: Any, fallback_reason: str = "") -> ApiError:
    """Build the right ApiError from a status code and a (maybe JSON) Status body."""
    reason = fallback_reason
    message = ""
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    if isinstance(text, str) and text:
        try:
            parsed = json.loads(text)
        except ValueError:
            message = text[:1024]
        else:
            if isinstance(parsed, dict):
                reason = str(parsed.get("reason") or reason)
                message = str(parsed.get("message") or "")
            else:
                message = text[:1024]
    cls = _BY_STATUS.get(status, ApiError)
    return cls(status, reason or "Error", message)
