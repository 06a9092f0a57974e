"""The API's semantics, free of HTTP: create, read, update, patch, delete and the
``status``/``scale`` subresources of every served resource.

Each method takes parsed input and returns the object to send back, or raises
:class:`~.errors.APIError` with the Status the real server would answer.
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from . import defaults, errors, patching, validation
from .meta import clone, deleting, generated_name, new_uid, now, spec_of
from .resources import Registry, ResourceInfo
from .store import GR, Store

JSON = dict[str, Any]
Matcher = Callable[[Mapping[str, Any]], bool]

SYSTEM_NAMESPACES = ("default", "kube-system", "kube-public", "kube-node-lease")
FOREGROUND = "foregroundDeletion"
ORPHAN = "orphan"
CRD_CLEANUP = "customresourcecleanup.apiextensions.k8s.io"
CRD_GR: GR = ("apiextensions.k8s.io", "customresourcedefinitions")
NS_GR: GR = ("", "namespaces")
POD_GR: GR = ("", "pods")


@dataclass(frozen=True)
class WriteOptions:
    dry_run: bool = False
    field_manager: str | None = None
    field_validation: str = ""


@dataclass(frozen=True)
class DeleteOptions:
    propagation: str | None = None
    grace_period: int | None = None
    uid: str | None = None
    resource_version: str | None = None
    dry_run: bool = False


def _gr(info: ResourceInfo) -> GR:
    return info.group_resource


def view(info: ResourceInfo, obj: JSON) -> JSON:
    """Objects are stored once; each version's endpoint shows its own apiVersion."""
    if obj.get("apiVersion") == info.api_version:
        return obj
    return dict(obj, apiVersion=info.api_version)


