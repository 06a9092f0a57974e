"""Types shared by both kinds: the model base, conditions, storage URIs, pod knobs."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic.alias_generators import to_camel
from pydantic.config import JsonDict

GROUP = "gantry.dev"
VERSION = "v1alpha1"
API_VERSION = f"{GROUP}/{VERSION}"

# Kubernetes' DNS-1123 label and subdomain rules (names of claims, secrets, jobs).
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

# --- bounds -----------------------------------------------------------------------
# kube-apiserver estimates the worst-case cost of every CEL rule from the schema and
# rejects a CRD whose rules could exceed its budget; an unbounded list or string counts
# as "as large as a whole request". So every list, map and string a rule reads has a
# bound, and the models enforce the same bounds. Where Kubernetes has a limit for the
# same thing it is used; elsewhere the bound is far above any real use.
MAX_NAME_LENGTH = 253  # DNS-1123 subdomain: object names; also env var names
MAX_LABEL_LENGTH = 63  # DNS-1123 label: volume names; label values
MAX_QUALIFIED_NAME_LENGTH = 317  # label or taint key: DNS-1123 prefix (253) / name (63)
MAX_IMAGE_LENGTH = 1024  # registry host (253) + repository (255) + tag (128) or digest
MAX_PATH_LENGTH = 4096  # PATH_MAX: mountPath, subPath
MAX_COMMAND_ITEMS = 64
MAX_ARGS_ITEMS = 256
MAX_ARG_LENGTH = 4096  # one argument of command or args
MAX_ENV_ITEMS = 100
MAX_ENV_VALUE_LENGTH = 32768
MAX_VOLUMES = 50
MAX_VOLUME_MOUNTS = 100  # more than volumes: one volume may be mounted at several subPaths
MAX_RESOURCE_NAMES = 32  # entries of resources.requests / resources.limits
MAX_QUANTITY_LENGTH = 64  # a quantity written as a string, e.g. 16Gi
MAX_NODE_SELECTOR = 64  # labels in nodeSelector
MAX_TOLERATIONS = 64
MAX_BATCH_SIZES = 32  # Triton preferred batch sizes

# Characters no URI or path field may hold: `$` (the kubelet expands `$(VAR)` in command,
# args and env, so a URI could smuggle a secret's value into an error message or a request),
# whitespace and control characters. One class, read by Python's `re` and by RE2 (CEL).
UNSAFE_CHARACTERS = r"[$\s\x00-\x1f\x7f]"
_SAFE_TAIL = r"(/[^$\s\x00-\x1f\x7f]*)?"
STORAGE_URI_PATTERN = (
    rf"^(pvc://[a-z0-9]([-a-z0-9]*[a-z0-9])?{_SAFE_TAIL}"
    rf"|s3://[a-z0-9][a-z0-9.-]{{1,61}}[a-z0-9]{_SAFE_TAIL})$"
)
_UNSAFE = re.compile(UNSAFE_CHARACTERS)
UNSAFE_MESSAGE = "must not contain '$', whitespace or control characters"


def cel(
    rule: str,
    message: str,
    field_path: str | None = None,
    message_expression: str | None = None,
) -> dict[str, str]:
    """One `x-kubernetes-validations` entry; the models enforce the same rule in Python.

    `message_expression` (CEL returning a string) lets the API server name the offending
    value; `message` stays as what it says if that expression cannot be evaluated.
    """
    entry = {"rule": rule, "message": message}
    if message_expression:
        entry["messageExpression"] = message_expression
    if field_path:
        entry["fieldPath"] = field_path
    return entry


def validations(*rules: dict[str, str]) -> JsonDict:
    return {"x-kubernetes-validations": [dict(r) for r in rules]}


class ApiModel(BaseModel):
    """Base of every spec/status type: camelCase on the wire, unknown fields rejected."""

    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        extra="forbid",
        use_enum_values=True,
        validate_default=True,
    )


class OpenObject(BaseModel):
    """A Kubernetes type we pass through unchanged (volumes, valueFrom, …).

    The API server validates these when it receives the pods we build, so repeating the
    whole core/v1 schema here would only drift from it.
    """

    model_config = ConfigDict(extra="allow")


# --- conditions -------------------------------------------------------------------


class ConditionStatus(StrEnum):
    TRUE = "True"
    FALSE = "False"
    UNKNOWN = "Unknown"


class Condition(ApiModel):
    """A Kubernetes-style condition (metav1.Condition)."""

    type: str = Field(description="Type of condition in CamelCase, e.g. Ready.", max_length=316)
    status: ConditionStatus = Field(description="True, False or Unknown.")
    reason: str = Field(
        default="",
        description="Machine-readable CamelCase reason for the last transition.",
        max_length=1024,
    )
    message: str = Field(
        default="", description="Human-readable details of the last transition.", max_length=32768
    )
    last_transition_time: str | None = Field(
        default=None, description="When the status last changed (RFC 3339)."
    )
    observed_generation: int | None = Field(
        default=None, ge=0, description="The .metadata.generation this condition was set for."
    )


def operator_bookkeeping() -> Any:
    """`status.kopf`: the operator framework's own state (diff base, handler progress).

    Declared so the API server keeps it: a structural schema prunes undeclared status
    fields, and kopf would then see every object as new on each event.
    """
    return Field(
        default=None,
        description="Operator bookkeeping (kopf); not part of the API.",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


# --- storage URIs -----------------------------------------------------------------


@dataclass(frozen=True)
class StorageLocation:
    """A parsed storage URI: `pvc://claim/path` or `s3://bucket/path`."""

    scheme: str
    name: str  # claim or bucket
    path: str  # without leading slash; may be empty

    @property
    def uri(self) -> str:
        return f"{self.scheme}://{self.name}/{self.path}".rstrip("/")


_CLAIM = re.compile(DNS_LABEL)
_SUBDOMAIN = re.compile(DNS_SUBDOMAIN)
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


def check_safe(value: str, what: str) -> str:
    """`value` unless it holds `$`, whitespace or control characters (never echoed back)."""
    if _UNSAFE.search(value):
        raise ValueError(f"{what} {UNSAFE_MESSAGE}")
    return value


def parse_storage_uri(uri: str) -> StorageLocation:
    """Parse a storage URI, raising ValueError with a message a user can act on.

    A URI with unsafe characters or credentials (`user:key@`) is refused without being
    echoed, so no message carries what it would have expanded to or a key.
    """
    check_safe(uri, "a storage URI")
    if "@" in uri.partition("://")[2].partition("/")[0]:
        raise ValueError("a storage URI must not carry credentials (user:key@): use a Secret")
    scheme, sep, rest = uri.partition("://")
    if not sep:
        raise ValueError(f"'{uri}' is not a storage URI: use pvc://claim/path or s3://bucket/path")
    if scheme not in ("pvc", "s3"):
        raise ValueError(
            f"unsupported storage URI scheme '{scheme}' in '{uri}': "
            "use pvc://claim/path or s3://bucket/path"
        )
    name, _, path = rest.partition("/")
    if scheme == "pvc" and not _CLAIM.match(name):
        raise ValueError(
            f"'{name}' in '{uri}' is not a valid PersistentVolumeClaim name "
            "(lowercase letters, digits and '-', starting and ending with a letter or digit)"
        )
    if scheme == "s3" and not _BUCKET.match(name):
        raise ValueError(f"'{name}' in '{uri}' is not a valid S3 bucket name")
    if ".." in path.split("/"):
        raise ValueError(f"'{uri}' must not contain '..' path segments")
    return StorageLocation(scheme=scheme, name=name, path=path.strip("/"))


def _check_storage_uri(value: str) -> str:
    parse_storage_uri(value)
    return value


StorageUri = Annotated[
    str,
    Field(
        max_length=2048,
        # The pattern is published in the CRD only: in Python the validator below gives a
        # message that says what is wrong instead of printing the regular expression.
        json_schema_extra={
            "pattern": STORAGE_URI_PATTERN,
            **validations(
                cel(
                    "self.startsWith('pvc://') || self.startsWith('s3://')",
                    "storageUri must be pvc://claim/path or s3://bucket/path",
                ),
                cel(f"!self.matches(r'{UNSAFE_CHARACTERS}')", f"storageUri {UNSAFE_MESSAGE}"),
            ),
        },
    ),
    AfterValidator(_check_storage_uri),
]


# --- pod knobs shared by both kinds -------------------------------------------------

Quantity = Annotated[
    int | Annotated[str, Field(max_length=MAX_QUANTITY_LENGTH)],
    Field(
        json_schema_extra={"x-kubernetes-int-or-string": True},
        description="A Kubernetes quantity such as 4, 500m or 16Gi.",
    ),
]
QUANTITY_RE = re.compile(r"^([+-]?[0-9.]+)([eE][-+]?[0-9]+|[numkKMGTPE]i?)?$")


def check_quantities(resources: dict[str, dict[str, int | str]]) -> None:
    for kind, amounts in resources.items():
        for name, amount in amounts.items():
            if isinstance(amount, str) and not QUANTITY_RE.match(amount):
                raise ValueError(f"{kind}.{name}: '{amount}' is not a Kubernetes quantity")
            if name == "nvidia.com/gpu" and not (
                (isinstance(amount, int) and amount >= 0) or str(amount).isdigit()
            ):
                raise ValueError(f"{kind}.nvidia.com/gpu must be a whole number of GPUs")


class EnvVar(ApiModel):
    """A container environment variable (core/v1 EnvVar)."""

    name: str = Field(min_length=1, max_length=MAX_NAME_LENGTH, description="Variable name.")
    value: str | None = Field(
        default=None, max_length=MAX_ENV_VALUE_LENGTH, description="Literal value."
    )
    value_from: OpenObject | None = Field(
        default=None,
        description="Source for the value (secretKeyRef, configMapKeyRef, fieldRef, …).",
        json_schema_extra={"x-kubernetes-preserve-unknown-fields": True},
    )


_WHOLE_GPUS = "!('nvidia.com/gpu' in self) || string(self['nvidia.com/gpu']).matches('^[0-9]+$')"


class ResourceRequirements(ApiModel):
    """Compute resources per pod (core/v1 ResourceRequirements)."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(self.requests) || " + _WHOLE_GPUS.replace("self", "self.requests"),
                "requests.nvidia.com/gpu must be a whole number of GPUs",
                ".requests",
            ),
            cel(
                "!has(self.limits) || " + _WHOLE_GPUS.replace("self", "self.limits"),
                "limits.nvidia.com/gpu must be a whole number of GPUs",
                ".limits",
            ),
        )
    }

    requests: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=MAX_RESOURCE_NAMES,
        description="Minimum resources, e.g. {cpu: '4', memory: 16Gi}.",
    )
    limits: dict[str, Quantity] = Field(
        default_factory=dict,
        max_length=MAX_RESOURCE_NAMES,
        description="Maximum resources, e.g. {nvidia.com/gpu: 1}.",
    )


