"""The pydantic models accept the contract manifests and reject bad input with the field
path and a message a user understands."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import ValidationError

from gantry.api import InferenceServiceSpec, TrainingJobSpec, parse_storage_uri
from gantry.validation import validate_manifest
from tests.api.manifests import (
    INFERENCE_SERVICE,
    INVALID,
    TRAINING_JOB,
    cpu_inference_service,
    cpu_training_job,
)


@pytest.mark.parametrize(
    "manifest",
    [TRAINING_JOB, INFERENCE_SERVICE, cpu_training_job(), cpu_inference_service()],
    ids=["tj-gpu", "isvc-gpu", "tj-cpu", "isvc-cpu"],
)
def test_contract_manifests_are_valid(manifest: dict[str, Any]) -> None:
    spec = validate_manifest(manifest)
    dumped = spec.model_dump(by_alias=True, exclude_none=True)
    for key in manifest["spec"]:
        assert key in dumped, f"{key} lost in the round trip"


def test_training_job_defaults() -> None:
    spec = TrainingJobSpec.model_validate({"command": ["python", "train.py"]})
    assert (spec.workers, spec.gpus_per_worker, spec.backoff_limit, spec.suspend) == (
        1,
        0,
        3,
        False,
    )


def test_inference_service_defaults_and_gpu_logic() -> None:
    spec = InferenceServiceSpec.model_validate({"model": {"storageUri": "s3://bucket/models/a"}})
    assert spec.replicas == 1
    assert spec.autoscaling is None
    assert spec.gpus() == 0 and not spec.uses_tensorrt()
    gpu = InferenceServiceSpec.model_validate(INFERENCE_SERVICE["spec"])
    assert gpu.gpus() == 1 and gpu.uses_tensorrt()
    assert gpu.autoscaling is not None
    assert gpu.autoscaling.behavior.scale_down.stabilization_seconds == 60


def test_at_least_25_invalid_cases() -> None:
    assert len(INVALID) >= 25


@pytest.mark.parametrize(
    ("case", "manifest", "field", "words"), INVALID, ids=[c[0] for c in INVALID]
)
def test_invalid_manifest_is_rejected_with_field_and_message(
    case: str, manifest: dict[str, Any], field: str, words: str
) -> None:
    with pytest.raises((ValidationError, ValueError)) as err:
        validate_manifest(manifest)
    text = str(err.value)
    if isinstance(err.value, ValidationError):
        locations = " ".join(".".join(str(p) for p in e["loc"]) for e in err.value.errors())
        assert field in locations or field in text, f"{case}: {field!r} not in {locations!r}"
    else:
        assert field in text
    assert words in text, f"{case}: {words!r} not in {text!r}"


@pytest.mark.parametrize(
    ("uri", "scheme", "name", "path"),
    [
        ("pvc://ml-models/digits-cnn", "pvc", "ml-models", "digits-cnn"),
        ("pvc://models", "pvc", "models", ""),
        ("s3://my.bucket/a/b/", "s3", "my.bucket", "a/b"),
    ],
)
def test_storage_uri_parsing(uri: str, scheme: str, name: str, path: str) -> None:
    location = parse_storage_uri(uri)
    assert (location.scheme, location.name, location.path) == (scheme, name, path)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("gs://bucket/x", "unsupported storage URI scheme 'gs'"),
        ("/local/path", "is not a storage URI"),
        ("pvc://UPPER/x", "not a valid PersistentVolumeClaim name"),
        ("pvc://claim/../etc", "'..'"),
    ],
)
def test_storage_uri_errors(uri: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_storage_uri(uri)


def test_bad_name_is_rejected() -> None:
    doc = {**TRAINING_JOB, "metadata": {"name": "Digits_CNN"}}
    with pytest.raises(ValueError, match=r"metadata\.name"):
        validate_manifest(doc)


def _tj(**spec: Any) -> dict[str, Any]:
    return {"command": ["python", "train.py"], **spec}


@pytest.mark.parametrize(
    ("model", "spec", "field"),
    [
        (TrainingJobSpec, _tj(env=[{"name": f"V{i}", "value": "x"} for i in range(101)]), "env"),
        (TrainingJobSpec, _tj(env=[{"name": "V" * 254}]), "env.0.name"),
        (TrainingJobSpec, _tj(command=["python"] * 65), "command"),
        (TrainingJobSpec, _tj(args=["x" * 4097]), "args.0"),
        (TrainingJobSpec, _tj(image="r/" + "i" * 1023), "image"),
        (
            TrainingJobSpec,
            _tj(volumes=[{"name": f"v{i}", "emptyDir": {}} for i in range(51)]),
            "volumes",
        ),
        (TrainingJobSpec, _tj(volumes=[{"name": "v" * 64, "emptyDir": {}}]), "volumes.0.name"),
        (TrainingJobSpec, _tj(nodeSelector={"zone": "z" * 64}), "nodeSelector.zone"),
        (
            TrainingJobSpec,
            _tj(resources={"requests": {f"example.com/r{i}": 1 for i in range(33)}}),
            "resources.requests",
        ),
        (
            TrainingJobSpec,
            _tj(resources={"limits": {"memory": "1" + "0" * 62 + "Mi"}}),
            "resources.limits",
        ),
        (
            InferenceServiceSpec,
            {
                "model": {"storageUri": "s3://bucket/m"},
                "optimization": {"maxBatchSize": 64},
                "triton": {"dynamicBatching": {"preferredBatchSizes": [1] * 33}},
            },
            "triton.dynamicBatching.preferredBatchSizes",
        ),
    ],
    ids=[
        "env-items",
        "env-name",
        "command-items",
        "arg-length",
        "image-length",
        "volumes-items",
        "volume-name",
        "node-selector-value",
        "resource-names",
        "quantity-length",
        "batch-sizes-items",
    ],
)
def test_models_enforce_the_crd_bounds(model: Any, spec: dict[str, Any], field: str) -> None:
    """The same bounds the CRD publishes (they keep its CEL rules within cost budget)."""
    with pytest.raises(ValidationError) as err:
        model.model_validate(spec)
    locations = [".".join(str(p) for p in e["loc"]) for e in err.value.errors()]
    assert any(loc.startswith(field) for loc in locations), locations
