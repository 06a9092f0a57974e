"""Pure builders of a TrainingJob's children: worker Job, rendezvous Service, RBAC."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from gantry.api.trainingjob import TrainingJobSpec
from gantry.config import OperatorConfig
from gantry.trainingjob import naming
from gantry.trainingjob.children import trainer_rbac, workers_service
from gantry.trainingjob.summary import SUMMARY_SCRIPT, parse_summary
from gantry.trainingjob.workers import (
    WRAPPER,
    UnsupportedSpec,
    output_dir,
    user_program,
    worker_job,
)

CONFIG = OperatorConfig(master_port_range=(30000, 30099), run_as_user=1234)


def body(**spec: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"command": ["python", "-m", "training_jobs.examples.digits"]}
    base.update(spec)
    return {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": "digits", "namespace": "ml", "uid": "uid-1", "labels": {}},
        "spec": base,
    }


def build(attempt: int = 1, **spec: Any) -> dict[str, Any]:
    obj = body(**spec)
    return worker_job(obj, TrainingJobSpec.model_validate(obj["spec"]), CONFIG, attempt=attempt)


def container(job: dict[str, Any]) -> dict[str, Any]:
    result: dict[str, Any] = job["spec"]["template"]["spec"]["containers"][0]
    return result


def env_of(job: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in container(job)["env"]}


@pytest.mark.parametrize(
    ("command", "args", "program"),
    [
        (["python", "-m", "pkg.train"], ["--epochs", "3"], ["-m", "pkg.train", "--epochs", "3"]),
        (["python3", "train.py", "--x"], ["1"], ["train.py", "--x", "1"]),
        (["/usr/bin/python", "train.py"], [], ["train.py"]),
        (["python", "-c", "print(1)"], [], ["--no-python", "python", "-c", "print(1)"]),
        (["./train.sh"], ["a"], ["--no-python", "./train.sh", "a"]),
    ],
)
def test_user_program_for_each_command_shape(
    command: list[str], args: list[str], program: list[str]
) -> None:
    assert user_program(command, args) == program


def test_indexed_job_runs_torchrun_with_static_rendezvous_on_worker_zero() -> None:
    job = build(attempt=2, workers=3, gpusPerWorker=2, args=["--epochs", "12"])
    assert job["metadata"]["name"] == "digits-a2"
    spec = job["spec"]
    assert spec["completionMode"] == "Indexed"
    assert spec["completions"] == spec["parallelism"] == 3
    assert spec["backoffLimit"] == 0 and spec["suspend"] is False
    pod = spec["template"]["spec"]
    assert pod["subdomain"] == "digits-workers" and pod["restartPolicy"] == "Never"
    assert pod["serviceAccountName"] == "digits-trainer"
    argv = container(job)["args"]
    assert argv[0] == SUMMARY_SCRIPT
    port = naming.master_port("uid-1", (30000, 30099))
    assert argv[1:] == [
        "torchrun",
        "--nnodes=3",
        "--nproc-per-node=2",
        "--node-rank=$(JOB_COMPLETION_INDEX)",
        "--master-addr=digits-a2-0.digits-workers.ml.svc",
        f"--master-port={port}",
        "--rdzv-backend=static",
        "-m",
        "training_jobs.examples.digits",
        "--epochs",
        "12",
    ]
    assert container(job)["command"][:2] == ["sh", "-c"]
    labels = spec["template"]["metadata"]["labels"]
    assert labels == {naming.LABEL_JOB: "digits", naming.LABEL_ATTEMPT: "2"}


def test_cpu_workers_run_one_process_each() -> None:
    assert "--nproc-per-node=1" in container(build(gpusPerWorker=0))["args"]


def test_master_port_is_stable_in_range_and_spread() -> None:
    ports = {naming.master_port(f"uid-{i}", (29500, 29999)) for i in range(200)}
    assert all(29500 <= p <= 29999 for p in ports)
    assert len(ports) > 100, "uids spread over the range"
    assert naming.master_port("x", (29500, 29999)) == naming.master_port("x", (29500, 29999))
    assert naming.master_port("x", (40000, 40000)) == 40000
    with pytest.raises(ValueError, match="range"):
        naming.master_port("x", (2, 1))


def test_env_gantry_first_then_user() -> None:
    job = build(
        attempt=3,
        env=[
            {"name": "LR", "value": "0.1"},
            {"name": "TOKEN", "valueFrom": {"secretKeyRef": {"name": "s", "key": "k"}}},
        ],
        checkpoint={"volume": {"persistentVolumeClaim": {"claimName": "ckpt"}}, "mountPath": "/ck"},
        output={"storageUri": "pvc://models/digits/v1"},
    )
    env = env_of(job)
    assert env["GANTRY_JOB_NAME"] == "digits" and env["GANTRY_JOB_NAMESPACE"] == "ml"
    assert env["GANTRY_ATTEMPT"] == "3"
    assert env["GANTRY_CHECKPOINT_DIR"] == "/ck"
    assert env["GANTRY_OUTPUT_DIR"] == "/gantry/output-volume/digits/v1"
    assert env["LR"] == "0.1" and env["TOKEN"] == {"secretKeyRef": {"name": "s", "key": "k"}}
    names = [e["name"] for e in container(job)["env"]]
    assert names.index("GANTRY_JOB_NAME") < names.index("LR")
    # In a pod the API is reached through KUBERNETES_SERVICE_HOST/PORT and the
    # ServiceAccount token: the operator hands no API URL to workers.
    assert "GANTRY_API_URL" not in env
    assert "GANTRY_OUTPUT_DIR" not in env_of(build())


@pytest.mark.parametrize("name", ["MASTER_PORT", "RANK", "GANTRY_ATTEMPT", "PET_NNODES"])
def test_reserved_env_names_are_rejected(name: str) -> None:
    with pytest.raises(ValidationError, match="reserved"):
        build(env=[{"name": name, "value": "1"}])


def test_volumes_shm_checkpoint_output_and_user_volumes() -> None:
    job = build(
        checkpoint={"volume": {"persistentVolumeClaim": {"claimName": "ckpt"}}},
        output={"storageUri": "pvc://models/digits"},
        volumes=[{"name": "data", "configMap": {"name": "cfg"}}],
        volumeMounts=[{"name": "data", "mountPath": "/data", "readOnly": True}],
    )
    volumes = {v["name"]: v for v in job["spec"]["template"]["spec"]["volumes"]}
    mounts = {m["name"]: m["mountPath"] for m in container(job)["volumeMounts"]}
    assert volumes["dshm"] == {"name": "dshm", "emptyDir": {"medium": "Memory"}}
    assert mounts["dshm"] == "/dev/shm"
    assert volumes["gantry-checkpoint"]["persistentVolumeClaim"] == {"claimName": "ckpt"}
    assert mounts["gantry-checkpoint"] == "/gantry/checkpoints"
    assert volumes["gantry-output"] == {
        "name": "gantry-output",
        "persistentVolumeClaim": {"claimName": "models"},
    }
    assert mounts["gantry-output"] == "/gantry/output-volume"
    assert volumes["data"]["configMap"] == {"name": "cfg"} and mounts["data"] == "/data"


def test_without_checkpoint_an_empty_dir_is_used() -> None:
    volumes = {v["name"]: v for v in build()["spec"]["template"]["spec"]["volumes"]}
    assert volumes["gantry-checkpoint"] == {"name": "gantry-checkpoint", "emptyDir": {}}


def test_s3_output_is_reported_unsupported() -> None:
    spec = TrainingJobSpec.model_validate(body(output={"storageUri": "s3://bucket/m"})["spec"])
    with pytest.raises(UnsupportedSpec, match="s3:// outputs are not supported yet"):
        output_dir(spec)


def test_gpu_limits_tolerations_node_selector_and_resources() -> None:
    job = build(
        gpusPerWorker=4,
        resources={"requests": {"cpu": "8", "memory": "32Gi"}},
        nodeSelector={"gpu": "h100"},
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}],
    )
    res = container(job)["resources"]
    assert res == {"requests": {"cpu": "8", "memory": "32Gi"}, "limits": {"nvidia.com/gpu": 4}}
    pod = job["spec"]["template"]["spec"]
    assert pod["nodeSelector"] == {"gpu": "h100"}
    assert pod["tolerations"] == [
        {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}
    ]
    default = container(build())["resources"]
    assert default == {"requests": {"cpu": "1", "memory": "2Gi"}}, "from the operator config"


def test_security_context_is_non_root() -> None:
    job = build()
    pod = job["spec"]["template"]["spec"]["securityContext"]
    assert pod["runAsNonRoot"] is True and pod["runAsUser"] == 1234
    assert pod["seccompProfile"] == {"type": "RuntimeDefault"}
    ctr = container(job)["securityContext"]
    assert ctr["allowPrivilegeEscalation"] is False
    assert ctr["capabilities"] == {"drop": ["ALL"]}


def test_image_from_spec_or_config_and_kueue_label_passes_through() -> None:
    assert container(build())["image"] == CONFIG.trainer_image
    assert container(build(image="me/train:1"))["image"] == "me/train:1"
    obj = body()
    obj["metadata"]["labels"] = {naming.KUEUE_QUEUE_LABEL: "team-a"}
    job = worker_job(obj, TrainingJobSpec.model_validate(obj["spec"]), CONFIG, attempt=1)
    assert job["metadata"]["labels"][naming.KUEUE_QUEUE_LABEL] == "team-a"
    assert naming.KUEUE_QUEUE_LABEL not in build()["metadata"]["labels"]


def test_rbac_lets_the_trainer_patch_only_its_own_status() -> None:
    account, role, binding = trainer_rbac("digits")
    assert account == {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": {"name": "digits-trainer"},
    }
    status_rule = role["rules"][0]
    assert status_rule["resources"] == ["trainingjobs/status"]
    assert status_rule["resourceNames"] == ["digits"]
    assert set(status_rule["verbs"]) == {"get", "patch"}
    assert binding["roleRef"]["name"] == "digits-trainer"
    assert binding["subjects"] == [{"kind": "ServiceAccount", "name": "digits-trainer"}]


def test_workers_service_is_headless_and_publishes_unready_pods() -> None:
    svc = workers_service("digits", 29501)
    assert svc["metadata"]["name"] == "digits-workers"
    assert svc["spec"]["clusterIP"] == "None"
    assert svc["spec"]["publishNotReadyAddresses"] is True
    assert svc["spec"]["selector"] == {naming.LABEL_JOB: "digits"}


def test_long_names_are_rejected_with_the_reason() -> None:
    with pytest.raises(ValueError, match="DNS labels"):
        naming.check_name("x" * 60)


def _metadata(labels: int = 10) -> dict[str, Any]:
    return {
        "formatVersion": 1,
        "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 64]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 10]}],
        "labels": [f"class-{i}" for i in range(labels)],
        "files": {
            "model.onnx": {"sha256": "a" * 64, "bytes": 10},
            "model.pt": {"sha256": "b" * 64, "bytes": 20},
        },
        "metrics": {"test_accuracy": 0.95, "flag": True},
    }


def _run_summary(tmp_path: Path, metadata: dict[str, Any]) -> str:
    import json

    (tmp_path / "metadata.json").write_text(json.dumps(metadata))
    out = tmp_path / "termination-log"
    subprocess.run([sys.executable, "-c", SUMMARY_SCRIPT, str(tmp_path), str(out)], check=True)
    return out.read_text()


def test_summary_round_trip(tmp_path: Path) -> None:
    message = _run_summary(tmp_path, _metadata())
    model = parse_summary(message, "pvc://models/digits")
    assert model == {
        "uri": "pvc://models/digits",
        "formats": ["onnx", "torchscript"],
        "sha256": {"model.onnx": "a" * 64, "model.pt": "b" * 64},
        "metrics": {"test_accuracy": 0.95},
        "signature": {
            "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 64]}],
            "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 10]}],
            "labels": [f"class-{i}" for i in range(10)],
        },
    }


def test_summary_fits_a_termination_message(tmp_path: Path) -> None:
    message = _run_summary(tmp_path, _metadata(labels=2000))
    assert len(message) <= 4000
    model = parse_summary(message, "pvc://m")
    assert model is not None and model["signature"]["labels"] == []
    assert model["metrics"] == {"test_accuracy": 0.95}


def test_a_summary_signature_that_does_not_fit_the_status_model_is_dropped() -> None:
    bad = {"inputs": [{"name": "x", "dtype": None, "shape": [-1, 4]}], "outputs": []}
    message = json.dumps(
        {"gantrySummary": 1, "files": {"model.onnx": "c" * 64}, "signature": bad, "metrics": {}}
    )
    model = parse_summary(message, "pvc://m")
    assert model is not None and "signature" not in model
    assert model["sha256"] == {"model.onnx": "c" * 64}


@pytest.mark.parametrize("message", [None, "", "not json", '{"other": 1}', "[1]"])
def test_parse_summary_ignores_other_messages(message: str | None) -> None:
    assert parse_summary(message, "pvc://m") is None


def _wrapper(tmp_path: Path, *program: str, index: str = "0") -> subprocess.CompletedProcess[str]:
    term = tmp_path / "term"
    script = WRAPPER.replace("/dev/termination-log", str(term))
    env = {
        "PATH": "/usr/bin:/bin",
        "GANTRY_PYTHON": sys.executable,
        "GANTRY_OUTPUT_DIR": str(tmp_path),
        "JOB_COMPLETION_INDEX": index,
    }
    summary = "import sys; open(sys.argv[2], 'w').write('summary of ' + sys.argv[1])"
    return subprocess.run(
        ["sh", "-c", script, "w", summary, *program],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )


def test_wrapper_writes_summary_on_worker_zero_success_only(tmp_path: Path) -> None:
    assert _wrapper(tmp_path, "true").returncode == 0
    assert (tmp_path / "term").read_text() == f"summary of {tmp_path}"
    (tmp_path / "term").unlink()
    assert _wrapper(tmp_path, "true", index="1").returncode == 0
    assert not (tmp_path / "term").exists()
    assert _wrapper(tmp_path, "sh", "-c", "exit 3").returncode == 3
    assert not (tmp_path / "term").exists()


def test_every_child_passes_the_kubernetes_schema() -> None:
    from datetime import UTC, datetime

    import kubernetes_validate  # the dev extra's kubernetes-validate

    from gantry.trainingjob.state import Observed, reconcile

    obj = body(
        workers=2,
        gpusPerWorker=1,
        env=[{"name": "A", "value": "1"}],
        tolerations=[{"key": "nvidia.com/gpu", "operator": "Exists"}],
        nodeSelector={"gpu": "yes"},
        checkpoint={"volume": {"persistentVolumeClaim": {"claimName": "ckpt"}}},
        output={"storageUri": "pvc://models/digits"},
    )
    obj["metadata"]["generation"] = 1
    plan = reconcile(obj, Observed(), CONFIG, now=datetime.now(UTC))
    assert sorted(c["kind"] for c in plan.apply) == [
        "Job",
        "Role",
        "RoleBinding",
        "Service",
        "ServiceAccount",
    ]
    for child in plan.apply:
        kubernetes_validate.validate(child, "1.33.0", strict=True)


def test_only_suspend_is_reconciled_on_an_existing_job_and_kueue_admits() -> None:
    from gantry.trainingjob.workers import suspend_patch

    running = {"metadata": {"labels": {}}, "spec": {"suspend": False}}
    held = {"metadata": {"labels": {}}, "spec": {"suspend": True}}
    queued = {"metadata": {"labels": {naming.KUEUE_QUEUE_LABEL: "q"}}, "spec": {"suspend": True}}
    assert suspend_patch(running, {"spec": {"suspend": True}}) == {"spec": {"suspend": True}}
    assert suspend_patch(held, {"spec": {"suspend": False}}) == {"spec": {"suspend": False}}
    assert suspend_patch(running, {"spec": {"suspend": False}}) is None
    assert suspend_patch(queued, {"spec": {"suspend": False}}) is None, "Kueue admits it"
