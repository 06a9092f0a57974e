"""Gantry's CRDs on a real kube-apiserver: installed, served and enforcing the contract.

Every invalid manifest the models reject is also rejected by the API server — through
the CRD's OpenAPI schema or one of its CEL rules — with the field and a message, so users
get the error at `kubectl apply` time, not later from the operator. The answers asserted
here are the server's own (kube-apiserver's wording), not the models'.
"""

from __future__ import annotations

import copy
import json
from typing import Any

import pytest
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel

from gantry.api import InferenceServiceSpec, TrainingJobSpec
from gantry.api.common import GROUP, VERSION
from gantry.crdgen import MAX_NAME_LENGTH, all_crds
from tests.api.manifests import (
    INFERENCE_SERVICE,
    INVALID,
    TRAINING_JOB,
    cpu_inference_service,
    cpu_training_job,
)

pytestmark = pytest.mark.usefixtures("crds")  # Gantry's CRDs, once per session (tests/conftest.py)

PLURALS = {"TrainingJob": "trainingjobs", "InferenceService": "inferenceservices"}
TYPE_INTEGER = "must be of type integer"
RESERVED_ENV = "env must not set names reserved for torchrun and Gantry: "

# case → (field the server names, words of its message), as kube-apiserver answers.
SERVER_ANSWERS: dict[str, tuple[str, str]] = {
    "tj-workers-negative": ("spec.workers", "should be greater than or equal to 1"),
    "tj-workers-zero": ("spec.workers", "should be greater than or equal to 1"),
    "tj-workers-string": ("spec.workers", TYPE_INTEGER),
    "tj-gpus-negative": ("spec.gpusPerWorker", "should be greater than or equal to 0"),
    "tj-gpus-fractional": ("spec.gpusPerWorker", TYPE_INTEGER),
    "tj-command-missing": ("spec.command", "Required value"),
    "tj-command-empty": ("spec.command", "should have at least 1 items"),
    "tj-env-master-addr": ("spec.env", RESERVED_ENV + "MASTER_ADDR ("),
    "tj-env-rank": ("spec.env", RESERVED_ENV + "RANK ("),
    "tj-env-pet-prefix": ("spec.env", RESERVED_ENV + "PET_* ("),
    "tj-env-gantry-dir": ("spec.env", RESERVED_ENV + "GANTRY_OUTPUT_DIR ("),
    "tj-output-http": ("spec.output.storageUri", "storageUri must be pvc://claim/path or s3://"),
    "tj-output-bad-claim": ("spec.output.storageUri", "should match"),
    "tj-backoff-negative": ("spec.backoffLimit", "should be greater than or equal to 0"),
    "tj-deadline-zero": ("spec.activeDeadlineSeconds", "should be greater than or equal to 1"),
    "tj-ttl-negative": ("spec.ttlSecondsAfterFinished", "should be greater than or equal to 0"),
    "tj-suspend-string": ("spec.suspend", "must be of type boolean"),
    "tj-mount-unknown-volume": (
        "spec.volumeMounts",
        "every volumeMounts[].name must name a volume in spec.volumes",
    ),
    **{
        # messageExpression: the server names the offending volume, as the models do
        f"tj-volume-reserved-{name}": (
            "spec.volumes",
            f"volume name '{name}' is reserved for Gantry's own volumes",
        )
        for name in ("dshm", "gantry-checkpoint")
    },
    "tj-gpu-fraction-limit": ("spec.resources.limits", "must be a whole number of GPUs"),
    "isvc-both-sources": ("spec.model", "exactly one of model.trainingJobRef and model.storageUri"),
    "isvc-no-source": ("spec.model", "exactly one of model.trainingJobRef and model.storageUri"),
    "isvc-uri-ftp": ("spec.model.storageUri", "storageUri must be pvc://claim/path or s3://"),
    "isvc-precision-int4": (
        "spec.optimization.precision",
        'Unsupported value: "int4": supported values: "fp32", "fp16", "int8", "fp8"',
    ),
    "isvc-batch-zero": (
        "spec.optimization.maxBatchSize",
        "should be greater than or equal to 1",
    ),
    "isvc-min-gt-max": (
        "spec.autoscaling.minReplicas",
        "autoscaling.minReplicas must be ≤ autoscaling.maxReplicas",
    ),
    "isvc-no-targets": ("spec.autoscaling.targets", "needs at least one of latencyP95Ms"),
    "isvc-mode-unknown": (
        "spec.autoscaling.mode",
        'supported values: "builtin", "hpa", "keda"',
    ),
    "isvc-replicas-negative": ("spec.replicas", "should be greater than or equal to 0"),
    "isvc-tensorrt-no-gpu": (
        "spec.optimization.tensorrt.enabled",
        "optimization.tensorrt.enabled needs a GPU",
    ),
    "isvc-gpu-fractional": ("spec.resources.limits", "must be a whole number of GPUs"),
    "isvc-gpu-negative": ("spec.resources.limits", "must be a whole number of GPUs"),
    "isvc-batch-sizes-too-big": (
        "spec.triton.dynamicBatching.preferredBatchSizes",
        "must not exceed optimization.maxBatchSize",
    ),
    "isvc-instances-zero": (
        "spec.triton.instancesPerReplica",
        "should be greater than or equal to 1",
    ),
    "isvc-top1-above-one": (
        "spec.optimization.accuracy.minTop1Agreement",
        "should be less than or equal to 1",
    ),
    "isvc-maxdiff-zero": ("spec.optimization.accuracy.maxAbsDiff", "should be greater than 0"),
    "isvc-jobref-bad-name": ("spec.model.trainingJobRef.name", "should match"),
}
# Strict field validation (what kubectl sends by default) fails decoding, before admission.
UNKNOWN_FIELD = "isvc-unknown-field"