class Engine:
    """Every write goes through here, so invariants hold for all clients alike."""

    def __init__(self, store: Store, registry: Registry) -> None:
        self.store = store
        self.registry = registry
        # Uids whose dependents the garbage collector should look at.
        self.suspects: set[str] = set()
        self.on_dirty: Callable[[], None] = lambda: None

    # bootstrap
    def bootstrap(self) -> None:
        for name in SYSTEM_NAMESPACES:
            if self.store.get(NS_GR, "", name) is None:
                self.create(self._info(NS_GR), "", {"metadata": {"name": name}}, WriteOptions())
        for crd in self.store.list(CRD_GR):
            self.registry.add_crd(crd)

    def _info(self, gr: GR) -> ResourceInfo:
        info = self.registry.storage_info(*gr)
        assert info is not None, gr
        return info

    # reads
    def get(self, info: ResourceInfo, namespace: str, name: str) -> JSON:
        obj = self.store.get(_gr(info), namespace, name)
        if obj is None:
            raise errors.not_found(info.plural, info.group, name)
        return view(info, obj)

    def list(
        self,
        info: ResourceInfo,
        namespace: str | None,
        match: Matcher,
        limit: int | None = None,
        continue_token: str | None = None,
    ) -> JSON:
        """A list with ``limit``/``continue`` pages served from one consistent snapshot."""
        rv = self.store.rv
        start: tuple[str, str] | None = None
        if continue_token:
            rv, start = _decode_continue(continue_token)
            try:
                objs = self.store.snapshot(_gr(info), namespace, rv)
            except errors.APIError as exc:
                raise errors.expired(errors.CONTINUE_EXPIRED) from exc
        else:
            objs = self.store.list(_gr(info), namespace)
        items: list[JSON] = []
        remaining = 0
        last: tuple[str, str] | None = None
        for obj in objs:
            meta = obj["metadata"]
            key = (str(meta.get("namespace") or ""), str(meta["name"]))
            if start is not None and key <= start:
                continue
            if not match(obj):
                continue
            if limit and len(items) >= limit:
                remaining += 1
                continue
            items.append(view(info, obj))
            last = key
        list_meta: JSON = {"resourceVersion": str(rv)}
        if remaining and last is not None:
            list_meta["continue"] = _encode_continue(rv, last)
            list_meta["remainingItemCount"] = remaining
        return {
            "kind": f"{info.kind}List",
            "apiVersion": info.api_version,
            "metadata": list_meta,
            "items": items,
        }

    # create
    def create(self, info: ResourceInfo, namespace: str, body: Any, opts: WriteOptions) -> JSON:
        obj = self._check_body(info, body)
        meta = obj.setdefault("metadata", {})
        if info.namespaced:
            if meta.get("namespace") and meta["namespace"] != namespace:
                raise errors.bad_request(
                    "the namespace of the provided object does not match the namespace sent "
                    "on the request"
                )
            meta["namespace"] = namespace
            self._check_namespace(info, namespace, str(meta.get("name") or ""))
        else:
            meta.pop("namespace", None)
        if not meta.get("name"):
            if meta.get("generateName"):
                meta["name"] = generated_name(str(meta["generateName"]))
            else:
                raise errors.invalid(
                    info.kind,
                    info.group,
                    "",
                    [
                        errors.Cause(
                            "metadata.name",
                            "Required value: name or generateName is required",
                            "FieldValueRequired",
                        )
                    ],
                )
        name = str(meta["name"])
        if self.store.get(_gr(info), namespace if info.namespaced else "", name) is not None:
            raise errors.already_exists(info.plural, info.group, name)
        for drop in (
            "resourceVersion",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "managedFields",
            "selfLink",
        ):
            meta.pop(drop, None)
        meta["uid"] = new_uid()
        meta["creationTimestamp"] = now()
        meta["generation"] = 1
        obj["apiVersion"] = info.api_version
        obj["kind"] = info.kind
        self._admit_custom(info, obj, opts)
        defaults.on_create(info, obj)
        validation.validate_object(info, obj)
        if opts.dry_run:
            return obj
        self.store.put(_gr(info), obj)
        self._after_write(info, None, obj)
        return obj

    def _check_body(self, info: ResourceInfo, body: Any) -> JSON:
        if not isinstance(body, dict):
            raise errors.bad_request("the body of the request must be a JSON object")
        obj = clone(body)
        api_version, kind = obj.get("apiVersion"), obj.get("kind")
        if kind and kind != info.kind:
            raise errors.bad_request(
                f"the API version in the data ({api_version}) does not match the expected API "
                f"version ({info.api_version})"
                if api_version and api_version != info.api_version
                else f'{kind} in version "{info.version}" cannot be handled as a {info.kind}'
            )
        if not isinstance(obj.get("metadata", {}), dict):
            raise errors.bad_request("metadata must be an object")
        return obj

    def _check_namespace(self, info: ResourceInfo, namespace: str, name: str) -> None:
        ns = self.store.get(NS_GR, "", namespace)
        if ns is None:
            raise errors.not_found("namespaces", "", namespace)
        if deleting(ns):
            raise errors.forbidden(
                info.plural,
                info.group,
                name,
                f"unable to create new content in namespace {namespace} because it is being "
                "terminated",
            )

    def _admit_custom(self, info: ResourceInfo, obj: JSON, opts: WriteOptions) -> None:
        dropped = validation.admit_custom(info, obj)
        if dropped and opts.field_validation not in ("Strict", "Ignore"):
            for path in dropped:
                errors.warn(f'unknown field "{path}"')
        if dropped and opts.field_validation == "Strict":
            fields = ", ".join(f'unknown field "{d}"' for d in dropped)
            raise errors.bad_request(
                f'{info.kind} in version "{info.version}" cannot be handled as a {info.kind}: '
                f"strict decoding error: {fields}"
            )

    # update and patch
    def update(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        body: Any,
        opts: WriteOptions,
        subresource: str | None = None,
    ) -> JSON:
        new = self._check_body(info, body)
        old = self.store.get(_gr(info), namespace, name)
        if old is None:
            raise errors.not_found(info.plural, info.group, name)
        meta = new.setdefault("metadata", {})
        if meta.get("name", name) != name:
            raise errors.bad_request(
                f"the name of the object ({meta.get('name')}) does not match the name on the "
                f"URL ({name})"
            )
        if info.namespaced and meta.get("namespace", namespace) != namespace:
            raise errors.bad_request(
                "the namespace of the provided object does not match the namespace sent on the "
                "request"
            )
        rv = meta.get("resourceVersion")
        if rv and str(rv) != old["metadata"]["resourceVersion"]:
            raise errors.conflict(info.plural, info.group, name)
        return self._write(info, old, new, opts, subresource)

    def patch(
        self,
        info: ResourceInfo,
        namespace: str,
        name: str,
        patch_type: str,
        patch: Any,
        opts: WriteOptions,
        subresource: str | None = None,
    ) -> tuple[JSON, bool]:
        """Apply a patch; returns the object and whether it was created (server-side apply)."""
        old = self.store.get(_gr(info), namespace, name)
        if patch_type == "apply":
            if not isinstance(patch, dict):
                raise errors.bad_request("an apply patch must be an object")
            if old is None:
                if subresource:
                    raise errors.not_found(info.plural, info.group, name)
                body = clone(patch)
                body.setdefault("metadata", {})["name"] = name
                return self.create(info, namespace, body, opts), True
            patched = patching.apply_merge(old, patch, strategic=info.builtin)
        elif old is None:
            raise errors.not_found(info.plural, info.group, name)
        else:
            patched = self.patched(info, old, patch_type, patch)
        return self.update(info, namespace, name, patched, opts, subresource), False

    @staticmethod
    def patched(info: ResourceInfo, current: JSON, patch_type: str, patch: Any) -> JSON:
        """``current`` with a merge, JSON or strategic merge patch applied."""
        if patch_type == "json":
            return patching.json_patch(current, patch)
        if not isinstance(patch, dict):
            raise errors.bad_request("a merge patch must be a JSON object")
        if patch_type == "strategic":
            if not info.builtin:
                raise errors.APIError(
                    415,
                    "UnsupportedMediaType",
                    "strategic merge patch is not supported for custom resources; use a JSON "
                    "merge patch",
                )
            result = patching.strategic_merge_patch(current, patch)
        else:
            result = patching.merge_patch(current, patch)
        if not isinstance(result, dict):
            raise errors.bad_request("a patch must leave an object")
        return result

    def _write(
        self, info: ResourceInfo, old: JSON, new: JSON, opts: WriteOptions, sub: str | None
    ) -> JSON:
        if sub == "status":
            status = new.get("status")
            new = clone(old)
            if status is None:
                new.pop("status", None)
            else:
                new["status"] = status
        elif info.status:
            if "status" in old:
                new["status"] = clone(old["status"])
            else:
                new.pop("status", None)
        old_meta, meta = old["metadata"], new["metadata"]
        for fixed in (
            "uid",
            "creationTimestamp",
            "deletionTimestamp",
            "deletionGracePeriodSeconds",
            "generation",
            "namespace",
            "name",
        ):
            if fixed in old_meta:
                meta[fixed] = old_meta[fixed]
            else:
                meta.pop(fixed, None)
        meta.pop("managedFields", None)
        meta["resourceVersion"] = old_meta["resourceVersion"]
        new["apiVersion"], new["kind"] = old.get("apiVersion", info.api_version), info.kind
        self._admit_custom(info, new, opts)
        if deleting(old):
            added = [
                f
                for f in meta.get("finalizers") or []
                if f not in (old_meta.get("finalizers") or [])
            ]
            if added:
                quoted = ", ".join(json.dumps(a) for a in added)
                raise errors.invalid(
                    info.kind,
                    info.group,
                    meta["name"],
                    [
                        errors.Cause(
                            "metadata.finalizers",
                            "Forbidden: no new finalizers can be added if the object is being "
                            f"deleted, found new finalizers []string{{{quoted}}}",
                            "FieldValueForbidden",
                        )
                    ],
                )
        validation.validate_object(info, new, old)
        if spec_of(new) != spec_of(old):
            meta["generation"] = int(old_meta.get("generation") or 1) + 1
        if not meta.get("finalizers"):
            meta.pop("finalizers", None)
        if new == old:
            return view(info, old)
        if opts.dry_run:
            return view(info, new)
        self.store.put(_gr(info), new)
        if deleting(new) and not new["metadata"].get("finalizers") and not self._waits(info, new):
            return view(info, self._remove(info, new))
        self._after_write(info, old, new)
        return view(info, new)

    def _waits(self, info: ResourceInfo, obj: JSON) -> bool:
        """Objects kept after their finalizers are gone: graceful pods, terminating namespaces."""
        if _gr(info) == NS_GR:
            return True
        return _gr(info) == POD_GR and bool(obj["metadata"].get("deletionGracePeriodSeconds"))

    def _after_write(self, info: ResourceInfo, old: JSON | None, new: JSON) -> None:
        for ref in new["metadata"].get("ownerReferences") or []:
            self.suspects.add(str(ref.get("uid")))
        if _gr(info) == CRD_GR and not deleting(new):
            self.registry.add_crd(new)
        if deleting(new) or (old is not None and deleting(old)):
            self.suspects.add(str(new["metadata"]["uid"]))
        self.on_dirty()

    def _remove(self, info: ResourceInfo, obj: JSON) -> JSON:
        meta = obj["metadata"]
        change = self.store.remove(_gr(info), str(meta.get("namespace") or ""), str(meta["name"]))
        if _gr(info) == CRD_GR:
            self.registry.remove_crd(str(meta["name"]))
        self.suspects.add(str(meta["uid"]))
        self.on_dirty()
        return change.obj if change is not None else obj

    # delete
    def delete(self, info: ResourceInfo, namespace: str, name: str, opts: DeleteOptions) -> JSON:
        obj = self.store.get(_gr(info), namespace, name)
        if obj is None:
            raise errors.not_found(info.plural, info.group, name)
        meta = obj["metadata"]
        if opts.uid and opts.uid != meta.get("uid"):
            raise errors.conflict(
                info.plural,
                info.group,
                name,
                (
                    f"Precondition failed: UID in precondition: {opts.uid}, UID in object meta: "
                    f"{meta.get('uid')}"
                ),
            )
        if opts.resource_version and opts.resource_version != meta.get("resourceVersion"):
            raise errors.conflict(
                info.plural,
                info.group,
                name,
                (
                    "Precondition failed: ResourceVersion in precondition: "
                    f"{opts.resource_version}, ResourceVersion in object meta: "
                    f"{meta.get('resourceVersion')}"
                ),
            )
        if opts.dry_run:
            return view(info, obj)
        gr = _gr(info)
        if deleting(obj):
            if gr == POD_GR and opts.grace_period == 0:
                if not meta.get("finalizers"):
                    return view(info, self._remove(info, obj))
                if meta.get("deletionGracePeriodSeconds"):
                    # The agent is done; the last finalizer's removal now removes the pod.
                    new = clone(obj)
                    new["metadata"]["deletionGracePeriodSeconds"] = 0
                    self.store.put(gr, new)
                    return view(info, new)
            return view(info, obj)
        if opts.propagation == "Orphan":
            self.orphan_dependents(str(meta["uid"]))
        new = clone(obj)
        nmeta = new["metadata"]
        finalizers: list[str] = list(nmeta.get("finalizers") or [])
        if opts.propagation == "Foreground" and self.store.dependents.get(str(meta["uid"])):
            finalizers.append(FOREGROUND)
        grace = self._grace(gr, obj, opts)
        if gr == NS_GR:
            new.setdefault("status", {})["phase"] = "Terminating"
        elif gr == CRD_GR:
            finalizers.append(CRD_CLEANUP)
            new.setdefault("status", {}).setdefault("conditions", []).append(
                {
                    "type": "Terminating",
                    "status": "True",
                    "reason": "InstanceDeletionInProgress",
                    "message": "CustomResource deletion is in progress",
                    "lastTransitionTime": now(),
                }
            )
        elif not finalizers and not grace:
            return view(info, self._remove(info, obj))
        nmeta["finalizers"] = finalizers
        if not finalizers:
            nmeta.pop("finalizers")
        nmeta["deletionTimestamp"] = now()
        nmeta["deletionGracePeriodSeconds"] = grace
        self.store.put(gr, new)
        self.suspects.add(str(meta["uid"]))
        self.on_dirty()
        return view(info, new)

    @staticmethod
    def _grace(gr: GR, obj: JSON, opts: DeleteOptions) -> int:
        """Pods bound to a node terminate gracefully; the node agent removes them."""
        if gr != POD_GR:
            return 0
        phase = (obj.get("status") or {}).get("phase")
        if not (obj.get("spec") or {}).get("nodeName") or phase in ("Succeeded", "Failed"):
            return 0
        if opts.grace_period is not None:
            return max(0, opts.grace_period)
        return int((obj.get("spec") or {}).get("terminationGracePeriodSeconds", 30))

    def delete_collection(
        self, info: ResourceInfo, namespace: str | None, match: Matcher, opts: DeleteOptions
    ) -> JSON:
        deleted = []
        for obj in self.store.list(_gr(info), namespace):
            if match(obj):
                meta = obj["metadata"]
                deleted.append(
                    self.delete(info, str(meta.get("namespace") or ""), str(meta["name"]), opts)
                )
        return {
            "kind": f"{info.kind}List",
            "apiVersion": info.api_version,
            "metadata": {"resourceVersion": str(self.store.rv)},
            "items": deleted,
        }

    def orphan_dependents(self, uid: str) -> None:
        for gr, dep in self.store.dependents_of(uid):
            new = clone(dep)
            refs = [r for r in new["metadata"].get("ownerReferences") or [] if r.get("uid") != uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences", None)
            self.store.put(gr, new)


def _encode_continue(rv: int, key: tuple[str, str]) -> str:
    raw = json.dumps({"v": "meta.k8s.io/v1", "rv": rv, "start": list(key)})
    return base64.urlsafe_b64encode(raw.encode()).decode()


def _decode_continue(token: str) -> tuple[int, tuple[str, str]]:
    try:
        data = json.loads(base64.urlsafe_b64decode(token.encode()))
        return int(data["rv"]), (str(data["start"][0]), str(data["start"][1]))
    except (ValueError, KeyError, IndexError, TypeError, binascii.Error) as exc:
        raise errors.bad_request(f"continue key is not valid: {exc}") from exc
