"""CRD admission: structural schema, defaults, pruning and CEL, worded as the real server."""

# Fixtures come from the shared helpers module.
# ruff: noqa: F811

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client
from kubernetes.client.rest import ApiException
from test_apiserver_helpers import (  # noqa: F401
    GROUP,
    PLURAL,
    ROOT,
    api,
    api_client,
    crd,
    http,
    server,
    trainingjob,
    trainingjob_crd,
)

from dev_cluster.apiserver.testing import start_in_thread

ARGS = (GROUP, "v1alpha1", "default", PLURAL)


def _reject(api: client.ApiClient, body: dict[str, Any]) -> dict[str, Any]:
    with pytest.raises(ApiException) as exc:
        client.CustomObjectsApi(api).create_namespaced_custom_object(*ARGS, body)
    assert exc.value.status == 422, exc.value.body
    return dict(json.loads(exc.value.body))


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        (
            {"workers": -1},
            "spec.workers: Invalid value: -1: spec.workers in body should be "
            "greater than or equal to 1",
        ),
        (
            {"workers": 65},
            "spec.workers: Invalid value: 65: spec.workers in body should be "
            "less than or equal to 64",
        ),
        (
            {"workers": "two"},
            'spec.workers: Invalid value: "two": spec.workers in body must '
            'be of type integer: "string"',
        ),
        (
            {"backend": "mpi"},
            'spec.backend: Unsupported value: "mpi": supported values: "gloo", "nccl"',
        ),
        (
            {"maxWorkers": 0},
            "spec.maxWorkers: Invalid value: 0: spec.maxWorkers in body should be greater than 0",
        ),
        (
            {"learningRate": 1.0},
            "spec.learningRate: Invalid value: 1: spec.learningRate in body should be less than 1",
        ),
        (
            {"image": ""},
            'spec.image: Invalid value: "": spec.image in body should be at least 1 chars long',
        ),
        (
            {"name": "ABC"},
            "spec.name: Invalid value: \"ABC\": spec.name in body should match '^[a-z]+$'",
        ),
        ({"name": "abcdefghijk"}, "spec.name: Too long: may not be more than 10 bytes"),
        ({"args": ["a", "b", "c", "d"]}, "spec.args: Too many: 4: must have at most 3 items"),
        (
            {"resources": {"cpu": True}},
            "spec.resources.cpu: Invalid value: true: "
            'spec.resources.cpu in body must be of type int-or-string: "boolean"',
        ),
        ({"workers": 9}, 'spec: Invalid value: "object": workers (9) exceed maxWorkers'),
    ],
)
def test_schema_rejections(
    api: client.ApiClient, crd: Any, spec: dict[str, Any], message: str
) -> None:
    body = trainingjob("bad")
    body["spec"].update(spec)
    st = _reject(api, body)
    assert st["reason"] == "Invalid"
    assert st["message"] == f'TrainingJob.gantry.dev "bad" is invalid: {message}'
    field, detail = message.split(": ", 1)
    assert {"field": field, "message": detail} == {
        k: st["details"]["causes"][0][k] for k in ("field", "message")
    }


def test_required_and_several_causes(api: client.ApiClient, crd: Any) -> None:
    st = _reject(
        api,
        {
            "apiVersion": f"{GROUP}/v1alpha1",
            "kind": "TrainingJob",
            "metadata": {"name": "req"},
            "spec": {},
        },
    )
    assert st["message"] == (
        'TrainingJob.gantry.dev "req" is invalid: '
        "[spec.image: Required value, spec.workers: Required value]"
    )
    assert [c["reason"] for c in st["details"]["causes"]] == ["FieldValueRequired"] * 2


def test_int_or_string_and_nested_defaults(api: client.ApiClient, crd: Any) -> None:
    co = client.CustomObjectsApi(api)
    plain = co.create_namespaced_custom_object(*ARGS, trainingjob("plain"))
    assert plain["spec"]["epochs"] == 1 and plain["spec"]["backend"] == "gloo"
    assert "resources" not in plain["spec"]  # nested defaults need their parent
    body = trainingjob("nested", resources={"cpu": "500m"})
    nested = co.create_namespaced_custom_object(*ARGS, body)
    assert nested["spec"]["resources"] == {"cpu": "500m", "memory": "1Gi"}


def test_unknown_fields_pruned_or_strictly_rejected(
    api: client.ApiClient, server: Any, crd: Any
) -> None:
    body = trainingjob("pruned", bogus=1, template={"free": {"form": True}})
    obj = client.CustomObjectsApi(api).create_namespaced_custom_object(*ARGS, body)
    assert "bogus" not in obj["spec"] and obj["spec"]["template"] == {"free": {"form": True}}
    import urllib.request

    req = urllib.request.Request(
        f"{server.url}/apis/{GROUP}/v1alpha1/namespaces/default/{PLURAL}",
        data=json.dumps(trainingjob("warned", extra=1)).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=30) as resp:
        assert resp.headers.get_all("Warning") == ['299 - "unknown field \\"spec.extra\\""']
    code, st = http(
        server.url,
        "POST",
        f"/apis/{GROUP}/v1alpha1/namespaces/default/{PLURAL}?fieldValidation=Strict",
        trainingjob("strict", bogus=1),
    )
    assert code == 400
    assert st["message"] == (
        'TrainingJob in version "v1alpha1" cannot be handled as a '
        'TrainingJob: strict decoding error: unknown field "spec.bogus"'
    )