def _obj(value: object) -> dict[str, Any]:
    assert isinstance(value, dict), value
    return value


def _create(api: ApiClient, namespace: str, manifest: dict[str, Any], name: str) -> dict[str, Any]:
    doc = copy.deepcopy(manifest)
    doc["metadata"] = {"name": name}
    return _obj(
        client.CustomObjectsApi(api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, PLURALS[doc["kind"]], doc, field_validation="Strict"
        )
    )


def _patch(
    api: ApiClient,
    namespace: str,
    plural: str,
    name: str,
    patch: dict[str, Any],
    *,
    status: bool = False,
) -> dict[str, Any]:
    custom = client.CustomObjectsApi(api)
    if status:
        return _obj(
            custom.patch_namespaced_custom_object_status(
                GROUP, VERSION, namespace, plural, name, patch
            )
        )
    return _obj(
        custom.patch_namespaced_custom_object(GROUP, VERSION, namespace, plural, name, patch)
    )


def _body(err: ApiException) -> dict[str, Any]:
    return _obj(json.loads(err.body or "{}"))


def _causes(err: ApiException) -> list[tuple[str, str]]:
    body = _body(err)
    assert body["reason"] == "Invalid", body
    return [(c.get("field", ""), c.get("message", "")) for c in body["details"]["causes"]]


def test_invalid_cases_all_have_a_server_answer() -> None:
    assert {*SERVER_ANSWERS, UNKNOWN_FIELD} == {c[0] for c in INVALID}
    assert len(INVALID) == 39


@pytest.mark.parametrize(
    "manifest",
    [TRAINING_JOB, INFERENCE_SERVICE, cpu_training_job(), cpu_inference_service()],
    ids=["tj-gpu", "isvc-gpu", "tj-cpu", "isvc-cpu"],
)
def test_contract_manifests_are_admitted(
    admin_api: ApiClient, namespace: str, manifest: dict[str, Any]
) -> None:
    created = _create(admin_api, namespace, manifest, "contract")
    assert created["metadata"]["generation"] == 1
    # What is stored is the manifest plus the server's defaults: the models' defaults.
    assert _dropping_empty(created["spec"]) == _as_the_models_read_it(
        manifest["kind"], manifest["spec"]
    )


