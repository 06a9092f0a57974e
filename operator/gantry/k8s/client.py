"""The operator's one Kubernetes client: plain-dict CRUD and server-side apply, any kind.

It speaks raw REST paths through the official client's `ApiClient` (auth, TLS, kubeconfig
and in-cluster token handling come from there), so no discovery and no generated model
classes are needed: objects are plain dicts, exactly as the reconcilers build them. Every
call has a timeout; throttling (429), server errors (5xx) and lost connections are retried
with exponential back-off and jitter, honouring `Retry-After`. Writes of children use
server-side apply under the field manager `gantry`.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote, urlencode

import urllib3
from kubernetes import client as k8s_client
from kubernetes import config as k8s_config
from kubernetes.client.exceptions import ApiException

from gantry.k8s.errors import ApiError, NotFound, from_status
from gantry.k8s.quantity import canonical_quantities

log = logging.getLogger(__name__)

FIELD_MANAGER = "gantry"

PatchType = Literal["merge", "json", "strategic"]
ApplyResult = Literal["created", "updated", "unchanged"]

_PATCH_CONTENT_TYPES = {
    "merge": "application/merge-patch+json",
    "json": "application/json-patch+json",
    "strategic": "application/strategic-merge-patch+json",
    # JSON is YAML: server-side apply accepts the object as built.
    "apply": "application/apply-patch+yaml",
}

# Answers worth another try: throttled, or the server (or the way to it) failing for now.
RETRYABLE_STATUSES = frozenset({0, 429, 500, 502, 503, 504})

# Kinds Gantry (operator, tools, tests) touches, and their resource names. A closed table:
# a kind missing here is a programming error, never guessed from English plural rules.
_PLURALS = {
    "ClusterKopfPeering": "clusterkopfpeerings",
    "ClusterRole": "clusterroles",
    "ClusterRoleBinding": "clusterrolebindings",
    "ConfigMap": "configmaps",
    "CustomResourceDefinition": "customresourcedefinitions",
    "Deployment": "deployments",
    "EndpointSlice": "endpointslices",
    "Endpoints": "endpoints",
    "Event": "events",
    "HorizontalPodAutoscaler": "horizontalpodautoscalers",
    "InferenceService": "inferenceservices",
    "Job": "jobs",
    "KopfPeering": "kopfpeerings",
    "Lease": "leases",
    "Namespace": "namespaces",
    "Node": "nodes",
    "PersistentVolume": "persistentvolumes",
    "PersistentVolumeClaim": "persistentvolumeclaims",
    "Pod": "pods",
    "PodDisruptionBudget": "poddisruptionbudgets",
    "ReplicaSet": "replicasets",
    "ResourceQuota": "resourcequotas",
    "Role": "roles",
    "RoleBinding": "rolebindings",
    "ScaledObject": "scaledobjects",
    "Secret": "secrets",
    "SelfSubjectAccessReview": "selfsubjectaccessreviews",
    "SelfSubjectReview": "selfsubjectreviews",
    "Service": "services",
    "ServiceAccount": "serviceaccounts",
    "StatefulSet": "statefulsets",
    "StorageClass": "storageclasses",
    "SubjectAccessReview": "subjectaccessreviews",
    "TrainingJob": "trainingjobs",
}

# Fields the server owns; `apply` neither compares nor sends them.
_SERVER_METADATA = frozenset(
    {
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "managedFields",
        "selfLink",
    }
)


def plural_of(kind: str) -> str:
    """The resource name of a kind Gantry touches (Pod → pods), as used in REST paths."""
    known = _PLURALS.get(kind)
    if known is None:
        raise ValueError(f"kind {kind!r} is not one Gantry manages (no resource name known)")
    return known


@dataclass(frozen=True)
class RetryPolicy:
    """How long one call may take and how transient failures are retried."""

    connect_timeout: float = 5.0
    read_timeout: float = 30.0
    attempts: int = 5
    base_delay: float = 0.2
    max_delay: float = 5.0

    def delay(self, attempt: int, retry_after: float | None = None) -> float:
        """Full-jitter exponential back-off; the server's Retry-After is a floor."""
        ceiling = min(self.max_delay, self.base_delay * 2**attempt)
        wait = random.uniform(0, ceiling)  # jitter, not cryptography
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.max_delay * 4))
        return wait


