"""The generated CRDs enforce the same rules as the models, in a real API server flow.

Every invalid manifest the models reject must also be rejected by the API server with
422 Invalid — through the CRD's OpenAPI schema or one of its CEL rules — so users get the
error at `kubectl apply` time, not later from the operator.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException

from dev_cluster.apiserver.testing import start_in_thread
from tests.api.manifests import (
    INFERENCE_SERVICE,
    INVALID,
    TRAINING_JOB,
    cpu_inference_service,
    cpu_training_job,
)

ROOT = Path(__file__).resolve().parents[2]
PLURALS = {"TrainingJob": "trainingjobs", "InferenceService": "inferenceservices"}


@pytest.fixture(scope="module")
def api() -> Iterator[client.ApiClient]:
    with start_in_thread() as server:
        configuration = client.Configuration()
        configuration.host = server.url
        api_client = client.ApiClient(configuration)
        extensions = client.ApiextensionsV1Api(api_client)
        for path in sorted((ROOT / "crds").glob("*.yaml")):
            extensions.create_custom_resource_definition(yaml.safe_load(path.read_text()))
        client.CoreV1Api(api_client).create_namespace({"metadata": {"name": "ml"}})
        yield api_client


def _create(api: client.ApiClient, manifest: dict[str, Any]) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    result: dict[str, Any] = custom.create_namespaced_custom_object(
        "gantry.dev",
        "v1alpha1",
        "ml",
        PLURALS[manifest["kind"]],
        copy.deepcopy(manifest),
        field_validation="Strict",  # what kubectl sends by default
    )
    return result


def _named(manifest: dict[str, Any], name: str) -> dict[str, Any]:
    doc = copy.deepcopy(manifest)
    doc["metadata"] = {"name": name, "namespace": "ml"}
    return doc


@pytest.mark.parametrize(
    "manifest",
    [TRAINING_JOB, INFERENCE_SERVICE, cpu_training_job(), cpu_inference_service()],
    ids=["tj-gpu", "isvc-gpu", "tj-cpu", "isvc-cpu"],
)
def test_contract_manifests_are_admitted(api: client.ApiClient, manifest: dict[str, Any]) -> None:
    name = f"ok-{len(json.dumps(manifest))}"
    created = _create(api, _named(manifest, name))
    assert created["metadata"]["generation"] == 1
    if manifest["kind"] == "InferenceService":
        assert created["spec"]["replicas"] == 1, "default applied by the server"


@pytest.mark.parametrize(
    ("case", "manifest", "field", "words"), INVALID, ids=[c[0] for c in INVALID]
)
def test_invalid_manifest_is_rejected_by_the_crd(
    api: client.ApiClient, case: str, manifest: dict[str, Any], field: str, words: str
) -> None:
    doc = _named(manifest, case)
    with pytest.raises(ApiException) as err:
        _create(api, doc)
    if case == "isvc-unknown-field":
        # Strict field validation: 400 BadRequest naming the field, like kube-apiserver.
        assert err.value.status == 400
        assert "unknown field" in err.value.body and "spec.replica" in err.value.body
        return
    assert err.value.status == 422, f"{case}: {err.value.status} {err.value.body}"
    body = json.loads(err.value.body)
    assert body["reason"] == "Invalid"
    causes = " ".join(
        c.get("field", "") + " " + c.get("message", "") for c in body["details"]["causes"]
    )
    assert field.split(".")[-1] in causes or field in body["message"], f"{case}: {body['message']}"


def test_immutable_fields_cannot_change(api: client.ApiClient) -> None:
    custom = client.CustomObjectsApi(api)
    _create(api, _named(cpu_training_job(), "immutable"))
    with pytest.raises(ApiException) as err:
        custom.patch_namespaced_custom_object(
            "gantry.dev", "v1alpha1", "ml", "trainingjobs", "immutable", {"spec": {"workers": 4}}
        )
    assert err.value.status == 422
    assert "workers is immutable" in err.value.body
    patched = custom.patch_namespaced_custom_object(
        "gantry.dev",
        "v1alpha1",
        "ml",
        "trainingjobs",
        "immutable",
        {"spec": {"suspend": True, "backoffLimit": 5}},
    )
    assert patched["spec"]["suspend"] is True
    assert patched["metadata"]["generation"] == 2


def test_name_rule_is_enforced(api: client.ApiClient) -> None:
    with pytest.raises(ApiException) as err:
        _create(api, _named(cpu_training_job(), "x" * 60))
    assert err.value.status == 422
    assert "at most 45 characters" in err.value.body
