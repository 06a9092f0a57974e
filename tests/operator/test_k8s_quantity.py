"""Quantities compare by amount, so the server's canonical form is not a change."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest

from gantry.k8s.client import _contains
from gantry.k8s.quantity import amount, canonical_quantities, same_quantity


@pytest.mark.parametrize(
    ("ours", "servers"),
    [
        ("2048Mi", "2Gi"),
        ("1000m", "1"),
        ("0.5", "500m"),
        (2, "2"),
        ("1.5Gi", "1536Mi"),
        ("1e3", "1k"),
        ("16Gi", "16Gi"),
        (0, "0"),
    ],
)
def test_equal_amounts_are_the_same_quantity(ours: Any, servers: str) -> None:
    assert same_quantity(ours, servers)
    assert same_quantity(servers, ours)


@pytest.mark.parametrize(
    ("a", "b"),
    [("2Gi", "2G"), ("1", "1001m"), ("512Mi", "1Gi"), ("1", True), ("x", "x"), ("", "")],
)
def test_different_amounts_or_non_quantities_differ(a: Any, b: Any) -> None:
    assert not same_quantity(a, b)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("2Gi", Decimal(2 * 1024**3)),
        ("250m", Decimal("0.25")),
        (3, Decimal(3)),
        ("4k", Decimal(4000)),
    ],
)
def test_amount(value: Any, expected: Decimal) -> None:
    assert amount(value) == expected


@pytest.mark.parametrize(
    "value", ["two", "1.2.3", "Gi", "NaN", "Infinity", None, True, [1], {"a": 1}]
)
def test_amount_of_a_non_quantity_is_none(value: Any) -> None:
    assert amount(value) is None


def _deployment(cpu: Any, memory: Any, *, env: str = "2Gi") -> dict[str, Any]:
    container = {
        "name": "triton",
        "image": "triton:2Gi",
        "env": [{"name": "SIZE", "value": env}],
        "resources": {"requests": {"cpu": cpu, "memory": memory}, "limits": {"memory": memory}},
        "volumeMounts": [{"name": "shm", "mountPath": "/dev/shm"}],
    }
    volume = {"name": "shm", "emptyDir": {"medium": "Memory", "sizeLimit": memory}}
    return {"spec": {"template": {"spec": {"containers": [container], "volumes": [volume]}}}}


def test_canonical_quantities_makes_the_servers_form_compare_equal() -> None:
    desired = _deployment("1000m", "2048Mi")
    stored = _deployment("1", "2Gi")
    assert not _contains(stored, desired), "as strings they differ"
    assert _contains(canonical_quantities(stored), canonical_quantities(desired))


def test_canonical_quantities_still_sees_real_changes() -> None:
    stored = canonical_quantities(_deployment("1", "2Gi"))
    assert not _contains(stored, canonical_quantities(_deployment("2", "2Gi")))
    assert not _contains(stored, canonical_quantities(_deployment("1", "3Gi")))


def test_only_quantity_fields_are_read_as_amounts() -> None:
    desired = canonical_quantities(_deployment("1", "2Gi", env="2048Mi"))
    container = desired["spec"]["template"]["spec"]["containers"][0]
    assert container["env"][0]["value"] == "2048Mi"
    assert container["image"] == "triton:2Gi"
    assert container["resources"]["requests"]["memory"] == Decimal(2 * 1024**3)
    sizes = desired["spec"]["template"]["spec"]["volumes"][0]["emptyDir"]["sizeLimit"]
    assert sizes == Decimal(2 * 1024**3)
    # A value the server would have rejected stays as it is (and so still differs).
    assert canonical_quantities({"limits": {"cpu": "lots"}}) == {"limits": {"cpu": "lots"}}
