"""Watch caches (kopf indexes) of everything the reconcilers read, and the wake-ups they feed.

kopf lists and then watches each kind once per watched namespace (or cluster-wide) and
keeps these indexes current; it starts the per-object reconcile loops only after every
index is filled, so a restarted operator never reconciles against an empty cache. Every
change of a child (or of a neighbour an owner waits for) wakes the owner's loop through
`WAKEUPS`; nothing here talks to the API itself.

Indexed:
- every object of the kinds Gantry creates by name (Jobs, Services, ServiceAccounts, Roles,
  RoleBindings, Deployments, PodDisruptionBudgets, HPAs), by name and by Gantry owner,
  so the reconcilers also see a same-named object Gantry does not own (`ResourceConflict`);
- pods carrying a Gantry label (training workers, optimize pods, Triton pods), by owner;
- PersistentVolumeClaim names per namespace (models claims a service waits for);
- TrainingJobs by name (an InferenceService waits for the one it serves).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

import kopf

from gantry.controller.reconcile_loop import WAKEUPS, OwnerKey
from gantry.inferenceservice import names as isvc_names
from gantry.trainingjob import naming as tj_naming

GANTRY_GROUP = "gantry.dev"
TRAININGJOB = "TrainingJob"
INFERENCESERVICE = "InferenceService"

# Pod labels naming the Gantry object a pod works for.
POD_OWNER_LABELS = (
    (tj_naming.LABEL_JOB, TRAININGJOB),
    (isvc_names.OPTIMIZE_LABEL, INFERENCESERVICE),
    (isvc_names.SERVICE_LABEL, INFERENCESERVICE),
)


@dataclass(frozen=True)
class ChildKind:
    group: str
    version: str
    plural: str
    kind: str

    @property
    def index(self) -> str:
        return f"cache_{self.plural}"


CHILD_KINDS = (
    ChildKind("batch", "v1", "jobs", "Job"),
    ChildKind("", "v1", "services", "Service"),
    ChildKind("", "v1", "serviceaccounts", "ServiceAccount"),
    ChildKind("rbac.authorization.k8s.io", "v1", "roles", "Role"),
    ChildKind("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
    ChildKind("apps", "v1", "deployments", "Deployment"),
    ChildKind("policy", "v1", "poddisruptionbudgets", "PodDisruptionBudget"),
    ChildKind("autoscaling", "v2", "horizontalpodautoscalers", "HorizontalPodAutoscaler"),
)
KIND_INDEX = {k.kind: k.index for k in CHILD_KINDS}
PODS_INDEX = "cache_pods"
CLAIMS_INDEX = "cache_claims"
TRAININGJOBS_INDEX = "cache_trainingjobs"


# --- pure helpers ---------------------------------------------------------------------


def slim(body: Mapping[str, Any]) -> dict[str, Any]:
    """A plain copy without managedFields (the largest part of most objects, never read)."""
    meta = {k: v for k, v in (body.get("metadata") or {}).items() if k != "managedFields"}
    return {**{k: v for k, v in body.items() if k != "metadata"}, "metadata": meta}


def owners_of(body: Mapping[str, Any]) -> set[OwnerKey]:
    """The Gantry objects an object belongs to: its gantry.dev controller, or its labels."""
    meta = body.get("metadata") or {}
    namespace = str(meta.get("namespace") or "")
    found: set[OwnerKey] = set()
    for ref in meta.get("ownerReferences") or []:
        group = str(ref.get("apiVersion") or "").split("/")[0]
        if ref.get("controller") and group == GANTRY_GROUP and ref.get("name"):
            found.add(OwnerKey(str(ref.get("kind")), namespace, str(ref["name"])))
    labels = meta.get("labels") or {}
    for label, kind in POD_OWNER_LABELS:
        if labels.get(label):
            found.add(OwnerKey(kind, namespace, str(labels[label])))
    return found


def name_key(namespace: str | None, name: str | None) -> tuple[str, str, str]:
    return ("name", str(namespace or ""), str(name or ""))


def owner_key(owner: OwnerKey) -> tuple[str, str, str, str]:
    return ("owner", owner.namespace, owner.kind, owner.name)


def _is_gantry_pod(labels: Mapping[str, str], **_: Any) -> bool:
    return any(labels.get(label) for label, _kind in POD_OWNER_LABELS)


# --- the read side, used by the reconcile loops (on the event loop's thread) ----------------


class ClusterView:
    """Lookups over kopf's indexes; build one per pass from the handler's kwargs."""

    def __init__(self, indexes: Mapping[str, Any]) -> None:
        self._indexes = indexes

    def _values(self, index: str, key: Any) -> list[dict[str, Any]]:
        store = self._indexes[index].get(key)
        return [dict(v) for v in store] if store is not None else []

    def named(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        """The object of `kind` called `name`, whoever owns it (None when absent)."""
        found = self._values(KIND_INDEX[kind], name_key(namespace, name))
        return found[0] if found else None

    def owned(self, kind: str, owner: OwnerKey) -> list[dict[str, Any]]:
        """Objects of `kind` that belong to `owner` (controller reference or Gantry label)."""
        index = PODS_INDEX if kind == "Pod" else KIND_INDEX[kind]
        return sorted(
            self._values(index, owner_key(owner)), key=lambda o: str(o["metadata"].get("name"))
        )

    def claims(self, namespace: str) -> frozenset[str]:
        return frozenset(str(n) for n in self._indexes[CLAIMS_INDEX].get(namespace) or ())

    def training_job(self, namespace: str, name: str) -> dict[str, Any] | None:
        found = self._values(TRAININGJOBS_INDEX, (namespace, name))
        return found[0] if found else None


class Lister(Protocol):
    def list(self, api_version: str, plural: str, namespace: str | None = None) -> list[Any]: ...


class ApiView(ClusterView):
    """The same lookups answered from LIST calls of one namespace, indexed the same way.

    For one-off passes outside the operator's watch (tools, tests that drive a single
    pass); the operator itself never uses it.
    """

    def __init__(self, client: Lister, namespace: str) -> None:
        indexes: dict[str, dict[Any, list[Any]]] = {}
        for child in CHILD_KINDS:
            api_version = f"{child.group}/{child.version}" if child.group else child.version
            indexes[child.index] = _index(
                child_entries(o, namespace, o["metadata"]["name"])
                for o in client.list(api_version, child.plural, namespace)
            )
        pods = client.list("v1", "pods", namespace)
        indexes[PODS_INDEX] = _index(
            pod_entries(p) for p in pods if _is_gantry_pod(p["metadata"].get("labels") or {})
        )
        claims = client.list("v1", "persistentvolumeclaims", namespace)
        indexes[CLAIMS_INDEX] = {namespace: [c["metadata"]["name"] for c in claims]}
        jobs = client.list(f"{GANTRY_GROUP}/v1alpha1", "trainingjobs", namespace)
        indexes[TRAININGJOBS_INDEX] = _index(
            {(namespace, j["metadata"]["name"]): slim(j)} for j in jobs
        )
        super().__init__(indexes)


def _index(entries: Iterable[Mapping[Any, Any]]) -> dict[Any, list[Any]]:
    index: dict[Any, list[Any]] = {}
    for entry in entries:
        for key, value in entry.items():
            index.setdefault(key, []).append(value)
    return index


def current_children(
    view: ClusterView, namespace: str, desired: Iterable[Mapping[str, Any]]
) -> dict[tuple[str, str], dict[str, Any] | None]:
    """The cached object (or None) under each desired child's (kind, name)."""
    return {
        (str(d["kind"]), str(d["metadata"]["name"])): view.named(
            str(d["kind"]), namespace, str(d["metadata"]["name"])
        )
        for d in desired
    }


