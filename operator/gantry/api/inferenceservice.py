"""InferenceService: a model, optimized for its serving hardware, served by Triton."""

from __future__ import annotations

from enum import StrEnum
from typing import Literal

from pydantic import Field, field_validator, model_validator

from gantry.api.common import (
    DNS_SUBDOMAIN,
    MAX_BATCH_SIZES,
    MAX_IMAGE_LENGTH,
    MAX_NAME_LENGTH,
    MAX_NODE_SELECTOR,
    MAX_TOLERATIONS,
    ApiModel,
    Condition,
    LocalObjectReference,
    OpenObject,
    ResourceRequirements,
    StorageUri,
    Toleration,
    cel,
    check_quantities,
    operator_bookkeeping,
    validations,
)
from gantry.api.trainingjob import LabelValue, ModelSignature, ObjectMeta

GPU_RESOURCE = "nvidia.com/gpu"


class TrainingJobRef(ApiModel):
    """A TrainingJob in the same namespace whose exported model is served."""

    name: str = Field(
        pattern=DNS_SUBDOMAIN,
        max_length=MAX_NAME_LENGTH,
        description="TrainingJob in this namespace.",
    )


class ModelSource(ApiModel):
    """Exactly one of trainingJobRef or storageUri."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.trainingJobRef) != has(self.storageUri)",
                "exactly one of model.trainingJobRef and model.storageUri must be set",
            )
        )
    }

    training_job_ref: TrainingJobRef | None = Field(
        default=None,
        description="Serve the model a TrainingJob exported (waits while it runs).",
    )
    storage_uri: StorageUri | None = Field(
        default=None,
        description="Directory holding model.onnx (and metadata.json): pvc://claim/path or "
        "s3://bucket/path.",
    )
    storage_secret_ref: LocalObjectReference | None = Field(
        default=None,
        description="Secret with AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY (and optionally "
        "AWS_ENDPOINT_URL, AWS_REGION) for s3:// URIs. Never logged.",
    )

    @model_validator(mode="after")
    def _exactly_one(self) -> ModelSource:
        if (self.training_job_ref is None) == (self.storage_uri is None):
            raise ValueError("exactly one of model.trainingJobRef and model.storageUri must be set")
        return self


class Precision(StrEnum):
    FP32 = "fp32"
    FP16 = "fp16"
    INT8 = "int8"
    FP8 = "fp8"


class TensorRTSpec(ApiModel):
    """Whether the model is compiled into a TensorRT engine."""

    enabled: bool | None = Field(
        default=None,
        description="Build a TensorRT engine. Default: enabled when the service requests GPUs; "
        "false serves ONNX Runtime with the same precision, accuracy gate and cache.",
    )


class AccuracySpec(ApiModel):
    """The gate an optimized engine must pass against the fp32 ONNX Runtime reference."""

    max_abs_diff: float = Field(
        default=0.01, gt=0, description="Largest allowed |optimized − reference| of any output."
    )
    min_top1_agreement: float = Field(
        default=0.99, ge=0, le=1, description="Share of samples whose arg-max must agree."
    )
    samples: int = Field(default=256, ge=1, le=100000, description="Inputs compared.")


class OptimizationSpec(ApiModel):
    """How the model is optimized for the serving hardware."""

    precision: Precision = Field(
        default=Precision.FP16,
        description="fp32, fp16, int8 (calibrated) or fp8 (GPUs that have it). Falls back to the "
        "next higher precision when the accuracy gate fails.",
    )
    max_batch_size: int = Field(
        default=8, ge=1, le=4096, description="Largest batch the engine and Triton accept."
    )
    tensorrt: TensorRTSpec = Field(default_factory=TensorRTSpec, description="TensorRT engine.")
    accuracy: AccuracySpec = Field(default_factory=AccuracySpec, description="Accuracy gate.")


class DynamicBatchingSpec(ApiModel):
    """Triton's server-side dynamic batcher."""

    preferred_batch_sizes: list[int] = Field(
        default_factory=list,
        max_length=MAX_BATCH_SIZES,
        description="Batch sizes Triton tries to form.",
    )
    max_queue_delay_microseconds: int = Field(
        default=100, ge=0, le=10_000_000, description="How long a request may wait for a batch."
    )

    @field_validator("preferred_batch_sizes")
    @classmethod
    def _positive(cls, sizes: list[int]) -> list[int]:
        if any(s < 1 for s in sizes):
            raise ValueError("preferredBatchSizes must all be ≥ 1")
        return sizes


