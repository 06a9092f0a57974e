"""Operator configuration: everything that differs between clusters, in one typed model.

Reconcilers never branch on "dev cluster or not": the differences (which Triton image,
which Triton backends exist in it, default resources, GPU presence, storage) are values
here. Sources, later ones winning:

1. defaults below (a real GPU cluster with the NGC images);
2. a YAML file named by `GANTRY_CONFIG` (the Helm chart mounts a ConfigMap there);
3. environment variables `GANTRY_<FIELD>` in upper snake case, e.g.
   `GANTRY_TRITON_IMAGE`, `GANTRY_SCRAPE_INTERVAL_SECONDS=2`,
   `GANTRY_WATCH_NAMESPACES=ml,team-a`, `GANTRY_TRITON_BACKENDS=python`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from pydantic.alias_generators import to_camel


class TritonBackend(StrEnum):
    TENSORRT = "tensorrt_plan"
    ONNXRUNTIME = "onnxruntime_onnx"
    PYTHON = "python"


class PodResources(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="forbid")

    requests: dict[str, str] = Field(default_factory=dict)
    limits: dict[str, str] = Field(default_factory=dict)


class OperatorConfig(BaseModel):
    """How this operator builds children on this cluster."""

    model_config = ConfigDict(
        alias_generator=to_camel, populate_by_name=True, extra="forbid", frozen=True
    )

    triton_image: str = Field(
        default="nvcr.io/nvidia/tritonserver:24.08-py3",
        description="Image of Triton pods when an InferenceService names none.",
    )
    triton_backends: tuple[TritonBackend, ...] = Field(
        default=(TritonBackend.TENSORRT, TritonBackend.ONNXRUNTIME, TritonBackend.PYTHON),
        description="Backends present in the Triton image; the dev cluster has only python.",
    )
    tensorrt_version: str = Field(
        default="10.3.0",
        description="TensorRT version inside the Triton image (24.08 ships 10.3): engines are "
        "built with the same version, and it is part of the engine cache key.",
    )
    trainer_image: str = Field(
        default="ghcr.io/gantry-dev/gantry-trainer:0.1.0",
        description="Image of training workers when a TrainingJob names none.",
    )
    optimizer_image: str = Field(
        default="ghcr.io/gantry-dev/gantry-optimizer:0.1.0",
        description="Image of optimize Jobs (TensorRT matching the Triton image) and of the "
        "model-fetching init containers.",
    )
    python: str = Field(
        default="python",
        description="Interpreter inside the trainer and optimizer images.",
    )
    watch_namespaces: tuple[str, ...] = Field(
        default=(), description="Namespaces to watch; empty = the whole cluster."
    )
    allowed_volume_sources: tuple[str, ...] = Field(
        default=(),
        description="Volume sources beyond the safe allow-list that TrainingJobs may use "
        "(e.g. hostPath, nfs): a cluster admin's decision, since such a volume reaches the "
        "node or storage outside the namespace. The chart installs CRDs that accept them.",
    )
    scrape_interval_seconds: float = Field(
        default=5.0, gt=0, le=60, description="How often Triton metrics are scraped."
    )
    engine_cache_claim: str | None = Field(
        default=None,
        description="PVC holding the engine cache and Triton model repositories; without it "
        "each InferenceService gets an emptyDir-free claim of its own (see docs).",
    )
    model_repository_claim: str | None = Field(
        default=None, description="PVC for model repositories (defaults to engineCacheClaim)."
    )
    model_storage_access_mode: str = Field(
        default="ReadWriteMany",
        pattern="^(ReadWriteOnce|ReadWriteMany|ReadWriteOncePod)$",
        description="Access mode of the models claim Gantry creates: ReadWriteMany lets "
        "Triton pods on every node read it; single-node clusters (kind) need ReadWriteOnce.",
    )
    model_storage_size: str = Field(
        default="20Gi", description="Size of the models claim Gantry creates."
    )
    model_storage_class_name: str | None = Field(
        default=None, description="StorageClass of the models claim (null: the default class)."
    )
    prometheus_url: str = Field(
        default="http://prometheus-operated.monitoring.svc:9090",
        description="Prometheus that KEDA queries in the keda autoscaling mode.",
    )
    pvc_mount_root: str = Field(
        default="/mnt/pvc", description="Where storage-URI claims are mounted inside pods."
    )
    training_resources: PodResources = Field(
        default_factory=lambda: PodResources(requests={"cpu": "1", "memory": "2Gi"}),
        description="Worker resources when a TrainingJob names none.",
    )
    triton_resources: PodResources = Field(
        default_factory=lambda: PodResources(requests={"cpu": "1", "memory": "2Gi"}),
        description="Triton pod resources when an InferenceService names none.",
    )
    optimizer_resources: PodResources = Field(
        default_factory=lambda: PodResources(requests={"cpu": "1", "memory": "2Gi"}),
        description="Optimize Job resources (GPU limits follow the InferenceService).",
    )
    triton_grpc_max_connection_age_seconds: float = Field(
        default=30.0,
        ge=0,
        le=86400,
        description="Triton closes each gRPC connection (GOAWAY, in-flight calls finish) after "
        "this age, so long-lived clients re-resolve the headless Service and spread over "
        "replicas added since they connected; 0 = never (Triton's default).",
    )
    triton_grpc_max_connection_age_grace_seconds: float = Field(
        default=10.0,
        ge=0,
        le=3600,
        description="How long calls still running on a connection past its age may take.",
    )
    triton_grpc_keepalive_seconds: float = Field(
        default=20.0,
        ge=0,
        le=7200,
        description="Triton pings idle connections this often and drops those that do not "
        "answer within 10 s (and accepts client pings this often, see the client "
        "configuration); 0 = Triton's defaults (2 hours).",
    )
    optimize_deadline_seconds: int = Field(
        default=3600,
        ge=60,
        le=7 * 86400,
        description="An optimize Job running longer than this (a stuck build, a model fetch "
        "that never ends) is stopped and the InferenceService fails with DeadlineExceeded, "
        "so no build holds a GPU indefinitely.",
    )
    run_as_user: int = Field(default=1000, ge=1, description="UID of every pod Gantry creates.")
    master_port_range: tuple[int, int] = Field(
        default=(20000, 32767),
        description="torchrun master ports are derived from the job's uid within this range "
        "(below Linux's ephemeral ports): wide, so that jobs sharing one network (the dev "
        "cluster's pods share the host's) practically never pick the same port.",
    )

    # --- how the operator itself runs -------------------------------------------------
    resync_seconds: float = Field(
        default=300.0,
        ge=10,
        le=86400,
        description="Each TrainingJob and InferenceService is reconciled when it or one of "
        "its children changes (watch events); this slow resync only re-checks objects at "
        "rest, in case an event was missed. Deadlines and TTLs wake them at their due time.",
    )
    api_timeout_seconds: float = Field(
        default=30.0,
        gt=0,
        le=600,
        description="Read timeout of each Kubernetes API call; throttled (429), failing "
        "(5xx) and timed-out calls are retried with back-off and jitter.",
    )
    reconcile_workers: int = Field(
        default=16,
        ge=1,
        le=256,
        description="Threads writing to the API for the reconcilers (passes of one object "
        "never overlap; passes of different objects run in parallel up to this number).",
    )
    metrics_port: int = Field(
        default=8081, ge=0, lt=65536, description="Prometheus /metrics port; 0 turns it off."
    )
    liveness: str | None = Field(
        default="http://0.0.0.0:8080/healthz",
        description="kopf's liveness endpoint (red while the API cannot be reached); "
        "empty or null turns it off.",
    )
    peering: str | None = Field(
        default=None,
        description="Name of the kopf peering object when several replicas run (one "
        "active, the others standing by); null: standalone.",
    )

    @field_validator("liveness", "peering", mode="before")
    @classmethod
    def _empty_is_none(cls, value: Any) -> Any:
        return None if value == "" else value

    @field_validator("triton_backends", "watch_namespaces", "allowed_volume_sources", mode="before")
    @classmethod
    def _comma_list(cls, value: Any) -> Any:
        if isinstance(value, str):
            return tuple(v.strip() for v in value.split(",") if v.strip())
        return value

    @field_validator("allowed_volume_sources")
    @classmethod
    def _known_sources(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        from gantry.api.common import REFUSED_VOLUME_SOURCES

        unknown = [v for v in value if v not in REFUSED_VOLUME_SOURCES]
        if unknown:
            raise ValueError(
                f"allowedVolumeSources: {', '.join(unknown)} not among the refusable sources "
                f"({', '.join(REFUSED_VOLUME_SOURCES)})"
            )
        return value


class ConfigError(ValueError):
    """The operator configuration is invalid; the message names the source and field."""


def _env_overrides(env: Mapping[str, str]) -> dict[str, Any]:
    overrides: dict[str, Any] = {}
    for name, field in OperatorConfig.model_fields.items():
        raw = env.get(f"GANTRY_{name.upper()}")
        if raw is None:
            continue
        key = field.alias or name  # the file uses the camelCase aliases; env must override them
        if field.annotation in (str, str | None) or name in (
            "triton_backends",
            "watch_namespaces",
            "allowed_volume_sources",
        ):
            overrides[key] = raw
        else:
            try:
                overrides[key] = json.loads(raw)
            except json.JSONDecodeError:
                overrides[key] = raw
    return overrides


def load_config(env: Mapping[str, str] | None = None) -> OperatorConfig:
    """Build the configuration from the defaults, `$GANTRY_CONFIG` and `GANTRY_*` variables."""
    env = os.environ if env is None else env
    data: dict[str, Any] = {}
    source = "defaults"
    path = env.get("GANTRY_CONFIG")
    if path:
        source = path
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as err:
            raise ConfigError(f"cannot read operator configuration {path}: {err}") from err
        if not isinstance(loaded, dict):
            raise ConfigError(f"operator configuration {path} must be a mapping")
        data.update(loaded)
    data.update(_env_overrides(env))
    try:
        return OperatorConfig.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"invalid operator configuration ({source} + GANTRY_*): {err}") from err
