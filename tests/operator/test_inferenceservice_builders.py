"""Pure builders of the InferenceService reconciler: Job, Deployment, Services, PDB."""

from __future__ import annotations

import json
from typing import Any

import pytest

from gantry.api.common import parse_storage_uri
from gantry.api.inferenceservice import InferenceServiceSpec
from gantry.config import OperatorConfig, TritonBackend
from gantry.inferenceservice import names
from gantry.inferenceservice.backend import BackendUnavailable, choose_backend
from gantry.inferenceservice.model_source import ResolvedModel, Unresolved, resolve_model
from gantry.inferenceservice.optimize import build_optimize_job, inputs_digest, job_outcome
from gantry.inferenceservice.services import build_pdb, build_services
from gantry.inferenceservice.triton import (
    ServedVersion,
    build_deployment,
    served_from_deployment,
    stage_script,
)

DEV = OperatorConfig(triton_backends=(TritonBackend.PYTHON,))
GPU_CLUSTER = OperatorConfig()


def isvc(spec: dict[str, Any], name: str = "digits") -> dict[str, Any]:
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "InferenceService",
        "metadata": {"name": name, "namespace": "ml", "uid": "uid-1", "generation": 3},
        "spec": spec,
    }


def spec_of(**extra: Any) -> InferenceServiceSpec:
    return InferenceServiceSpec.model_validate(
        {"model": {"storageUri": "pvc://exports/digits/v1"}, **extra}
    )


def resolved(uri: str = "pvc://exports/digits/v1", digest: str | None = None) -> ResolvedModel:
    return ResolvedModel(uri=uri, location=parse_storage_uri(uri), digest=digest)


GPU_SPEC = {
    "resources": {"limits": {"nvidia.com/gpu": 1}},
    "nodeSelector": {"nvidia.com/gpu.product": "H100"},
    "tolerations": [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
}


# --- backend choice -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "backends", "expected"),
    [
        (GPU_SPEC, ("tensorrt_plan", "onnxruntime_onnx", "python"), "tensorrt_plan"),
        ({}, ("tensorrt_plan", "onnxruntime_onnx", "python"), "onnxruntime_onnx"),
        (
            {**GPU_SPEC, "optimization": {"tensorrt": {"enabled": False}}},
            ("tensorrt_plan", "onnxruntime_onnx", "python"),
            "onnxruntime_onnx",
        ),
        ({}, ("python",), "python"),
        ({}, ("tensorrt_plan", "python"), "python"),
    ],
)
def test_backend_follows_spec_and_image(
    spec: dict[str, Any], backends: tuple[str, ...], expected: str
) -> None:
    config = OperatorConfig(triton_backends=backends)
    assert choose_backend(spec_of(**spec), config).value == expected


def test_tensorrt_without_the_backend_is_a_clear_error() -> None:
    with pytest.raises(BackendUnavailable, match="no tensorrt_plan backend"):
        choose_backend(spec_of(**GPU_SPEC), DEV)


def test_tensorrt_refuses_a_triton_image_override() -> None:
    """Its engine would be built for the configured image's TensorRT, not the override's."""
    spec = spec_of(**GPU_SPEC, triton={"image": "nvcr.io/nvidia/tritonserver:25.01-py3"})
    with pytest.raises(BackendUnavailable, match=r"load on no other version"):
        choose_backend(spec, GPU_CLUSTER)
    same = spec_of(**GPU_SPEC, triton={"image": GPU_CLUSTER.triton_image})
    assert choose_backend(same, GPU_CLUSTER) is TritonBackend.TENSORRT
    cpu = spec_of(triton={"image": "nvcr.io/nvidia/tritonserver:25.01-py3"})
    assert choose_backend(cpu, GPU_CLUSTER) is TritonBackend.ONNXRUNTIME


# --- model resolution --------------------------------------------------------------