def test_transition_rule_only_on_update(api: client.ApiClient, crd: Any) -> None:
    co = client.CustomObjectsApi(api)
    co.create_namespaced_custom_object(*ARGS, trainingjob("immut", backend="nccl"))
    with pytest.raises(ApiException) as exc:
        co.patch_namespaced_custom_object(*ARGS, "immut", {"spec": {"backend": "gloo"}})
    st = json.loads(exc.value.body)
    assert st["message"] == (
        'TrainingJob.gantry.dev "immut" is invalid: spec.backend: '
        'Invalid value: "object": backend is immutable'
    )
    co.patch_namespaced_custom_object(*ARGS, "immut", {"spec": {"workers": 3}})


def test_crd_name_must_match_names(api: client.ApiClient) -> None:
    bad = trainingjob_crd()
    bad["metadata"]["name"] = "wrong.gantry.dev"
    with pytest.raises(ApiException) as exc:
        client.ApiextensionsV1Api(api).create_custom_resource_definition(bad)
    st = json.loads(exc.value.body)
    assert exc.value.status == 422
    assert st["message"] == (
        'CustomResourceDefinition.apiextensions.k8s.io "wrong.gantry.dev" '
        'is invalid: metadata.name: Invalid value: "wrong.gantry.dev": '
        'must be spec.names.plural+"."+spec.group'
    )


def test_crd_status_conditions(api: client.ApiClient, crd: Any) -> None:
    got = client.ApiextensionsV1Api(api).read_custom_resource_definition("trainingjobs.gantry.dev")
    conditions = {c.type: c.status for c in got.status.conditions}
    assert conditions == {"NamesAccepted": "True", "Established": "True"}
    assert got.status.accepted_names.kind == "TrainingJob"


def _gantry_crds() -> list[Path]:
    return sorted((ROOT / "crds").glob("*.yaml"))


def _example_objects(crd_doc: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """A minimal object from the CRD's required fields, and one with a bad type."""
    version = next(v for v in crd_doc["spec"]["versions"] if v.get("served", True))
    schema = version["schema"]["openAPIV3Schema"]
    spec_schema = schema.get("properties", {}).get("spec", {})
    good: dict[str, Any] = {}
    for key in spec_schema.get("required", []):
        good[key] = _sample(spec_schema["properties"][key])
    bad = dict(good)
    bad["__bad__"] = True
    names = crd_doc["spec"]["names"]
    base = {
        "apiVersion": f"{crd_doc['spec']['group']}/{version['name']}",
        "kind": names["kind"],
        "metadata": {"name": "sample"},
    }
    return dict(base, spec=good), dict(base, spec=bad)


def _sample(schema: dict[str, Any]) -> Any:
    if "default" in schema:
        return schema["default"]
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "integer" or kind == "number":
        return max(schema.get("minimum", 1), 1)
    if kind == "boolean":
        return False
    if kind == "array":
        return [_sample(schema.get("items", {}))] * schema.get("minItems", 0)
    if kind == "object":
        return {k: _sample(schema["properties"][k]) for k in schema.get("required", [])}
    if schema.get("x-kubernetes-int-or-string"):
        return 1
    return "sample" if not schema.get("pattern") else "a"


@pytest.mark.skipif(not _gantry_crds(), reason="crds/ has no generated CRDs yet (make crds)")
def test_gantry_crds_are_accepted() -> None:
    with start_in_thread() as fresh:
        fresh_api = api_client(fresh.url)
        try:
            _check_gantry_crds(fresh_api)
        finally:
            fresh_api.close()


def _check_gantry_crds(api: client.ApiClient) -> None:
    ext = client.ApiextensionsV1Api(api)
    for path in _gantry_crds():
        for doc in yaml.safe_load_all(path.read_text()):
            if not doc or doc.get("kind") != "CustomResourceDefinition":
                continue
            created = ext.create_custom_resource_definition(doc)
            assert created.metadata.name == doc["metadata"]["name"]
            plural = doc["spec"]["names"]["plural"]
            group = doc["spec"]["group"]
            version = next(v["name"] for v in doc["spec"]["versions"] if v.get("served", True))
            co = client.CustomObjectsApi(api)
            _, bad = _example_objects(doc)
            bad["spec"] = {
                "__not_a_field__": {"x": 1},
                **{k: {"wrong": "type"} for k in bad["spec"] if k != "__bad__"},
            }
            with pytest.raises(ApiException) as exc:
                co.create_namespaced_custom_object(group, version, "default", plural, bad)
            assert exc.value.status == 422
            assert json.loads(exc.value.body)["message"].startswith(
                f'{doc["spec"]["names"]["kind"]}.{group} "sample" is invalid: '
            )