def retry_after_seconds(value: str | None) -> float | None:
    """`Retry-After` in seconds (the API server sends integers); None when absent or odd."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return None
    return seconds if seconds >= 0 else None


def resource_path(
    api_version: str,
    plural: str,
    name: str | None = None,
    namespace: str | None = None,
    subresource: str | None = None,
) -> str:
    """The REST path of a collection or object: /api/v1/... or /apis/group/version/..."""
    if not api_version or not plural:
        raise ValueError("api_version and plural are required")
    root = f"/api/{api_version}" if "/" not in api_version else f"/apis/{api_version}"
    parts = [root]
    if namespace:
        parts.append(f"namespaces/{quote(namespace, safe='')}")
    parts.append(plural)
    if name:
        parts.append(quote(name, safe=""))
    if subresource:
        if not name:
            raise ValueError("a subresource needs an object name")
        parts.append(subresource)
    return "/".join(parts)


def _contains(actual: Any, wanted: Any) -> bool:
    """True when `actual` already holds every value in `wanted` (server defaults allowed)."""
    if isinstance(wanted, Mapping):
        if not isinstance(actual, Mapping):
            return False
        return all(
            actual.get(k) is None if v is None else k in actual and _contains(actual[k], v)
            for k, v in wanted.items()
        )
    if isinstance(wanted, list):
        if not isinstance(actual, list) or len(actual) != len(wanted):
            return False
        return all(_contains(a, w) for a, w in zip(actual, wanted, strict=True))
    if isinstance(wanted, bool) or isinstance(actual, bool):
        return actual is wanted
    if isinstance(wanted, int | float) and isinstance(actual, int | float):
        return actual == wanted
    return bool(actual == wanted)


def matches(current: Mapping[str, Any], desired: Mapping[str, Any]) -> bool:
    """True when `current` already holds every field of `desired` that Gantry sets.

    Server defaults, server-set metadata and quantities the server rewrote in canonical
    form (`2048Mi` as `2Gi`) are not differences, so applying twice writes once.
    """
    return _contains(
        canonical_quantities(owned_fields(current)), canonical_quantities(owned_fields(desired))
    )


def owned_fields(desired: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a desired object that `apply` owns: no status, no server metadata."""
    owned = {k: v for k, v in desired.items() if k != "status"}
    meta = dict(desired.get("metadata") or {})
    owned["metadata"] = {k: v for k, v in meta.items() if k not in _SERVER_METADATA}
    return owned


