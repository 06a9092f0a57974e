"""The shared test toolkit: polling with deadlines and a real Kubernetes control plane.

`control_plane` is one etcd + kube-apiserver + kube-controller-manager + kube-scheduler
for the whole session (starting one costs seconds); tests isolate themselves with their
own namespace (`namespace` fixture). Tests that need a node use `DevCluster` instead.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from functools import cache, partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar, cast

import pytest

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

    from dev_cluster.controlplane.threaded import ThreadedControlPlane

T = TypeVar("T")


def wait_for(
    probe: Callable[[], T | None],
    timeout: float = 60,
    what: str = "condition",
    every: float = 0.1,
    *,
    on_timeout: Callable[[], str] | None = None,
) -> T:
    """Poll `probe` until it returns something truthy; fail the test after `timeout` s.

    A probe may assert (its message is kept for the failure) or call `pytest.fail` to stop
    at once (e.g. the server it waits for has exited). `on_timeout` returns diagnostics
    (the cluster's or the operator's view, a log tail) added to the failure message.
    """
    deadline = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            last = probe()
        except AssertionError as exc:  # a probe may assert; keep its message for the failure
            last = exc
        else:
            if last:
                return last
        if time.monotonic() > deadline:
            message = f"timed out after {timeout:g}s waiting for {what} (last: {last!r})"
            if on_timeout is not None:
                message += "\n" + _diagnostics(on_timeout)
            pytest.fail(message)
        time.sleep(every)


def _diagnostics(view: Callable[[], str]) -> str:
    """`view()`, or why it failed: diagnostics must not hide the timeout they explain."""
    try:
        return view()
    except Exception as err:
        return f"(no diagnostics: {type(err).__name__}: {err})"


def require_control_plane() -> None:
    """Fail (with what to run) when the control-plane binaries are not built here."""
    from dev_cluster.controlplane import binaries_available

    if not binaries_available():
        pytest.fail(
            "the control plane is not built: run `make tools` (builds kube-apiserver, "
            "kube-controller-manager, kube-scheduler and etcd into .tools/bin)"
        )


@cache
def _triton_problem(tools: Path) -> str | None:
    """What keeps the tritonserver under `tools` from starting (asked once per directory)."""
    from dev_cluster.local_triton import triton_available, triton_environment, tritonserver_argv

    if not triton_available():
        return "tritonserver is not installed under .tools (with its libraries in triton/lib)"
    run = subprocess.run(
        [*tritonserver_argv([]), "--help"],
        env=triton_environment(os.environ),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    if "error while loading shared libraries" in run.stderr:
        return f"the local tritonserver cannot start: {run.stderr.strip()[-300:]}"
    return None


def require_triton() -> None:
    """Fail (with what to run) unless the local tritonserver under .tools can start.

    `make test` runs `make tools` first, which installs it: its absence is a failure."""
    from dev_cluster.local_triton import tools_dir

    problem = _triton_problem(tools_dir())
    if problem:
        pytest.fail(f"{problem}: run `make tools`")


@pytest.fixture(scope="session")
def control_plane(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadedControlPlane]:
    """A real control plane for the session (no node: pods stay Pending)."""
    from dev_cluster.controlplane.threaded import ThreadedControlPlane

    require_control_plane()
    with ThreadedControlPlane(tmp_path_factory.mktemp("control-plane")) as cp:
        yield cp


def api_client_for(kubeconfig: Path) -> ApiClient:
    from kubernetes import config

    client: ApiClient = config.new_client_from_config(config_file=str(kubeconfig))  # type: ignore[no-untyped-call]
    return client


@pytest.fixture(scope="session")
def admin_api(control_plane: ThreadedControlPlane) -> Iterator[ApiClient]:
    """A `kubernetes` ApiClient with cluster-admin rights on the session control plane."""
    client = api_client_for(control_plane.kubeconfig)
    yield client
    client.close()


@pytest.fixture
def namespace(admin_api: ApiClient) -> Iterator[str]:
    """A fresh namespace, with its `default` ServiceAccount in place; deleted afterwards."""
    from kubernetes import client

    core = client.CoreV1Api(admin_api)
    name = f"t-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    wait_for(
        lambda: any(
            sa.metadata.name == "default" for sa in core.list_namespaced_service_account(name).items
        ),
        30,
        f"the default ServiceAccount in {name}",
    )
    yield name
    core.delete_namespace(name)


# ---- Gantry on the session control plane: its CRDs, and the operator's own identity ----

REPO_ROOT = Path(__file__).resolve().parents[1]
OPERATOR_NAMESPACE = "gantry-system"
TOKEN_SECONDS = 24 * 3600
# The chart watches only the namespaces it is told to by default; the tests' operator
# acts in namespaces created per test, so it is installed cluster-wide, explicitly.
CLUSTER_WIDE = {"clusterWide": True}


def create_ignoring_conflict(create: Callable[..., object], *args: Any) -> None:
    """Create an object; one that exists already (409) is fine (session-wide objects)."""
    from kubernetes.client.exceptions import ApiException

    try:
        create(*args)
    except ApiException as err:
        if err.status != 409:
            raise


def _crd_served(admin_api: ApiClient, crd: dict[str, Any]) -> bool:
    from kubernetes import client
    from kubernetes.client.exceptions import ApiException

    name = crd["metadata"]["name"]
    status = client.ApiextensionsV1Api(admin_api).read_custom_resource_definition(name).status
    conditions = {c.type: c.status for c in ((status.conditions if status else None) or [])}
    if conditions.get("Established") != "True":
        return False
    group, plural = crd["spec"]["group"], crd["spec"]["names"]["plural"]
    version = crd["spec"]["versions"][0]["name"]
    try:  # Established precedes the resource being served by a moment
        client.CustomObjectsApi(admin_api).list_cluster_custom_object(group, version, plural)
    except ApiException as err:
        # 404 before the resource is routed; 429 "storage is (re)initializing" (with a
        # Retry-After) while its storage starts up — both mean "not served yet".
        if err.status in (404, 429):
            return False
        raise
    return True


@pytest.fixture(scope="session")
def crds(admin_api: ApiClient) -> list[dict[str, Any]]:
    """The CRDs from `crds/` on the session control plane, Established and served."""
    import yaml
    from kubernetes import client

    manifests = [
        yaml.safe_load(p.read_text("utf-8")) for p in sorted(REPO_ROOT.glob("crds/*.yaml"))
    ]
    extensions = client.ApiextensionsV1Api(admin_api)
    for crd in manifests:
        create_ignoring_conflict(extensions.create_custom_resource_definition, crd)
    for crd in manifests:
        wait_for(partial(_crd_served, admin_api, crd), 60, f"CRD {crd['metadata']['name']}")
    return manifests


def mint_token(admin_api: ApiClient, namespace: str, account: str, seconds: int) -> str:
    """A token for a ServiceAccount from the TokenRequest API (as the kubelet gets one)."""
    from kubernetes import client

    request = client.AuthenticationV1TokenRequest(
        spec=client.V1TokenRequestSpec(audiences=[], expiration_seconds=seconds)
    )
    minted = client.CoreV1Api(admin_api).create_namespaced_service_account_token(
        account, namespace, request
    )
    assert minted.status is not None and minted.status.token
    return minted.status.token


def write_token_kubeconfig(path: Path, server: str, ca: Path, user: str, token: str) -> Path:
    """A kubeconfig that authenticates with a bearer token (a ServiceAccount's)."""
    import yaml

    config = {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": "dev", "cluster": {"server": server, "certificate-authority": str(ca)}}
        ],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": user, "context": {"cluster": "dev", "user": user}}],
        "current-context": user,
    }
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    path.chmod(0o600)
    return path


