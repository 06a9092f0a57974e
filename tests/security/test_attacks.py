"""Attacks a hostile namespace user (or compromised training code, or a compromised
operator) would try, against kube-apiserver with RBAC and the chart's admission policies
enforced. Each case asserts what the API server answers or what a pod would run."""

from __future__ import annotations

import re
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import yaml

from gantry.api.common import ALLOWED_VOLUME_SOURCES_CONTEXT
from gantry.api.inferenceservice import InferenceServiceSpec
from gantry.api.trainingjob import TrainingJobSpec, TrainingJobStatus
from gantry.config import OperatorConfig, TritonBackend
from gantry.inferenceservice.model_source import ResolvedModel
from gantry.inferenceservice.optimize import build_optimize_job
from gantry.inferenceservice.reconcile import models_claim_manifest
from gantry.inferenceservice.services import build_services
from gantry.inferenceservice.triton import ServedVersion, build_deployment
from gantry.k8s.client import KubeClient
from gantry.k8s.ownership import adopt
from gantry.trainingjob.children import trainer_rbac, workers_service
from gantry.trainingjob.workers import worker_job
from tests.conftest import (
    api_client_for,
    create_trainer_account,
    create_training_job,
    grant_trainer_role,
    wait_for,
)
from tests.security.security_testkit import (
    POLICY_KINDS,
    RBAC_KINDS,
    apply_as_admin,
    busybox,
    labelled_job,
    refusal,
    render_chart,
    token_kubeconfig,
)

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from dev_cluster.controlplane.threaded import ThreadedControlPlane

ROOT = Path(__file__).resolve().parents[2]
PLANTED = f"TOPSECRET-{uuid.uuid4().hex}"
GROUP, VERSION = "gantry.dev", "v1alpha1"
CONFIG = OperatorConfig(triton_backends=(TritonBackend.PYTHON,))


def custom(api: ApiClient) -> Any:
    from kubernetes import client

    return client.CustomObjectsApi(api)


def plant_secret(api: ApiClient, namespace: str) -> None:
    from kubernetes import client

    client.CoreV1Api(api).create_namespaced_secret(
        namespace,
        {
            "metadata": {"name": "s3-creds"},
            "stringData": {"AWS_ACCESS_KEY_ID": "id", "AWS_SECRET_ACCESS_KEY": PLANTED},
        },
    )


def training_job(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "TrainingJob",
        "metadata": {"name": name},
        "spec": {"command": ["python", "-m", "train"], **spec},
    }


def nothing_leaked(api: ApiClient, namespace: str) -> None:
    """No Event, status or condition in the namespace carries the planted value."""
    from kubernetes import client

    events = client.CoreV1Api(api).list_namespaced_event(namespace)
    texts = [str(e.message) + str(e.reason) for e in events.items]
    for plural in ("trainingjobs", "inferenceservices"):
        items = custom(api).list_namespaced_custom_object(GROUP, VERSION, namespace, plural)
        texts += [yaml.safe_dump(i.get("status") or {}) for i in items["items"]]
    assert not [t for t in texts if PLANTED in t]


