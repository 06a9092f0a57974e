"""TrainingJob: a PyTorch training run of N worker pods under torchrun (DDP).

Immutability: a TrainingJob is a recipe for one run, like a batch/v1 Job. The fields that
define *what* runs (image, command, args, env, workers, gpusPerWorker, volumes,
checkpoint, output) cannot change once created; the scheduling fields (resources,
nodeSelector, tolerations) may change only while the job is suspended, which is what
Kueue does before admitting a job; run-control fields (suspend, backoffLimit,
activeDeadlineSeconds, ttlSecondsAfterFinished) may always change.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated, Literal

from pydantic import Field, field_validator, model_validator
from pydantic.config import JsonDict

from gantry.api.common import (
    ALLOWED_VOLUME_SOURCES,
    MAX_ARG_LENGTH,
    MAX_ARGS_ITEMS,
    MAX_COMMAND_ITEMS,
    MAX_ENV_ITEMS,
    MAX_IMAGE_LENGTH,
    MAX_LABEL_LENGTH,
    MAX_NODE_SELECTOR,
    MAX_TOLERATIONS,
    MAX_VOLUME_MOUNTS,
    MAX_VOLUMES,
    ApiModel,
    Condition,
    EnvVar,
    OpenObject,
    ResourceRequirements,
    SafePath,
    StorageUri,
    Toleration,
    Volume,
    VolumeMount,
    VolumeSource,
    cel,
    check_quantities,
    operator_bookkeeping,
    validations,
)

# Names torchrun and Gantry set for every worker; a user value would silently break DDP.
RESERVED_ENV_NAMES = frozenset(
    {
        "MASTER_ADDR",
        "MASTER_PORT",
        "WORLD_SIZE",
        "RANK",
        "LOCAL_RANK",
        "GROUP_RANK",
        "LOCAL_WORLD_SIZE",
        "NODE_RANK",
        "GANTRY_CHECKPOINT_DIR",
        "GANTRY_OUTPUT_DIR",
        "GANTRY_JOB_NAME",
        "GANTRY_JOB_NAMESPACE",
        "GANTRY_ATTEMPT",
    }
)
RESERVED_ENV_PREFIXES = ("PET_", "TORCHELASTIC_")
# The worker pods' own volumes (gantry.trainingjob.workers); a user volume of the same name
# would make a Job the API server can never accept.
RESERVED_VOLUME_NAMES = frozenset({"dshm", "gantry-checkpoint", "gantry-output", "gantry-tmp"})

_RESERVED_ENV_MESSAGE = (
    "env must not set names reserved for torchrun and Gantry "
    "(MASTER_ADDR, MASTER_PORT, WORLD_SIZE, RANK, LOCAL_RANK, PET_*, GANTRY_*)"
)
_RESERVED_VOLUME_MESSAGE = (
    "volume names "
    + ", ".join(sorted(RESERVED_VOLUME_NAMES))
    + " are reserved for Gantry's own volumes"
)
_RESERVED_ENV_CEL = (
    "e.name in ["
    + ", ".join(f"'{n}'" for n in sorted(RESERVED_ENV_NAMES))
    + "] || "
    + " || ".join(f"e.name.startsWith('{p}')" for p in RESERVED_ENV_PREFIXES)
)
_RESERVED_VOLUME_CEL = (
    "e.name in [" + ", ".join(f"'{n}'" for n in sorted(RESERVED_VOLUME_NAMES)) + "]"
)


def _naming_the_first_match(template: str, cases: list[tuple[str, str]]) -> str:
    """A CEL messageExpression naming the first case some list item `e` matches.

    A chain of `exists` rather than `filter(...)[0]`: the API server's cost estimate of a
    filtered list is unbounded, and it refuses a CRD whose expression could cost that much.
    """
    before, after = template.split("{}")
    # Only evaluated when the rule failed, so some case matches; the last `else` is moot.
    name = json.dumps(", ".join(label for _, label in cases))
    for condition, label in reversed(cases):
        name = f"self.exists(e, {condition}) ? {json.dumps(label)} : {name}"
    return f"{json.dumps(before)} + ({name}) + {json.dumps(after)}"


Arg = Annotated[str, Field(max_length=MAX_ARG_LENGTH)]
LabelValue = Annotated[str, Field(max_length=MAX_LABEL_LENGTH)]


def _immutable(field: str) -> JsonDict:
    return validations(cel("self == oldSelf", f"{field} is immutable once the job is created"))


class CheckpointSpec(ApiModel):
    """Where checkpoints are kept so a restarted attempt resumes instead of starting over."""

    volume: VolumeSource = Field(
        description="A pod volume source from the allow-list (e.g. persistentVolumeClaim: "
        "{claimName: x}) mounted into every worker; its path is given to the workers as "
        "GANTRY_CHECKPOINT_DIR.",
    )
    keep: int = Field(default=3, ge=1, le=100, description="Checkpoints kept (newest first).")
    mount_path: SafePath = Field(
        default="/gantry/checkpoints",
        description="Where the volume is mounted in the workers.",
    )


class OutputSpec(ApiModel):
    """Where the exported model (ONNX + TorchScript + metadata.json) is written."""

    storage_uri: StorageUri = Field(
        description="pvc://claim/path or s3://bucket/path; InferenceServices read it from here."
    )


class TrainingJobSpec(ApiModel):
    """What to train and how: the user's PyTorch entrypoint, run under torchrun."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "!has(oldSelf.resources) && !has(self.resources) || "
                "(has(oldSelf.resources) && has(self.resources) && "
                "self.resources == oldSelf.resources) || "
                "(has(oldSelf.suspend) && oldSelf.suspend)",
                "resources may change only while the job is suspended",
                ".resources",
            ),
            cel(
                "!has(oldSelf.nodeSelector) && !has(self.nodeSelector) || "
                "(has(oldSelf.nodeSelector) && has(self.nodeSelector) && "
                "self.nodeSelector == oldSelf.nodeSelector) || "
                "(has(oldSelf.suspend) && oldSelf.suspend)",
                "nodeSelector may change only while the job is suspended",
                ".nodeSelector",
            ),
            cel(
                "!has(self.volumeMounts) || self.volumeMounts.all(m, has(self.volumes) && "
                "self.volumes.exists(v, v.name == m.name))",
                "every volumeMounts[].name must name a volume in spec.volumes",
                ".volumeMounts",
            ),
        )
    }

    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_IMAGE_LENGTH,
        description="Container image of the workers; the operator's default trainer image "
        "when omitted.",
        json_schema_extra=_immutable("image"),
    )
    command: list[Arg] = Field(
        min_length=1,
        max_length=MAX_COMMAND_ITEMS,
        description="The user's entrypoint, run under torchrun, e.g. [python, -m, digits_train].",
        json_schema_extra=_immutable("command"),
    )
    args: list[Arg] = Field(
        default_factory=list,
        max_length=MAX_ARGS_ITEMS,
        description="Arguments appended to command.",
        json_schema_extra=_immutable("args"),
    )
    env: list[EnvVar] = Field(
        default_factory=list,
        max_length=MAX_ENV_ITEMS,
        description="Extra environment for every worker. torchrun's and Gantry's own names "
        "(MASTER_ADDR, RANK, PET_*, GANTRY_*, …) are reserved.",
        json_schema_extra=validations(
            cel(
                f"!self.exists(e, {_RESERVED_ENV_CEL})",
                _RESERVED_ENV_MESSAGE,
                message_expression=_naming_the_first_match(
                    "env must not set names reserved for torchrun and Gantry: {} "
                    "(torchrun and Gantry set it for every worker)",
                    [(f"e.name == '{n}'", n) for n in sorted(RESERVED_ENV_NAMES)]
                    + [(f"e.name.startsWith('{p}')", f"{p}*") for p in RESERVED_ENV_PREFIXES],
                ),
            ),
            cel("self == oldSelf", "env is immutable once the job is created"),
        ),
    )
    volumes: list[Volume] = Field(
        default_factory=list,
        max_length=MAX_VOLUMES,
        description="Pod volumes (core/v1 Volume) available to volumeMounts: "
        + ", ".join(ALLOWED_VOLUME_SOURCES)
        + " (more only where a cluster admin allows them). Gantry's own volume names ("
        + ", ".join(sorted(RESERVED_VOLUME_NAMES))
        + ") are reserved.",
        json_schema_extra=validations(
            cel(
                f"!self.exists(e, {_RESERVED_VOLUME_CEL})",
                _RESERVED_VOLUME_MESSAGE,
                message_expression=_naming_the_first_match(
                    "volume name '{}' is reserved for Gantry's own volumes",
                    [(f"e.name == '{n}'", n) for n in sorted(RESERVED_VOLUME_NAMES)],
                ),
            ),
            cel("self == oldSelf", "volumes is immutable once the job is created"),
        ),
    )
    volume_mounts: list[VolumeMount] = Field(
        default_factory=list,
        max_length=MAX_VOLUME_MOUNTS,
        description="Where volumes appear in each worker.",
        json_schema_extra=_immutable("volumeMounts"),
    )
    workers: int = Field(
        default=1,
        ge=1,
        le=1024,
        description="Worker pods. World size = workers × gpusPerWorker (× 1 on CPU).",
        json_schema_extra=_immutable("workers"),
    )
    gpus_per_worker: int = Field(
        default=0,
        ge=0,
        le=16,
        description="GPUs per worker pod (one process each, NCCL). 0 runs on CPU with gloo.",
        json_schema_extra=_immutable("gpusPerWorker"),
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="CPU/memory per worker; GPU limits come from gpusPerWorker."
    )
    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=MAX_NODE_SELECTOR,
        description="Node labels the workers must run on.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list,
        max_length=MAX_TOLERATIONS,
        description="Taints the workers tolerate (e.g. nvidia.com/gpu).",
    )
    checkpoint: CheckpointSpec | None = Field(
        default=None,
        description="Checkpoint volume; without it a restarted attempt starts from scratch.",
        json_schema_extra=_immutable("checkpoint"),
    )
    output: OutputSpec | None = Field(
        default=None,
        description="Where the exported model is written for InferenceServices to consume.",
        json_schema_extra=_immutable("output"),
    )
    backoff_limit: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Whole-job restarts (all workers, resuming from the last checkpoint) "
        "before the job is Failed.",
    )
    active_deadline_seconds: int | None = Field(
        default=None,
        ge=1,
        description="Wall-clock limit of the whole job; exceeded → Failed/DeadlineExceeded.",
    )
    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        description="Delete the job and its children this long after it finishes.",
    )
    suspend: bool = Field(
        default=False,
        description="true: no pods run (phase Suspended); false: the job runs. Kueue-compatible.",
    )

    @field_validator("env")
    @classmethod
    def _no_reserved_env(cls, env: list[EnvVar]) -> list[EnvVar]:
        for var in env:
            if var.name in RESERVED_ENV_NAMES or var.name.startswith(RESERVED_ENV_PREFIXES):
                raise ValueError(
                    f"'{var.name}' is reserved: torchrun and Gantry set it for every worker"
                )
        return env

    @field_validator("volumes")
    @classmethod
    def _no_reserved_volume(cls, volumes: list[Volume]) -> list[Volume]:
        for volume in volumes:
            if volume.name in RESERVED_VOLUME_NAMES:
                raise ValueError(
                    f"volume name '{volume.name}' is reserved for Gantry's own volumes"
                )
        return volumes

    @field_validator("resources")
    @classmethod
    def _quantities(cls, resources: ResourceRequirements | None) -> ResourceRequirements | None:
        if resources is not None:
            check_quantities({"requests": resources.requests, "limits": resources.limits})
        return resources

    @model_validator(mode="after")
    def _mounts_name_volumes(self) -> TrainingJobSpec:
        names = {v.name for v in self.volumes}
        for mount in self.volume_mounts:
            if mount.name not in names:
                raise ValueError(f"volumeMounts: '{mount.name}' is not a volume in spec.volumes")
        return self


