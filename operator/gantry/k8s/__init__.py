"""Kubernetes kit shared by every Gantry reconciler.

Pure helpers (conditions, ownership) compute; `KubeClient` and `event` do the I/O.
"""

from gantry.k8s.client import KubeClient, plural_of
from gantry.k8s.conditions import get_condition, now_rfc3339, set_condition
from gantry.k8s.errors import ApiError, Conflict, Invalid, NotFound
from gantry.k8s.events import event
from gantry.k8s.ownership import MANAGED_BY, PART_OF, adopt, owner_reference

__all__ = [
    "MANAGED_BY",
    "PART_OF",
    "ApiError",
    "Conflict",
    "Invalid",
    "KubeClient",
    "NotFound",
    "adopt",
    "event",
    "get_condition",
    "now_rfc3339",
    "owner_reference",
    "plural_of",
    "set_condition",
]
