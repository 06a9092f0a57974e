"""Validate a whole manifest (apiVersion, kind, metadata.name, spec) against the API models.

Used by `gantry validate` and by the operator, which reports what the models reject as
a status condition instead of crashing.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel

from gantry.api.common import API_VERSION
from gantry.api.inferenceservice import InferenceServiceSpec
from gantry.api.trainingjob import TrainingJobSpec
from gantry.crdgen import MAX_NAME_LENGTH

SPECS: dict[str, type[BaseModel]] = {
    "TrainingJob": TrainingJobSpec,
    "InferenceService": InferenceServiceSpec,
}
_NAME = re.compile(r"^[a-z]([-a-z0-9]*[a-z0-9])?$")


def validate_name(name: str) -> None:
    if not _NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        raise ValueError(
            f"metadata.name '{name}' must start with a letter, hold only lowercase letters, "
            f"digits and '-', and be at most {MAX_NAME_LENGTH} characters"
        )


def validate_manifest(doc: Mapping[str, Any]) -> BaseModel:
    """Return the validated spec model, or raise ValueError / pydantic.ValidationError."""
    kind = doc.get("kind")
    if doc.get("apiVersion") != API_VERSION or kind not in SPECS:
        raise ValueError(
            f"expected apiVersion {API_VERSION} and kind TrainingJob or InferenceService, "
            f"got {doc.get('apiVersion')}/{kind}"
        )
    metadata = doc.get("metadata") or {}
    validate_name(str(metadata.get("name", "")))
    if "spec" not in doc:
        raise ValueError("spec is required")
    return SPECS[kind].model_validate(doc["spec"])
