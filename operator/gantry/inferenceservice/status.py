"""Status of an InferenceService: conditions, phase, message and the served model.

Conditions, in the order a service goes through them (True when …; False reasons):

- ModelResolved: the source points at an exported model (TrainingJobRunning,
  TrainingJobNotFound, TrainingJobFailed, NoModelExported, ClaimNotFound, InvalidSpec).
- Optimized: the optimize Job for the current inputs succeeded (Optimizing, ModelNotFound,
  CorruptModel, AccuracyGateFailed, Unsupported, StorageError, BackendUnavailable).
- Deployed: every replica runs the current model version (RollingOut, NotDeployed).
- Ready: at least one Triton replica is ready (NoReadyReplicas, ScaledToZero).

Phase, for humans: Failed when a step failed for good, else WaitingForModel, Optimizing,
Deploying, Ready by the first step not done. A model change under a serving Deployment
shows Optimizing/Deploying while `Ready` stays True: the old version keeps serving.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from gantry.api.inferenceservice import (
    AccuracyResult,
    Endpoints,
    InferenceServicePhase,
    ServedModel,
)
from gantry.api.trainingjob import ModelSignature
from gantry.inferenceservice import names
from gantry.k8s.conditions import get_condition, set_condition
from gantry.k8s.plan import Event
from gantry.k8s.pods import creation_failure_reason

CONDITION_TYPES = ("ModelResolved", "Optimized", "Deployed", "Ready")


@dataclass(frozen=True)
class Step:
    """One condition's verdict: status True/False/Unknown, reason, message."""

    status: str
    reason: str
    message: str


@dataclass
class Verdicts:
    """What each step concluded this pass; `failed` marks a step that failed for good."""

    steps: dict[str, Step] = field(default_factory=dict)
    failed: bool = False

    def set(self, type_: str, status: str, reason: str, message: str) -> None:
        self.steps[type_] = Step(status, reason, message)


@dataclass(frozen=True)
class DeploymentView:
    """The observed Deployment, reduced to what status needs."""

    exists: bool = False
    desired: int = 0
    replicas: int = 0
    ready: int = 0
    updated: int = 0
    current_template: bool = False  # runs the template (model version) we want
    observed: bool = False  # the Deployment controller saw its latest generation
    # Why its ReplicaSet cannot create pods (ReplicaFailure: quota, admission), if it cannot.
    create_failure: str | None = None


def _replica_failure(status: Mapping[str, Any]) -> str | None:
    for cond in status.get("conditions") or []:
        if cond.get("type") == "ReplicaFailure" and cond.get("status") == "True":
            return str(cond.get("message") or cond.get("reason") or "FailedCreate")
    return None


def view_deployment(deployment: Mapping[str, Any] | None, wanted_job: str | None) -> DeploymentView:
    if not deployment:
        return DeploymentView()
    spec = deployment.get("spec") or {}
    status = deployment.get("status") or {}
    meta = deployment.get("metadata") or {}
    annotations = ((spec.get("template") or {}).get("metadata") or {}).get("annotations") or {}
    running_job = annotations.get(names.OPTIMIZE_JOB_ANNOTATION)
    desired = spec.get("replicas")
    return DeploymentView(
        exists=True,
        desired=int(desired if desired is not None else 1),
        replicas=int(status.get("replicas") or 0),
        ready=int(status.get("readyReplicas") or 0),
        updated=int(status.get("updatedReplicas") or 0),
        current_template=wanted_job is None or running_job == wanted_job,
        observed=int(status.get("observedGeneration") or 0) >= int(meta.get("generation") or 0),
        create_failure=_replica_failure(status),
    )


