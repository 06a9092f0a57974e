"""The InferenceService reconciler as one pure function.

(InferenceService, observed children, operator config, now) → Plan: the children that
must exist, the children to delete, the PVCs to create if absent (not owned, so the
engine cache outlives every service), the status, and the events. `handlers.py` only
observes and applies.

Storage: one namespace-level PVC (`gantry-models` unless the operator config names
`modelRepositoryClaim`/`engineCacheClaim`) holds `repos/<service>/` (Triton model
repositories written by optimize Jobs) and `cache/` (optimized engines keyed by model
digest, runtime version, device, precision and shapes), ReadWriteMany, created when
absent and never deleted by Gantry.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from gantry.api.inferenceservice import (
    AutoscalingMode,
    InferenceServiceSpec,
    InferenceServiceStatus,
)
from gantry.config import OperatorConfig
from gantry.inferenceservice import names, status
from gantry.inferenceservice.backend import BackendUnavailable, choose_backend
from gantry.inferenceservice.model_source import ResolvedModel, Unresolved, resolve_model
from gantry.inferenceservice.optimize import (
    OptimizeOutcome,
    build_optimize_job,
    inputs_digest,
    job_outcome,
)
from gantry.inferenceservice.services import build_pdb, build_services
from gantry.inferenceservice.triton import (
    ServedVersion,
    build_deployment,
    report_version,
    served_from_deployment,
)
from gantry.k8s.ownership import adopt
from gantry.k8s.plan import ObjectRef, Plan

# The InferenceService reconciler's plan; status.autoscaling belongs to the autoscaler.
InferenceServicePlan = Plan[InferenceServiceStatus]


@dataclass(frozen=True)
class Observed:
    """The children and neighbours of one InferenceService, as read from the API."""

    training_job: Mapping[str, Any] | None = None
    claims: frozenset[str] = frozenset()
    jobs: Sequence[Mapping[str, Any]] = ()
    pods_by_job: Mapping[str, Sequence[Mapping[str, Any]]] = field(default_factory=dict)
    deployment: Mapping[str, Any] | None = None
    pdb: Mapping[str, Any] | None = None
    triton_pods: Sequence[Mapping[str, Any]] = ()


def models_claim_manifest(name: str, namespace: str, config: OperatorConfig) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "accessModes": [config.model_storage_access_mode],
        "resources": {"requests": {"storage": config.model_storage_size}},
    }
    if config.model_storage_class_name:
        spec["storageClassName"] = config.model_storage_class_name
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": {
                "app.kubernetes.io/managed-by": "gantry",
                "app.kubernetes.io/part-of": "gantry",
            },
        },
        "spec": spec,
    }


def desired_replicas(
    isvc: Mapping[str, Any], spec: InferenceServiceSpec, deployment: Mapping[str, Any] | None
) -> int:
    """Replicas to write on the Deployment; a mode switch never drops them at once.

    A new Deployment starts at `autoscaling.minReplicas` (or `replicas`). Then:
    - builtin: the autoscaler decides; the running count is kept;
    - hpa / keda: the HPA scales the InferenceService through its scale subresource, which
      moves `spec.replicas`; until the autoscaler has handed the running count over to it
      (`status.autoscaling.mode` names the new mode), the running count is kept;
    - no autoscaling: `spec.replicas` when the user set it (`kubectl scale` does), else the
      running count — removing `spec.autoscaling` keeps what runs.

    The kept count is written back as it is rather than left out: Gantry's server-side
    apply owns the field, and leaving an owned field out would reset it to 1.
    """
    scaling = spec.autoscaling
    if deployment is None:
        return scaling.min_replicas if scaling is not None else spec.replicas
    running = (deployment.get("spec") or {}).get("replicas")
    if running is None:
        return spec.replicas
    if scaling is None:
        return spec.replicas if "replicas" in (isvc.get("spec") or {}) else int(running)
    if scaling.mode == AutoscalingMode.BUILTIN:
        return int(running)
    reported = ((isvc.get("status") or {}).get("autoscaling") or {}).get("mode")
    return spec.replicas if reported == str(scaling.mode) else int(running)


def _check_claim(model: ResolvedModel, claims: frozenset[str], namespace: str) -> Unresolved | None:
    loc = model.location
    if loc.scheme == "pvc" and loc.name not in claims:
        return Unresolved(
            "ClaimNotFound",
            f"PersistentVolumeClaim '{loc.name}' (from model URI {model.uri}) does not exist "
            f"in namespace '{namespace}'",
            waiting=False,
        )
    return None


def reconcile(
    isvc: Mapping[str, Any], observed: Observed, config: OperatorConfig, *, now: str
) -> InferenceServicePlan:
    """Compute what should exist and the status to write (pure)."""
    meta = isvc.get("metadata") or {}
    service = str(meta.get("name"))
    namespace = str(meta.get("namespace") or "default")
    generation = meta.get("generation")
    previous = dict(isvc.get("status") or {})
    plan = InferenceServicePlan()
    verdicts = status.Verdicts()
    report: Mapping[str, Any] | None = None
    signature: Mapping[str, Any] | None = None
    uri: str | None = None
    spec: InferenceServiceSpec | None
    requested = ""

    wanted_job: str | None = None
    try:
        spec = InferenceServiceSpec.model_validate(isvc.get("spec") or {})
    except ValidationError as err:
        first = err.errors()[0]
        where = ".".join(str(p) for p in first.get("loc", ())) or "spec"
        verdicts.set("ModelResolved", "False", "InvalidSpec", f"spec.{where}: {first['msg']}")
        verdicts.failed = True
        spec = None
    served: ServedVersion | None = None
    if spec is not None:
        requested = str(spec.optimization.precision)
        served = _reconcile_model(isvc, spec, observed, config, plan, verdicts, namespace)
        if served is not None:
            wanted_job = served.job
            signature = _signature(observed, spec)
    # A Deployment left alone (no model resolved now) still serves what it served.
    served = served or served_from_deployment(observed.deployment)
    if served is not None:
        report = served.report
        uri = _str(report.get("uri"))

    view = status.view_deployment(observed.deployment, wanted_job)
    status.deployment_verdicts(verdicts, view, observed.triton_pods)
    phase = status.phase_of(verdicts)
    conditions = status.conditions_of(
        previous.get("conditions") or [], verdicts, now=now, generation=generation
    )
    plan.status = InferenceServiceStatus.model_validate(
        {
            "observedGeneration": generation,
            "phase": phase.value,
            "conditions": conditions,
            "endpoints": status.endpoints(service, namespace),
            "replicas": view.replicas,
            "readyReplicas": view.ready,
            "ready": f"{view.ready}/{view.desired if view.exists else _spec_replicas(isvc)}",
            "selector": names.selector_string(service),
            "model": status.served_model(report, uri, signature, requested),
            "message": status.message_of(verdicts, phase),
        }
    )
    plan.events = status.transitions(previous.get("conditions") or [], conditions)
    return plan


def _reconcile_model(
    isvc: Mapping[str, Any],
    spec: InferenceServiceSpec,
    observed: Observed,
    config: OperatorConfig,
    plan: InferenceServicePlan,
    verdicts: status.Verdicts,
    namespace: str,
) -> ServedVersion | None:
    """Resolve → optimize → deploy; returns what the planned Deployment serves."""
    try:
        backend = choose_backend(spec, config)
    except BackendUnavailable as err:
        verdicts.set("ModelResolved", "Unknown", "NotChecked", "the backend is unavailable")
        verdicts.set("Optimized", "False", "BackendUnavailable", str(err))
        verdicts.failed = True
        return None
    resolved = resolve_model(spec, namespace, observed.training_job)
    if isinstance(resolved, ResolvedModel):
        missing = _check_claim(resolved, observed.claims, namespace)
        if missing is not None:
            resolved = missing
    if isinstance(resolved, Unresolved):
        verdicts.set("ModelResolved", "False", resolved.reason, resolved.message)
        verdicts.failed = not resolved.waiting
        return None
    source = f" (TrainingJob {resolved.training_job})" if resolved.training_job else ""
    verdicts.set("ModelResolved", "True", "Resolved", f"model {resolved.uri}{source}")

    for claim in sorted({names.models_claim(config), names.cache_claim(config)}):
        if claim not in observed.claims:
            plan.create_if_absent.append(models_claim_manifest(claim, namespace, config))

    annotations = (isvc.get("metadata") or {}).get("annotations") or {}
    digest = inputs_digest(
        spec, resolved, backend, config, annotations.get(names.MODEL_REVISION_ANNOTATION)
    )
    job = adopt(build_optimize_job(isvc, spec, resolved, backend, digest, config), isvc)
    job_name = job["metadata"]["name"]
    served = served_from_deployment(observed.deployment)
    outcome = _outcome(job_name, served, observed)
    if outcome is None:
        plan.apply.append(job)
        outcome = OptimizeOutcome("running")

    if outcome.state == "running":
        # A pod that cannot start (image pull, configuration) or be placed says why.
        detail = f": {outcome.message}" if outcome.message else ""
        verdicts.set(
            "Optimized",
            "False",
            outcome.reason or "Optimizing",
            f"optimize Job {job_name} is running{detail}",
        )
    elif outcome.state == "failed":
        verdicts.set(
            "Optimized", "False", outcome.reason, f"{outcome.message} (model {resolved.uri})"
        )
        verdicts.failed = True
    else:
        version = report_version(outcome.report)
        if version is None:
            verdicts.set(
                "Optimized",
                "False",
                "UnreadableReport",
                f"optimize Job {job_name} reported no model version",
            )
            verdicts.failed = True
        else:
            gate = _str(outcome.report.get("reason")) or "optimized"
            verdicts.set("Optimized", "True", "Optimized", f"version {version}: {gate}")
            report = {"uri": resolved.uri, **outcome.report}
            new = ServedVersion(version, str(report.get("digest") or ""), job_name, report)
            _deploy(isvc, spec, new, observed, config, plan)
            # Older optimize Jobs are no longer needed once the new result is recorded.
            for old in observed.jobs:
                old_name = (old.get("metadata") or {}).get("name")
                if old_name and old_name != job_name:
                    plan.delete.append(ObjectRef.job(str(old_name)))
            return new
    if served is not None:
        # Keep serving what runs now while the new model is built (or failed to build).
        _deploy(isvc, spec, served, observed, config, plan)
    return served


def _deploy(
    isvc: Mapping[str, Any],
    spec: InferenceServiceSpec,
    served: ServedVersion,
    observed: Observed,
    config: OperatorConfig,
    plan: InferenceServicePlan,
) -> None:
    replicas = desired_replicas(isvc, spec, observed.deployment)
    plan.apply.append(adopt(build_deployment(isvc, spec, served, replicas, config), isvc))
    plan.apply.extend(adopt(svc, isvc) for svc in build_services(isvc))
    if replicas > 1:
        plan.apply.append(adopt(build_pdb(isvc), isvc))
    elif observed.pdb is not None:
        plan.delete.append(
            ObjectRef("policy/v1", "poddisruptionbudgets", names.pdb_name(isvc["metadata"]["name"]))
        )


def _outcome(
    job_name: str, served: ServedVersion | None, observed: Observed
) -> OptimizeOutcome | None:
    """The current optimize Job's outcome; None when the Job must be created."""
    for job in observed.jobs:
        if (job.get("metadata") or {}).get("name") == job_name:
            outcome = job_outcome(job, observed.pods_by_job.get(job_name, ()))
            if outcome.state == "failed" and served is not None and served.job == job_name:
                # Its pod is gone, but the Deployment recorded the report.
                return OptimizeOutcome("succeeded", report=served.report)
            return outcome
    if served is not None and served.job == job_name:
        return OptimizeOutcome("succeeded", report=served.report)
    return None


def _signature(observed: Observed, spec: InferenceServiceSpec) -> Mapping[str, Any] | None:
    if spec.model.training_job_ref is None or observed.training_job is None:
        return None
    model = (observed.training_job.get("status") or {}).get("model") or {}
    sig = model.get("signature")
    return sig if isinstance(sig, Mapping) else None


def _spec_replicas(isvc: Mapping[str, Any]) -> int:
    spec = isvc.get("spec") or {}
    scaling = spec.get("autoscaling")
    if isinstance(scaling, Mapping):
        return int(scaling.get("minReplicas") or 1)
    return int(spec.get("replicas", 1))


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)
