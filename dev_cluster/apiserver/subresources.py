"""The ``scale`` and ``pods/binding`` subresources, written through the main object.

``scale`` reads and writes the paths a CRD names (``specReplicasPath``,
``statusReplicasPath``, ``labelSelectorPath``) or, for deployments, replicasets and
statefulsets, ``spec.replicas``/``status.replicas``/``spec.selector``; the object's own
validation (e.g. a CRD's maximum) still applies to the new replica count.
"""

from __future__ import annotations

from typing import Any

from . import errors
from .engine import Engine, WriteOptions
from .meta import clone, get_path, set_path
from .resources import ResourceInfo
from .selectors import selector_to_string

JSON = dict[str, Any]


def get_scale(engine: Engine, info: ResourceInfo, namespace: str, name: str) -> JSON:
    """The object as an ``autoscaling/v1 Scale``."""
    obj = engine.get(info, namespace, name)
    assert info.scale is not None
    paths = info.scale
    selector: Any = None
    if paths.label_selector:
        selector = get_path(obj, paths.label_selector)
        if isinstance(selector, dict) or (selector is None and info.builtin):
            selector = selector_to_string(get_path(obj, ".spec.selector"))
    meta = obj["metadata"]
    status: JSON = {"replicas": int(get_path(obj, paths.status_replicas) or 0)}
    if selector:
        status["selector"] = selector
    keep = ("name", "namespace", "uid", "resourceVersion", "creationTimestamp")
    return {
        "kind": "Scale",
        "apiVersion": "autoscaling/v1",
        "metadata": {k: meta[k] for k in keep if k in meta},
        "spec": {"replicas": int(get_path(obj, paths.spec_replicas) or 0)},
        "status": status,
    }


def update_scale(
    engine: Engine,
    info: ResourceInfo,
    namespace: str,
    name: str,
    scale: Any,
    opts: WriteOptions,
) -> JSON:
    """Write ``Scale.spec.replicas`` through to the object's replicas path."""
    assert info.scale is not None
    if not isinstance(scale, dict):
        raise errors.bad_request("the body of the request must be a Scale object")
    replicas = (scale.get("spec") or {}).get("replicas")
    if not isinstance(replicas, int) or isinstance(replicas, bool) or replicas < 0:
        raise errors.invalid(
            "Scale",
            "autoscaling",
            name,
            [
                errors.Cause(
                    "spec.replicas",
                    f"Invalid value: {errors.go_value(replicas)}: must be greater "
                    "than or equal to 0",
                )
            ],
        )
    obj = engine.get(info, namespace, name)
    rv = (scale.get("metadata") or {}).get("resourceVersion")
    if rv and str(rv) != obj["metadata"]["resourceVersion"]:
        raise errors.conflict(info.plural, info.group, name)
    new = clone(obj)
    set_path(new, info.scale.spec_replicas, replicas)
    engine.update(info, namespace, name, new, opts)
    return get_scale(engine, info, namespace, name)


def bind(
    engine: Engine,
    info: ResourceInfo,
    namespace: str,
    name: str,
    binding: Any,
    opts: WriteOptions,
) -> JSON:
    """``pods/binding``: assign a pod to a node once, as the scheduler does."""
    target = binding.get("target") if isinstance(binding, dict) else None
    node = target.get("name") if isinstance(target, dict) else None
    if not node:
        raise errors.invalid(
            "Binding",
            "",
            name,
            [errors.Cause("target.name", "Required value", "FieldValueRequired")],
        )
    pod = engine.get(info, namespace, name)
    current = (pod.get("spec") or {}).get("nodeName")
    if current:
        raise errors.conflict(
            info.plural, info.group, name, f'pod {name} is already assigned to node "{current}"'
        )
    new = clone(pod)
    new.setdefault("spec", {})["nodeName"] = node
    return engine.update(info, namespace, name, new, opts)