def kubelet_expand(text: str, env: dict[str, str]) -> str:
    """What the kubelet runs: `$$` is a literal `$`, `$(VAR)` the variable's value."""

    def one(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        return env.get(match.group(1), match.group(0))

    return re.sub(r"\$\$|\$\(([A-Za-z_][A-Za-z0-9_]*)\)", one, text)


# --- 1. no variable expansion of user strings ------------------------------------------


@pytest.mark.parametrize(
    ("kind", "spec"),
    [
        (
            "InferenceService",
            {
                "model": {
                    "storageUri": "s3://attacker-bkt/$(AWS_SECRET_ACCESS_KEY)",
                    "storageSecretRef": {"name": "s3-creds"},
                }
            },
        ),
        (
            "TrainingJob",
            {"command": ["python"], "output": {"storageUri": "pvc://m/$(AWS_SECRET_ACCESS_KEY)"}},
        ),
        ("TrainingJob", {"command": ["python"], "output": {"storageUri": "pvc://m/a b"}}),
        (
            "TrainingJob",
            {
                "command": ["python"],
                "volumes": [{"name": "d", "emptyDir": {}}],
                "volumeMounts": [{"name": "d", "mountPath": "/d/$(HOME)"}],
            },
        ),
    ],
)
def test_dollar_or_whitespace_in_a_uri_or_path_is_refused_and_leaks_nothing(
    admin_api: ApiClient, crds: object, namespace: str, kind: str, spec: dict[str, Any]
) -> None:
    plant_secret(admin_api, namespace)
    plural = "inferenceservices" if kind == "InferenceService" else "trainingjobs"
    body = {"apiVersion": f"{GROUP}/{VERSION}", "kind": kind, "metadata": {"name": "x"}}
    status, message = refusal(
        lambda: custom(admin_api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, plural, {**body, "spec": spec}
        )
    )
    assert status == 422
    assert "must not contain '$', whitespace or control characters" in message
    assert PLANTED not in message
    nothing_leaked(admin_api, namespace)


def test_dollar_in_command_args_and_env_is_never_expanded(
    admin_api: ApiClient,
    crds: object,
    namespace: str,
    gantry_policies: object,
    operator_kubeconfig: Path,
) -> None:
    plant_secret(admin_api, namespace)
    ref = {"secretKeyRef": {"name": "s3-creds", "key": "AWS_SECRET_ACCESS_KEY"}}
    tj = training_job(
        "expand",
        command=["python", "-c", "print('$(AWS_SECRET_ACCESS_KEY)')"],
        args=["--token=$(AWS_SECRET_ACCESS_KEY)"],
        env=[
            {"name": "AWS_SECRET_ACCESS_KEY", "valueFrom": ref},
            {"name": "ECHO", "value": "$(AWS_SECRET_ACCESS_KEY)"},
        ],
    )
    stored = custom(admin_api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, "trainingjobs", tj
    )
    spec = TrainingJobSpec.model_validate(stored["spec"])
    job = adopt(worker_job(stored, spec, CONFIG, attempt=1), stored)
    operator = KubeClient.for_kubeconfig(operator_kubeconfig)
    created = operator.create(job)  # what the API server stored, as the kubelet gets it
    container = created["spec"]["template"]["spec"]["containers"][0]
    env = {"AWS_SECRET_ACCESS_KEY": PLANTED, "JOB_COMPLETION_INDEX": "0"}
    argv = [kubelet_expand(a, env) for a in [*container["command"], *container["args"]]]
    values = {e["name"]: kubelet_expand(e.get("value", ""), env) for e in container["env"]}
    assert not [a for a in argv if PLANTED in a]
    assert "print('$(AWS_SECRET_ACCESS_KEY)')" in argv
    assert "--token=$(AWS_SECRET_ACCESS_KEY)" in argv
    assert "--node-rank=0" in argv  # Gantry's own reference still expands
    assert values["ECHO"] == "$(AWS_SECRET_ACCESS_KEY)"
    nothing_leaked(admin_api, namespace)


# --- 2. allowed volume sources ----------------------------------------------------------


@pytest.mark.parametrize(
    ("spec", "path", "words"),
    [
        (
            {"volumes": [{"name": "root", "hostPath": {"path": "/"}}]},
            "spec.volumes[0].hostPath",
            "hostPath volumes are not allowed",
        ),
        (
            {"volumes": [{"name": "n", "nfs": {"server": "10.0.0.1", "path": "/"}}]},
            "spec.volumes[0].nfs",
            "nfs volumes are not allowed",
        ),
        (
            {"checkpoint": {"volume": {"hostPath": {"path": "/var/lib/kubelet"}}}},
            "spec.checkpoint.volume.hostPath",
            "hostPath volumes are not allowed",
        ),
        (
            {"volumes": [{"name": "s", "secret": {"secretName": "kube-system/admin-token"}}]},
            "spec.volumes[0].secret.secretName",
            "should match",
        ),
        (
            {"volumes": [{"name": "dshm", "emptyDir": {}}]},
            "spec.volumes",
            "reserved for Gantry's own volumes",
        ),
    ],
)
def test_volume_sources_outside_the_allow_list_are_refused_at_admission(
    admin_api: ApiClient, crds: object, namespace: str, spec: dict[str, Any], path: str, words: str
) -> None:
    status, message = refusal(
        lambda: custom(admin_api).create_namespaced_custom_object(
            GROUP, VERSION, namespace, "trainingjobs", training_job("vol", **spec)
        )
    )
    assert status == 422
    assert path in message and words in message


def _replace_crd(api: ApiClient, crd: dict[str, Any]) -> None:
    from kubernetes import client

    ext = client.ApiextensionsV1Api(api)
    current = ext.read_custom_resource_definition(crd["metadata"]["name"])
    body = {**crd, "metadata": {**crd["metadata"]}}
    body["metadata"]["resourceVersion"] = current.metadata.resource_version
    ext.replace_custom_resource_definition(crd["metadata"]["name"], body)


def test_the_operator_config_allow_list_accepts_hostpath(
    admin_api: ApiClient, crds: list[dict[str, Any]], namespace: str, tmp_path: Path
) -> None:
    from kubernetes.client.exceptions import ApiException

    values = {"clusterWide": True, "config": {"allowedVolumeSources": ["hostPath"]}}
    docs = render_chart(tmp_path, values, namespace="gantry-system")
    (allowing,) = [
        d for d in docs if d["kind"] == "CustomResourceDefinition" and "trainingjobs" in str(d)
    ]
    (strict,) = [c for c in crds if c["metadata"]["name"] == allowing["metadata"]["name"]]
    host = training_job("host", volumes=[{"name": "h", "hostPath": {"path": "/data"}}])
    nfs = training_job("nfs", volumes=[{"name": "n", "nfs": {"server": "s", "path": "/"}}])
    api = custom(admin_api)

    def accepted(body: dict[str, Any]) -> bool:
        try:
            api.create_namespaced_custom_object(
                GROUP, VERSION, namespace, "trainingjobs", body, dry_run="All"
            )
        except ApiException:
            return False
        return True

    _replace_crd(admin_api, allowing)
    try:
        wait_for(lambda: accepted(host), 60, "the allowing CRD to be served")
        api.create_namespaced_custom_object(GROUP, VERSION, namespace, "trainingjobs", host)
        assert not accepted(nfs)  # only what the admin listed
    finally:
        _replace_crd(admin_api, strict)
        wait_for(lambda: not accepted(host), 60, "the strict CRD to be served again")
    # The operator applies the same list; its admission policy then allows hostPath too.
    TrainingJobSpec.model_validate(
        host["spec"], context={ALLOWED_VOLUME_SOURCES_CONTEXT: ("hostPath",)}
    )
    with pytest.raises(ValueError, match="hostPath volumes are not allowed"):
        TrainingJobSpec.model_validate(host["spec"])
    (policy,) = [
        d
        for d in docs
        if d["kind"] == "ValidatingAdmissionPolicy" and d["metadata"]["name"] == "gantry-operator"
    ]
    assert "hostPath" not in yaml.safe_dump(policy["spec"]["validations"])


# --- 3. a worker's token writes progress only -----------------------------------------


def test_a_worker_token_cannot_write_the_model_or_another_jobs_status(
    admin_api: ApiClient,
    control_plane: ThreadedControlPlane,
    crds: object,
    namespace: str,
    gantry_policies: object,
    tmp_path: Path,
) -> None:
    create_training_job(admin_api, namespace, "mine")
    create_training_job(admin_api, namespace, "theirs")
    account = create_trainer_account(admin_api, namespace, "mine")
    grant_trainer_role(admin_api, namespace, "mine")
    worker = custom(
        api_client_for(token_kubeconfig(admin_api, control_plane, tmp_path, namespace, account))
    )

    def patch(job: str, status: dict[str, Any]) -> Any:
        return worker.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, "trainingjobs", job, {"status": status}
        )

    patch("mine", {"progress": {"epoch": 1, "totalEpochs": 3}})  # what the reporter sends
    forged = {"uri": "s3://attacker-bkt/model", "sha256": {"model.onnx": "0" * 64}}
    status, message = refusal(lambda: patch("mine", {"model": forged}))
    assert status in (403, 422) and "may change only status.progress" in message
    status, message = refusal(lambda: patch("mine", {"phase": "Succeeded"}))
    assert "may change only status.progress" in message
    status, _ = refusal(lambda: patch("theirs", {"progress": {"epoch": 9}}))
    assert status == 403
    stored = custom(admin_api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, "trainingjobs", "mine"
    )
    assert stored["status"] == {"progress": {"epoch": 1, "totalEpochs": 3}}