def test_training_job_ref_waits_fails_or_resolves() -> None:
    spec = InferenceServiceSpec.model_validate({"model": {"trainingJobRef": {"name": "train"}}})
    missing = resolve_model(spec, "ml", None)
    assert isinstance(missing, Unresolved) and missing.waiting
    assert missing.reason == "TrainingJobNotFound"
    running = resolve_model(spec, "ml", {"status": {"phase": "Running"}})
    assert isinstance(running, Unresolved) and running.waiting
    assert "waiting for TrainingJob 'train'" in running.message
    failed = resolve_model(spec, "ml", {"status": {"phase": "Failed", "message": "OOM at epoch 3"}})
    assert isinstance(failed, Unresolved) and not failed.waiting
    assert failed.reason == "TrainingJobFailed" and "OOM at epoch 3" in failed.message
    no_model = resolve_model(spec, "ml", {"status": {"phase": "Succeeded"}})
    assert isinstance(no_model, Unresolved) and no_model.reason == "NoModelExported"
    done = resolve_model(
        spec,
        "ml",
        {
            "status": {
                "phase": "Succeeded",
                "model": {"uri": "pvc://exports/train/", "sha256": {"model.onnx": "abc"}},
            }
        },
    )
    assert isinstance(done, ResolvedModel)
    assert (done.uri, done.digest, done.training_job) == ("pvc://exports/train", "abc", "train")


# --- optimize Job ------------------------------------------------------------------


def test_optimize_job_args_volumes_and_security() -> None:
    spec = spec_of(
        optimization={"precision": "int8", "maxBatchSize": 16},
        triton={"dynamicBatching": {"preferredBatchSizes": [8]}, "instancesPerReplica": 2},
    )
    job = build_optimize_job(isvc({}), spec, resolved(), TritonBackend.PYTHON, "f" * 64, DEV)
    assert job["metadata"]["name"] == "digits-optimize-ffffffff"
    assert job["spec"]["backoffLimit"] == 0
    pod = job["spec"]["template"]["spec"]
    assert pod["restartPolicy"] == "Never"
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == DEV.run_as_user
    container = pod["containers"][0]
    assert container["securityContext"]["allowPrivilegeEscalation"] is False
    assert container["securityContext"]["capabilities"] == {"drop": ["ALL"]}
    args = container["args"]
    opts = dict(zip(args[2::2], args[3::2], strict=False))
    assert args[:2] == ["-m", "model_repo.optimize"]
    assert opts["--model-dir"] == "/mnt/pvc/exports/digits/v1"
    assert opts["--repository"] == "/gantry/models/repos/digits"
    assert opts["--name"] == "digits"
    assert opts["--precision"] == "int8"
    assert opts["--max-batch-size"] == "16"
    assert opts["--backend"] == "python"
    assert opts["--cache-dir"] == "/gantry/models/cache"
    assert opts["--instances"] == "2"
    assert opts["--kind"] == "cpu"
    assert opts["--report"] == "/dev/termination-log"
    assert "--tensorrt-version" not in opts  # only TensorRT builds are version-bound
    assert json.loads(opts["--dynamic-batching-json"]) == {
        "preferredBatchSizes": [8],
        "maxQueueDelayMicroseconds": 100,
    }
    assert container["terminationMessagePath"] == "/dev/termination-log"
    claims = {v["name"]: v["persistentVolumeClaim"] for v in pod["volumes"] if "emptyDir" not in v}
    assert claims["models"]["claimName"] == names.DEFAULT_MODELS_CLAIM
    assert claims["source"] == {"claimName": "exports", "readOnly": True}
    assert "nvidia.com/gpu" not in container["resources"].get("limits", {})


def test_optimize_job_runs_on_the_serving_gpu_type() -> None:
    spec = spec_of(**GPU_SPEC)
    job = build_optimize_job(
        isvc({}), spec, resolved(), TritonBackend.TENSORRT, "a" * 64, GPU_CLUSTER
    )
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == "1"
    assert "--kind" in pod["containers"][0]["args"]
    assert pod["containers"][0]["args"][pod["containers"][0]["args"].index("--kind") + 1] == "gpu"
    args = pod["containers"][0]["args"]
    assert args[args.index("--tensorrt-version") + 1] == GPU_CLUSTER.tensorrt_version