def _dropping_empty(value: Any) -> Any:
    """Empty lists and maps dropped: the models dump them, the server may or may not."""
    if isinstance(value, dict):
        kept = {k: _dropping_empty(v) for k, v in value.items()}
        return {k: v for k, v in kept.items() if v not in ({}, [])}
    return value


def _as_the_models_read_it(kind: str, spec: dict[str, Any]) -> Any:
    models: dict[str, type[BaseModel]] = {
        "TrainingJob": TrainingJobSpec,
        "InferenceService": InferenceServiceSpec,
    }
    parsed = models[kind].model_validate(spec)
    return _dropping_empty(parsed.model_dump(by_alias=True, exclude_none=True))


def test_server_applies_the_models_defaults(admin_api: ApiClient, namespace: str) -> None:
    bare: dict[str, dict[str, Any]] = {
        "TrainingJob": {"command": ["python", "train.py"]},
        "InferenceService": {"model": {"storageUri": "s3://bucket/m"}},
    }
    for kind, spec in bare.items():
        manifest = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "spec": spec}
        created = _create(admin_api, namespace, manifest, "defaults")
        assert _dropping_empty(created["spec"]) == _as_the_models_read_it(kind, spec), kind


@pytest.mark.parametrize(
    ("case", "manifest", "field", "words"), INVALID, ids=[c[0] for c in INVALID]
)
def test_invalid_manifest_is_rejected_by_the_server(
    admin_api: ApiClient,
    namespace: str,
    case: str,
    manifest: dict[str, Any],
    field: str,
    words: str,
) -> None:
    with pytest.raises(ApiException) as err:
        _create(admin_api, namespace, manifest, case)
    if case == UNKNOWN_FIELD:
        assert err.value.status == 400, err.value.body
        body = _body(err.value)
        assert body["reason"] == "BadRequest"
        assert 'strict decoding error: unknown field "spec.replica"' in body["message"]
        return
    assert err.value.status == 422, f"{case}: {err.value.status} {err.value.body}"
    expected_field, expected_words = SERVER_ANSWERS[case]
    causes = _causes(err.value)
    assert any(f == expected_field and expected_words in m for f, m in causes), causes


def _rejected_because(err: ApiException, field: str, message: str) -> bool:
    """422 Invalid with a cause for `field` whose message ends with `message`.

    kube-apiserver prefixes a rule's message with "Invalid value: " and, for scalars, the
    value itself ("Invalid value: 4: workers is immutable ...").
    """
    assert err.status == 422, err.body
    return any(f == field and m.endswith(": " + message) for f, m in _causes(err))


def test_immutable_fields_cannot_change(admin_api: ApiClient, namespace: str) -> None:
    _create(admin_api, namespace, cpu_training_job(), "immutable")
    changes: list[tuple[str, Any]] = [
        ("workers", 4),
        ("image", "other:1"),
        ("command", ["python", "x.py"]),
        ("env", [{"name": "DATA_DIR", "value": "/elsewhere"}]),
        ("output", {"storageUri": "pvc://ml-models/other"}),
    ]
    for field, value in changes:
        with pytest.raises(ApiException) as err:
            _patch(admin_api, namespace, "trainingjobs", "immutable", {"spec": {field: value}})
        message = f"{field} is immutable once the job is created"
        assert _rejected_because(err.value, f"spec.{field}", message), _causes(err.value)
    patched = _patch(
        admin_api,
        namespace,
        "trainingjobs",
        "immutable",
        {"spec": {"suspend": True, "backoffLimit": 5}},
    )
    assert (patched["spec"]["suspend"], patched["spec"]["backoffLimit"]) == (True, 5)
    assert patched["metadata"]["generation"] == 2


