"""The three patch formats of ``PATCH`` plus the merge behind server-side apply.

Strategic merge patch follows Kubernetes' ``patchMergeKey`` table for the lists Gantry
and kubectl touch; lists without a merge key are replaced, as in Kubernetes.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch

from .errors import APIError, bad_request

JSON = dict[str, Any]


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: maps merge, ``null`` deletes, everything else replaces."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out: JSON = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = merge_patch(out.get(key), value)
    return out


def json_patch(target: JSON, ops: Any) -> JSON:
    """RFC 6902 JSON patch, ``test`` included; failures are 422 like the real server."""
    if not isinstance(ops, list):
        raise bad_request("json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    try:
        result = jsonpatch.JsonPatch(ops).apply(target)
    except jsonpatch.JsonPatchTestFailed as exc:
        raise APIError(
            422,
            "Invalid",
            f"the server rejected our request due to an error in "
            f"our request: testing value failed: {exc}",
        ) from exc
    except (jsonpatch.JsonPatchException, jsonpatch.JsonPointerException) as exc:
        raise APIError(
            422, "Invalid", f"the server rejected our request due to an error in our request: {exc}"
        ) from exc
    except (TypeError, KeyError, ValueError) as exc:
        raise bad_request(f"invalid JSON patch: {exc}") from exc
    if not isinstance(result, dict):
        raise bad_request("a JSON patch must leave an object")
    return result


# Merge keys by list field name; "ports" depends on the parent (container vs service).
MERGE_KEYS: dict[str, str] = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "volumeDevices": "devicePath",
    "conditions": "type",
    "imagePullSecrets": "name",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "topologySpreadConstraints": "topologyKey",
    "resourceClaims": "name",
    "containerStatuses": "name",
    "initContainerStatuses": "name",
    "secrets": "name",
    "subsets": "",
}
# Lists of scalars that merge as sets rather than being replaced.
MERGED_SCALAR_LISTS = {"finalizers"}


def _merge_key(field: str, parent_path: tuple[str, ...]) -> str | None:
    if field == "ports":
        # ServiceSpec ports merge on "port", container ports on "containerPort".
        return "port" if parent_path and parent_path[-1] == "spec" else "containerPort"
    key = MERGE_KEYS.get(field)
    return key or None


def strategic_merge_patch(target: Any, patch: Any, path: tuple[str, ...] = ()) -> Any:
    """Apply a strategic merge patch, honouring ``$patch`` and ``$deleteFromPrimitiveList``."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    directive = patch.get("$patch")
    if directive == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if directive == "delete":
        return None
    out: JSON = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key == "$patch" or key.startswith(("$setElementOrder/", "$retainKeys")):
            continue
        if key.startswith("$deleteFromPrimitiveList/"):
            field = key.split("/", 1)[1]
            drop = set(map(_hashable, value or []))
            out[field] = [v for v in out.get(field) or [] if _hashable(v) not in drop]
            continue
        if value is None:
            out.pop(key, None)
            continue
        current = out.get(key)
        if isinstance(value, list):
            out[key] = _merge_list(key, current, value, path)
        elif isinstance(value, dict):
            merged = strategic_merge_patch(current, value, (*path, key))
            if merged is None:
                out.pop(key, None)
            else:
                out[key] = merged
        else:
            out[key] = copy.deepcopy(value)
    return out


def _hashable(value: Any) -> Any:
    return value if isinstance(value, str | int | float | bool) else repr(value)


def _merge_list(field: str, current: Any, patch: list[Any], path: tuple[str, ...]) -> Any:
    current_list = current if isinstance(current, list) else []
    if field in MERGED_SCALAR_LISTS:
        out = list(current_list)
        for item in patch:
            if item not in out:
                out.append(item)
        return out
    merge_key = _merge_key(field, path)
    if merge_key is None or not all(isinstance(i, dict) for i in patch):
        replace = [i for i in patch if not (isinstance(i, dict) and "$patch" in i)]
        return copy.deepcopy(replace)
    if any(i.get("$patch") == "replace" for i in patch):
        return [copy.deepcopy(i) for i in patch if "$patch" not in i]
    merged = [copy.deepcopy(i) for i in current_list]
    for item in patch:
        key_value = item.get(merge_key)
        idx = next(
            (
                n
                for n, cur in enumerate(merged)
                if isinstance(cur, dict) and cur.get(merge_key) == key_value
            ),
            None,
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                merged.pop(idx)
            continue
        if idx is None:
            merged.append(strategic_merge_patch({}, item, (*path, field)))
        else:
            merged[idx] = strategic_merge_patch(merged[idx], item, (*path, field))
    return merged


def apply_merge(current: JSON, applied: JSON, strategic: bool) -> JSON:
    """Server-side apply without field ownership: the applied config merged over the live one."""
    merge = strategic_merge_patch if strategic else merge_patch
    result = merge(current, applied)
    assert isinstance(result, dict)
    return result