class TrainingJobPhase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    RESTARTING = "Restarting"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


class WorkerCounts(ApiModel):
    """Worker pods of the current attempt by state."""

    active: int = Field(default=0, ge=0, description="Worker pods running now.")
    succeeded: int = Field(default=0, ge=0, description="Workers that finished successfully.")
    failed: int = Field(default=0, ge=0, description="Workers that failed in this attempt.")


class Progress(ApiModel):
    """Reported by rank 0 of the training runtime while it trains."""

    epoch: int | None = Field(default=None, ge=0, description="Completed epochs.")
    total_epochs: int | None = Field(default=None, ge=0, description="Epochs planned.")
    step: int | None = Field(default=None, ge=0, description="Global optimizer step.")
    total_steps: int | None = Field(default=None, ge=0, description="Steps planned.")
    loss: float | None = Field(default=None, description="Latest training loss.")
    metrics: dict[str, float] = Field(
        default_factory=dict, description="Named metrics, e.g. test_accuracy."
    )
    eta_seconds: int | None = Field(default=None, ge=0, description="Estimated time left.")
    percent: int | None = Field(default=None, ge=0, le=100, description="Share done, 0–100.")
    summary: str | None = Field(default=None, description="One line for kubectl get.")
    updated_at: str | None = Field(default=None, description="When it was reported (RFC 3339).")