class Toleration(ApiModel):
    """A pod toleration (core/v1 Toleration)."""

    key: str | None = Field(
        default=None,
        max_length=MAX_QUALIFIED_NAME_LENGTH,
        description="Taint key the toleration applies to.",
    )
    operator: str | None = Field(
        default=None,
        description="Exists or Equal (default Equal).",
        json_schema_extra={"enum": ["Exists", "Equal"]},
    )
    value: str | None = Field(
        default=None, max_length=MAX_LABEL_LENGTH, description="Taint value to match with Equal."
    )
    effect: str | None = Field(
        default=None,
        description="NoSchedule, PreferNoSchedule or NoExecute; empty matches all.",
        json_schema_extra={"enum": ["NoSchedule", "PreferNoSchedule", "NoExecute"]},
    )
    toleration_seconds: int | None = Field(
        default=None, description="How long a NoExecute taint is tolerated."
    )


# --- volume sources -------------------------------------------------------------------
# A TrainingJob's volumes reach its worker pods unchanged, so the sources are allow-listed:
# these cannot reach the node or another namespace. The rest of core/v1's sources are
# refused at admission (a CEL rule each, with its field path) unless a cluster admin lists
# them in the operator configuration's `allowedVolumeSources` (the chart then installs CRDs
# whose rule for that source is `true`).
ALLOWED_VOLUME_SOURCES = (
    "persistentVolumeClaim",
    "emptyDir",
    "configMap",
    "secret",
    "projected",
    "ephemeral",
    "csi",
    "downwardAPI",
)
REFUSED_VOLUME_SOURCES = (
    "hostPath",
    "nfs",
    "iscsi",
    "fc",
    "rbd",
    "cephfs",
    "glusterfs",
    "flexVolume",
    "gitRepo",
    "image",
    "awsElasticBlockStore",
    "azureDisk",
    "azureFile",
    "cinder",
    "flocker",
    "gcePersistentDisk",
    "photonPersistentDisk",
    "portworxVolume",
    "quobyte",
    "scaleIO",
    "storageos",
    "vsphereVolume",
)
ALLOWED_VOLUME_SOURCES_CONTEXT = "allowed_volume_sources"