class TritonSpec(ApiModel):
    """Settings of the Triton Inference Server pods."""

    image: str | None = Field(
        default=None,
        min_length=1,
        max_length=MAX_IMAGE_LENGTH,
        description="Triton image; the operator's default if omitted.",
    )
    dynamic_batching: DynamicBatchingSpec | None = Field(
        default=None, description="Server-side batching; absent = each request runs alone."
    )
    instances_per_replica: int = Field(
        default=1, ge=1, le=16, description="Model instances per Triton pod."
    )


class ScalingRules(ApiModel):
    """Rate limits of one scaling direction."""

    stabilization_seconds: int = Field(
        default=0,
        ge=0,
        le=3600,
        description="How long a lower (scale-down) or higher (scale-up) desire must persist.",
    )
    max_replicas_per_step: int = Field(default=4, ge=1, le=1000, description="Step limit.")


def _default_scale_down() -> ScalingRules:
    return ScalingRules(stabilization_seconds=60, max_replicas_per_step=1)


class AutoscalingBehavior(ApiModel):
    """How fast replicas change in each direction."""

    scale_up: ScalingRules = Field(
        default_factory=ScalingRules, description="Default: at once, up to 4 replicas a step."
    )
    scale_down: ScalingRules = Field(
        default_factory=_default_scale_down,
        description="Default: after 60 s of consistently lower desire, 1 replica a step.",
    )


class AutoscalingTargets(ApiModel):
    """What each replica should sustain; the largest desire across targets wins."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "has(self.latencyP95Ms) || has(self.requestsPerSecondPerReplica) || "
                "has(self.queueTimeMs)",
                "autoscaling.targets needs at least one of latencyP95Ms, "
                "requestsPerSecondPerReplica, queueTimeMs",
            )
        )
    }

    latency_p95_ms: float | None = Field(
        default=None, gt=0, description="SLO on p95 request latency measured inside Triton (ms)."
    )
    requests_per_second_per_replica: float | None = Field(
        default=None, gt=0, description="Throughput each replica should carry."
    )
    queue_time_ms: float | None = Field(
        default=None, gt=0, description="Mean time requests wait in Triton's queue (ms)."
    )

    @model_validator(mode="after")
    def _at_least_one(self) -> AutoscalingTargets:
        if (
            self.latency_p95_ms is None
            and self.requests_per_second_per_replica is None
            and self.queue_time_ms is None
        ):
            raise ValueError(
                "autoscaling.targets needs at least one of latencyP95Ms, "
                "requestsPerSecondPerReplica, queueTimeMs"
            )
        return self


class AutoscalingMode(StrEnum):
    BUILTIN = "builtin"
    HPA = "hpa"
    KEDA = "keda"


class AutoscalingSpec(ApiModel):
    """Scale Triton pods on latency and throughput measured from Triton itself."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                "self.minReplicas <= self.maxReplicas",
                "autoscaling.minReplicas must be ≤ autoscaling.maxReplicas",
                ".minReplicas",
            )
        )
    }

    min_replicas: int = Field(default=1, ge=1, le=1000, description="Fewest replicas.")
    max_replicas: int = Field(ge=1, le=1000, description="Most replicas.")
    targets: AutoscalingTargets = Field(description="What each replica should sustain.")
    behavior: AutoscalingBehavior = Field(
        default_factory=AutoscalingBehavior, description="How fast to scale each way."
    )
    mode: AutoscalingMode = Field(
        default=AutoscalingMode.BUILTIN,
        description="builtin: Gantry scales from Triton's metrics; hpa: an autoscaling/v2 HPA "
        "on prometheus-adapter metrics; keda: a KEDA ScaledObject.",
    )

    @model_validator(mode="after")
    def _min_le_max(self) -> AutoscalingSpec:
        if self.min_replicas > self.max_replicas:
            raise ValueError(
                f"autoscaling.minReplicas ({self.min_replicas}) must be ≤ "
                f"autoscaling.maxReplicas ({self.max_replicas})"
            )
        return self