def test_the_trainer_policy_guards_every_status_field_but_progress(
    gantry_policies: list[dict[str, Any]],
) -> None:
    (policy,) = [
        p
        for p in gantry_policies
        if p["kind"] == "ValidatingAdmissionPolicy"
        and p["metadata"]["name"] == "gantry-trainer-status"
    ]
    guarded = {
        m.group(1)
        for v in policy["spec"]["validations"]
        if (m := re.search(r"not status\.(\w+)", v["message"]))
    }
    fields = {f.alias or n for n, f in TrainingJobStatus.model_fields.items()}
    assert guarded == fields - {"progress"}


# --- 4. the operator's ServiceAccount is confined -------------------------------------


@pytest.mark.parametrize(
    ("pod_spec", "words"),
    [
        ({"containers": [busybox(privileged=True)]}, "privileged"),
        ({"containers": [busybox(capabilities={"add": ["SYS_ADMIN"]})]}, "capabilities"),
        (
            {
                "containers": [busybox()],
                "volumes": [{"name": "root", "hostPath": {"path": "/"}}],
            },
            "hostPath",
        ),
        ({"containers": [busybox()], "hostNetwork": True}, "host's network"),
        ({"containers": [busybox()], "serviceAccountName": "deployer"}, "ServiceAccount"),
    ],
)
def test_the_operator_cannot_create_a_dangerous_pod_template(
    gantry_policies: object,
    operator_kubeconfig: Path,
    namespace: str,
    pod_spec: dict[str, Any],
    words: str,
) -> None:
    from kubernetes import client

    batch = client.BatchV1Api(api_client_for(operator_kubeconfig))
    status, message = refusal(
        lambda: batch.create_namespaced_job(namespace, labelled_job("evil", pod_spec))
    )
    assert status in (403, 422) and words in message


