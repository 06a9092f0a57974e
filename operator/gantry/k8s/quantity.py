"""Resource quantities compared by amount, the way the API server stores them.

The API server canonicalises every quantity it stores: `2048Mi` comes back as `2Gi`,
`1000m` as `1`, `0.5` as `500m` and the integer `2` as the string `"2"`. A desired object
compared with what the server returns must therefore compare quantities by amount, or
every reconcile pass sees a difference that is not one and patches the object again.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from kubernetes.utils.quantity import parse_quantity

# Maps whose values are all quantities (ResourceRequirements, PVC requests, quotas).
QUANTITY_MAPS = frozenset({"requests", "limits", "capacity", "allocatable", "hard"})
# Single fields that hold a quantity (emptyDir.sizeLimit, HPA metric targets).
QUANTITY_FIELDS = frozenset({"sizeLimit", "averageValue"})


def amount(value: Any) -> Decimal | None:
    """The amount a quantity stands for (`2Gi` → 2147483648); None if it is not one."""
    if isinstance(value, bool) or not isinstance(value, int | float | str):
        return None
    try:
        parsed: Decimal = parse_quantity(value)  # type: ignore[no-untyped-call]
    except (ValueError, ArithmeticError):
        return None
    return parsed if parsed.is_finite() else None  # Decimal also reads "NaN", "Infinity"


def same_quantity(a: Any, b: Any) -> bool:
    """True when both are quantities of the same amount (`2048Mi` and `2Gi`, `1` and 1)."""
    left, right = amount(a), amount(b)
    return left is not None and left == right


def canonical_quantities(obj: Any) -> Any:
    """A copy of `obj` where every quantity in a known quantity field is its amount.

    Only fields that hold quantities by definition are touched (`resources.requests`,
    `limits`, `sizeLimit`, …): a string such as an env value or an image tag is never read
    as a number. Values that do not parse are left as they are, so they still differ.
    """
    if isinstance(obj, list):
        return [canonical_quantities(item) for item in obj]
    if not isinstance(obj, Mapping):
        return obj
    out: dict[str, Any] = {}
    for key, value in obj.items():
        if key in QUANTITY_MAPS and isinstance(value, Mapping):
            out[key] = {name: _amount_or_value(v) for name, v in value.items()}
        elif key in QUANTITY_FIELDS:
            out[key] = _amount_or_value(value)
        else:
            out[key] = canonical_quantities(value)
    return out


def _amount_or_value(value: Any) -> Any:
    parsed = amount(value)
    return value if parsed is None else parsed