def _operator_rbac(rendered: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The operator's ServiceAccount, the bindings naming it and the roles they bind."""
    (account,) = [d for d in rendered if d["kind"] == "ServiceAccount"]
    subject = (account["metadata"]["namespace"], account["metadata"]["name"])
    bindings = [
        d
        for d in rendered
        if d["kind"] in ("ClusterRoleBinding", "RoleBinding")
        and any(
            (s.get("namespace"), s.get("name")) == subject and s.get("kind") == "ServiceAccount"
            for s in d.get("subjects") or []
        )
    ]
    bound = {(b["roleRef"]["kind"], b["roleRef"]["name"]) for b in bindings}
    roles = [d for d in rendered if (d["kind"], d["metadata"]["name"]) in bound]
    return [account, *roles, *bindings]


@pytest.fixture(scope="session")
def operator_rbac(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    """`helm template charts/gantry` in whole-cluster mode (`clusterWide: true`), RBAC only."""
    import yaml

    from tests.chart.chart_testkit import helm_binary, template, write_values

    helm = helm_binary()
    if helm is None:
        pytest.fail("helm is not installed: `make tools` puts it in .tools/bin")
    values = write_values(tmp_path_factory.mktemp("operator-rbac") / "values.yaml", CLUSTER_WIDE)
    rendered = template(helm, values, namespace=OPERATOR_NAMESPACE)
    assert rendered.returncode == 0, rendered.stderr
    docs = [d for d in yaml.safe_load_all(rendered.stdout) if d]
    return _operator_rbac(docs)


@pytest.fixture(scope="session")
def operator_kubeconfig(
    control_plane: ThreadedControlPlane,
    admin_api: ApiClient,
    operator_rbac: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Path:
    """A kubeconfig for the operator's own ServiceAccount, under the chart's RBAC.

    The chart's ServiceAccount, ClusterRole(s) and bindings are applied with admin
    credentials; the token comes from the TokenRequest API. Hand it to
    `run_operator_in_thread`: a permission the chart lacks then fails the test.
    """
    from kubernetes import client

    (account,) = [d for d in operator_rbac if d["kind"] == "ServiceAccount"]
    namespace, name = account["metadata"]["namespace"], account["metadata"]["name"]
    core, rbac = client.CoreV1Api(admin_api), client.RbacAuthorizationV1Api(admin_api)
    create_ignoring_conflict(core.create_namespace, {"metadata": {"name": namespace}})
    creators: dict[str, Callable[..., object]] = {
        "ServiceAccount": core.create_namespaced_service_account,
        "Role": rbac.create_namespaced_role,
        "RoleBinding": rbac.create_namespaced_role_binding,
    }
    cluster_creators: dict[str, Callable[..., object]] = {
        "ClusterRole": rbac.create_cluster_role,
        "ClusterRoleBinding": rbac.create_cluster_role_binding,
    }
    for doc in operator_rbac:
        if doc["kind"] in cluster_creators:
            create_ignoring_conflict(cluster_creators[doc["kind"]], doc)
        else:
            create_ignoring_conflict(creators[doc["kind"]], doc["metadata"]["namespace"], doc)
    token = mint_token(admin_api, namespace, name, TOKEN_SECONDS)
    return write_token_kubeconfig(
        tmp_path_factory.mktemp("operator") / "kubeconfig",
        control_plane.url,
        control_plane.control_plane.pki.ca.cert,
        f"system:serviceaccount:{namespace}:{name}",
        token,
    )


# ---- A TrainingJob's own identity, as a worker pod sees it --------------------------------


S3_SECRET_KEY = "moto-secret-key-do-not-log"  # what the s3_env fixture's server accepts


@pytest.fixture(scope="module")
def s3_env() -> Iterator[dict[str, str]]:
    """A local S3 server (moto, from the dev extra) and the AWS_* environment that reaches it.

    The secret key (`AWS_SECRET_ACCESS_KEY`) is what tests check never appears in a
    message or a log.
    """
    from moto.server import ThreadedMotoServer

    from dev_cluster.ports import pick_port

    port = pick_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield {
            "AWS_ACCESS_KEY_ID": "testing",
            "AWS_SECRET_ACCESS_KEY": S3_SECRET_KEY,
            "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
            "AWS_REGION": "us-east-1",
        }
    finally:
        server.stop()


def create_training_job(admin_api: ApiClient, namespace: str, name: str) -> dict[str, Any]:
    """A TrainingJob to report progress to (no operator runs: nothing acts on it)."""
    from kubernetes import client

    body = {
        "apiVersion": "gantry.dev/v1alpha1",
        "kind": "TrainingJob",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"command": ["python", "-m", "training_jobs.examples.digits"]},
    }
    created = client.CustomObjectsApi(admin_api).create_namespaced_custom_object(
        "gantry.dev", "v1alpha1", namespace, "trainingjobs", body
    )
    return cast("dict[str, Any]", created)


def create_trainer_account(admin_api: ApiClient, namespace: str, job: str) -> str:
    """The job's trainer ServiceAccount, as the operator creates it; returns its name."""
    from kubernetes import client

    from gantry.trainingjob.children import trainer_rbac

    (account,) = [d for d in trainer_rbac(job) if d["kind"] == "ServiceAccount"]
    name = str(account["metadata"]["name"])
    client.CoreV1Api(admin_api).create_namespaced_service_account(
        namespace, client.V1ServiceAccount(metadata=client.V1ObjectMeta(name=name))
    )
    return name


def grant_trainer_role(admin_api: ApiClient, namespace: str, job: str) -> None:
    """The operator's trainer Role + RoleBinding (get/patch this job's status, by name);
    returns once the API server's authorizer lets the ServiceAccount patch the status."""
    from kubernetes import client

    from gantry.trainingjob.children import trainer_rbac

    rbac: Any = client.RbacAuthorizationV1Api(admin_api)  # takes the manifests as dicts
    account = ""
    for doc in trainer_rbac(job):
        if doc["kind"] == "Role":
            rbac.create_namespaced_role(namespace, doc)
        elif doc["kind"] == "RoleBinding":
            rbac.create_namespaced_role_binding(namespace, doc)
        else:
            account = doc["metadata"]["name"]
    review = client.V1SubjectAccessReview(
        spec=client.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{namespace}:{account}",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}"],
            resource_attributes=client.V1ResourceAttributes(
                namespace=namespace,
                verb="patch",
                group="gantry.dev",
                resource="trainingjobs",
                subresource="status",
                name=job,
            ),
        )
    )
    authorization = client.AuthorizationV1Api(admin_api)

    def allowed() -> bool:
        status = authorization.create_subject_access_review(review).status
        return status is not None and status.allowed

    wait_for(allowed, 30, f"RBAC to let {account} patch trainingjobs/{job}/status")


