"""Render the CRD manifests in `crds/` from the pydantic API models.

`python -m gantry.crdgen crds` (`make crds`) writes one YAML file per kind. The CRDs are
never edited by hand: a test renders them again and fails when `crds/` differs.

pydantic emits JSON Schema 2020-12; Kubernetes wants a *structural* OpenAPI v3 subset:
no `$ref`, no `anyOf` of alternatives, boolean `exclusiveMinimum`, no `additionalProperties:
false` beside `properties`, `x-kubernetes-*` extensions. `structural()` does that
translation; the model classes carry descriptions, bounds, enums, defaults and the CEL
rules, so the CRD and the operator enforce the same contract.
"""

from __future__ import annotations

import copy
import sys
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel
from pydantic.json_schema import GenerateJsonSchema, NoDefault
from pydantic_core import core_schema

from gantry.api.common import GROUP, VERSION, cel
from gantry.api.inferenceservice import InferenceServiceSpec, InferenceServiceStatus
from gantry.api.trainingjob import TrainingJobSpec, TrainingJobStatus

Schema = dict[str, Any]

# Every child object is named after the resource (`<name>-workers`, `<name>-headless`, pod
# hostnames `<name>-<index>`), and those must be DNS-1035 labels of at most 63 characters.
MAX_NAME_LENGTH = 45
_NAME_RULE = cel(
    f"self.metadata.name.matches('^[a-z]([-a-z0-9]*[a-z0-9])?$') && "
    f"size(self.metadata.name) <= {MAX_NAME_LENGTH}",
    f"metadata.name must start with a letter, hold only lowercase letters, digits and '-', "
    f"and be at most {MAX_NAME_LENGTH} characters (child objects are named after it)",
)


class _FactoryDefaults(GenerateJsonSchema):
    """Also publish `default_factory` defaults, so the API server applies them too."""

    def get_default_value(self, schema: core_schema.WithDefaultSchema) -> Any:
        factory = schema.get("default_factory")
        if factory is not None and not schema.get("default_factory_takes_data"):
            return factory()  # type: ignore[call-arg]
        return super().get_default_value(schema)

    def default_schema(self, schema: core_schema.WithDefaultSchema) -> Any:
        if self.get_default_value(schema) is NoDefault:
            return self.generate_inner(schema["schema"])
        return super().default_schema(schema)


def _prune_none(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _prune_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_prune_none(v) for v in value]
    return value


def _is_empty(value: Any) -> bool:
    return value is None or value == [] or value == {}


def structural(node: Schema, defs: dict[str, Schema]) -> Schema:
    """Translate one pydantic JSON-schema node into a structural OpenAPI v3 node."""
    node = copy.deepcopy(node)
    ref = node.pop("$ref", None)
    if ref is not None:
        target = copy.deepcopy(defs[ref.split("/")[-1]])
        target.update(node)  # the field's own description and extensions win
        node = target
    if "allOf" in node and len(node["allOf"]) == 1:
        inner = node.pop("allOf")[0]
        node = {**structural(inner, defs), **node}
    if "anyOf" in node:
        options = [o for o in node.pop("anyOf") if o.get("type") != "null"]
        if node.get("x-kubernetes-int-or-string"):
            # int | str quantities: the extension describes both; the string's bound stays
            # (a rule reading the value needs it, and it applies to strings only).
            for option in options:
                if option.get("type") == "string" and "maxLength" in option:
                    node["maxLength"] = option["maxLength"]
        elif len(options) == 1:
            inner = structural(options[0], defs)
            extras = {k: v for k, v in node.items() if k != "default" or v is not None}
            node = {**inner, **extras}
        else:
            raise ValueError(f"cannot express alternatives {options} in a structural schema")

    out: Schema = {}
    for key, value in node.items():
        if key in ("title", "$defs"):
            continue
        if key == "default":
            value = _prune_none(value)
            if _is_empty(value) and not isinstance(value, bool):
                continue
        if key == "exclusiveMinimum":
            out["minimum"] = value
            out["exclusiveMinimum"] = True
            continue
        if key == "exclusiveMaximum":
            out["maximum"] = value
            out["exclusiveMaximum"] = True
            continue
        if key == "const":
            out["enum"] = [value]
            continue
        if key == "properties":
            if value:
                out["properties"] = {k: structural(v, defs) for k, v in value.items()}
            continue
        if key == "items":
            out["items"] = structural(value, defs)
            continue
        if key == "additionalProperties":
            if value is True:
                out["x-kubernetes-preserve-unknown-fields"] = True
            elif isinstance(value, dict):
                out["additionalProperties"] = structural(value, defs)
            continue  # `false` is the default (unknown fields are pruned)
        out[key] = value

    if out.get("x-kubernetes-int-or-string"):
        out.pop("type", None)
    elif "enum" in out and "type" not in out:
        out["type"] = "string"
    elif "properties" in out or "additionalProperties" in out:
        out.setdefault("type", "object")
    if out.get("x-kubernetes-preserve-unknown-fields"):
        out.setdefault("type", "object")
    return _ordered(out)


_KEY_ORDER = ("type", "description", "required", "properties", "items", "additionalProperties")


def _ordered(node: Schema) -> Schema:
    """Put type and description first so the YAML reads like a hand-written CRD."""
    first = {k: node[k] for k in _KEY_ORDER if k in node}
    return {**first, **{k: v for k, v in sorted(node.items()) if k not in first}}