def pod_problems(pods: Sequence[Mapping[str, Any]]) -> str:
    """Why Triton pods are not ready, in one line (unschedulable, crash-looping, …)."""
    problems: list[str] = []
    for pod in pods:
        name = (pod.get("metadata") or {}).get("name", "?")
        status = pod.get("status") or {}
        for cond in status.get("conditions") or []:
            if cond.get("type") == "PodScheduled" and cond.get("status") == "False":
                problems.append(f"pod {name} cannot be scheduled: {cond.get('message') or ''}")
        for key in ("initContainerStatuses", "containerStatuses"):
            for cs in status.get(key) or []:
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") not in (None, "", "ContainerCreating", "PodInitializing"):
                    last = ((cs.get("lastState") or {}).get("terminated")) or {}
                    exit_code = last.get("exitCode")
                    detail = f", last exit code {exit_code}" if exit_code is not None else ""
                    problems.append(
                        f"pod {name} container {cs.get('name')}: {waiting['reason']}{detail}"
                    )
    return "; ".join(problems[:3])


def deployment_verdicts(
    verdicts: Verdicts, view: DeploymentView, pods: Sequence[Mapping[str, Any]] = ()
) -> None:
    """Deployed and Ready from the observed Deployment."""
    if not view.exists:
        verdicts.set("Deployed", "False", "NotDeployed", "no Triton Deployment yet")
        verdicts.set("Ready", "False", "NotDeployed", "no Triton replica exists yet")
        return
    rolled_out = (
        view.current_template
        and view.observed
        and view.updated >= view.desired
        and view.replicas == view.desired
    )
    failure = view.create_failure
    if rolled_out:
        verdicts.set("Deployed", "True", "RolledOut", f"{view.desired} replica(s) run the model")
    elif failure is not None:
        verdicts.set(
            "Deployed",
            "False",
            creation_failure_reason(failure),
            f"{view.replicas}/{view.desired} Triton pod(s) exist; cannot create more: {failure}",
        )
    else:
        verdicts.set(
            "Deployed",
            "False",
            "RollingOut",
            f"rolling out: {view.updated}/{view.desired} replica(s) updated, {view.ready} ready",
        )
    if view.desired == 0:
        verdicts.set("Ready", "False", "ScaledToZero", "scaled to zero replicas")
    elif view.ready > 0:
        verdicts.set("Ready", "True", "Serving", f"{view.ready}/{view.desired} replica(s) ready")
    elif failure is not None and not pods:
        verdicts.set(
            "Ready",
            "False",
            creation_failure_reason(failure),
            f"0/{view.desired} replica(s) ready: cannot create Triton pods: {failure}",
        )
    else:
        problems = pod_problems(pods)
        detail = f": {problems}" if problems else ""
        verdicts.set(
            "Ready", "False", "NoReadyReplicas", f"0/{view.desired} replica(s) ready{detail}"
        )


def phase_of(verdicts: Verdicts) -> InferenceServicePhase:
    steps = verdicts.steps
    if verdicts.failed:
        return InferenceServicePhase.FAILED
    if "ModelResolved" not in steps:
        return InferenceServicePhase.PENDING
    if steps["ModelResolved"].status != "True":
        return InferenceServicePhase.WAITING_FOR_MODEL
    if "Optimized" not in steps or steps["Optimized"].status != "True":
        return InferenceServicePhase.OPTIMIZING
    deployed = steps.get("Deployed")
    ready = steps.get("Ready")
    if (
        deployed
        and deployed.status == "True"
        and ((ready and ready.status == "True") or (ready and ready.reason == "ScaledToZero"))
    ):
        return InferenceServicePhase.READY
    return InferenceServicePhase.DEPLOYING


def message_of(verdicts: Verdicts, phase: InferenceServicePhase) -> str:
    """The message of the step that decides the phase."""
    steps = verdicts.steps
    for type_ in CONDITION_TYPES:
        step = steps.get(type_)
        if step is not None and step.status == "False":
            if phase is InferenceServicePhase.FAILED and step.reason in (
                "NotDeployed",
                "NoReadyReplicas",
                "RollingOut",
            ):
                continue
            return step.message
    ready = steps.get("Ready")
    return ready.message if ready else ""