def test_the_operator_cannot_create_pods_read_secrets_or_unlabelled_objects(
    admin_api: ApiClient, gantry_policies: object, operator_kubeconfig: Path, namespace: str
) -> None:
    from kubernetes import client

    plant_secret(admin_api, namespace)
    core = client.CoreV1Api(api_client_for(operator_kubeconfig))
    pod = {"metadata": {"name": "p"}, "spec": {"containers": [busybox(privileged=True)]}}
    assert refusal(lambda: core.create_namespaced_pod(namespace, pod))[0] == 403
    assert refusal(lambda: core.read_namespaced_secret("s3-creds", namespace))[0] == 403
    assert refusal(lambda: core.list_secret_for_all_namespaces())[0] == 403
    service = {"metadata": {"name": "s"}, "spec": {"ports": [{"port": 80}]}}
    _, message = refusal(lambda: core.create_namespaced_service(namespace, service))
    assert "labelled app.kubernetes.io/managed-by=gantry" in message
    rbac = client.RbacAuthorizationV1Api(api_client_for(operator_kubeconfig))
    binding = {
        "metadata": {"name": "b", "labels": {"app.kubernetes.io/managed-by": "gantry"}},
        "roleRef": {
            "apiGroup": "rbac.authorization.k8s.io",
            "kind": "ClusterRole",
            "name": "admin",
        },
        "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
    }
    assert refusal(lambda: rbac.create_namespaced_role_binding(namespace, binding))[0] == 403