def model_schema(model: type[BaseModel]) -> Schema:
    raw = model.model_json_schema(by_alias=True, schema_generator=_FactoryDefaults)
    defs = raw.pop("$defs", {})
    return structural(raw, defs)


def _conditions_as_map(status: Schema) -> Schema:
    conditions = status["properties"]["conditions"]
    conditions["x-kubernetes-list-type"] = "map"
    conditions["x-kubernetes-list-map-keys"] = ["type"]
    conditions["items"]["required"] = ["type", "status"]
    return status


def _root(spec: Schema, status: Schema, description: str) -> Schema:
    return {
        "type": "object",
        "description": description,
        "required": ["spec"],
        "properties": {
            "apiVersion": {
                "type": "string",
                "description": "Versioned schema of this object: gantry.dev/v1alpha1.",
            },
            "kind": {"type": "string", "description": "The REST resource this object represents."},
            # The API server owns metadata's schema and rejects any other keyword here
            # (a description included): "must not specify anything other than name and
            # generateName".
            "metadata": {"type": "object"},
            "spec": spec,
            "status": _conditions_as_map(status),
        },
        "x-kubernetes-validations": [_NAME_RULE],
    }


def _crd(
    *,
    kind: str,
    plural: str,
    short_names: list[str],
    schema: Schema,
    columns: list[dict[str, Any]],
    scale: dict[str, str] | None,
) -> dict[str, Any]:
    subresources: dict[str, Any] = {"status": {}}
    if scale:
        subresources["scale"] = scale
    return {
        "apiVersion": "apiextensions.k8s.io/v1",
        "kind": "CustomResourceDefinition",
        "metadata": {
            "name": f"{plural}.{GROUP}",
            "labels": {"app.kubernetes.io/part-of": "gantry"},
        },
        "spec": {
            "group": GROUP,
            "names": {
                "kind": kind,
                "listKind": f"{kind}List",
                "plural": plural,
                "singular": kind.lower(),
                "shortNames": short_names,
                "categories": ["gantry"],
            },
            "scope": "Namespaced",
            "versions": [
                {
                    "name": VERSION,
                    "served": True,
                    "storage": True,
                    "schema": {"openAPIV3Schema": schema},
                    "subresources": subresources,
                    "additionalPrinterColumns": columns,
                }
            ],
        },
    }


def _column(name: str, path: str, kind: str = "string", **extra: Any) -> dict[str, Any]:
    return {"name": name, "type": kind, "jsonPath": path, **extra}


def training_job_crd() -> dict[str, Any]:
    schema = _root(
        model_schema(TrainingJobSpec),
        model_schema(TrainingJobStatus),
        "TrainingJob runs a PyTorch training script under torchrun on N worker pods "
        "(DDP), checkpoints it, restarts it from the last checkpoint on failure, and "
        "exports the trained model for InferenceServices.",
    )
    columns = [
        _column("Phase", ".status.phase"),
        _column("Workers", ".spec.workers", "integer"),
        _column("Active", ".status.workers.active", "integer"),
        _column("Progress", ".status.progress.summary"),
        _column("Attempts", ".status.attempts", "integer", priority=1),
        _column("Message", ".status.message", priority=1),
        _column("Age", ".metadata.creationTimestamp", "date"),
    ]
    return _crd(
        kind="TrainingJob",
        plural="trainingjobs",
        short_names=["tj"],
        schema=schema,
        columns=columns,
        scale=None,
    )


def inference_service_crd() -> dict[str, Any]:
    schema = _root(
        model_schema(InferenceServiceSpec),
        model_schema(InferenceServiceStatus),
        "InferenceService serves a model on NVIDIA Triton: it optimizes the model for the "
        "serving hardware (TensorRT, or ONNX Runtime on CPUs) behind an accuracy gate, "
        "builds the Triton model repository, runs Triton pods and scales them on measured "
        "latency and throughput.",
    )
    columns = [
        _column("Phase", ".status.phase"),
        _column("Ready", ".status.ready"),
        _column("P95(ms)", ".status.autoscaling.latencyP95Ms", "number"),
        _column("RPS", ".status.autoscaling.requestsPerSecond", "number"),
        _column("Endpoint", ".status.endpoints.grpc"),
        _column("Precision", ".status.model.precision", priority=1),
        _column("Message", ".status.message", priority=1),
        _column("Age", ".metadata.creationTimestamp", "date"),
    ]
    scale = {
        "specReplicasPath": ".spec.replicas",
        "statusReplicasPath": ".status.replicas",
        "labelSelectorPath": ".status.selector",
    }
    return _crd(
        kind="InferenceService",
        plural="inferenceservices",
        short_names=["infsvc"],
        schema=schema,
        columns=columns,
        scale=scale,
    )


def all_crds() -> dict[str, dict[str, Any]]:
    """File name → CRD manifest."""
    return {
        "gantry.dev_trainingjobs.yaml": training_job_crd(),
        "gantry.dev_inferenceservices.yaml": inference_service_crd(),
    }


HEADER = "# Generated from the API models by `make crds` (gantry.crdgen). Do not edit.\n"


def render(crd: dict[str, Any]) -> str:
    return HEADER + yaml.safe_dump(crd, sort_keys=False, allow_unicode=True, width=100)


def write_all(directory: Path) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, crd in all_crds().items():
        path = directory / name
        path.write_text(render(crd), encoding="utf-8")
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    target = Path(args[0] if args else "crds")
    for path in write_all(target):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