class KubeClient:
    """Plain-dict CRUD for any kind; errors come out as `gantry.k8s.errors.ApiError`."""

    def __init__(
        self,
        api_client: k8s_client.ApiClient | None = None,
        *,
        retry: RetryPolicy | None = None,
        sleep: Any = time.sleep,
    ) -> None:
        self.api = api_client if api_client is not None else self._from_environment()
        self.retry = retry or RetryPolicy()
        self._sleep = sleep
        # `RetryPolicy` is the only retry layer: urllib3's own three hidden retries would
        # multiply every timeout (a frozen server cost four read timeouts per attempt).
        pool = getattr(getattr(self.api, "rest_client", None), "pool_manager", None)
        if pool is not None:
            pool.connection_pool_kw["retries"] = False
            pool.clear()

    @staticmethod
    def _from_environment() -> k8s_client.ApiClient:
        """KUBECONFIG (or ~/.kube/config) when present, the in-cluster account otherwise."""
        configuration = k8s_client.Configuration()
        kubeconfig = os.environ.get("KUBECONFIG")
        try:
            if os.environ.get("KUBERNETES_SERVICE_HOST") and not kubeconfig:
                k8s_config.load_incluster_config(client_configuration=configuration)  # type: ignore[no-untyped-call]
            else:
                k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
                    config_file=kubeconfig, client_configuration=configuration
                )
        except (k8s_config.ConfigException, OSError) as err:
            raise ApiError(
                0,
                "NoCredentials",
                f"no Kubernetes credentials: set KUBECONFIG or run inside a cluster ({err})",
            ) from err
        return k8s_client.ApiClient(configuration)

    @classmethod
    def for_url(cls, url: str, *, token: str | None = None, verify_ssl: bool = False) -> KubeClient:
        """A client for an API server URL (the dev cluster, tests)."""
        configuration = k8s_client.Configuration(host=url.rstrip("/"))
        configuration.verify_ssl = verify_ssl
        if token:
            configuration.api_key = {"BearerToken": token}
            configuration.api_key_prefix = {"BearerToken": "Bearer"}
        return cls(k8s_client.ApiClient(configuration))

    @classmethod
    def for_kubeconfig(cls, path: str | os.PathLike[str]) -> KubeClient:
        """A client for the current context of a kubeconfig file (the dev cluster, tests)."""
        configuration = k8s_client.Configuration()
        k8s_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(path), client_configuration=configuration
        )
        return cls(k8s_client.ApiClient(configuration))

    @property
    def host(self) -> str:
        return str(self.api.configuration.host)

    def close(self) -> None:
        self.api.close()  # type: ignore[no-untyped-call]

    # --- transport ----------------------------------------------------------------

    def _request(
        self,
        method: str,
        path: str,
        *,
        query: Mapping[str, Any] | None = None,
        body: Any = None,
        content_type: str = "application/json",
        accept: str = "application/json",
    ) -> bytes:
        """One call, retried while the answer is transient (see `RETRYABLE_STATUSES`)."""
        params = {k: v for k, v in (query or {}).items() if v is not None}
        if params:
            path = f"{path}?{urlencode(params)}"
        attempt = 0
        while True:
            try:
                return self._request_once(method, path, body, content_type, accept)
            except ApiError as err:
                if err.status not in RETRYABLE_STATUSES or attempt + 1 >= self.retry.attempts:
                    raise
                wait = self.retry.delay(attempt, err.retry_after)
                log.info("%s %s: %s; retrying in %.2fs", method, path, err.reason, wait)
                self._sleep(wait)
                attempt += 1

    def _request_once(
        self,
        method: str,
        path: str,
        body: Any,
        content_type: str,
        accept: str,
        timeout: float | None = None,
    ) -> bytes:
        headers = {"Accept": accept, "Content-Type": content_type}
        _method, url, headers, _body, _post = self.api.param_serialize(
            method, path, header_params=headers, auth_settings=["BearerToken"]
        )
        if timeout is None:
            timeouts = (self.retry.connect_timeout, self.retry.read_timeout)
        else:
            timeouts = (min(timeout, self.retry.connect_timeout), timeout)
        try:
            # The REST layer JSON-encodes dict and list bodies itself.
            response = self.api.call_api(
                method, url, header_params=headers, body=body, _request_timeout=timeouts
            )
            data: bytes = response.read() or b""  # type: ignore[no-untyped-call]
        except ApiException as err:
            status = int(err.status or 0)
            if status == 0:  # no answer (TLS, connection): the reason is the whole story
                error = ApiError(0, "ConnectionError", f"{method} {self.host}: {err.reason}")
            else:
                error = ApiError(status, str(err.reason or "Error"), str(err.body or ""))
            error.retry_after = retry_after_seconds((err.headers or {}).get("Retry-After"))
            raise error from err
        except urllib3.exceptions.HTTPError as err:
            raise ApiError(0, "ConnectionError", f"{method} {self.host}{path}: {err}") from err
        if not 200 <= response.status < 300:
            error = from_status(response.status, data, str(response.reason or ""))
            error.retry_after = retry_after_seconds(response.getheader("Retry-After"))  # type: ignore[no-untyped-call]
            raise error
        return data

    def version(self, timeout: float = 5.0) -> dict[str, Any]:
        """The server's /version, asked once without retries: is the API reachable now?

        Straight through the connection pool, one attempt and no `RetryPolicy`: a frozen
        API server costs one short timeout."""
        _method, url, headers, _body, _post = self.api.param_serialize(
            "GET", "/version", header_params={"Accept": "application/json"},
            auth_settings=["BearerToken"],
        )  # fmt: skip
        try:
            response = self.api.rest_client.pool_manager.request(
                "GET",
                url,
                headers=headers,
                timeout=urllib3.Timeout(
                    connect=min(timeout, self.retry.connect_timeout), read=timeout
                ),
                retries=False,
            )
        except urllib3.exceptions.HTTPError as err:
            raise ApiError(0, "ConnectionError", f"GET {self.host}/version: {err}") from err
        if not 200 <= response.status < 300:
            raise from_status(response.status, response.data, str(response.reason or ""))
        parsed = json.loads(response.data) if response.data else {}
        return parsed if isinstance(parsed, dict) else {}

    def _json(self, method: str, path: str, **kwargs: Any) -> dict[str, Any]:
        data = self._request(method, path, **kwargs)
        parsed = json.loads(data) if data else {}
        if not isinstance(parsed, dict):
            raise ApiError(0, "BadResponse", f"{method} {path}: expected an object")
        return parsed

    # --- CRUD ---------------------------------------------------------------------

    def get(
        self, api_version: str, plural: str, name: str, namespace: str | None = None
    ) -> dict[str, Any] | None:
        """The object, or None when it does not exist."""
        try:
            return self._json("GET", resource_path(api_version, plural, name, namespace))
        except NotFound:
            return None

    def list(
        self,
        api_version: str,
        plural: str,
        namespace: str | None = None,
        *,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> builtins.list[dict[str, Any]]:
        """Items of a collection (all namespaces when namespace is None)."""
        body = self._json(
            "GET",
            resource_path(api_version, plural, namespace=namespace),
            query={"labelSelector": label_selector, "fieldSelector": field_selector},
        )
        items = body.get("items") or []
        return [dict(item) for item in items]

    def create(self, obj: Mapping[str, Any]) -> dict[str, Any]:
        """Create `obj`; its apiVersion, kind and metadata.namespace choose the path."""
        api_version, kind, meta = _identity(obj, generated_name_ok=True)
        path = resource_path(api_version, plural_of(kind), namespace=meta.get("namespace"))
        return self._json("POST", path, body=dict(obj))

    def patch(
        self,
        api_version: str,
        plural: str,
        name: str,
        namespace: str | None,
        patch: Mapping[str, Any] | builtins.list[Any],
        *,
        subresource: str | None = None,
        patch_type: str = "merge",
    ) -> dict[str, Any]:
        """Patch an object (or its status/scale subresource); merge patch by default."""
        content_type = _PATCH_CONTENT_TYPES.get(patch_type)
        if content_type is None:
            raise ValueError(f"patch_type must be one of {sorted(_PATCH_CONTENT_TYPES)}")
        path = resource_path(api_version, plural, name, namespace, subresource)
        body = builtins.list(patch) if isinstance(patch, builtins.list) else dict(patch)
        return self._json("PATCH", path, body=body, content_type=content_type)

    def delete(
        self,
        api_version: str,
        plural: str,
        name: str,
        namespace: str | None = None,
        *,
        propagation: str = "Background",
    ) -> bool:
        """Delete an object; False when it was already gone."""
        options = {"kind": "DeleteOptions", "apiVersion": "v1", "propagationPolicy": propagation}
        try:
            self._request(
                "DELETE", resource_path(api_version, plural, name, namespace), body=options
            )
        except NotFound:
            return False
        return True

    def server_side_apply(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        """Server-side apply of `desired`'s own fields under the field manager `gantry`.

        Forced: Gantry owns every field it sends (a user's `kubectl edit` of one of them is
        reverted), and only those — fields it never sends stay with whoever set them; a
        field it stops sending is removed.
        """
        api_version, kind, meta = _identity(desired)
        path = resource_path(api_version, plural_of(kind), meta["name"], meta.get("namespace"))
        return self._json(
            "PATCH",
            path,
            query={"fieldManager": FIELD_MANAGER, "force": "true"},
            body=owned_fields(desired),
            content_type=_PATCH_CONTENT_TYPES["apply"],
        )

    def create_applied(self, desired: Mapping[str, Any]) -> dict[str, Any]:
        """Create `desired` (a 409 when the name is taken: never someone else's object) and
        record its fields as applied by `gantry`, exactly as if server-side apply had
        created it.

        An apply cannot be made create-only, and a plain create leaves its fields owned by
        an "Update" entry that later applies cannot remove fields from; turning that entry
        into an "Apply" one (the migration the Kubernetes documentation describes for
        client-side applied objects) gives both: no take-over, and a single owner.
        """
        api_version, kind, meta = _identity(desired)
        plural, namespace = plural_of(kind), meta.get("namespace")
        created = self._json(
            "POST",
            resource_path(api_version, plural, namespace=namespace),
            query={"fieldManager": FIELD_MANAGER},
            body=owned_fields(desired),
        )
        for _ in range(3):
            entries = (created.get("metadata") or {}).get("managedFields") or []
            index = next(
                (
                    i
                    for i, e in enumerate(entries)
                    if e.get("manager") == FIELD_MANAGER
                    and e.get("operation") == "Update"
                    and not e.get("subresource")
                ),
                None,
            )
            if index is None:
                return created
            at = f"/metadata/managedFields/{index}"
            try:
                return self.patch(
                    api_version,
                    plural,
                    meta["name"],
                    namespace,
                    [
                        {"op": "test", "path": f"{at}/manager", "value": FIELD_MANAGER},
                        {"op": "test", "path": f"{at}/operation", "value": "Update"},
                        {"op": "replace", "path": f"{at}/operation", "value": "Apply"},
                    ],
                    patch_type="json",
                )
            except ApiError as err:  # the entries moved (a controller wrote): read again
                if err.status not in (409, 422):
                    raise
                created = self.get(api_version, plural, meta["name"], namespace) or {}
        return created

    def apply(self, desired: Mapping[str, Any]) -> tuple[dict[str, Any], ApplyResult]:
        """Read the object, then create or server-side apply it when our fields differ.

        The reconcilers skip the read (their watch cache holds the object, see
        `gantry.k8s.children`); this form serves callers without a cache.
        """
        api_version, kind, meta = _identity(desired)
        current = self.get(api_version, plural_of(kind), meta["name"], meta.get("namespace"))
        if current is None:
            return self.create_applied(desired), "created"
        if matches(current, desired):
            return current, "unchanged"
        return self.server_side_apply(desired), "updated"

    def pod_log(
        self,
        namespace: str,
        pod: str,
        *,
        container: str | None = None,
        tail_lines: int | None = None,
    ) -> str:
        """A pod's log text (the last `tail_lines` lines when given)."""
        data = self._request(
            "GET",
            resource_path("v1", "pods", pod, namespace, "log"),
            query={"container": container, "tailLines": tail_lines},
            # The log is text/plain, but an error is a Status: kube-apiserver answers 406
            # Not Acceptable instead of a 404 when JSON is not acceptable too.
            accept="text/plain, application/json",
        )
        return data.decode("utf-8", "replace")


def _identity(
    obj: Mapping[str, Any], *, generated_name_ok: bool = False
) -> tuple[str, str, Mapping[str, Any]]:
    api_version = obj.get("apiVersion")
    kind = obj.get("kind")
    meta = obj.get("metadata") or {}
    named = meta.get("name") or (generated_name_ok and meta.get("generateName"))
    if not api_version or not kind or not named:
        raise ValueError("an object needs apiVersion, kind and metadata.name")
    return str(api_version), str(kind), meta
