"""The kit's pure parts: conditions, owner references, plurals, paths, events."""

from __future__ import annotations

import pytest

from gantry.k8s.client import _contains, owned_fields, plural_of, resource_path
from gantry.k8s.conditions import get_condition, now_rfc3339, set_condition
from gantry.k8s.errors import ApiError, Conflict, Invalid, NotFound, from_status
from gantry.k8s.events import MAX_MESSAGE, build_event
from gantry.k8s.ownership import adopt, owner_reference

OWNER = {
    "apiVersion": "gantry.dev/v1alpha1",
    "kind": "TrainingJob",
    "metadata": {"name": "digits", "namespace": "ml", "uid": "u-1"},
}


def test_set_condition_appends_then_keeps_transition_time_while_status_holds() -> None:
    first = set_condition([], "Running", True, "Started", "go", now="T1", generation=2)
    assert first == [
        {
            "type": "Running",
            "status": "True",
            "reason": "Started",
            "message": "go",
            "lastTransitionTime": "T1",
            "observedGeneration": 2,
        }
    ]
    same = set_condition(first, "Running", "True", "StillRunning", "epoch 3", now="T2")
    assert same[0]["lastTransitionTime"] == "T1"
    assert same[0]["reason"] == "StillRunning"
    flipped = set_condition(same, "Running", False, "Stopped", "", now="T3")
    assert flipped[0]["lastTransitionTime"] == "T3"
    assert first[0]["reason"] == "Started", "the input list is not modified"


def test_set_condition_keeps_other_types_and_order() -> None:
    conds = set_condition([], "A", True, "r", "", now="T")
    conds = set_condition(conds, "B", False, "r", "", now="T")
    conds = set_condition(conds, "A", False, "r2", "", now="T2")
    assert [c["type"] for c in conds] == ["A", "B"]
    assert get_condition(conds, "B") == conds[1]
    assert get_condition(conds, "C") is None


def test_set_condition_rejects_unknown_status() -> None:
    with pytest.raises(ValueError, match="True, False or Unknown"):
        set_condition([], "A", "yes", "r", "", now="T")


def test_now_is_rfc3339_utc() -> None:
    assert now_rfc3339().endswith("Z") and "T" in now_rfc3339()


def test_owner_reference_and_adopt() -> None:
    ref = owner_reference(OWNER)
    assert ref == {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "TrainingJob",
        "name": "digits",
        "uid": "u-1",
        "controller": True,
        "blockOwnerDeletion": True,
    }
    child = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s", "labels": {"x": "1"}}}
    adopted = adopt(child, OWNER, labels={"gantry.dev/trainingjob": "digits"})
    meta = adopted["metadata"]
    assert meta["namespace"] == "ml"
    assert meta["ownerReferences"] == [ref]
    assert meta["labels"]["x"] == "1"
    assert meta["labels"]["app.kubernetes.io/managed-by"] == "gantry"
    assert meta["labels"]["gantry.dev/trainingjob"] == "digits"
    assert "namespace" not in child["metadata"], "adopt copies"
    assert adopt(adopted, OWNER)["metadata"]["ownerReferences"] == [ref], "idempotent"


def test_owner_reference_needs_uid() -> None:
    with pytest.raises(ValueError, match=r"metadata\.uid"):
        owner_reference({"apiVersion": "v1", "kind": "X", "metadata": {"name": "n"}})


@pytest.mark.parametrize(
    ("kind", "plural"),
    [
        ("Pod", "pods"),
        ("TrainingJob", "trainingjobs"),
        ("Endpoints", "endpoints"),
        ("PodDisruptionBudget", "poddisruptionbudgets"),
        ("ScaledObject", "scaledobjects"),
    ],
)
def test_plural_of(kind: str, plural: str) -> None:
    assert plural_of(kind) == plural


@pytest.mark.parametrize("kind", ["Widget", "NetworkPolicy", ""])
def test_plural_of_an_unknown_kind_is_an_error_not_a_guess(kind: str) -> None:
    with pytest.raises(ValueError, match="not one Gantry manages"):
        plural_of(kind)


def test_resource_paths() -> None:
    assert resource_path("v1", "pods", "p", "ml", "log") == "/api/v1/namespaces/ml/pods/p/log"
    assert resource_path("batch/v1", "jobs", namespace="ml") == "/apis/batch/v1/namespaces/ml/jobs"
    assert resource_path("v1", "namespaces", "ml") == "/api/v1/namespaces/ml"
    with pytest.raises(ValueError, match="subresource"):
        resource_path("v1", "pods", subresource="status")


def test_semantic_compare_ignores_server_defaults() -> None:
    desired = {"spec": {"ports": [{"port": 80}], "clusterIP": None}, "metadata": {"name": "s"}}
    actual = {
        "spec": {"ports": [{"port": 80, "protocol": "TCP"}], "type": "ClusterIP"},
        "metadata": {"name": "s", "uid": "1", "resourceVersion": "9"},
    }
    assert _contains(actual, desired)
    assert not _contains(actual, {"spec": {"ports": [{"port": 81}]}})
    assert not _contains(actual, {"spec": {"ports": [{"port": 80}, {"port": 81}]}})
    assert not _contains({"a": 1}, {"a": True})
    owned = owned_fields({"metadata": {"name": "s", "uid": "1"}, "status": {}, "spec": {}})
    assert owned == {"metadata": {"name": "s"}, "spec": {}}


def test_errors_map_status_codes() -> None:
    body = b'{"reason":"NotFound","message":"pods x not found"}'
    err = from_status(404, body)
    assert isinstance(err, NotFound) and err.status == 404 and "not found" in err.message
    assert isinstance(from_status(409, b"{}"), Conflict)
    assert isinstance(from_status(422, "bad"), Invalid)
    other = from_status(500, b"boom", "Internal")
    assert type(other) is ApiError and other.reason == "Internal" and other.message == "boom"


def test_event_truncates_and_names_the_object() -> None:
    ev = build_event(OWNER, "Created", "x" * 5000, now="T")
    assert len(ev["message"]) == MAX_MESSAGE
    assert ev["involvedObject"]["uid"] == "u-1"
    assert ev["metadata"] == {"generateName": "digits.", "namespace": "ml"}


def test_event_never_raises() -> None:
    class Broken:
        def create(self, obj: object) -> dict[str, object]:
            raise RuntimeError("api down")

    from gantry.k8s.events import event

    event(Broken(), OWNER, "Created", "hello")