# --- kopf wiring: indexes and wake-ups -----------------------------------------------------


def child_entries(
    body: Mapping[str, Any], namespace: str | None, name: str | None
) -> dict[Any, Any]:
    """Index entries of a child: under its name and under each Gantry owner."""
    value = slim(body)
    keys: dict[Any, Any] = {name_key(namespace, name): value}
    for owner in owners_of(body):
        keys[owner_key(owner)] = value
    return keys


def _child_indexer(body: kopf.Body, namespace: str | None, name: str | None, **_: Any) -> Any:
    return child_entries(body, namespace, name)


def _wake_owners(body: Mapping[str, Any], source: str) -> None:
    for owner in owners_of(body):
        WAKEUPS.wake(owner, source)


def _child_event(body: kopf.Body, resource: kopf.Resource, **_: Any) -> None:
    _wake_owners(body, resource.plural)


for _child in CHILD_KINDS:
    kopf.index(_child.group, _child.version, _child.plural, id=_child.index)(_child_indexer)
    kopf.on.event(_child.group, _child.version, _child.plural, id=f"wake_{_child.plural}")(
        _child_event
    )


def pod_entries(body: Mapping[str, Any]) -> dict[Any, Any]:
    """Index entries of a Gantry pod: under each Gantry owner."""
    value = slim(body)
    return {owner_key(owner): value for owner in owners_of(body)}


@kopf.index("", "v1", "pods", id=PODS_INDEX, when=_is_gantry_pod)
def _pods_indexer(body: kopf.Body, **_: Any) -> Any:
    return pod_entries(body)


@kopf.on.event("", "v1", "pods", id="wake_pods", when=_is_gantry_pod)
def _pod_event(body: kopf.Body, **_: Any) -> None:
    _wake_owners(body, "pods")


@kopf.index("", "v1", "persistentvolumeclaims", id=CLAIMS_INDEX)
def _claims_indexer(namespace: str | None, name: str | None, **_: Any) -> Any:
    return {str(namespace or ""): str(name or "")}


@kopf.on.event("", "v1", "persistentvolumeclaims", id="wake_claims")
def _claim_event(type: str | None, namespace: str | None, **_: Any) -> None:
    if type in ("ADDED", "DELETED") and namespace:
        WAKEUPS.wake_namespace(INFERENCESERVICE, namespace, "persistentvolumeclaims")


@kopf.index(GANTRY_GROUP, "v1alpha1", "trainingjobs", id=TRAININGJOBS_INDEX)
def _trainingjobs_indexer(
    body: kopf.Body, namespace: str | None, name: str | None, **_: Any
) -> Any:
    return {(str(namespace or ""), str(name or "")): slim(body)}


@kopf.on.event(GANTRY_GROUP, "v1alpha1", "trainingjobs", id="wake_trainingjobs")
def _trainingjob_event(namespace: str | None, name: str | None, **_: Any) -> None:
    """The job's own loop, and the services that serve its model."""
    if not namespace or not name:
        return
    key = OwnerKey(TRAININGJOB, namespace, name)
    WAKEUPS.wake(key, "self")
    WAKEUPS.wake_dependents(key, "trainingjobs")


@kopf.on.event(GANTRY_GROUP, "v1alpha1", "inferenceservices", id="wake_inferenceservices")
def _inferenceservice_event(namespace: str | None, name: str | None, **_: Any) -> None:
    if namespace and name:
        WAKEUPS.wake(OwnerKey(INFERENCESERVICE, namespace, name), "self")