def served_model(
    report: Mapping[str, Any] | None,
    uri: str | None,
    signature: Mapping[str, Any] | None,
    requested_precision: str,
) -> dict[str, Any] | None:
    """status.model from an optimize report (keys as the optimizer writes them)."""
    if not report:
        return None
    served = report.get("precision") or report.get("servedPrecision")
    accuracy_raw = report.get("accuracy")
    if isinstance(accuracy_raw, Mapping) and isinstance(accuracy_raw.get(str(served)), Mapping):
        accuracy_raw = accuracy_raw[str(served)]  # numbers per precision tried: the served one
    samples = report.get("samples")
    accuracy = None
    if isinstance(accuracy_raw, Mapping):
        accuracy = AccuracyResult(
            max_abs_diff=_float(accuracy_raw.get("maxAbsDiff")),
            mean_abs_diff=_float(accuracy_raw.get("meanAbsDiff")),
            top1_agreement=_float(accuracy_raw.get("top1Agreement")),
            samples=_int(
                accuracy_raw.get("samples")
                or (samples.get("count") if isinstance(samples, Mapping) else samples)
            ),
        )
    sig = None
    raw_sig = signature or report.get("signature")
    if isinstance(raw_sig, Mapping):
        try:
            sig = ModelSignature.model_validate(
                {k: raw_sig[k] for k in ("inputs", "outputs", "labels") if k in raw_sig}
            )
        except ValueError:
            sig = None
    model = ServedModel(
        uri=uri or _str(report.get("uri")),
        digest=_str(report.get("digest")),
        version=_int(report.get("version")),
        backend=_str(report.get("backend")),
        precision=_str(served),
        requested_precision=_str(report.get("requestedPrecision")) or requested_precision,
        cache_key=_str(report.get("cacheKey")),
        cache_hit=report.get("cacheHit") if isinstance(report.get("cacheHit"), bool) else None,
        accuracy=accuracy,
        gate=_str(report.get("reason") or report.get("gate")),
        signature=sig,
    )
    return model.model_dump(mode="json", by_alias=True, exclude_none=True)


def _float(value: Any) -> float | None:
    try:
        return None if value is None else float(value)
    except (TypeError, ValueError):
        return None


def _int(value: Any) -> int | None:
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None


def _str(value: Any) -> str | None:
    return None if value is None or value == "" else str(value)


def endpoints(service: str, namespace: str) -> dict[str, Any]:
    return Endpoints(
        grpc=names.grpc_endpoint(service, namespace),
        http=names.http_endpoint(service, namespace),
        grpc_headless=names.headless_grpc_target(service, namespace),
    ).model_dump(mode="json", by_alias=True, exclude_none=True)


def conditions_of(
    previous: Sequence[Mapping[str, Any]], verdicts: Verdicts, *, now: str, generation: int | None
) -> list[dict[str, Any]]:
    conditions = [dict(c) for c in previous if c.get("type") in CONDITION_TYPES]
    for type_ in CONDITION_TYPES:
        step = verdicts.steps.get(type_)
        if step is None:
            step = Step("Unknown", "NotReached", "an earlier step has not completed")
        conditions = set_condition(
            conditions,
            type_,
            step.status,
            step.reason,
            step.message,
            now=now,
            generation=generation,
        )
    return conditions


def transitions(
    previous: Sequence[Mapping[str, Any]], current: Sequence[Mapping[str, Any]]
) -> list[Event]:
    """Events for conditions whose status or reason changed."""
    events: list[Event] = []
    for condition in current:
        before = get_condition(previous, str(condition.get("type")))
        if before is not None and (
            before.get("status") == condition.get("status")
            and before.get("reason") == condition.get("reason")
        ):
            continue
        if condition.get("reason") in ("NotReached", "NotDeployed"):
            continue
        failed = condition.get("status") == "False" and condition.get("reason") not in (
            "Optimizing",
            "TrainingJobRunning",
            "TrainingJobNotFound",
            "RollingOut",
            "NotDeployed",
            "NoReadyReplicas",
        )
        kind = "Warning" if failed else "Normal"
        events.append(
            Event(
                str(condition.get("reason")),
                f"{condition.get('type')}: {condition.get('message')}",
                kind,
            )
        )
    return events