def test_what_the_operator_really_creates_passes(
    admin_api: ApiClient,
    crds: object,
    namespace: str,
    gantry_policies: object,
    operator_kubeconfig: Path,
) -> None:
    """The pure builders' output from the contract examples, created as the operator."""
    examples = [
        d
        for f in ("trainingjob-digits.yaml", "inferenceservice-digits.yaml")
        for d in yaml.safe_load_all((ROOT / "examples" / f).read_text("utf-8"))
        if d and d["apiVersion"].startswith(GROUP)
    ]
    api = custom(admin_api)
    stored = {
        d["kind"]: api.create_namespaced_custom_object(
            GROUP, VERSION, namespace, d["kind"].lower() + "s", d
        )
        for d in examples
    }
    tj, isvc = stored["TrainingJob"], stored["InferenceService"]
    tj_spec = TrainingJobSpec.model_validate(tj["spec"])
    isvc_spec = InferenceServiceSpec.model_validate(isvc["spec"])
    model = ResolvedModel(
        uri="pvc://ml-models/digits-cnn", location=_location("pvc://ml-models/digits-cnn")
    )
    served = ServedVersion(version=1, digest="d1", job="digits-optimize-1", report={"version": 1})
    name = tj["metadata"]["name"]
    children = [
        *(adopt(c, tj) for c in [*trainer_rbac(name), workers_service(name, 29500)]),
        adopt(worker_job(tj, tj_spec, CONFIG, attempt=1), tj),
        models_claim_manifest("gantry-models", namespace, CONFIG),
        adopt(
            build_optimize_job(isvc, isvc_spec, model, TritonBackend.PYTHON, "a" * 64, CONFIG),
            isvc,
        ),
        adopt(build_deployment(isvc, isvc_spec, served, 1, CONFIG), isvc),
        *(adopt(s, isvc) for s in build_services(isvc)),
    ]
    operator = KubeClient.for_kubeconfig(operator_kubeconfig)
    kinds = sorted(operator.create(c)["kind"] for c in children)
    assert kinds == sorted(
        ["ServiceAccount", "Role", "RoleBinding", "Service", "Job", "PersistentVolumeClaim"]
        + ["Job", "Deployment"]
        + ["Service"] * len(build_services(isvc))
    )


def _location(uri: str) -> Any:
    from gantry.api.common import parse_storage_uri

    return parse_storage_uri(uri)


def test_namespaced_install_cannot_write_outside_watched_namespaces(
    admin_api: ApiClient,
    control_plane: ThreadedControlPlane,
    crds: object,
    namespace: str,
    tmp_path: Path,
) -> None:
    from kubernetes import client

    watched, release = f"w-{uuid.uuid4().hex[:8]}", f"gantry-{uuid.uuid4().hex[:6]}"
    client.CoreV1Api(admin_api).create_namespace({"metadata": {"name": watched}})
    try:
        docs = render_chart(
            tmp_path,
            {"config": {"watchNamespaces": [watched]}},
            release=release,
            namespace=f"{release}-system",
        )
        (role,) = [
            d for d in docs if d["kind"] == "ClusterRole" and d["metadata"]["name"] == release
        ]  # cluster-wide, the operator only discovers CRDs and namespaces
        assert {r for rule in role["rules"] for r in rule["resources"]} == {
            "customresourcedefinitions",
            "namespaces",
        }
        apply_as_admin(admin_api, [d for d in docs if d["kind"] in RBAC_KINDS + POLICY_KINDS])
        kubeconfig = token_kubeconfig(
            admin_api, control_plane, tmp_path, f"{release}-system", release
        )
        core = client.CoreV1Api(api_client_for(kubeconfig))
        service = {
            "metadata": {"name": "s", "labels": {"app.kubernetes.io/managed-by": "gantry"}},
            "spec": {"ports": [{"port": 80}]},
        }
        wait_for(
            lambda: core.create_namespaced_service(watched, service, dry_run="All"),
            30,
            "the Role in the watched namespace to take effect",
        )
        assert refusal(lambda: core.create_namespaced_service(namespace, service))[0] == 403
        assert refusal(lambda: core.create_namespaced_service("kube-system", service))[0] == 403
        objects = custom(api_client_for(kubeconfig))
        assert (
            refusal(lambda: objects.list_cluster_custom_object(GROUP, VERSION, "trainingjobs"))[0]
            == 403
        )
    finally:
        client.CoreV1Api(admin_api).delete_namespace(watched)
