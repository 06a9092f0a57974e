"""The example manifests the install guide applies are valid TrainingJobs/InferenceServices."""

from __future__ import annotations

import importlib.util
from typing import TYPE_CHECKING, Any

import jsonschema
import kubernetes_validate
import pytest
import yaml
from chart_testkit import ROOT

from gantry.api.inferenceservice import InferenceServiceSpec
from gantry.api.trainingjob import TrainingJobSpec

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

EXAMPLES = ROOT / "examples"
EXAMPLE_FILES = [
    "trainingjob-digits.yaml",
    "trainingjob-digits-gpu.yaml",
    "inferenceservice-digits.yaml",
    "inferenceservice-digits-gpu.yaml",
]
SPEC_MODELS: dict[str, Any] = {
    "TrainingJob": TrainingJobSpec,
    "InferenceService": InferenceServiceSpec,
}


def load(name: str) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all((EXAMPLES / name).read_text(encoding="utf-8")) if d]


def custom(name: str) -> dict[str, Any]:
    (doc,) = [d for d in load(name) if d["apiVersion"].startswith("gantry.dev/")]
    return doc


def crd_schemas() -> dict[str, dict[str, Any]]:
    schemas = {}
    for path in (ROOT / "crds").glob("*.yaml"):
        crd = yaml.safe_load(path.read_text(encoding="utf-8"))
        schemas[crd["spec"]["names"]["kind"]] = crd["spec"]["versions"][0]["schema"][
            "openAPIV3Schema"
        ]
    return schemas


def contract() -> Any:
    """tests/api/manifests.py: the contract manifests of the API issues."""
    spec = importlib.util.spec_from_file_location(
        "gantry_contract_manifests", ROOT / "tests" / "api" / "manifests.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_example_validates_against_its_crd_and_the_api_models(name: str) -> None:
    schemas = crd_schemas()
    for doc in load(name):
        kind = doc["kind"]
        if kind in SPEC_MODELS:
            # OpenAPI v3.0 schemas use draft 4 semantics (boolean exclusiveMinimum).
            jsonschema.Draft4Validator(schemas[kind]).validate(doc)
            SPEC_MODELS[kind].model_validate(doc["spec"])
            assert "namespace" not in doc["metadata"], "users choose the namespace with -n"
        else:
            kubernetes_validate.validate(doc, "1.33.0", strict=True)


def test_gpu_examples_are_the_contract_manifests() -> None:
    manifests = contract()
    service = custom("inferenceservice-digits-gpu.yaml")
    assert service["spec"] == manifests.INFERENCE_SERVICE["spec"]
    job = custom("trainingjob-digits-gpu.yaml")
    # The contract names a user's own image and data; the example runs Gantry's bundled one.
    own = {"image", "command", "args", "env", "volumes", "volumeMounts"}
    expected = {k: v for k, v in manifests.TRAINING_JOB["spec"].items() if k not in own}
    assert {k: v for k, v in job["spec"].items() if k not in own} == expected
    assert job["spec"]["command"] == ["python", "-m", "training_jobs.examples.digits"]
    assert job["metadata"]["name"] == manifests.TRAINING_JOB["metadata"]["name"]


def test_cpu_examples_are_the_contract_without_gpus() -> None:
    manifests = contract()
    assert (
        custom("inferenceservice-digits.yaml")["spec"] == manifests.cpu_inference_service()["spec"]
    )
    job = custom("trainingjob-digits.yaml")["spec"]
    assert job["gpusPerWorker"] == 0
    assert "nodeSelector" not in job and "tolerations" not in job
    assert (
        InferenceServiceSpec.model_validate(
            custom("inferenceservice-digits.yaml")["spec"]
        ).uses_tensorrt()
        is False
    )


def test_services_serve_what_the_training_job_exports() -> None:
    for suffix in ("", "-gpu"):
        job = custom(f"trainingjob-digits{suffix}.yaml")
        service = custom(f"inferenceservice-digits{suffix}.yaml")
        assert service["spec"]["model"]["trainingJobRef"]["name"] == job["metadata"]["name"]
        claims = {
            d["metadata"]["name"]
            for d in load(f"trainingjob-digits{suffix}.yaml")
            if d["kind"] == "PersistentVolumeClaim"
        }
        assert job["spec"]["checkpoint"]["volume"]["persistentVolumeClaim"]["claimName"] in claims
        assert job["spec"]["output"]["storageUri"].split("/")[2] in claims


@pytest.mark.parametrize("name", EXAMPLE_FILES)
def test_the_api_server_accepts_the_example(
    admin_api: ApiClient, crds: list[dict[str, Any]], namespace: str, name: str
) -> None:
    """Created on a real kube-apiserver (CRD schema, CEL rules, defaults), as `kubectl apply`."""
    from kubernetes import client

    doc = custom(name)
    plural = {"TrainingJob": "trainingjobs", "InferenceService": "inferenceservices"}[doc["kind"]]
    created = client.CustomObjectsApi(admin_api).create_namespaced_custom_object(
        "gantry.dev", "v1alpha1", namespace, plural, doc
    )
    assert created["metadata"]["namespace"] == namespace and created["metadata"]["uid"]
    # What the user wrote is kept; the server only adds the CRD's defaults around it.
    assert _contains(created["spec"], doc["spec"])
    schema = crd_schemas()[doc["kind"]]["properties"]["spec"]["properties"]
    defaulted = {k for k, v in schema.items() if "default" in v} - set(doc["spec"])
    assert defaulted <= set(created["spec"]), "every top-level default is filled in"


def _contains(actual: Any, wanted: Any) -> bool:
    if isinstance(wanted, dict):
        return isinstance(actual, dict) and all(
            k in actual and _contains(actual[k], v) for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        return (
            isinstance(actual, list)
            and len(actual) == len(wanted)
            and all(_contains(a, w) for a, w in zip(actual, wanted, strict=True))
        )
    return bool(actual == wanted)