def refused_source_rule(source: str) -> str:
    """The CEL rule refusing one source; the chart replaces it by `true` to allow it."""
    return f"!has(self.{source})"


def _volume_source_schema(schema: dict[str, Any]) -> None:
    """Declare every core/v1 source so CEL can see it; refuse those not allow-listed."""
    schema.pop("additionalProperties", None)
    properties = schema.setdefault("properties", {})
    for source in (*ALLOWED_VOLUME_SOURCES, *REFUSED_VOLUME_SOURCES):
        properties[source] = {
            "type": "object",
            "additionalProperties": True,
            "description": f"core/v1 {source} volume source.",
        }
    properties["secret"]["properties"] = {
        "secretName": {
            "type": "string",
            "maxLength": MAX_NAME_LENGTH,
            "pattern": DNS_SUBDOMAIN,
            "description": "A Secret of the job's own namespace.",
        }
    }
    allowed = ", ".join(ALLOWED_VOLUME_SOURCES)
    schema["x-kubernetes-validations"] = [
        cel(
            refused_source_rule(source),
            f"{source} volumes are not allowed (allowed: {allowed}); a cluster admin may "
            f"allow {source} with the operator configuration allowedVolumeSources",
            f".{source}",
        )
        for source in REFUSED_VOLUME_SOURCES
    ]