def test_s3_model_is_fetched_with_secret_refs_only() -> None:
    spec = InferenceServiceSpec.model_validate(
        {"model": {"storageUri": "s3://bucket/models/digits", "storageSecretRef": {"name": "s3"}}}
    )
    job = build_optimize_job(
        isvc({}), spec, resolved("s3://bucket/models/digits"), TritonBackend.PYTHON, "b" * 64, DEV
    )
    pod = job["spec"]["template"]["spec"]
    fetch = pod["initContainers"][0]
    assert fetch["args"][:2] == ["-m", "model_repo.fetch"]
    env = {e["name"]: e for e in fetch["env"]}
    assert set(env) >= {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"}
    assert all("value" not in e for name, e in env.items() if name.startswith("AWS_"))
    assert env["AWS_ACCESS_KEY_ID"]["valueFrom"]["secretKeyRef"]["name"] == "s3"
    assert env["AWS_REGION"]["valueFrom"]["secretKeyRef"]["optional"] is True
    optimize = pod["containers"][0]
    # credentials only reach the fetch step
    assert all(not e["name"].startswith("AWS_") for e in optimize.get("env", []))
    assert optimize["args"][optimize["args"].index("--model-dir") + 1] == names.FETCH_DIR


def test_inputs_digest_changes_with_model_and_settings() -> None:
    base = inputs_digest(spec_of(), resolved(digest="a"), TritonBackend.PYTHON, DEV, None)
    assert base == inputs_digest(spec_of(), resolved(digest="a"), TritonBackend.PYTHON, DEV, None)
    variants = [
        inputs_digest(spec_of(), resolved(digest="b"), TritonBackend.PYTHON, DEV, None),
        inputs_digest(
            spec_of(), resolved("pvc://exports/digits/v2", "a"), TritonBackend.PYTHON, DEV, None
        ),
        inputs_digest(spec_of(), resolved(digest="a"), TritonBackend.PYTHON, DEV, "retry-1"),
        inputs_digest(
            spec_of(optimization={"precision": "int8"}),
            resolved(digest="a"),
            TritonBackend.PYTHON,
            DEV,
            None,
        ),
        inputs_digest(spec_of(), resolved(digest="a"), TritonBackend.ONNXRUNTIME, DEV, None),
    ]
    assert len({base, *variants}) == len(variants) + 1
    # Replicas do not change the optimized model.
    assert base == inputs_digest(
        spec_of(replicas=5), resolved(digest="a"), TritonBackend.PYTHON, DEV, None
    )


def _pod(container: str, exit_code: int, message: str) -> dict[str, Any]:
    return {
        "metadata": {"creationTimestamp": "2026-11-30T04:00:00Z"},
        "status": {
            "containerStatuses": [
                {
                    "name": container,
                    "state": {"terminated": {"exitCode": exit_code, "message": message}},
                }
            ]
        },
    }


def _job(condition: str | None) -> dict[str, Any]:
    conditions = [{"type": condition, "status": "True"}] if condition else []
    return {"metadata": {"name": "j"}, "status": {"conditions": conditions}}


def test_job_outcomes_read_the_termination_report() -> None:
    assert job_outcome(_job(None), []).state == "running"
    report = {"name": "digits", "version": 2, "digest": "d"}
    ok = job_outcome(_job("Complete"), [_pod("optimize", 0, json.dumps(report))])
    assert ok.state == "succeeded" and ok.report["version"] == 2
    corrupt = job_outcome(
        _job("Failed"),
        [
            _pod(
                "optimize",
                2,
                json.dumps({"error": "model.onnx is corrupt", "reason": "CorruptModel"}),
            )
        ],
    )
    assert (corrupt.state, corrupt.reason, corrupt.message) == (
        "failed",
        "CorruptModel",
        "model.onnx is corrupt",
    )
    crash = job_outcome(_job("Failed"), [_pod("optimize", 1, "Traceback\nKeyError: 'x'")])
    assert crash.reason == "OptimizeFailed" and "KeyError" in crash.message
    gone = job_outcome(_job("Failed"), [])
    assert gone.state == "failed"
    garbled = job_outcome(_job("Complete"), [_pod("optimize", 0, "not json")])
    assert garbled.reason == "UnreadableReport"


def test_unschedulable_optimize_pod_is_reported() -> None:
    pod = {
        "status": {
            "conditions": [
                {
                    "type": "PodScheduled",
                    "status": "False",
                    "message": "0/1 nodes are available: 1 Insufficient nvidia.com/gpu.",
                }
            ]
        }
    }
    outcome = job_outcome(_job(None), [pod])
    assert outcome.state == "running" and "Insufficient nvidia.com/gpu" in outcome.message
    assert outcome.reason == "Unschedulable"


def test_an_optimize_pod_that_cannot_pull_its_image_says_so() -> None:
    waiting = {"reason": "ImagePullBackOff", "message": 'Back-off pulling image "optimizer:9"'}
    pod = {
        "metadata": {"name": "digits-optimize-1-x"},
        "status": {
            "phase": "Pending",
            "initContainerStatuses": [{"name": "fetch", "state": {"waiting": waiting}}],
        },
    }
    outcome = job_outcome(_job(None), [pod])
    assert (outcome.state, outcome.reason) == ("running", "ImagePullBackOff")
    assert 'Back-off pulling image "optimizer:9"' in outcome.message


def test_an_optimize_job_past_its_deadline_fails_with_the_reason() -> None:
    job = build_optimize_job(
        {"metadata": {"name": "digits", "namespace": "ml"}},
        spec_of(),
        resolved(digest="a"),
        TritonBackend.PYTHON,
        "a" * 64,
        OperatorConfig(optimize_deadline_seconds=900),
    )
    assert job["spec"]["activeDeadlineSeconds"] == 900
    job["status"] = {
        "conditions": [{"type": "Failed", "status": "True", "reason": "DeadlineExceeded"}]
    }
    killed = _pod("optimize", 137, "")
    outcome = job_outcome(job, [killed])
    assert (outcome.state, outcome.reason) == ("failed", "DeadlineExceeded")
    assert "900 s" in outcome.message


# --- Triton Deployment -------------------------------------------------------------

SERVED = ServedVersion(
    version=3, digest="d3", job="digits-optimize-12345678", report={"version": 3}
)


@pytest.mark.parametrize(
    ("spec_selector", "expected"),
    [
        ({}, {"nvidia.com/gpu.product": "NVIDIA-H200"}),  # defaulted from the build's node
        ({"pool": "gpu"}, {"pool": "gpu", "nvidia.com/gpu.product": "NVIDIA-H200"}),
        ({"nvidia.com/gpu.product": "NVIDIA-H200"}, {"nvidia.com/gpu.product": "NVIDIA-H200"}),
    ],
)
def test_triton_pods_follow_the_gpu_product_the_engine_was_built_on(
    spec_selector: dict[str, str], expected: dict[str, str]
) -> None:
    served = ServedVersion(
        version=3,
        digest="d3",
        job="digits-optimize-12345678",
        report={"version": 3, "nodeSelector": {"nvidia.com/gpu.product": "NVIDIA-H200"}},
    )
    spec = spec_of(resources={"limits": {"nvidia.com/gpu": 1}}, nodeSelector=spec_selector)
    dep = build_deployment(isvc({}), spec, served, 1, GPU_CLUSTER)
    assert dep["spec"]["template"]["spec"]["nodeSelector"] == expected
    cpu = build_deployment(isvc({}), spec_of(), SERVED, 1, DEV)  # no product reported
    assert cpu["spec"]["template"]["spec"]["nodeSelector"] is None


def test_deployment_command_ports_probes_and_security() -> None:
    dep = build_deployment(isvc({}), spec_of(), SERVED, 2, DEV)
    assert dep["metadata"]["name"] == "digits-triton"
    spec = dep["spec"]
    assert spec["replicas"] == 2
    assert spec["selector"] == {"matchLabels": {"gantry.dev/inferenceservice": "digits"}}
    assert spec["strategy"]["rollingUpdate"] == {"maxSurge": 1, "maxUnavailable": 0}
    template = spec["template"]
    labels = template["metadata"]["labels"]
    assert labels["gantry.dev/inferenceservice"] == "digits"
    assert labels["app.kubernetes.io/name"] == "triton"
    assert labels["app.kubernetes.io/instance"] == "digits"
    pod = template["spec"]
    (triton,) = pod["containers"]
    assert triton["command"] == ["tritonserver"]
    args = triton["args"]
    for flag in (
        "--model-repository=/models",
        "--model-control-mode=none",
        "--strict-readiness=true",
        "--exit-timeout-secs=30",
        "--http-address=$(POD_IP)",
        "--grpc-address=$(POD_IP)",
        "--metrics-address=$(POD_IP)",
        "--http-port=8000",
        "--grpc-port=8001",
        "--metrics-port=8002",
        "--allow-gpu-metrics=false",
        "--metrics-config=summary_latencies=true",
    ):
        assert flag in args
    assert triton["env"] == [
        {"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
        {"name": "TMPDIR", "value": "/run/gantry"},
    ]
    assert {(p["name"], p["containerPort"]) for p in triton["ports"]} == {
        ("http", 8000),
        ("grpc", 8001),
        ("metrics", 8002),
    }
    assert triton["readinessProbe"]["httpGet"] == {"path": "/v2/health/ready", "port": 8000}
    assert triton["startupProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert triton["livenessProbe"]["httpGet"] == {"path": "/v2/health/live", "port": 8000}
    assert triton["lifecycle"]["preStop"]["exec"]["command"][0] == "sleep"
    assert pod["terminationGracePeriodSeconds"] > 30
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert triton["securityContext"]["allowPrivilegeEscalation"] is False
    volumes = {v["name"]: v for v in pod["volumes"]}
    assert volumes["dshm"]["emptyDir"]["medium"] == "Memory"
    assert volumes["models"]["persistentVolumeClaim"]["readOnly"] is True
    mounts = {m["mountPath"]: m for m in triton["volumeMounts"]}
    assert set(mounts) == {"/models", "/dev/shm", "/run/gantry"}
    (stage,) = pod["initContainers"]
    assert "/gantry/models/repos/digits/digits" in stage["command"][2]
    assert '"$src/3"' in stage["command"][2]
    # A namespace ResourceQuota refuses a pod with any container that names no requests.
    assert stage["resources"] == triton["resources"]


def test_gpu_service_gets_gpu_limits_and_metrics() -> None:
    dep = build_deployment(isvc({}), spec_of(**GPU_SPEC), SERVED, 1, GPU_CLUSTER)
    pod = dep["spec"]["template"]["spec"]
    triton = pod["containers"][0]
    assert triton["resources"]["limits"]["nvidia.com/gpu"] == "1"
    (stage,) = pod["initContainers"]
    assert "nvidia.com/gpu" not in stage["resources"].get("limits", {}), "copying needs no GPU"
    assert "--allow-gpu-metrics=true" in triton["args"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "H100"}
    assert triton["image"] == GPU_CLUSTER.triton_image


def test_model_change_rolls_the_pod_template() -> None:
    one = build_deployment(isvc({}), spec_of(), SERVED, 1, DEV)
    other = ServedVersion(
        version=4, digest="d4", job="digits-optimize-87654321", report={"version": 4}
    )
    two = build_deployment(isvc({}), spec_of(), other, 1, DEV)
    a1 = one["spec"]["template"]["metadata"]["annotations"]
    a2 = two["spec"]["template"]["metadata"]["annotations"]
    assert a1[names.MODEL_VERSION_ANNOTATION] == "3" and a2[names.MODEL_VERSION_ANNOTATION] == "4"
    assert a1 != a2
    assert served_from_deployment(two) == other


def test_autoscaled_deployment_leaves_replicas_alone() -> None:
    dep = build_deployment(isvc({}), spec_of(), SERVED, None, DEV)
    assert "replicas" not in dep["spec"]


def test_stage_script_copies_one_version() -> None:
    script = stage_script("digits", 7)
    assert 'cp -R "$src/7" "$dst/"' in script and "set -eu" in script


# --- Services and PDB --------------------------------------------------------------


def test_services_clusterip_and_headless() -> None:
    cluster_ip, headless = build_services(isvc({}))
    assert cluster_ip["metadata"]["name"] == "digits"
    assert "clusterIP" not in cluster_ip["spec"]
    assert headless["metadata"]["name"] == "digits-headless"
    assert headless["spec"]["clusterIP"] == "None"
    for svc in (cluster_ip, headless):
        assert svc["spec"]["selector"] == {"gantry.dev/inferenceservice": "digits"}
        assert {(p["name"], p["port"]) for p in svc["spec"]["ports"]} == {
            ("grpc", 8001),
            ("http", 8000),
            ("metrics", 8002),
        }


def test_pdb_allows_one_disruption() -> None:
    pdb = build_pdb(isvc({}))
    assert pdb["apiVersion"] == "policy/v1"
    assert pdb["spec"] == {
        "maxUnavailable": 1,
        "selector": {"matchLabels": {"gantry.dev/inferenceservice": "digits"}},
    }


def test_endpoint_names() -> None:
    assert names.grpc_endpoint("digits", "ml") == "digits.ml.svc:8001"
    assert names.headless_grpc_target("digits", "ml") == (
        "dns:///digits-headless.ml.svc.cluster.local:8001"
    )
    assert len(names.optimize_job_name("a" * 45, "0" * 64)) <= 63


def test_optimize_job_checks_the_digest_its_training_job_recorded() -> None:
    digest = "ab" * 32
    job = build_optimize_job(
        isvc({}), spec_of(), resolved(digest=digest), TritonBackend.PYTHON, "f" * 64, DEV
    )
    args = job["spec"]["template"]["spec"]["containers"][0]["args"]
    assert args[args.index("--expect-sha256") + 1] == digest
    plain = build_optimize_job(isvc({}), spec_of(), resolved(), TritonBackend.PYTHON, "f" * 64, DEV)
    assert "--expect-sha256" not in plain["spec"]["template"]["spec"]["containers"][0]["args"]
