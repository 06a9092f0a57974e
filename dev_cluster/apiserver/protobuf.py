"""Decode the few Kubernetes protobuf bodies kubectl sends unasked.

``kubectl create configmap|secret|namespace|serviceaccount`` post protobuf
(``application/vnd.kubernetes.protobuf``) and do not fall back to JSON on a 415. Their
messages are small, so the wire format is read here against the field numbers of
``k8s.io/api/core/v1/generated.proto``; answers stay JSON, which kubectl accepts.
"""

from __future__ import annotations

import base64
from typing import Any

from .errors import APIError, unsupported_media_type

MAGIC = b"k8s\x00"

# field number -> (JSON name, type); "msg:X" nests, "map:s"/"map:b" are string/bytes maps,
# "rep:" prefixes repeated fields.
FieldTable = dict[int, tuple[str, str]]
_TABLES: dict[str, FieldTable] = {
    "ObjectMeta": {
        1: ("name", "str"),
        2: ("generateName", "str"),
        3: ("namespace", "str"),
        11: ("labels", "map:s"),
        12: ("annotations", "map:s"),
        13: ("ownerReferences", "rep:msg:OwnerReference"),
        14: ("finalizers", "rep:str"),
    },
    "OwnerReference": {
        1: ("kind", "str"),
        3: ("name", "str"),
        4: ("uid", "str"),
        5: ("apiVersion", "str"),
        6: ("controller", "bool"),
        7: ("blockOwnerDeletion", "bool"),
    },
    "ConfigMap": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("data", "map:s"),
        3: ("binaryData", "map:b"),
        4: ("immutable", "bool"),
    },
    "Secret": {
        1: ("metadata", "msg:ObjectMeta"),
        2: ("data", "map:b"),
        3: ("type", "str"),
        4: ("stringData", "map:s"),
        5: ("immutable", "bool"),
    },
    "Namespace": {1: ("metadata", "msg:ObjectMeta")},
    "ServiceAccount": {1: ("metadata", "msg:ObjectMeta")},
    "TypeMeta": {1: ("apiVersion", "str"), 2: ("kind", "str")},
    "Unknown": {1: ("typeMeta", "msg:TypeMeta"), 2: ("raw", "bytes")},
}


class _Malformed(ValueError):
    pass


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    value = shift = 0
    while True:
        if pos >= len(data):
            raise _Malformed("truncated varint")
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        if not byte & 0x80:
            return value, pos
        shift += 7


def _fields(data: bytes) -> list[tuple[int, int | bytes]]:
    """(field number, value) pairs; varints as int, length-delimited as bytes."""
    out: list[tuple[int, int | bytes]] = []
    pos = 0
    while pos < len(data):
        tag, pos = _varint(data, pos)
        number, wire = tag >> 3, tag & 7
        if wire == 0:
            value, pos = _varint(data, pos)
            out.append((number, value))
        elif wire == 2:
            size, pos = _varint(data, pos)
            out.append((number, data[pos : pos + size]))
            pos += size
        elif wire == 1:
            pos += 8
        elif wire == 5:
            pos += 4
        else:
            raise _Malformed(f"unsupported wire type {wire}")
    return out


def _decode(data: bytes, table_name: str) -> dict[str, Any]:
    table = _TABLES[table_name]
    out: dict[str, Any] = {}
    for number, raw in _fields(data):
        if number not in table:
            continue
        name, kind = table[number]
        repeated = kind.startswith("rep:")
        kind = kind.removeprefix("rep:")
        value: Any
        if kind.startswith("map:"):
            assert isinstance(raw, bytes)
            entry = dict(_fields(raw))
            key = bytes(entry.get(1, b"")).decode()
            val = entry.get(2, b"")
            assert isinstance(val, bytes)
            out.setdefault(name, {})[key] = (
                base64.b64encode(val).decode() if kind == "map:b" else val.decode()
            )
            continue
        if kind == "str":
            assert isinstance(raw, bytes)
            value = raw.decode()
        elif kind == "bytes":
            value = raw
        elif kind == "bool":
            value = bool(raw)
        else:
            assert isinstance(raw, bytes)
            value = _decode(raw, kind.removeprefix("msg:"))
        if repeated:
            out.setdefault(name, []).append(value)
        else:
            out[name] = value
    return out


def decode(body: bytes, content_type: str) -> dict[str, Any]:
    """The JSON form of a protobuf-encoded object, or 415 for kinds not handled here."""
    if not body.startswith(MAGIC):
        raise unsupported_media_type(content_type)
    try:
        envelope = _decode(body[len(MAGIC) :], "Unknown")
        type_meta = envelope.get("typeMeta") or {}
        kind = str(type_meta.get("kind", ""))
        if kind not in _TABLES or kind in ("Unknown", "TypeMeta", "ObjectMeta"):
            raise unsupported_media_type(content_type)
        obj = _decode(bytes(envelope.get("raw", b"")), kind)
    except (_Malformed, UnicodeDecodeError, AssertionError, TypeError) as exc:
        raise APIError(400, "BadRequest", f"unable to decode protobuf body: {exc}") from exc
    meta = obj.setdefault("metadata", {})
    for key in [k for k, v in meta.items() if v in ("", None)]:
        del meta[key]
    return {"apiVersion": type_meta.get("apiVersion", "v1"), "kind": kind, **obj}
