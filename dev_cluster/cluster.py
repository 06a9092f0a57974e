"""The embedded dev cluster: a real control plane, Gantry's CRDs, one node, the operator.

`DevCluster` is the Python entry point (tests, demos); `gantry dev up` is the command.

- **Control plane**: etcd, kube-apiserver (TLS, `Node,RBAC` authorization, default
  admission plugins), kube-controller-manager and kube-scheduler — Kubernetes' own
  binaries built by `make tools` (see `dev_cluster.controlplane`).
- **Node**: the node agent plays the kubelet of `dev-node` (see `dev_cluster.agent`), with
  the identity `system:node:dev-node`; a local-path provisioner backs the default
  StorageClass `gantry-local`.
- **Operator**: the Helm chart `charts/gantry` installed with `helm upgrade --install`
  (release `gantry` in `gantry-system`, dev values below); the operator runs as the chart's
  Deployment on the dev node with its ServiceAccount's token — never as cluster admin.
  Its `gantry` package is this checkout's (the virtual environment's editable install);
  `operator_source` names another directory holding a `gantry` package (another
  checkout's `operator/`), put first on the operator pod's PYTHONPATH, and `chart_dir` /
  `crd_dir` another chart and CRDs: how `bench/operator_scale.py` runs an older operator.
- **Audit** (off by default): `audit_log` makes kube-apiserver log every request of the
  operator's ServiceAccount there (level Metadata, JSON; see `dev_cluster.controlplane`).

Everything runs on one event loop in a background thread (or the caller's thread for
`serve`). State directory (default `.gantry/dev`): `kubeconfig` (cluster admin), `pki/`,
`etcd/` (objects survive a restart), `logs/` (control plane and containers),
`pvc/<ns>/<claim>/` (volume data), `pods/`, `hosts` (service names for the host side).

What differs from a real node (the kubelet is ours): containers are host processes, so
`kubectl exec/attach/port-forward/cp` are not offered; images are not pulled (one whose
registry host is under a reserved TLD, `registry.invalid/x:1`, fails its pull as a
kubelet's does); there is no kube-proxy (ClusterIPs
do not route: names resolve to pod IPs inside pods, from the host use pod IPs); and no
cgroup limits — requests only matter to the scheduler.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import logging
import os
import shutil
import ssl
import subprocess
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Mapping
from decimal import Decimal
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any, TypeVar

import yaml

from .agent import AgentConfig, NodeAgent
from .agent.agent import ProvisionerAgent
from .agent.api import APIClient, APIError, Resource
from .agent.node import NODE_NAME, NodeCapacity, host_capacity
from .agent.provisioner import storage_class
from .agent.quantity import parse_quantity
from .controlplane import ControlPlane, Ports, write_kubeconfig
from .controlplane.launcher import find_binary
from .controlplane.pki import ADMIN, LOCAL_PROVISIONER, node_identity

T = TypeVar("T")

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
CRD_DIR = REPO_ROOT / "crds"
CHART_DIR = REPO_ROOT / "charts" / "gantry"
OPERATOR_NAMESPACE = "gantry-system"
RELEASE = "gantry"
CRDS = Resource("apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False)
CLUSTER_ROLES = Resource("rbac.authorization.k8s.io/v1", "clusterroles", namespaced=False)
CLUSTER_ROLE_BINDINGS = Resource(
    "rbac.authorization.k8s.io/v1", "clusterrolebindings", namespaced=False
)
STORAGE_CLASSES = Resource("storage.k8s.io/v1", "storageclasses", namespaced=False)
NAMESPACES = Resource("v1", "namespaces", namespaced=False)
SERVICE_ACCOUNTS = Resource("v1", "serviceaccounts")
NODES = Resource("v1", "nodes", namespaced=False)
DEPLOYMENTS = Resource("apps/v1", "deployments")
PODS = Resource("v1", "pods")
# A dev node advertises at least this much (nothing is enforced locally): enough for the
# examples — a 3-worker TrainingJob, a 2-replica InferenceService rolling a new model.
MIN_NODE_CPU = Decimal(8)
MIN_NODE_MEMORY = Decimal(16 * 1024**3)
MANAGER = "gantry-dev"

# The chart's values on the dev cluster: the node runs only Triton's Python backend, the
# operator's metrics port would bind 0.0.0.0 (pods share the host network), and default
# pod requests are sized for a laptop.
DEV_VALUES: dict[str, Any] = {
    # Resources are created in any namespace on the dev cluster: watch them all, explicitly
    # (the chart's default is the release namespace only).
    "clusterWide": True,
    "crds": {"enabled": False},
    "metrics": {"enabled": False},
    "resources": {"requests": {"cpu": "100m", "memory": "128Mi"}},
    "config": {
        "tritonBackends": ["python"],
        "trainingResources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
        "tritonResources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
        "optimizerResources": {"requests": {"cpu": "250m", "memory": "512Mi"}},
        "modelStorageAccessMode": "ReadWriteOnce",
        # Reconciles are driven by watch events; an hour-long resync on the dev cluster
        # means anything that only worked because of a periodic re-check stalls visibly.
        "resyncSeconds": 3600,
    },
}


def operator_available() -> bool:
    """Whether the operator (`gantry.controller`) and helm are here to install."""
    try:
        found = importlib.util.find_spec("gantry.controller") is not None
    except ModuleNotFoundError:
        return False
    return found and helm_binary() is not None


def helm_binary() -> str | None:
    local = REPO_ROOT / ".tools" / "bin" / "helm"
    return str(local) if local.is_file() else shutil.which("helm")


def crd_documents(crd_dir: Path = CRD_DIR) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(crd_dir.glob("*.yaml")) if crd_dir.is_dir() else []:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                docs.append(doc)
    return docs


def merge_values(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    """Helm's merge: nested mappings merge, anything else in `extra` replaces."""
    out = dict(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(out.get(key), Mapping):
            out[key] = merge_values(out[key], value)
        else:
            out[key] = value
    return out


def fit_to_schema(
    values: Mapping[str, Any], schema: Mapping[str, Any], path: str = ""
) -> tuple[dict[str, Any], list[str]]:
    """`values` without the keys a chart's values schema forbids (`additionalProperties:
    false`), at any depth; and the dotted paths of the keys dropped."""
    properties = schema.get("properties") or {}
    closed = schema.get("additionalProperties") is False
    out: dict[str, Any] = {}
    dropped: list[str] = []
    for key, value in values.items():
        where = f"{path}.{key}" if path else key
        sub = properties.get(key)
        if sub is None:
            if closed:
                dropped.append(where)
            else:
                out[key] = value
        elif isinstance(value, Mapping) and isinstance(sub, Mapping) and "properties" in sub:
            out[key], more = fit_to_schema(value, sub, where)
            dropped += more
        else:
            out[key] = value
    return out, dropped


def node_agent_rbac(node: str) -> list[dict[str, Any]]:
    """What the dev kubelet reads beyond the Node authorizer's graph (it caches whole
    kinds instead of watching single objects), and the provisioner's rights."""

    def role(name: str, rules: list[dict[str, Any]]) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRole",
            "metadata": {"name": name},
            "rules": rules,
        }

    def binding(name: str, user: str) -> dict[str, Any]:
        return {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "ClusterRoleBinding",
            "metadata": {"name": name},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "ClusterRole",
                "name": name,
            },
            "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
        }

    read = ["get", "list", "watch"]
    return [
        role("gantry-dev:node-agent", [
            {"apiGroups": [""], "resources": ["configmaps", "secrets", "persistentvolumeclaims",
                                              "persistentvolumes", "services"], "verbs": read},
            {"apiGroups": ["discovery.k8s.io"], "resources": ["endpointslices"], "verbs": read},
        ]),
        binding("gantry-dev:node-agent", node_identity(node).user),
        role("gantry-dev:local-provisioner", [
            {"apiGroups": [""], "resources": ["persistentvolumeclaims"], "verbs": read},
            {"apiGroups": [""], "resources": ["persistentvolumes"],
             "verbs": [*read, "create", "delete"]},
            {"apiGroups": ["storage.k8s.io"], "resources": ["storageclasses"], "verbs": read},
            {"apiGroups": [""], "resources": ["events"], "verbs": ["create", "patch"]},
        ]),
        binding("gantry-dev:local-provisioner", LOCAL_PROVISIONER.user),
    ]  # fmt: skip