_TENSORRT_NEEDS_GPU = (
    "!has(self.optimization) || !has(self.optimization.tensorrt) || "
    "!has(self.optimization.tensorrt.enabled) || !self.optimization.tensorrt.enabled || "
    "(has(self.resources) && ((has(self.resources.limits) && "
    "'nvidia.com/gpu' in self.resources.limits) || (has(self.resources.requests) && "
    "'nvidia.com/gpu' in self.resources.requests)))"
)
_BATCH_SIZES_FIT = (
    "!has(self.triton) || !has(self.triton.dynamicBatching) || "
    "!has(self.triton.dynamicBatching.preferredBatchSizes) || "
    "self.triton.dynamicBatching.preferredBatchSizes.all(b, b <= "
    "(has(self.optimization) && has(self.optimization.maxBatchSize) ? "
    "self.optimization.maxBatchSize : 8))"
)


class InferenceServiceSpec(ApiModel):
    """Which model to serve, how to optimize it, and how many Triton pods serve it."""

    model_config = ApiModel.model_config | {
        "json_schema_extra": validations(
            cel(
                _TENSORRT_NEEDS_GPU,
                "optimization.tensorrt.enabled needs a GPU: set resources.limits "
                "nvidia.com/gpu, or disable TensorRT to serve with ONNX Runtime",
                ".optimization.tensorrt.enabled",
            ),
            cel(
                _BATCH_SIZES_FIT,
                "triton.dynamicBatching.preferredBatchSizes must not exceed "
                "optimization.maxBatchSize",
                ".triton.dynamicBatching.preferredBatchSizes",
            ),
        )
    }

    model: ModelSource = Field(description="Where the model comes from.")
    optimization: OptimizationSpec = Field(
        default_factory=OptimizationSpec, description="Engine build and accuracy gate."
    )
    triton: TritonSpec = Field(default_factory=TritonSpec, description="Triton server settings.")
    replicas: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Triton pods when autoscaling is absent (kubectl scale works on it).",
    )
    resources: ResourceRequirements | None = Field(
        default=None, description="Per Triton pod, e.g. limits: {nvidia.com/gpu: 1}."
    )
    node_selector: dict[str, LabelValue] = Field(
        default_factory=dict,
        max_length=MAX_NODE_SELECTOR,
        description="Node labels Triton pods (and the optimize Job) need.",
    )
    tolerations: list[Toleration] = Field(
        default_factory=list, max_length=MAX_TOLERATIONS, description="Taints tolerated."
    )
    autoscaling: AutoscalingSpec | None = Field(
        default=None, description="Scale on measured latency/throughput; replicas is ignored."
    )

    @field_validator("resources")
    @classmethod
    def _quantities(cls, resources: ResourceRequirements | None) -> ResourceRequirements | None:
        if resources is not None:
            check_quantities({"requests": resources.requests, "limits": resources.limits})
        return resources

    @model_validator(mode="after")
    def _cross_field(self) -> InferenceServiceSpec:
        if self.optimization.tensorrt.enabled and self.gpus() == 0:
            raise ValueError(
                "optimization.tensorrt.enabled needs a GPU: set resources.limits "
                "nvidia.com/gpu, or disable TensorRT to serve with ONNX Runtime"
            )
        batching = self.triton.dynamic_batching
        if batching and any(
            b > self.optimization.max_batch_size for b in batching.preferred_batch_sizes
        ):
            raise ValueError(
                "triton.dynamicBatching.preferredBatchSizes must not exceed "
                f"optimization.maxBatchSize ({self.optimization.max_batch_size})"
            )
        return self

    def gpus(self) -> int:
        """GPUs each Triton pod asks for."""
        if self.resources is None:
            return 0
        amount = self.resources.limits.get(GPU_RESOURCE, self.resources.requests.get(GPU_RESOURCE))
        return int(amount) if amount is not None else 0

    def uses_tensorrt(self) -> bool:
        enabled = self.optimization.tensorrt.enabled
        return self.gpus() > 0 if enabled is None else enabled


class InferenceServicePhase(StrEnum):
    PENDING = "Pending"
    WAITING_FOR_MODEL = "WaitingForModel"
    OPTIMIZING = "Optimizing"
    DEPLOYING = "Deploying"
    READY = "Ready"
    FAILED = "Failed"