def test_resources_change_only_while_suspended(admin_api: ApiClient, namespace: str) -> None:
    _create(admin_api, namespace, cpu_training_job(), "resources")
    more = {"spec": {"resources": {"requests": {"cpu": "8", "memory": "32Gi"}}}}
    with pytest.raises(ApiException) as err:
        _patch(admin_api, namespace, "trainingjobs", "resources", more)
    message = "resources may change only while the job is suspended"
    assert _rejected_because(err.value, "spec.resources", message), _causes(err.value)
    _patch(admin_api, namespace, "trainingjobs", "resources", {"spec": {"suspend": True}})
    patched = _patch(admin_api, namespace, "trainingjobs", "resources", more)
    assert patched["spec"]["resources"]["requests"] == {"cpu": "8", "memory": "32Gi"}


@pytest.mark.parametrize("name", ["x" * (MAX_NAME_LENGTH + 1), "9lives"])
def test_name_rule_is_enforced(admin_api: ApiClient, namespace: str, name: str) -> None:
    for manifest in (cpu_training_job(), cpu_inference_service()):
        with pytest.raises(ApiException) as err:
            _create(admin_api, namespace, manifest, name)
        assert err.value.status == 422
        [(field, message)] = _causes(err.value)
        # A root rule cannot name metadata.name as its fieldPath ("must be a valid path"),
        # so the server reports it without a field.
        assert field == "<nil>"
        assert f"be at most {MAX_NAME_LENGTH} characters (child objects are named after it)" in (
            message
        )


def test_longest_allowed_name_is_admitted(admin_api: ApiClient, namespace: str) -> None:
    created = _create(admin_api, namespace, cpu_training_job(), "n" * MAX_NAME_LENGTH)
    assert len(created["metadata"]["name"]) == MAX_NAME_LENGTH


def _rules(node: Any) -> list[tuple[str, str, str]]:
    """Every CEL rule anywhere in a schema, as (rule, message, fieldPath)."""
    found: list[tuple[str, str, str]] = []
    if isinstance(node, dict):
        for rule in node.get("x-kubernetes-validations", []):
            found.append((rule["rule"], rule.get("message", ""), rule.get("fieldPath", "")))
        for value in node.values():
            found += _rules(value)
    elif isinstance(node, list):
        for value in node:
            found += _rules(value)
    return found


@pytest.mark.parametrize(
    ("crd_name", "model"),
    [
        ("trainingjobs.gantry.dev", TrainingJobSpec),
        ("inferenceservices.gantry.dev", InferenceServiceSpec),
    ],
)
def test_every_rule_of_the_models_is_in_the_installed_crd(
    admin_api: ApiClient, crd_name: str, model: type[BaseModel]
) -> None:
    installed = client.ApiextensionsV1Api(admin_api).read_custom_resource_definition(crd_name)
    served = admin_api.sanitize_for_serialization(installed)  # type: ignore[no-untyped-call]
    on_server = _rules(served["spec"]["versions"][0]["schema"])
    from_models = set(_rules(model.model_json_schema(by_alias=True)))
    assert from_models, "the models declare rules"
    assert from_models <= set(on_server), from_models - set(on_server)
    generated = next(c for c in all_crds().values() if c["metadata"]["name"] == crd_name)
    assert sorted(on_server) == sorted(_rules(generated)), "the server dropped or changed a rule"


