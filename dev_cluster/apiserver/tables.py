"""Server-side ``Table`` responses, which kubectl asks for to print ``get`` output.

Columns follow the real server for the kinds people look at (pods, deployments,
services, namespaces, jobs); a CRD shows its ``additionalPrinterColumns``; anything
else shows NAME and AGE.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from .resources import ResourceInfo

JSON = dict[str, Any]
Cell = Callable[[JSON], Any]

_NAME_COL: JSON = {
    "name": "Name",
    "type": "string",
    "format": "name",
    "priority": 0,
    "description": "Name must be unique within a namespace.",
}
_AGE_COL: JSON = {
    "name": "Age",
    "type": "string",
    "format": "",
    "priority": 0,
    "description": "CreationTimestamp is a timestamp representing the server "
    "time when this object was created.",
}


def wants_table(accept: str) -> bool:
    return "as=Table" in accept


def human_duration(seconds: float) -> str:
    """Kubernetes' short age format (``5s``, ``3m2s``, ``4h``, ``2d``)."""
    s = int(max(seconds, 0))
    if s < 120:
        return f"{s}s"
    m = s // 60
    if m < 10:
        return f"{m}m{s % 60}s" if s % 60 else f"{m}m"
    if m < 180:
        return f"{m}m"
    h = m // 60
    if h < 8:
        return f"{h}h{m % 60}m" if m % 60 else f"{h}h"
    if h < 48:
        return f"{h}h"
    d = h // 24
    if d < 8:
        return f"{d}d{h % 24}h" if h % 24 else f"{d}d"
    if d < 365 * 2:
        return f"{d}d"
    return f"{d // 365}y"


def age(timestamp: Any) -> str:
    if not isinstance(timestamp, str):
        return "<unknown>"
    try:
        then = datetime.fromisoformat(timestamp.replace("Z", "+00:00"))
    except ValueError:
        return "<invalid>"
    return human_duration((datetime.now(UTC) - then).total_seconds())


_TOKEN = re.compile(
    r"\.([A-Za-z0-9_\-]+)|\[(\d+)\]|\[\?\(@\.([A-Za-z0-9_.\-]+)\s*==\s*['\"]"
    r"([^'\"]*)['\"]\)\]"
)


def json_path(obj: Any, path: str) -> Any:
    """The subset of JSONPath printer columns use: fields, indexes, ``[?(@.k=="v")]``."""
    values = [obj]
    path = path.strip().removeprefix("{").removesuffix("}")
    pos = 0
    while pos < len(path):
        m = _TOKEN.match(path, pos)
        if not m:
            return None
        pos = m.end()
        nxt = []
        for v in values:
            if m.group(1) is not None and isinstance(v, dict) and m.group(1) in v:
                nxt.append(v[m.group(1)])
            elif m.group(2) is not None and isinstance(v, list) and int(m.group(2)) < len(v):
                nxt.append(v[int(m.group(2))])
            elif m.group(3) is not None and isinstance(v, list):
                nxt += [
                    i
                    for i in v
                    if isinstance(i, dict) and str(json_path(i, "." + m.group(3))) == m.group(4)
                ]
        values = nxt
    return values[0] if values else None


def _pod_ready(pod: JSON) -> str:
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    total = len((pod.get("spec") or {}).get("containers") or [])
    return f"{sum(1 for s in statuses if s.get('ready'))}/{total}"


def _pod_status(pod: JSON) -> str:
    if pod["metadata"].get("deletionTimestamp"):
        return "Terminating"
    status = pod.get("status") or {}
    for st in status.get("containerStatuses") or []:
        state = st.get("state") or {}
        for kind in ("waiting", "terminated"):
            if (state.get(kind) or {}).get("reason"):
                return str(state[kind]["reason"])
    return str(status.get("reason") or status.get("phase") or "Pending")


def _restarts(pod: JSON) -> int:
    return sum(
        int(s.get("restartCount") or 0)
        for s in (pod.get("status") or {}).get("containerStatuses") or []
    )


def _ports(svc: JSON) -> str:
    ports = (svc.get("spec") or {}).get("ports") or []
    return ",".join(f"{p.get('port')}/{p.get('protocol', 'TCP')}" for p in ports) or "<none>"


def _col(name: str, kind: str = "string", priority: int = 0) -> JSON:
    return {"name": name, "type": kind, "format": "", "priority": priority, "description": ""}


