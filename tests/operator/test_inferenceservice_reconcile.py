"""The pure reconcile: (service, observed children) → children, status, events."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gantry.api.inferenceservice import InferenceServiceStatus
from gantry.config import OperatorConfig, TritonBackend
from gantry.inferenceservice import names
from gantry.inferenceservice.reconcile import InferenceServicePlan, Observed, reconcile
from gantry.k8s.plan import replacement_patch, status_patch

DEV = OperatorConfig(triton_backends=(TritonBackend.PYTHON,))
REPORT = {
    "name": "digits",
    "version": 1,
    "digest": "sha-1",
    "backend": "python",
    "precision": "fp32",
    "requestedPrecision": "fp32",
    "cacheKey": "k1",
    "cacheHit": False,
    "accuracy": {"maxAbsDiff": 0.0, "meanAbsDiff": 0.0, "top1Agreement": 1.0, "samples": 64},
    "reason": "fp32 is the reference",
}


def isvc(
    spec: dict[str, Any] | None = None, status: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": "digits", "namespace": "ml", "uid": "uid-1", "generation": 2},
        "spec": spec
        or {
            "model": {"storageUri": "pvc://exports/digits/v1"},
            "optimization": {"precision": "fp32"},
        },
        "status": status or {},
    }


def kinds(plan: InferenceServicePlan) -> list[str]:
    return [f"{o['kind']}/{o['metadata']['name']}" for o in plan.apply]


def conditions(plan: InferenceServicePlan) -> dict[str, tuple[str, str, str]]:
    return {
        c["type"]: (c["status"], c["reason"], c["message"])
        for c in plan.wire_status()["conditions"]
    }


def job_of(plan: InferenceServicePlan) -> dict[str, Any]:
    return next(o for o in plan.apply if o["kind"] == "Job")


def finished(job: dict[str, Any], condition: str, exit_code: int, message: str) -> Observed:
    name = job["metadata"]["name"]
    pod = {
        "metadata": {"name": f"{name}-x", "labels": {names.OPTIMIZE_JOB_LABEL: name}},
        "status": {
            "containerStatuses": [
                {
                    "name": "optimize",
                    "state": {"terminated": {"exitCode": exit_code, "message": message}},
                }
            ]
        },
    }
    return Observed(
        claims=frozenset({"exports", "gantry-models"}),
        jobs=[{**job, "status": {"conditions": [{"type": condition, "status": "True"}]}}],
        pods_by_job={name: [pod]},
    )


def deployment_status(
    dep: dict[str, Any], *, replicas: int, ready: int, updated: int
) -> dict[str, Any]:
    dep = json.loads(json.dumps(dep))
    dep["metadata"]["generation"] = 1
    dep["spec"].setdefault("replicas", replicas)
    dep["status"] = {
        "observedGeneration": 1,
        "replicas": replicas,
        "readyReplicas": ready,
        "updatedReplicas": updated,
    }
    return dep


def first_pass() -> InferenceServicePlan:
    return reconcile(isvc(), Observed(claims=frozenset({"exports"})), DEV, now="T1")


def test_new_service_creates_models_claim_and_optimize_job() -> None:
    plan = first_pass()
    assert kinds(plan) == [f"Job/{job_of(plan)['metadata']['name']}"]
    assert [c["metadata"]["name"] for c in plan.create_if_absent] == ["gantry-models"]
    assert plan.create_if_absent[0]["spec"]["accessModes"] == ["ReadWriteMany"]
    assert "ownerReferences" not in plan.create_if_absent[0]["metadata"]  # outlives the service
    assert job_of(plan)["metadata"]["ownerReferences"][0]["uid"] == "uid-1"
    assert plan.wire_status()["phase"] == "Optimizing"
    assert conditions(plan)["ModelResolved"][0] == "True"
    assert plan.wire_status()["selector"] == "gantry.dev/inferenceservice=digits"
    assert plan.wire_status()["endpoints"]["grpc"] == "digits.ml.svc:8001"
    assert plan.wire_status()["observedGeneration"] == 2


FAILED_TJ = {"status": {"phase": "Failed", "message": "worker 1 exited with code 1: OOM"}}


@pytest.mark.parametrize(
    ("spec", "observed", "phase", "condition", "reason", "needle"),
    [
        (
            {"model": {"trainingJobRef": {"name": "train"}}},
            Observed(training_job={"status": {"phase": "Running"}}),
            "WaitingForModel",
            "ModelResolved",
            "TrainingJobRunning",
            "waiting for TrainingJob 'train'",
        ),
        (
            {"model": {"trainingJobRef": {"name": "train"}}},
            Observed(),
            "WaitingForModel",
            "ModelResolved",
            "TrainingJobNotFound",
            "does not exist",
        ),
        (
            {"model": {"trainingJobRef": {"name": "train"}}},
            Observed(training_job=FAILED_TJ),
            "Failed",
            "ModelResolved",
            "TrainingJobFailed",
            "worker 1 exited with code 1: OOM",
        ),
        (
            {"model": {"storageUri": "pvc://nowhere/m"}},
            Observed(),
            "Failed",
            "ModelResolved",
            "ClaimNotFound",
            "PersistentVolumeClaim 'nowhere'",
        ),
        (
            {"model": {"storageUri": "http://example.com/m"}},
            Observed(),
            "Failed",
            "ModelResolved",
            "InvalidSpec",
            "spec.model.storageUri",
        ),
        (
            {
                "model": {"storageUri": "pvc://exports/m"},
                "resources": {"limits": {"nvidia.com/gpu": 1}},
            },
            Observed(claims=frozenset({"exports"})),
            "Failed",
            "Optimized",
            "BackendUnavailable",
            "no tensorrt_plan backend",
        ),
    ],
)
def test_failures_and_waits_end_in_conditions(
    spec: dict[str, Any],
    observed: Observed,
    phase: str,
    condition: str,
    reason: str,
    needle: str,
) -> None:
    plan = reconcile(isvc(spec), observed, DEV, now="T")
    assert plan.wire_status()["phase"] == phase
    status, got_reason, message = conditions(plan)[condition]
    assert (status, got_reason) == ("False", reason)
    assert needle in message
    assert needle in plan.wire_status()["message"]
    assert plan.apply == []


@pytest.mark.parametrize(
    ("report", "reason", "needle"),
    [
        (
            {"error": "model.onnx is not a valid ONNX file", "reason": "CorruptModel"},
            "CorruptModel",
            "not a valid ONNX",
        ),
        (
            {"error": "no model.onnx in /mnt/pvc/exports/m", "reason": "ModelNotFound"},
            "ModelNotFound",
            "no model.onnx",
        ),
        (
            {"error": "int8 failed the gate", "reason": "AccuracyGateFailed"},
            "AccuracyGateFailed",
            "failed the gate",
        ),
    ],
)
def test_failed_optimize_job_fails_the_service(
    report: dict[str, Any], reason: str, needle: str
) -> None:
    job = job_of(first_pass())
    plan = reconcile(isvc(), finished(job, "Failed", 2, json.dumps(report)), DEV, now="T2")
    assert plan.wire_status()["phase"] == "Failed"
    assert conditions(plan)["Optimized"][:2] == ("False", reason)
    assert needle in plan.wire_status()["message"]
    assert ("Warning" in {e.type for e in plan.events}) and any(
        e.reason == reason for e in plan.events
    )
    assert not any(o["kind"] == "Deployment" for o in plan.apply)


def succeeded_pass() -> tuple[InferenceServicePlan, Observed]:
    job = job_of(first_pass())
    observed = finished(job, "Complete", 0, json.dumps(REPORT))
    return reconcile(isvc(), observed, DEV, now="T2"), observed


def test_successful_optimize_deploys_triton_and_services() -> None:
    plan, _ = succeeded_pass()
    assert kinds(plan) == ["Deployment/digits-triton", "Service/digits", "Service/digits-headless"]
    dep = plan.apply[0]
    assert dep["spec"]["replicas"] == 1
    assert dep["metadata"]["ownerReferences"][0]["kind"] == "InferenceService"
    annotations = dep["spec"]["template"]["metadata"]["annotations"]
    assert annotations[names.MODEL_VERSION_ANNOTATION] == "1"
    assert annotations[names.MODEL_DIGEST_ANNOTATION] == "sha-1"
    assert plan.wire_status()["phase"] == "Deploying"
    assert conditions(plan)["Optimized"][0] == "True"


def test_rolled_out_deployment_is_ready_with_model_status() -> None:
    plan, observed = succeeded_pass()
    dep = deployment_status(plan.apply[0], replicas=1, ready=1, updated=1)
    ready = reconcile(isvc(), Observed(**{**observed.__dict__, "deployment": dep}), DEV, now="T3")
    assert ready.wire_status()["phase"] == "Ready"
    assert ready.wire_status()["ready"] == "1/1"
    assert ready.wire_status()["readyReplicas"] == 1
    model = ready.wire_status()["model"]
    assert model["version"] == 1 and model["digest"] == "sha-1"
    assert model["uri"] == "pvc://exports/digits/v1"
    assert model["precision"] == "fp32" and model["backend"] == "python"
    assert model["accuracy"]["top1Agreement"] == 1.0
    assert model["cacheKey"] == "k1" and model["cacheHit"] is False
    assert {c[0] for c in conditions(ready).values()} == {"True"}


def test_pdb_follows_replicas() -> None:
    spec = {
        "model": {"storageUri": "pvc://exports/digits/v1"},
        "optimization": {"precision": "fp32"},
        "replicas": 3,
    }
    job = job_of(reconcile(isvc(spec), Observed(claims=frozenset({"exports"})), DEV, now="T"))
    observed = finished(job, "Complete", 0, json.dumps(REPORT))
    plan = reconcile(isvc(spec), observed, DEV, now="T")
    assert "PodDisruptionBudget/digits-triton" in kinds(plan)
    spec["replicas"] = 1
    job = job_of(reconcile(isvc(spec), Observed(claims=frozenset({"exports"})), DEV, now="T"))
    observed = finished(job, "Complete", 0, json.dumps(REPORT))
    observed = Observed(**{**observed.__dict__, "pdb": {"metadata": {"name": "digits-triton"}}})
    plan = reconcile(isvc(spec), observed, DEV, now="T")
    assert "PodDisruptionBudget/digits-triton" not in kinds(plan)
    assert [d.name for d in plan.delete] == ["digits-triton"]


def test_model_change_keeps_serving_until_the_new_version_is_built() -> None:
    plan, observed = succeeded_pass()
    dep = deployment_status(plan.apply[0], replicas=1, ready=1, updated=1)
    changed = isvc(
        {"model": {"storageUri": "pvc://exports/digits/v2"}, "optimization": {"precision": "fp32"}}
    )
    during = reconcile(changed, Observed(**{**observed.__dict__, "deployment": dep}), DEV, now="T4")
    new_job = job_of(during)
    assert new_job["metadata"]["name"] != observed.jobs[0]["metadata"]["name"]
    kept = next(o for o in during.apply if o["kind"] == "Deployment")
    assert (
        kept["spec"]["template"]["metadata"]["annotations"][names.MODEL_VERSION_ANNOTATION] == "1"
    )
    assert during.wire_status()["phase"] == "Optimizing"
    assert conditions(during)["Ready"][0] == "True"  # the old version still serves

    new_report = {**REPORT, "version": 2, "digest": "sha-2"}
    done = finished(new_job, "Complete", 0, json.dumps(new_report))
    after = reconcile(
        changed,
        Observed(
            claims=done.claims,
            jobs=[*observed.jobs, *done.jobs],
            pods_by_job={**observed.pods_by_job, **done.pods_by_job},
            deployment=dep,
        ),
        DEV,
        now="T5",
    )
    rolled = next(o for o in after.apply if o["kind"] == "Deployment")
    assert (
        rolled["spec"]["template"]["metadata"]["annotations"][names.MODEL_VERSION_ANNOTATION] == "2"
    )
    assert after.wire_status()["phase"] == "Deploying"
    assert conditions(after)["Deployed"][1] == "RollingOut"
    assert [d.name for d in after.delete] == [observed.jobs[0]["metadata"]["name"]]


def test_report_survives_the_job_in_the_deployment() -> None:
    plan, observed = succeeded_pass()
    dep = deployment_status(plan.apply[0], replicas=1, ready=1, updated=1)
    again = reconcile(isvc(), Observed(claims=observed.claims, deployment=dep), DEV, now="T6")
    assert not any(o["kind"] == "Job" for o in again.apply)  # no rebuild
    assert again.wire_status()["phase"] == "Ready"
    assert again.wire_status()["model"]["version"] == 1


def test_builtin_autoscaling_owns_replicas() -> None:
    spec = {
        "model": {"storageUri": "pvc://exports/digits/v1"},
        "optimization": {"precision": "fp32"},
        "autoscaling": {"minReplicas": 2, "maxReplicas": 5, "targets": {"latencyP95Ms": 50}},
    }
    job = job_of(reconcile(isvc(spec), Observed(claims=frozenset({"exports"})), DEV, now="T"))
    observed = finished(job, "Complete", 0, json.dumps(REPORT))
    created = reconcile(isvc(spec), observed, DEV, now="T")
    dep = next(o for o in created.apply if o["kind"] == "Deployment")
    assert dep["spec"]["replicas"] == 2  # starts at minReplicas
    scaled = deployment_status(dep, replicas=4, ready=4, updated=4)
    scaled["spec"]["replicas"] = 4
    later = reconcile(
        isvc(spec), Observed(**{**observed.__dict__, "deployment": scaled}), DEV, now="T"
    )
    dep = next(o for o in later.apply if o["kind"] == "Deployment")
    assert dep["spec"]["replicas"] == 4, "the autoscaler's count is kept, not reset"
    assert later.wire_status()["ready"] == "4/4"
    assert "PodDisruptionBudget/digits-triton" in kinds(later)


def _deployment_replicas(
    body: dict[str, Any], observed: Observed, running: int, status: dict[str, Any] | None = None
) -> int:
    current = deployment_status(
        next(o for o in reconcile(body, observed, DEV, now="T").apply if o["kind"] == "Deployment"),
        replicas=running,
        ready=running,
        updated=running,
    )
    current["spec"]["replicas"] = running
    if status is not None:
        body = {**body, "status": status}
    plan = reconcile(body, Observed(**{**observed.__dict__, "deployment": current}), DEV, now="T")
    dep = next(o for o in plan.apply if o["kind"] == "Deployment")
    return int(dep["spec"]["replicas"])


def test_a_mode_switch_keeps_the_running_replicas() -> None:
    """Removing autoscaling or handing it to an HPA never drops replicas at once."""
    base = {
        "model": {"storageUri": "pvc://exports/digits/v1"},
        "optimization": {"precision": "fp32"},
    }
    targets = {"latencyP95Ms": 50}
    builtin = {**base, "autoscaling": {"minReplicas": 1, "maxReplicas": 8, "targets": targets}}
    job = job_of(reconcile(isvc(builtin), Observed(claims=frozenset({"exports"})), DEV, now="T"))
    observed = finished(job, "Complete", 0, json.dumps(REPORT))
    # autoscaling removed, no replicas given: what runs stays
    assert _deployment_replicas(isvc(base), observed, running=5) == 5
    # ... but a count the user sets (kubectl scale) is obeyed
    assert _deployment_replicas(isvc({**base, "replicas": 2}), observed, running=5) == 2
    hpa = {
        **base,
        "replicas": 1,
        "autoscaling": {"mode": "hpa", "minReplicas": 1, "maxReplicas": 8, "targets": targets},
    }
    # switched to hpa: kept until the autoscaler reports the new mode (it hands the count over)
    assert _deployment_replicas(isvc(hpa), observed, running=5) == 5
    handed = {"autoscaling": {"mode": "hpa"}}
    assert _deployment_replicas(isvc(hpa), observed, running=5, status=handed) == 1


def test_steady_state_writes_nothing() -> None:
    plan, observed = succeeded_pass()
    dep = deployment_status(plan.apply[0], replicas=1, ready=1, updated=1)
    full = Observed(**{**observed.__dict__, "deployment": dep})
    one = reconcile(isvc(), full, DEV, now="T7")
    two = reconcile(isvc(status=one.wire_status()), full, DEV, now="T8")
    assert two.events == []
    assert status_patch(one.wire_status(), two.status) == {}


def test_transitions_post_events() -> None:
    plan = first_pass()
    reasons = {e.reason for e in plan.events}
    assert {"Resolved", "Optimizing"} <= reasons


def test_replacement_patch_nulls_vanished_keys() -> None:
    old = {"model": {"version": 1, "accuracy": {"samples": 3}}, "message": "x"}
    new = {"model": {"version": 2}, "message": "x"}
    assert replacement_patch(old, new) == {"model": {"version": 2, "accuracy": None}}
    ready = InferenceServiceStatus(phase="Ready")
    assert status_patch({"autoscaling": {"mode": "hpa"}}, ready) == {"phase": "Ready"}


def test_status_patch_writes_only_the_fields_the_plan_decided() -> None:
    """Fields the pass sets are replaced (None removes one); the rest belong to others."""
    written = {
        "phase": "Ready",
        "endpoints": {"grpc": "a:8001", "http": "http://a:8000"},
        "autoscaling": {"mode": "builtin", "desiredReplicas": 3},
    }
    desired = InferenceServiceStatus.model_validate(
        {"phase": "Ready", "endpoints": {"grpc": "a:8001"}, "model": None}
    )
    assert status_patch(written, desired) == {"endpoints": {"http": None}}
    gone = InferenceServiceStatus.model_validate({"endpoints": None})
    assert status_patch(written, gone) == {"endpoints": None}


def test_the_reconciler_never_sets_the_autoscalers_status() -> None:
    plan, _ = succeeded_pass()
    assert "autoscaling" not in plan.status.model_fields_set


def test_crash_looping_triton_pods_are_explained() -> None:
    plan, observed = succeeded_pass()
    dep = deployment_status(plan.apply[0], replicas=1, ready=0, updated=1)
    pod = {
        "metadata": {"name": "digits-triton-abc"},
        "status": {
            "containerStatuses": [
                {
                    "name": "triton",
                    "state": {"waiting": {"reason": "CrashLoopBackOff"}},
                    "lastState": {"terminated": {"exitCode": 127}},
                }
            ]
        },
    }
    stuck = reconcile(
        isvc(),
        Observed(**{**observed.__dict__, "deployment": dep, "triton_pods": [pod]}),
        DEV,
        now="T",
    )
    assert stuck.wire_status()["phase"] == "Deploying"
    ready = conditions(stuck)["Ready"]
    assert ready[:2] == ("False", "NoReadyReplicas")
    assert "digits-triton-abc container triton: CrashLoopBackOff, last exit code 127" in ready[2]


QUOTA = (
    'pods "digits-triton-6c9-x2" is forbidden: exceeded quota: serving-cap, requested: '
    "requests.memory=2Gi, used: requests.memory=0, limited: requests.memory=1Gi"
)


def _replica_failure(dep: dict[str, Any], message: str) -> dict[str, Any]:
    failure = {"type": "ReplicaFailure", "status": "True", "reason": "FailedCreate"}
    dep["status"]["conditions"] = [failure | {"message": message}]
    return dep


def test_triton_pods_a_quota_refuses_are_explained() -> None:
    """No pod can be created: Ready and Deployed say why, not just 0/1 ready."""
    plan, observed = succeeded_pass()
    dep = _replica_failure(deployment_status(plan.apply[0], replicas=0, ready=0, updated=0), QUOTA)
    stuck = reconcile(isvc(), Observed(**{**observed.__dict__, "deployment": dep}), DEV, now="T")
    assert stuck.wire_status()["phase"] == "Deploying"
    ready, deployed = conditions(stuck)["Ready"], conditions(stuck)["Deployed"]
    assert ready[:2] == ("False", "QuotaExceeded") and "exceeded quota: serving-cap" in ready[2]
    assert deployed[:2] == ("False", "QuotaExceeded") and "0/1 Triton pod(s) exist" in deployed[2]
    assert "QuotaExceeded" in {e.reason for e in stuck.events}


def test_a_scale_up_an_admission_refuses_keeps_serving_and_says_why() -> None:
    plan, observed = succeeded_pass()
    dep = deployment_status(plan.apply[0], replicas=1, ready=1, updated=1)
    dep["spec"]["replicas"] = 3
    refused = 'pods "digits-triton-6c9-x3" is forbidden: violates PodSecurity "restricted"'
    dep = _replica_failure(dep, refused)
    partial = reconcile(isvc(), Observed(**{**observed.__dict__, "deployment": dep}), DEV, now="T")
    assert conditions(partial)["Ready"][:2] == ("True", "Serving")
    deployed = conditions(partial)["Deployed"]
    assert deployed[:2] == ("False", "FailedCreate") and "1/3 Triton pod(s) exist" in deployed[2]
    assert "PodSecurity" in deployed[2]


def test_unresolved_model_leaves_the_serving_deployment_alone() -> None:
    plan, _ = succeeded_pass()
    dep = deployment_status(plan.apply[0], replicas=1, ready=1, updated=1)
    retraining = isvc({"model": {"trainingJobRef": {"name": "train"}}})
    later = reconcile(
        retraining,
        Observed(deployment=dep, training_job={"status": {"phase": "Running"}}),
        DEV,
        now="T",
    )
    assert later.apply == [] and later.delete == []
    assert later.wire_status()["phase"] == "WaitingForModel"
    assert conditions(later)["Ready"][0] == "True"
    assert later.wire_status()["model"]["version"] == 1