def serviceaccount_dir(
    admin_api: ApiClient,
    control_plane: ThreadedControlPlane,
    namespace: str,
    account: str,
    directory: Path,
) -> Path:
    """What the kubelet mounts at /var/run/secrets/kubernetes.io/serviceaccount: a token
    from the TokenRequest API, the cluster CA and the namespace."""
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "token").write_text(mint_token(admin_api, namespace, account, 3600))
    ca = control_plane.control_plane.pki.ca.cert
    (directory / "ca.crt").write_bytes(ca.read_bytes())
    (directory / "namespace").write_text(namespace)
    return directory


def in_cluster_env(control_plane: ThreadedControlPlane, sa_dir: Path) -> dict[str, str]:
    """The environment of a pod whose API server is the session control plane."""
    from urllib.parse import urlsplit

    url = urlsplit(control_plane.url)
    return {
        "KUBERNETES_SERVICE_HOST": str(url.hostname),
        "KUBERNETES_SERVICE_PORT": str(url.port),
        "GANTRY_SERVICEACCOUNT_DIR": str(sa_dir),
    }


def export_digits_shaped_model(directory: Path, seed: int) -> None:
    """torch → ONNX (dynamic batch) + metadata.json, as a TrainingJob would export it."""
    import torch

    torch.manual_seed(seed)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(1, 4, 3, padding=1),
        torch.nn.ReLU(),
        torch.nn.Flatten(),
        torch.nn.Linear(4 * 8 * 8, 10),
    ).eval()
    directory.mkdir(parents=True, exist_ok=True)
    onnx_path = directory / "model.onnx"
    torch.onnx.export(
        model,
        (torch.zeros(1, 1, 8, 8),),
        str(onnx_path),
        input_names=["input"],
        output_names=["logits"],
        dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}},
        opset_version=17,
        dynamo=False,
    )
    data = onnx_path.read_bytes()
    metadata = {
        "formatVersion": 1,
        "name": "digits-cnn",
        "inputs": [{"name": "input", "dtype": "float32", "shape": [-1, 1, 8, 8]}],
        "outputs": [{"name": "logits", "dtype": "float32", "shape": [-1, 10]}],
        "dynamicAxes": {"input": {"0": "batch"}, "logits": {"0": "batch"}},
        "labels": [str(d) for d in range(10)],
        "files": {"model.onnx": {"sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data)}},
    }
    (directory / "metadata.json").write_text(json.dumps(metadata))


def claim_manifest(
    name: str, namespace: str, *, access_mode: str = "ReadWriteOnce", storage: str = "1Gi"
) -> dict[str, Any]:
    """A PersistentVolumeClaim of the default StorageClass (the dev cluster provisions it)."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolumeClaim",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"accessModes": [access_mode], "resources": {"requests": {"storage": storage}}},
    }