_BUILTIN: dict[tuple[str, str], list[tuple[JSON, Cell]]] = {
    ("", "pods"): [
        (_col("Ready"), _pod_ready),
        (_col("Status"), _pod_status),
        (_col("Restarts", "integer"), _restarts),
        (_AGE_COL, lambda o: age(o["metadata"].get("creationTimestamp"))),
        (_col("IP", priority=1), lambda o: (o.get("status") or {}).get("podIP") or "<none>"),
        (_col("Node", priority=1), lambda o: (o.get("spec") or {}).get("nodeName") or "<none>"),
    ],
    ("apps", "deployments"): [
        (
            _col("Ready"),
            lambda o: (
                f"{(o.get('status') or {}).get('readyReplicas', 0)}/"
                f"{(o.get('spec') or {}).get('replicas', 0)}"
            ),
        ),
        (
            _col("Up-to-date", "integer"),
            lambda o: (o.get("status") or {}).get("updatedReplicas", 0),
        ),
        (
            _col("Available", "integer"),
            lambda o: (o.get("status") or {}).get("availableReplicas", 0),
        ),
    ],
    ("", "services"): [
        (_col("Type"), lambda o: (o.get("spec") or {}).get("type", "ClusterIP")),
        (_col("Cluster-IP"), lambda o: (o.get("spec") or {}).get("clusterIP") or "<none>"),
        (_col("External-IP"), lambda o: "<none>"),
        (_col("Port(s)"), _ports),
    ],
    ("", "namespaces"): [(_col("Status"), lambda o: (o.get("status") or {}).get("phase", ""))],
    ("batch", "jobs"): [
        (
            _col("Status"),
            lambda o: "Complete" if (o.get("status") or {}).get("succeeded") else "Running",
        ),
        (
            _col("Completions"),
            lambda o: (
                f"{(o.get('status') or {}).get('succeeded', 0)}/"
                f"{(o.get('spec') or {}).get('completions', 1)}"
            ),
        ),
    ],
}


def _value_at(path: str) -> Cell:
    def cell(obj: JSON) -> Any:
        return json_path(obj, path)

    return cell


def _age_at(path: str) -> Cell:
    def cell(obj: JSON) -> Any:
        return age(json_path(obj, path))

    return cell


def _columns(info: ResourceInfo) -> list[tuple[JSON, Cell]]:
    """(definition, cell function) pairs after the implicit Name column."""
    age_cell: Cell = lambda o: age(o["metadata"].get("creationTimestamp"))  # noqa: E731
    if not info.builtin and info.printer_columns:
        out: list[tuple[JSON, Cell]] = []
        for col in info.printer_columns:
            path, kind = str(col.get("jsonPath", "")), str(col.get("type", "string"))
            definition = {
                "name": col.get("name", ""),
                "type": kind,
                "format": col.get("format", ""),
                "priority": col.get("priority", 0),
                "description": col.get("description", ""),
            }
            if kind == "date":
                definition["type"] = "string"
                out.append((definition, _age_at(path)))
            else:
                out.append((definition, _value_at(path)))
        return out
    cols = list(_BUILTIN.get(info.group_resource, []))
    if not any(c[0]["name"] == "Age" for c in cols):
        insert_at = len([c for c in cols if c[0]["priority"] == 0])
        cols.insert(insert_at, (_AGE_COL, age_cell))
    return cols


def _row(info: ResourceInfo, obj: JSON, cols: list[tuple[JSON, Cell]], include: str) -> JSON:
    cells = [obj["metadata"]["name"]] + [_safe(cell, obj) for _, cell in cols]
    row: JSON = {"cells": cells}
    if include == "Object":
        row["object"] = obj
    elif include != "None":
        row["object"] = {
            "kind": "PartialObjectMetadata",
            "apiVersion": "meta.k8s.io/v1",
            "metadata": obj["metadata"],
        }
    return row


def _safe(cell: Cell, obj: JSON) -> Any:
    try:
        value = cell(obj)
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return value if isinstance(value, str | int | float | bool) or value is None else str(value)


def table(info: ResourceInfo, objs: list[JSON], list_meta: JSON, include: str) -> JSON:
    cols = _columns(info)
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": list_meta,
        "columnDefinitions": [_NAME_COL, *[c[0] for c in cols]],
        "rows": [_row(info, o, cols, include) for o in objs],
    }