class Endpoints(ApiModel):
    """Where clients send requests."""

    grpc: str | None = Field(default=None, description="host:port for gRPC (ClusterIP Service).")
    http: str | None = Field(default=None, description="URL for HTTP/REST.")
    grpc_headless: str | None = Field(
        default=None,
        description="Client-side balanced gRPC target (dns:///name-headless.ns.svc:8001 with "
        "round_robin): reaches every replica, including new ones.",
    )


class AccuracyResult(ApiModel):
    """Measured difference between the served engine and the fp32 reference."""

    max_abs_diff: float | None = Field(default=None, description="Measured max |Δ|.")
    mean_abs_diff: float | None = Field(default=None, description="Measured mean |Δ|.")
    top1_agreement: float | None = Field(default=None, description="Measured arg-max agreement.")
    samples: int | None = Field(default=None, description="Inputs compared.")


class ServedModel(ApiModel):
    """The model version being served and how it was optimized."""

    uri: str | None = Field(default=None, description="Where the model was read from.")
    digest: str | None = Field(default=None, description="sha256 of model.onnx.")
    version: int | None = Field(default=None, description="Triton model version.")
    backend: str | None = Field(
        default=None, description="tensorrt_plan, onnxruntime_onnx or python."
    )
    precision: str | None = Field(default=None, description="Precision actually served.")
    requested_precision: str | None = Field(default=None, description="spec precision.")
    cache_key: str | None = Field(default=None, description="Engine cache key.")
    cache_hit: bool | None = Field(default=None, description="Reused a cached engine.")
    accuracy: AccuracyResult | None = Field(default=None, description="Accuracy gate numbers.")
    gate: str | None = Field(default=None, description="What the accuracy gate decided and why.")
    signature: ModelSignature | None = Field(default=None, description="Inputs and outputs.")


class AutoscalingStatus(ApiModel):
    """The autoscaler's latest measurements and decision."""

    mode: str | None = Field(default=None, description="builtin, hpa or keda.")
    requests_per_second: float | None = Field(default=None, description="Observed total rate.")
    latency_p95_ms: float | None = Field(default=None, description="Estimated p95 (server).")
    latency_mean_ms: float | None = Field(default=None, description="Mean latency (server).")
    queue_time_ms: float | None = Field(default=None, description="Mean queue time (server).")
    pending_requests: float | None = Field(default=None, description="Requests waiting now.")
    desired_replicas: int | None = Field(default=None, description="Last computed desire.")
    current_replicas: int | None = Field(default=None, description="Replicas when decided.")
    last_scale_time: str | None = Field(default=None, description="Last replica change.")
    last_decision: str | None = Field(default=None, description="Why, in words.")
    sampled_at: str | None = Field(default=None, description="Time of the last metrics sample.")


class InferenceServiceStatus(ApiModel):
    """Observed state, written by the operator."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    observed_generation: int | None = Field(default=None, description="Last generation seen.")
    phase: InferenceServicePhase | None = Field(default=None, description="Summary for humans.")
    conditions: list[Condition] = Field(default_factory=list, description="Latest observations.")
    endpoints: Endpoints | None = Field(default=None, description="Where to send requests.")
    replicas: int | None = Field(default=None, description="Triton pods that exist.")
    ready_replicas: int | None = Field(default=None, description="Triton pods that are Ready.")
    ready: str | None = Field(default=None, description="ready/desired, for kubectl get.")
    selector: str | None = Field(default=None, description="Label selector of the Triton pods.")
    model: ServedModel | None = Field(default=None, description="What is being served.")
    autoscaling: AutoscalingStatus | None = Field(default=None, description="Autoscaler view.")
    message: str | None = Field(default=None, description="Why the service is in its phase.")
    kopf: OpenObject | None = operator_bookkeeping()


class InferenceService(ApiModel):
    """A whole InferenceService object, as received from the API."""

    model_config = ApiModel.model_config | {"extra": "ignore"}

    api_version: Literal["gantry.dev/v1alpha1"] = "gantry.dev/v1alpha1"
    kind: Literal["InferenceService"] = "InferenceService"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: InferenceServiceSpec
    status: InferenceServiceStatus | None = None