def kubernetes_version(binary: Path) -> str:
    """`v1.37.2` from `kube-apiserver --version` (what the kubelet reports as its own)."""
    out = subprocess.run(
        [str(binary), "--version"], capture_output=True, text=True, timeout=30, check=False
    ).stdout
    return out.split()[-1] if out.strip() else "v0.0.0"


class DevCluster:
    """A running dev cluster; use as `with DevCluster(tmp) as c:` or `async with`."""

    def __init__(
        self,
        state_dir: Path | str | None = None,
        *,
        gpus: int = 0,
        cpu: str | None = None,
        memory: str | None = None,
        operator: bool = False,
        kubeconfig: Path | str | None = None,
        backoff_base: float = 10.0,
        port: int = 0,
        crd_dir: Path = CRD_DIR,
        operator_values: Mapping[str, Any] | None = None,
        chart_dir: Path = CHART_DIR,
        operator_source: Path | str | None = None,
        audit_log: Path | str | None = None,
    ) -> None:
        self.state_dir = Path(state_dir or Path.cwd() / ".gantry" / "dev").resolve()
        self.kubeconfig = (
            Path(kubeconfig).resolve() if kubeconfig else self.state_dir / "kubeconfig"
        )
        self.gpus = gpus
        self.cpu = cpu
        self.memory = memory
        self.operator = operator
        self.operator_values = dict(operator_values or {})
        self.backoff_base = backoff_base
        self.port = port
        self.crd_dir = crd_dir
        self.chart_dir = Path(chart_dir)
        self.operator_source = Path(operator_source).resolve() if operator_source else None
        self.audit_log = Path(audit_log).resolve() if audit_log else None
        self.url = ""
        self.crds: list[str] = []
        self.control_plane: ControlPlane | None = None
        self.agent: NodeAgent | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop_requested = False

    # ---- the cluster itself (one event loop) ------------------------------------------

    def capacity(self) -> NodeCapacity:
        host = host_capacity(self.gpus)
        return NodeCapacity(
            cpu=parse_quantity(self.cpu) if self.cpu else max(host.cpu, MIN_NODE_CPU),
            memory=parse_quantity(self.memory)
            if self.memory
            else max(host.memory, MIN_NODE_MEMORY),
            gpus=self.gpus,
        )

    def values(self) -> dict[str, Any]:
        """The chart values `gantry dev up` installs the operator with.

        Another chart (`chart_dir`, e.g. an older checkout's) gets only the values its
        schema declares: the dev values may name settings it does not know yet.
        """
        values = merge_values(DEV_VALUES, self.operator_values)
        if self.operator_source is not None:
            env = [e for e in values.get("extraEnv") or [] if e.get("name") != "PYTHONPATH"]
            path = {"name": "PYTHONPATH", "value": str(self.operator_source)}
            values["extraEnv"] = [path, *env]
        schema = self.chart_dir / "values.schema.json"
        if self.chart_dir.resolve() != CHART_DIR.resolve() and schema.is_file():
            values, dropped = fit_to_schema(values, json.loads(schema.read_text()))
            if dropped:
                log.info("values the chart in %s does not declare: %s", self.chart_dir, dropped)
        return values

    def operator_user(self) -> str:
        """The API user the operator acts as: its ServiceAccount (the chart's naming)."""
        account = self.values().get("serviceAccount") or {}
        # Created: its name defaults to the fullname (the release's, which contains "gantry").
        name = account.get("name") or (RELEASE if account.get("create", True) else "default")
        return f"system:serviceaccount:{OPERATOR_NAMESPACE}:{name}"

    async def serve(
        self, on_ready: Callable[[DevCluster], Awaitable[None] | None] | None = None
    ) -> None:
        """Run until `request_stop()`; every process started is stopped on the way out."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        cp = ControlPlane(
            self.state_dir,
            node_name=NODE_NAME,
            ports=Ports(apiserver=self.port),
            audit_log=self.audit_log,
            audit_users=(self.operator_user(),),
        )
        self.control_plane = cp
        provisioner: ProvisionerAgent | None = None
        await cp.start()
        try:
            self.url = cp.url
            write_kubeconfig(self.kubeconfig, cp.url, cp.pki.ca.cert, cp.pki.client(ADMIN))
            admin = APIClient.from_kubeconfig(self.kubeconfig)
            try:
                log.info("control plane ready at %s", cp.url)
                await self._bootstrap(admin)
                log.info("CRDs established: %s", ", ".join(self.crds))
                provisioner = ProvisionerAgent(
                    cp.url, self._client_tls(LOCAL_PROVISIONER.file_stem), self.state_dir
                )
                await provisioner.start()
                self.agent = NodeAgent(self._agent_config(cp))
                await self.agent.start()
                log.info("node %s registered", NODE_NAME)
                await self._wait_node_ready(admin)
                log.info("node %s ready", NODE_NAME)
                if self.operator:
                    await self._install_operator(admin)
            finally:
                await admin.close()
            self._ready.set()
            if on_ready is not None:
                result = on_ready(self)
                if result is not None:
                    await result
            await self._stop.wait()
        finally:
            if self.agent is not None:
                await self.agent.stop()
            if provisioner is not None:
                await provisioner.stop()
            await cp.stop()

    def _client_tls(self, stem: str) -> ssl.SSLContext:
        assert self.control_plane is not None
        pki = self.control_plane.pki
        context = ssl.create_default_context(cafile=str(pki.ca.cert))
        context.load_cert_chain(str(pki.dir / f"{stem}.crt"), str(pki.dir / f"{stem}.key"))
        return context

    def _agent_config(self, cp: ControlPlane) -> AgentConfig:
        serving = cp.pki.kubelet_serving(NODE_NAME)
        server_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH, cafile=str(cp.pki.ca.cert))
        server_tls.load_cert_chain(str(serving.cert), str(serving.key))
        server_tls.verify_mode = ssl.CERT_REQUIRED
        return AgentConfig(
            server=cp.url,
            state_dir=self.state_dir,
            logs_root=self.state_dir / "logs",
            capacity=self.capacity(),
            backoff_base=self.backoff_base,
            tls=self._client_tls(node_identity(NODE_NAME).file_stem),
            serving_tls=server_tls,
            kubelet_version=kubernetes_version(find_binary("kube-apiserver")),
        )

    async def _bootstrap(self, admin: APIClient) -> None:
        """What a fresh cluster needs before its node joins: RBAC for the node agent,
        the default StorageClass, Gantry's CRDs (Established)."""
        for doc in node_agent_rbac(NODE_NAME):
            res = CLUSTER_ROLES if doc["kind"] == "ClusterRole" else CLUSTER_ROLE_BINDINGS
            await admin.apply(res, None, doc["metadata"]["name"], doc, MANAGER)
        sc = storage_class()
        await admin.apply(STORAGE_CLASSES, None, sc["metadata"]["name"], sc, MANAGER)
        self.crds = await apply_crds(admin, crd_documents(self.crd_dir))

    async def _wait_node_ready(self, admin: APIClient, timeout: float = 90) -> None:
        """Until the node is schedulable and `default` has its ServiceAccount."""
        deadline = time.monotonic() + timeout
        while True:
            node = await admin.get(NODES, None, NODE_NAME)
            taints = [t.get("key") for t in (node.get("spec") or {}).get("taints") or []]
            try:
                await admin.get(SERVICE_ACCOUNTS, "default", "default")
                has_account = True
            except APIError:
                has_account = False
            if has_account and "node.kubernetes.io/not-ready" not in taints:
                return
            if time.monotonic() > deadline:
                raise TimeoutError(f"node {NODE_NAME} not ready in time (taints: {taints})")
            await asyncio.sleep(0.2)

    async def _install_operator(self, admin: APIClient, timeout: float = 120) -> None:
        """`helm upgrade --install` the chart, then wait for the operator to be Available."""
        helm = helm_binary()
        if helm is None:
            raise RuntimeError("helm is not installed (`make tools` puts it in .tools/bin)")
        values = self.state_dir / "operator-values.yaml"
        values.write_text(yaml.safe_dump(self.values(), sort_keys=False))
        command = [
            helm, "upgrade", "--install", RELEASE, str(self.chart_dir),
            "--namespace", OPERATOR_NAMESPACE, "--create-namespace",
            "--kubeconfig", str(self.kubeconfig), "-f", str(values),
        ]  # fmt: skip
        proc = await asyncio.create_subprocess_exec(
            *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
            env={**os.environ, "HELM_CACHE_HOME": str(self.state_dir / "helm" / "cache"),
                 "HELM_CONFIG_HOME": str(self.state_dir / "helm" / "config"),
                 "HELM_DATA_HOME": str(self.state_dir / "helm" / "data")},
        )  # fmt: skip
        out, _ = await proc.communicate()
        if proc.returncode != 0:
            raise RuntimeError(f"helm install of the operator failed:\n{out.decode()}")
        deadline = time.monotonic() + timeout
        name = RELEASE  # the chart's fullname when the release name contains "gantry"
        while True:
            try:
                deployment = await admin.get(DEPLOYMENTS, OPERATOR_NAMESPACE, name)
                status = deployment.get("status") or {}
                wanted = int((deployment.get("spec") or {}).get("replicas") or 1)
                if (
                    int(status.get("availableReplicas") or 0) >= wanted
                    and int(status.get("updatedReplicas") or 0) >= wanted
                    and status.get("observedGeneration") == deployment["metadata"]["generation"]
                ):
                    return
            except APIError as exc:
                if exc.status != 404:
                    raise
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"the operator Deployment {OPERATOR_NAMESPACE}/{name} was not Available "
                    f"in {timeout:g}s; logs: {self.operator_logs()[-2000:]}"
                )
            await asyncio.sleep(0.25)

    def run_on_loop(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        """Run `coro` on the cluster's event loop, where its processes live (from another
        thread: tests and fault injection); its result, or its exception."""
        if self._loop is None or self._loop.is_closed():
            coro.close()
            raise RuntimeError("the dev cluster is not running")
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout)

    async def restart_agent(self) -> None:
        """Stop the node agent (its containers stop with it) and start a new one, as a
        kubelet restart does; run it on the cluster's loop (`run_on_loop`)."""
        if self.agent is None or self.control_plane is None:
            raise RuntimeError("the dev cluster has no node agent running")
        await self.agent.stop()
        self.agent = NodeAgent(self._agent_config(self.control_plane))
        await self.agent.start()

    def operator_logs(self) -> str:
        """The last lines each operator container wrote (the node keeps them as files)."""
        lines = []
        pattern = f"logs/{OPERATOR_NAMESPACE}/*/operator/*.log"
        for path in sorted(self.state_dir.glob(pattern), key=lambda p: p.stat().st_mtime):
            tail = path.read_text(encoding="utf-8", errors="replace").splitlines()[-40:]
            lines += [f"--- {path.parent.parent.name} ({path.name})", *tail]
        return "\n".join(lines)

    def request_stop(self) -> None:
        """Ask `serve` to stop (from any thread or a signal handler)."""
        self._stop_requested = True
        if self._loop is not None and self._stop is not None and not self._loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed in between
                self._loop.call_soon_threadsafe(self._stop.set)

    # ---- synchronous use ------------------------------------------------------------

    def start(
        self, operator: bool | None = None, gpus: int | None = None, timeout: float = 240
    ) -> DevCluster:
        """Start in a background thread and return once the node (and operator) is ready."""
        if operator is not None:
            self.operator = operator
        if gpus is not None:
            self.gpus = gpus
        self._stop_requested = False
        self._ready.clear()
        self._error = None

        def main() -> None:
            try:
                asyncio.run(self.serve())
            except BaseException as exc:  # reported to the starting thread
                self._error = exc
                self._ready.set()

        self._thread = threading.Thread(target=main, name="gantry-dev-cluster", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            self.stop()
            raise TimeoutError(f"the dev cluster did not start within {timeout:g}s")
        if self._error is not None:
            raise RuntimeError(f"the dev cluster failed to start: {self._error}") from self._error
        return self

    def stop(self, timeout: float = 90) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)
            self._thread = None

    def __enter__(self) -> DevCluster:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    async def __aenter__(self) -> DevCluster:
        return await asyncio.to_thread(self.start)

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await asyncio.to_thread(self.stop)

    def api_client(self) -> ApiClient:
        """A `kubernetes` client ApiClient (cluster admin) for this cluster."""
        from kubernetes import config

        client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return client


async def apply_crds(
    client: APIClient, docs: list[dict[str, Any]], timeout: float = 60
) -> list[str]:
    """Server-side apply each CRD and wait until it is Established; their names."""
    names = []
    for doc in docs:
        name = doc["metadata"]["name"]
        try:
            await client.apply(CRDS, None, name, doc, MANAGER)
        except APIError as exc:
            message = exc.body.get("message") if isinstance(exc.body, dict) else exc.body
            raise RuntimeError(f"the API server rejected CRD {name}: {message}") from exc
        names.append(name)
    deadline = time.monotonic() + timeout
    for name in names:
        while True:
            crd = await client.get(CRDS, None, name)
            conditions = (crd.get("status") or {}).get("conditions") or []
            if any(
                c.get("type") == "Established" and c.get("status") == "True" for c in conditions
            ):
                break
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"CRD {name} did not become Established: {json.dumps(conditions)}"
                )
            await asyncio.sleep(0.1)
    return names


__all__ = [
    "CHART_DIR",
    "CRD_DIR",
    "DEV_VALUES",
    "OPERATOR_NAMESPACE",
    "RELEASE",
    "DevCluster",
    "apply_crds",
    "crd_documents",
    "operator_available",
]
