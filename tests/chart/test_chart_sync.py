"""The chart's copies and defaults agree with their sources in the code."""

from __future__ import annotations

import json
from pathlib import Path

import yaml
from chart_testkit import CHART, ROOT, Render, of_kind

from gantry import rbac
from gantry.config import OperatorConfig, load_config

FILES = CHART / "files"
SYNC = "scripts/sync-chart-crds.sh"


def test_chart_crds_are_the_generated_crds() -> None:
    sources = {p.name: p.read_text(encoding="utf-8") for p in (ROOT / "crds").glob("*.yaml")}
    copies = {p.name: p.read_text(encoding="utf-8") for p in (FILES / "crds").glob("*.yaml")}
    assert sources, "crds/ is empty: run `make crds`"
    drifted = sorted(n for n in sources.keys() | copies.keys() if sources.get(n) != copies.get(n))
    assert drifted == [], f"charts/gantry/files/crds drifted from crds/: run {SYNC}"


def test_chart_rbac_rules_are_gantry_rbac() -> None:
    text = (FILES / "rbac-rules.yaml").read_text(encoding="utf-8")
    assert text == rbac.render_chart_file(), f"files/rbac-rules.yaml drifted: run {SYNC}"


def test_values_config_defaults_are_the_operator_defaults() -> None:
    values = yaml.safe_load((CHART / "values.yaml").read_text(encoding="utf-8"))
    from_values = OperatorConfig.model_validate(values["config"])
    assert from_values == OperatorConfig()


# Settings the chart derives from its own top-level values (`metrics`, `peering`,
# `healthPort`), passed as GANTRY_* variables and `--liveness` in the Deployment.
CHART_DERIVED = {"metricsPort": "GANTRY_METRICS_PORT", "peering": "GANTRY_PEERING"}


def test_values_schema_covers_exactly_the_operator_config_fields() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    config = schema["properties"]["config"]
    aliases = {field.alias or name for name, field in OperatorConfig.model_fields.items()}
    assert set(config["properties"]) == aliases - {*CHART_DERIVED, "liveness"}
    assert config["additionalProperties"] is False
    deployment = (CHART / "templates" / "deployment.yaml").read_text(encoding="utf-8")
    for variable in CHART_DERIVED.values():
        assert f"name: {variable}" in deployment
    assert "--liveness=" in deployment


def test_every_schema_object_level_forbids_unknown_keys() -> None:
    schema = json.loads((CHART / "values.schema.json").read_text(encoding="utf-8"))
    # Kubernetes objects passed through as they are: the API server validates them.
    passthrough = {"affinity.nodeAffinity", "affinity.podAffinity", "affinity.podAntiAffinity"}
    open_objects = []

    def walk(node: object, path: str) -> None:
        if isinstance(node, dict):
            if node.get("type") == "object" and "properties" in node:
                if node.get("additionalProperties") is not False:
                    open_objects.append(path)
            elif (
                node.get("type") == "object"
                and "additionalProperties" not in node
                and path not in passthrough
                and not path.endswith(".valueFrom")
            ):
                open_objects.append(path)
            for key, child in node.get("properties", {}).items():
                walk(child, f"{path}.{key}".lstrip("."))
            for key in ("items", "additionalProperties"):
                if isinstance(node.get(key), dict):
                    walk(node[key], path)
            for alternative in node.get("anyOf", []):
                walk(alternative, path)

    walk(schema, "")
    assert open_objects == []


def test_rendered_config_map_is_a_valid_operator_configuration(
    render: Render, tmp_path: Path
) -> None:
    docs = render({"config": {"watchNamespaces": ["ml"], "engineCacheClaim": "engines"}})
    (config_map,) = [d for d in of_kind(docs, "ConfigMap") if "config.yaml" in d["data"]]
    path = tmp_path / "config.yaml"
    path.write_text(config_map["data"]["config.yaml"], encoding="utf-8")
    config = load_config({"GANTRY_CONFIG": str(path)})
    assert config.watch_namespaces == ("ml",)
    assert config.engine_cache_claim == "engines"
    assert config.model_repository_claim is None


def test_prometheus_adapter_rules_are_the_autoscalers() -> None:
    from gantry.autoscaler.prometheus_adapter import RULES_YAML

    shipped = (FILES / "prometheus-adapter-rules.yaml").read_text(encoding="utf-8")
    assert shipped == RULES_YAML, f"files/prometheus-adapter-rules.yaml drifted: run {SYNC}"