def test_status_subresource(admin_api: ApiClient, namespace: str) -> None:
    created = _create(admin_api, namespace, cpu_training_job(), "status")
    ignored = _patch(
        admin_api, namespace, "trainingjobs", "status", {"status": {"phase": "Running"}}
    )
    assert "status" not in ignored, "the main resource ignores status"
    status = {
        "phase": "Running",
        "attempts": 1,
        "conditions": [{"type": "Ready", "status": "False", "reason": "Starting"}],
        "kopf": {"progress": {"handler": {"retries": 1}}},
        "undeclared": "pruned",
    }
    patched = _patch(
        admin_api, namespace, "trainingjobs", "status", {"status": status}, status=True
    )
    assert patched["status"]["phase"] == "Running"
    assert patched["status"]["kopf"] == status["kopf"], "x-kubernetes-preserve-unknown-fields"
    assert "undeclared" not in patched["status"], "undeclared status fields are pruned"
    assert patched["metadata"]["generation"] == created["metadata"]["generation"]
    with pytest.raises(ApiException) as err:
        bad = {"status": {"conditions": [{"type": "Ready", "status": "Maybe"}]}}
        _patch(admin_api, namespace, "trainingjobs", "status", bad, status=True)
    assert err.value.status == 422
    assert any(f == "status.conditions[0].status" for f, _ in _causes(err.value))


def test_scale_subresource(admin_api: ApiClient, namespace: str) -> None:
    _create(admin_api, namespace, cpu_inference_service(), "scaled")
    selector = "gantry.dev/inferenceservice=scaled"
    _patch(
        admin_api,
        namespace,
        "inferenceservices",
        "scaled",
        {"status": {"replicas": 1, "selector": selector}},
        status=True,
    )
    custom = client.CustomObjectsApi(admin_api)
    scale = _obj(
        custom.get_namespaced_custom_object_scale(
            GROUP, VERSION, namespace, "inferenceservices", "scaled"
        )
    )
    assert scale["spec"]["replicas"] == 1
    assert scale["status"] == {"replicas": 1, "selector": selector}
    custom.patch_namespaced_custom_object_scale(
        GROUP, VERSION, namespace, "inferenceservices", "scaled", {"spec": {"replicas": 3}}
    )
    isvc = _obj(
        custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, "inferenceservices", "scaled"
        )
    )
    assert isvc["spec"]["replicas"] == 3


def _table(api: ApiClient, namespace: str, plural: str) -> dict[str, Any]:
    """`kubectl get` asks for a Table; the CRD's printer columns shape it."""
    path = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}/{plural}"
    accept = "application/json;as=Table;v=v1;g=meta.k8s.io"
    _, url, headers, _, _ = api.param_serialize(
        "GET", path, header_params={"Accept": accept}, auth_settings=["BearerToken"]
    )
    response = api.call_api("GET", url, header_params=headers)
    return _obj(json.loads(response.read()))  # type: ignore[no-untyped-call]


def test_printer_columns(admin_api: ApiClient, namespace: str) -> None:
    _create(admin_api, namespace, cpu_training_job(), "columns")
    status = {"phase": "Running", "workers": {"active": 2}, "progress": {"summary": "epoch 3/12"}}
    _patch(admin_api, namespace, "trainingjobs", "columns", {"status": status}, status=True)
    table = _table(admin_api, namespace, "trainingjobs")
    names = [c["name"] for c in table["columnDefinitions"]]
    assert names[:6] == ["Name", "Phase", "Workers", "Active", "Progress", "Attempts"]
    [row] = table["rows"]
    cells = dict(zip(names, row["cells"], strict=True))
    assert (cells["Phase"], cells["Workers"], cells["Active"]) == ("Running", 2, 2)
    assert cells["Progress"] == "epoch 3/12"

    _create(admin_api, namespace, cpu_inference_service(), "columns")
    status = {"phase": "Ready", "ready": "1/1", "autoscaling": {"latencyP95Ms": 12.5}}
    _patch(admin_api, namespace, "inferenceservices", "columns", {"status": status}, status=True)
    table = _table(admin_api, namespace, "inferenceservices")
    names = [c["name"] for c in table["columnDefinitions"]]
    [row] = table["rows"]
    cells = dict(zip(names, row["cells"], strict=True))
    assert (cells["Phase"], cells["Ready"], cells["P95(ms)"]) == ("Ready", "1/1", 12.5)