class VolumeSource(OpenObject):
    """One core/v1 volume source from the allow-list (checked again by the operator)."""

    model_config = OpenObject.model_config | {"json_schema_extra": _volume_source_schema}

    @model_validator(mode="after")
    def _allowed_source(self, info: ValidationInfo) -> VolumeSource:
        extra = {k: v for k, v in (self.model_extra or {}).items() if k != "name"}
        context = info.context if isinstance(info.context, Mapping) else {}
        allowed = {*ALLOWED_VOLUME_SOURCES, *context.get(ALLOWED_VOLUME_SOURCES_CONTEXT, ())}
        for source in extra:
            if source in REFUSED_VOLUME_SOURCES and source not in allowed:
                raise ValueError(
                    f"{source} volumes are not allowed (allowed: "
                    f"{', '.join(ALLOWED_VOLUME_SOURCES)}); a cluster admin may allow {source} "
                    "with the operator configuration allowedVolumeSources"
                )
            if source not in allowed:
                raise ValueError(f"'{source}' is not a volume source")
        if len(extra) != 1:
            raise ValueError(
                "a volume must name exactly one volume source, "
                "e.g. persistentVolumeClaim: {claimName: ml-data}"
            )
        secret = extra.get("secret")
        if isinstance(secret, Mapping) and "secretName" in secret:
            name = str(secret["secretName"])
            if not _SUBDOMAIN.match(name) or len(name) > MAX_NAME_LENGTH:
                raise ValueError(
                    f"secret.secretName '{name}' must name a Secret of the job's own namespace"
                )
        return self


class Volume(VolumeSource):
    """A pod volume (core/v1 Volume) from the allow-list, passed to the worker pods."""

    name: str = Field(
        min_length=1,
        max_length=MAX_LABEL_LENGTH,
        description="Volume name (a DNS-1123 label), referenced by volumeMounts.",
    )


def _check_path(value: str) -> str:
    return check_safe(value, "a path")


SafePath = Annotated[
    str,
    Field(
        min_length=1,
        max_length=MAX_PATH_LENGTH,
        json_schema_extra=validations(
            cel(f"!self.matches(r'{UNSAFE_CHARACTERS}')", f"a path {UNSAFE_MESSAGE}")
        ),
    ),
    AfterValidator(_check_path),
]


class VolumeMount(ApiModel):
    """Where a volume appears in the container (core/v1 VolumeMount)."""

    name: str = Field(
        min_length=1, max_length=MAX_LABEL_LENGTH, description="Name of a volume in spec.volumes."
    )
    mount_path: SafePath = Field(description="Absolute path inside the container.")
    sub_path: SafePath | None = Field(default=None, description="Path within the volume.")
    read_only: bool | None = Field(default=None, description="Mount read-only.")


class LocalObjectReference(ApiModel):
    """Reference to an object in the same namespace."""

    name: str = Field(
        pattern=DNS_SUBDOMAIN, max_length=MAX_NAME_LENGTH, description="Name of the object."
    )
