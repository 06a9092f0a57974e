"""The committed CRDs are exactly what the models render, and they are structural."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gantry.crdgen import all_crds, render

ROOT = Path(__file__).resolve().parents[2]
CRDS = all_crds()


@pytest.mark.parametrize("filename", sorted(CRDS))
def test_committed_crd_matches_models(filename: str) -> None:
    committed = (ROOT / "crds" / filename).read_text(encoding="utf-8")
    assert committed == render(CRDS[filename]), f"crds/{filename} is stale: run `make crds`"


def test_no_other_files_in_crds() -> None:
    assert sorted(p.name for p in (ROOT / "crds").glob("*.yaml")) == sorted(CRDS)


def _walk(node: dict[str, Any], path: str) -> list[tuple[str, dict[str, Any]]]:
    found = [(path, node)]
    for name, child in node.get("properties", {}).items():
        found += _walk(child, f"{path}.{name}")
    if isinstance(node.get("items"), dict):
        found += _walk(node["items"], f"{path}[]")
    if isinstance(node.get("additionalProperties"), dict):
        found += _walk(node["additionalProperties"], f"{path}{{}}")
    return found


FORBIDDEN = ("$ref", "anyOf", "allOf", "oneOf", "$defs", "title", "const")


@pytest.mark.parametrize("filename", sorted(CRDS))
def test_schema_is_structural_and_explained(filename: str) -> None:
    version = CRDS[filename]["spec"]["versions"][0]
    schema = version["schema"]["openAPIV3Schema"]
    for path, node in _walk(schema, "<root>"):
        for key in FORBIDDEN:
            assert key not in node, f"{path} has {key}"
        assert node.get("additionalProperties") is not False, path
        assert not ("properties" in node and "additionalProperties" in node), path
        typed = "type" in node or node.get("x-kubernetes-int-or-string")
        assert typed, f"{path} has no type"
        is_field = not path.endswith(("[]", "{}"))
        if is_field and path.startswith(("<root>.spec", "<root>.status")):
            assert node.get("description"), f"{path} has no description (kubectl explain)"
        if "exclusiveMinimum" in node:
            assert node["exclusiveMinimum"] is True and "minimum" in node, path


def _unbounded(path: str, node: dict[str, Any]) -> str | None:
    if node.get("type") == "array" and "maxItems" not in node:
        return f"{path}: array without maxItems"
    if "additionalProperties" in node and "maxProperties" not in node:
        return f"{path}: map without maxProperties"
    is_string = node.get("type") == "string" or node.get("x-kubernetes-int-or-string")
    if is_string and "enum" not in node and "maxLength" not in node:
        return f"{path}: string without maxLength"
    return None


@pytest.mark.parametrize("filename", sorted(CRDS))
def test_every_list_map_and_string_of_the_spec_is_bounded(filename: str) -> None:
    """kube-apiserver estimates CEL rule cost from these bounds; an unbounded one sinks the CRD.

    The spec is where the rules are, and its rules read most of it; bounding all of it keeps
    a new field from silently pushing a rule over the budget. Opaque core/v1 objects
    (volume sources, valueFrom) are passed through, not read by any rule.
    """
    schema = CRDS[filename]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    problems = [
        _unbounded(path, node) for path, node in _walk(schema["properties"]["spec"], "spec")
    ]
    assert [p for p in problems if p] == []


def test_status_and_scale_subresources() -> None:
    tj = CRDS["gantry.dev_trainingjobs.yaml"]["spec"]
    isvc = CRDS["gantry.dev_inferenceservices.yaml"]["spec"]
    assert tj["versions"][0]["subresources"] == {"status": {}}
    assert isvc["versions"][0]["subresources"]["scale"] == {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    assert tj["names"]["shortNames"] == ["tj"]
    assert "isvc" not in isvc["names"]["shortNames"]


def test_printer_columns() -> None:
    def names(filename: str) -> list[str]:
        return [
            c["name"] for c in CRDS[filename]["spec"]["versions"][0]["additionalPrinterColumns"]
        ]

    assert names("gantry.dev_trainingjobs.yaml")[:5] == [
        "Phase",
        "Workers",
        "Active",
        "Progress",
        "Attempts",
    ]
    assert {"Phase", "Ready", "P95(ms)", "RPS", "Endpoint", "Age"} <= set(
        names("gantry.dev_inferenceservices.yaml")
    )


def _rules(node: dict[str, Any]) -> list[str]:
    return [r["rule"] for _, n in _walk(node, "") for r in n.get("x-kubernetes-validations", [])]


def test_cross_field_rules_are_in_the_crds() -> None:
    isvc_rules = " ".join(
        _rules(
            CRDS["gantry.dev_inferenceservices.yaml"]["spec"]["versions"][0]["schema"][
                "openAPIV3Schema"
            ]
        )
    )
    assert "self.minReplicas <= self.maxReplicas" in isvc_rules
    assert "has(self.trainingJobRef) != has(self.storageUri)" in isvc_rules
    tj_rules = _rules(
        CRDS["gantry.dev_trainingjobs.yaml"]["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    )
    assert any("MASTER_ADDR" in r for r in tj_rules)
    assert sum("oldSelf" in r for r in tj_rules) >= 5, "immutable fields need transition rules"


def test_crd_yaml_parses_back() -> None:
    for filename in CRDS:
        assert yaml.safe_load((ROOT / "crds" / filename).read_text()) == CRDS[filename]