class TensorSpec(ApiModel):
    """One input or output tensor."""

    name: str = Field(description="Tensor name in the exported graph.")
    dtype: str = Field(description="numpy dtype name, e.g. float32.")
    shape: list[int] = Field(description="Dimensions; -1 marks a dynamic one (batch).")


class ModelSignature(ApiModel):
    """Inputs, outputs and labels of an exported model."""

    inputs: list[TensorSpec] = Field(default_factory=list, description="Model inputs.")
    outputs: list[TensorSpec] = Field(default_factory=list, description="Model outputs.")
    labels: list[str] = Field(default_factory=list, description="Class labels, if any.")


class ExportedModel(ApiModel):
    """The model a successful job exported: what an InferenceService consumes."""

    uri: str = Field(description="Storage URI of the export (spec.output.storageUri).")
    formats: list[str] = Field(default_factory=list, description="Files, e.g. onnx, torchscript.")
    sha256: dict[str, str] = Field(default_factory=dict, description="sha256 of each file.")
    signature: ModelSignature | None = Field(default=None, description="From metadata.json.")
    metrics: dict[str, float] = Field(default_factory=dict, description="Final metrics.")


class TrainingJobStatus(ApiModel):
    """Observed state, written by the operator (and progress by the runtime)."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    observed_generation: int | None = Field(default=None, description="Last generation seen.")
    phase: TrainingJobPhase | None = Field(default=None, description="Summary for humans.")
    conditions: list[Condition] = Field(default_factory=list, description="Latest observations.")
    workers: WorkerCounts | None = Field(default=None, description="Worker pods by state.")
    attempts: int | None = Field(default=None, ge=0, description="Attempts started so far.")
    progress: Progress | None = Field(default=None, description="Training progress.")
    start_time: str | None = Field(default=None, description="When the first attempt started.")
    completion_time: str | None = Field(default=None, description="When the job finished.")
    model: ExportedModel | None = Field(default=None, description="The exported model.")
    message: str | None = Field(default=None, description="Why the job is in its phase.")
    kopf: OpenObject | None = operator_bookkeeping()


class ObjectMeta(ApiModel):
    model_config = ApiModel.model_config | {"extra": "allow"}

    name: str | None = None
    namespace: str | None = None


class TrainingJob(ApiModel):
    """A whole TrainingJob object, as received from the API."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: Literal["gantry.dev/v1alpha1"] = "gantry.dev/v1alpha1"
    kind: Literal["TrainingJob"] = "TrainingJob"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: TrainingJobSpec
    status: TrainingJobStatus | None = None
