"""Pure pieces of the API server: selectors, schema walk, store history, tables, protobuf."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from dev_cluster.apiserver import protobuf, schema, tables
from dev_cluster.apiserver.errors import APIError
from dev_cluster.apiserver.selectors import (
    parse_field_selector,
    parse_label_selector,
    selector_from_match,
    selector_to_string,
)
from dev_cluster.apiserver.store import Store


@pytest.mark.parametrize(
    ("selector", "labels", "expected"),
    [
        ("a=b", {"a": "b"}, True),
        ("a==b", {"a": "c"}, False),
        ("a!=b", {}, True),
        ("a in (b, c)", {"a": "c"}, True),
        ("a notin (b,c)", {"a": "b"}, False),
        ("a", {"a": ""}, True),
        ("!a", {"a": "x"}, False),
        ("example.com/tier=web,!b", {"example.com/tier": "web"}, True),
    ],
)
def test_label_selector(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert parse_label_selector(selector).matches(labels) is expected


def test_label_selector_errors_and_round_trip() -> None:
    with pytest.raises(APIError) as exc:
        parse_label_selector("a in (b")
    assert exc.value.code == 400
    spec = {
        "matchLabels": {"app": "x"},
        "matchExpressions": [{"key": "tier", "operator": "In", "values": ["b", "a"]}],
    }
    text = selector_to_string(spec)
    assert text == "app=x,tier in (a,b)"
    assert parse_label_selector(text).matches({"app": "x", "tier": "a"})
    assert selector_from_match(spec).matches({"app": "x", "tier": "b"})


def test_field_selector_for_custom_resources() -> None:
    sel = parse_field_selector("spec.phase=Running", "gantry.dev", "x", ("spec.phase",))
    assert sel.matches({"spec": {"phase": "Running"}})
    with pytest.raises(APIError) as exc:
        parse_field_selector("spec.other=1", "gantry.dev", "x", ())
    assert exc.value.message == (
        '"spec.other" is not a known field selector: only "metadata.name", "metadata.namespace"'
    )


SCHEMA: dict[str, Any] = {
    "type": "object",
    "properties": {
        "spec": {
            "type": "object",
            "properties": {
                "a": {"type": "integer", "default": 3},
                "nested": {
                    "type": "object",
                    "properties": {"b": {"type": "string", "default": "x"}},
                },
                "free": {"type": "object", "x-kubernetes-preserve-unknown-fields": True},
                "labels": {"type": "object", "additionalProperties": {"type": "string"}},
            },
        },
    },
}


def test_defaults_and_pruning() -> None:
    obj: dict[str, Any] = {
        "metadata": {"name": "n", "extra": 1},
        "spec": {"junk": 1, "free": {"k": {"v": 1}}, "labels": {"x": "y"}},
    }
    schema.apply_defaults(SCHEMA, obj)
    dropped = schema.prune(SCHEMA, obj)
    assert dropped == ["spec.junk"]
    assert obj["spec"] == {"a": 3, "free": {"k": {"v": 1}}, "labels": {"x": "y"}}
    assert obj["metadata"] == {"name": "n", "extra": 1}
    withparent: dict[str, Any] = {"spec": {"nested": {}}}
    schema.apply_defaults(SCHEMA, withparent)
    assert withparent["spec"]["nested"] == {"b": "x"}


def test_store_history_snapshot_and_expiry() -> None:
    store = Store(history_size=3)
    gr = ("", "configmaps")
    for name in ("a", "b"):
        store.put(gr, {"metadata": {"name": name, "namespace": "d", "uid": name}})
    at = store.rv
    store.put(gr, {"metadata": {"name": "c", "namespace": "d", "uid": "c"}})
    store.remove(gr, "d", "a")
    assert [o["metadata"]["name"] for o in store.snapshot(gr, None, at)] == ["a", "b"]
    with pytest.raises(APIError) as exc:
        store.snapshot(gr, None, 1)
    assert exc.value.code == 410


def test_human_duration_and_json_path() -> None:
    assert [tables.human_duration(s) for s in (5, 150, 3600, 7 * 3600 + 60, 3 * 86400)] == [
        "5s",
        "2m30s",
        "60m",
        "7h1m",
        "3d",
    ]
    obj = {
        "status": {
            "conditions": [{"type": "A", "status": "False"}, {"type": "Ready", "status": "True"}]
        }
    }
    assert tables.json_path(obj, '.status.conditions[?(@.type=="Ready")].status') == "True"
    assert tables.json_path(obj, ".status.conditions[0].type") == "A"
    assert tables.json_path(obj, ".missing.path") is None


def _field(number: int, payload: bytes) -> bytes:
    return bytes([number << 3 | 2, len(payload)]) + payload


def test_protobuf_configmap() -> None:
    meta = _field(1, b"cm") + _field(11, _field(1, b"app") + _field(2, b"x"))
    cm = _field(1, meta) + _field(2, _field(1, b"k") + _field(2, b"v"))
    envelope = _field(1, _field(1, b"v1") + _field(2, b"ConfigMap")) + _field(2, cm)
    obj = protobuf.decode(protobuf.MAGIC + envelope, "application/vnd.kubernetes.protobuf")
    assert obj == {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "metadata": {"name": "cm", "labels": {"app": "x"}},
        "data": {"k": "v"},
    }
    secret = _field(1, _field(1, b"s")) + _field(2, _field(1, b"k") + _field(2, b"\x00\x01"))
    envelope = _field(1, _field(1, b"v1") + _field(2, b"Secret")) + _field(2, secret)
    obj = protobuf.decode(protobuf.MAGIC + envelope, "application/vnd.kubernetes.protobuf")
    assert obj["data"] == {"k": base64.b64encode(b"\x00\x01").decode()}
    with pytest.raises(APIError) as exc:
        protobuf.decode(b"not protobuf", "application/vnd.kubernetes.protobuf")
    assert exc.value.code == 415
