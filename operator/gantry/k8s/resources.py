"""A container's `resources` block (pure: the optimize Job, Triton and training workers)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def resource_requirements(requests: Mapping[str, Any], limits: Mapping[str, Any]) -> dict[str, Any]:
    """A container's `resources`, leaving out empty requests or limits (as the API does)."""
    resources: dict[str, Any] = {}
    if requests:
        resources["requests"] = dict(requests)
    if limits:
        resources["limits"] = dict(limits)
    return resources
