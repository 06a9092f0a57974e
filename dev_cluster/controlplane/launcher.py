"""Runs etcd, kube-apiserver, kube-controller-manager and kube-scheduler as processes.

The binaries are Kubernetes' and etcd's own, built from pinned Go modules by `make tools`
(`scripts/build-k8s.sh` → `.tools/bin`). Everything listens on 127.0.0.1 only; each
process runs in its own process group and logs to `<state>/logs/control-plane/<name>.log`.
etcd keeps its data in `<state>/etcd`, so a restarted cluster keeps its objects.

Flags follow a kubeadm single-node control plane with three dev-only differences, each
for the same reason (one 2-CPU laptop, no network): etcd skips fsync, leader election is
off, and the API server does not reconcile the `kubernetes` Service's endpoints (they
would be 127.0.0.1, which EndpointSlices forbid; in-pod clients get the API address
through KUBERNETES_SERVICE_HOST/PORT, set by the dev kubelet).

Auditing is off unless asked for (`ControlPlane(audit_log=path)`, used by
`bench/operator_scale.py` to count a client's requests at the API server): the policy
(`audit_policy`) records the named users' requests at level Metadata (who, verb,
resource, response code, timestamps; no bodies) and nothing else, and the log is written
in batches so that auditing does not slow the server down.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import shutil
import signal
import ssl
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml

from ..agent.process import ProcessRegistry, with_parent_death
from ..ports import pick_port
from .kubeconfig import write_kubeconfig
from .pki import (
    ADMIN,
    APISERVER_KUBELET_CLIENT,
    CONTROLLER_MANAGER,
    FRONT_PROXY_CLIENT,
    PKI,
    SCHEDULER,
)

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[2]
BINARIES = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler")
SERVICE_CIDR = "10.96.0.0/16"
SA_ISSUER = "https://kubernetes.default.svc.cluster.local"
AUDIT_POLICY_FILE = "audit-policy.yaml"


class ControlPlaneError(RuntimeError):
    """A control-plane process is missing, exited, or did not become ready."""


def binary_dir() -> Path:
    """Where the built binaries are: $GANTRY_K8S_BIN, else the checkout's `.tools/bin`."""
    return Path(os.environ.get("GANTRY_K8S_BIN") or REPO_ROOT / ".tools" / "bin")


def find_binary(name: str) -> Path:
    path = binary_dir() / name
    if path.is_file() and os.access(path, os.X_OK):
        return path
    found = shutil.which(name)
    if found:
        return Path(found)
    raise ControlPlaneError(
        f"{name} is not built: run `make tools` (it builds the control plane from "
        f"dev_cluster/k8s into .tools/bin), or set GANTRY_K8S_BIN"
    )


def binaries_available() -> bool:
    try:
        for name in BINARIES:
            find_binary(name)
    except ControlPlaneError:
        return False
    return True


def audit_policy(users: Sequence[str] = ()) -> dict[str, Any]:
    """An audit policy: level Metadata for requests of `users` (every request when none
    are named), nothing for anyone else; one event per request when its response is
    complete (a watch also logs one when its response starts)."""
    rules: list[dict[str, Any]] = [{"level": "Metadata"}]
    if users:
        rules = [{"level": "Metadata", "users": list(users)}, {"level": "None"}]
    return {
        "apiVersion": "audit.k8s.io/v1",
        "kind": "Policy",
        "omitStages": ["RequestReceived"],
        "rules": rules,
    }


def audit_args(policy_file: Path, log_path: Path) -> list[str]:
    """kube-apiserver flags for a JSON audit log written asynchronously in batches.

    Batches of up to 1,000 events, flushed at least every second, are written without
    throttling from a buffer of 100,000 (the server drops events, and logs "audit buffer
    queue blocked", only when that fills). The file is not rotated: whoever reads it
    (a benchmark) sees every event of the run in one place.
    """
    return [
        f"--audit-policy-file={policy_file}",
        f"--audit-log-path={log_path}",
        "--audit-log-format=json",
        "--audit-log-mode=batch",
        "--audit-log-batch-buffer-size=100000",
        "--audit-log-batch-max-size=1000",
        "--audit-log-batch-max-wait=1s",
        "--audit-log-batch-throttle-enable=false",
        "--audit-log-maxsize=0",
    ]


@dataclass
class Ports:
    """Every port the control plane listens on (0 = pick a free one at start)."""

    apiserver: int = 0
    etcd_client: int = 0
    etcd_peer: int = 0
    controller_manager: int = 0
    scheduler: int = 0

    def resolve(self) -> Ports:
        return Ports(*(p or pick_port() for p in self.__dict__.values()))


@dataclass
class Process:
    name: str
    proc: asyncio.subprocess.Process
    log_path: Path

    def tail(self, lines: int = 20) -> str:
        try:
            text = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])


@dataclass
class ControlPlane:
    """One etcd + kube-apiserver + kube-controller-manager + kube-scheduler."""

    state_dir: Path
    node_name: str = "dev-node"
    ports: Ports = field(default_factory=Ports)
    extra_apiserver_args: Sequence[str] = ()
    processes: list[Process] = field(default_factory=list)
    # The API server's audit log (None: no auditing) and the users it records (none
    # named: every request); see `audit_policy`.
    audit_log: Path | None = None
    audit_users: Sequence[str] = ()

    def __post_init__(self) -> None:
        self.pki = PKI(self.state_dir / "pki")
        self.logs = self.state_dir / "logs" / "control-plane"
        self.config_dir = self.state_dir / "control-plane"
        # what an earlier run left behind (killed without stopping us) is reaped at start
        self.registry = ProcessRegistry(self.state_dir / "run" / "control-plane")
        self._argv: dict[str, list[str]] = {}  # each component's flags, to start it again

    @property
    def url(self) -> str:
        return f"https://127.0.0.1:{self.ports.apiserver}"

    @property
    def admin_kubeconfig(self) -> Path:
        return self.config_dir / "admin.kubeconfig"

    @property
    def audit_policy_file(self) -> Path:
        return self.config_dir / AUDIT_POLICY_FILE

    # ---- lifecycle ---------------------------------------------------------------------

    async def start(self, timeout: float = 120) -> None:
        """Start every component and return once the API server is ready."""
        for name in BINARIES:
            find_binary(name)
        leftovers = self.registry.reap_leftovers()
        if leftovers:
            log.warning("stopped %d control-plane process(es) of an earlier run", len(leftovers))
        self.ports = self.ports.resolve()
        self.logs.mkdir(parents=True, exist_ok=True)
        self.config_dir.mkdir(parents=True, exist_ok=True)
        self.pki.ensure(self.node_name)
        write_kubeconfig(self.admin_kubeconfig, self.url, self.pki.ca.cert, self.pki.client(ADMIN))
        if self.audit_log is not None:
            self.audit_log.parent.mkdir(parents=True, exist_ok=True)
            self.audit_policy_file.write_text(
                yaml.safe_dump(audit_policy(self.audit_users), sort_keys=False)
            )
        cm_config = write_kubeconfig(
            self.config_dir / "controller-manager.kubeconfig",
            self.url, self.pki.ca.cert, self.pki.client(CONTROLLER_MANAGER), "controller-manager",
        )  # fmt: skip
        sched_config = write_kubeconfig(
            self.config_dir / "scheduler.kubeconfig",
            self.url, self.pki.ca.cert, self.pki.client(SCHEDULER), "scheduler",
        )  # fmt: skip
        deadline = time.monotonic() + timeout
        try:
            await self._spawn("etcd", self._etcd_args())
            await self._spawn("kube-apiserver", self._apiserver_args())
            await self._wait_ready(self.url + "/readyz", deadline, client=True)
            await self._spawn("kube-controller-manager", self._controller_manager_args(cm_config))
            await self._spawn("kube-scheduler", self._scheduler_args(sched_config))
            await self._wait_ready(
                f"https://127.0.0.1:{self.ports.controller_manager}/healthz", deadline
            )
            await self._wait_ready(f"https://127.0.0.1:{self.ports.scheduler}/healthz", deadline)
        except BaseException:
            await self.stop()
            raise

    async def stop(self, grace: float = 10) -> None:
        """Stop in reverse order: scheduler and controllers first, etcd last."""
        for process in reversed(self.processes):
            await _terminate(process.proc, grace)
            self.registry.discard(process.proc.pid)
        self.processes.clear()

    def pids(self) -> dict[str, int]:
        return {p.name: p.proc.pid for p in self.processes}

    # ---- faults: one component stopped and started again (the fault suite) --------------

    async def stop_component(self, name: str, grace: float = 10) -> None:
        """Stop one component (SIGTERM, SIGKILL after `grace` s); the others keep running."""
        process = self._process(name)
        await _terminate(process.proc, grace)
        self.registry.discard(process.proc.pid)

    async def start_component(self, name: str, timeout: float = 120) -> None:
        """Start a stopped component again with its flags (etcd keeps its data directory),
        in its place in the stop order; return once it answers its health check."""
        old = self._process(name)
        if old.proc.returncode is None:
            raise ControlPlaneError(f"{name} is running")
        await self._spawn(name, self._argv[name])
        self.processes[self.processes.index(old)] = self.processes.pop()
        deadline = time.monotonic() + timeout
        health = {
            "etcd": f"http://127.0.0.1:{self.ports.etcd_client}/health",
            "kube-apiserver": self.url + "/readyz",
            "kube-controller-manager": f"https://127.0.0.1:{self.ports.controller_manager}/healthz",
            "kube-scheduler": f"https://127.0.0.1:{self.ports.scheduler}/healthz",
        }
        await self._wait_ready(health[name], deadline, client=name == "kube-apiserver")

    async def restart_component(self, name: str, timeout: float = 120) -> None:
        await self.stop_component(name)
        await self.start_component(name, timeout)

    def _process(self, name: str) -> Process:
        for process in self.processes:
            if process.name == name:
                return process
        raise ControlPlaneError(f"no control-plane component named {name!r}")

    # ---- arguments ---------------------------------------------------------------------

    def _etcd_args(self) -> list[str]:
        client = f"http://127.0.0.1:{self.ports.etcd_client}"
        peer = f"http://127.0.0.1:{self.ports.etcd_peer}"
        return [
            "--name=dev",
            f"--data-dir={self.state_dir / 'etcd'}",
            f"--listen-client-urls={client}",
            f"--advertise-client-urls={client}",
            f"--listen-peer-urls={peer}",
            f"--initial-advertise-peer-urls={peer}",
            f"--initial-cluster=dev={peer}",
            "--unsafe-no-fsync=true",
            "--snapshot-count=10000",
            "--quota-backend-bytes=2147483648",
            "--log-level=warn",
        ]

    def _apiserver_args(self) -> list[str]:
        pki = self.pki
        kubelet_client = pki.client(APISERVER_KUBELET_CLIENT)
        front_proxy = pki.client(FRONT_PROXY_CLIENT)
        return [
            f"--etcd-servers=http://127.0.0.1:{self.ports.etcd_client}",
            "--bind-address=127.0.0.1",
            "--advertise-address=127.0.0.1",
            f"--secure-port={self.ports.apiserver}",
            f"--tls-cert-file={pki.apiserver.cert}",
            f"--tls-private-key-file={pki.apiserver.key}",
            f"--client-ca-file={pki.ca.cert}",
            f"--service-account-issuer={SA_ISSUER}",
            f"--service-account-key-file={pki.sa_public}",
            f"--service-account-signing-key-file={pki.sa_private}",
            f"--service-cluster-ip-range={SERVICE_CIDR}",
            "--authorization-mode=Node,RBAC",
            "--enable-admission-plugins=NodeRestriction",
            f"--kubelet-client-certificate={kubelet_client.cert}",
            f"--kubelet-client-key={kubelet_client.key}",
            f"--kubelet-certificate-authority={pki.ca.cert}",
            "--kubelet-preferred-address-types=InternalIP",
            f"--requestheader-client-ca-file={pki.ca.cert}",
            f"--requestheader-allowed-names={FRONT_PROXY_CLIENT.user}",
            "--requestheader-username-headers=X-Remote-User",
            "--requestheader-group-headers=X-Remote-Group",
            "--requestheader-extra-headers-prefix=X-Remote-Extra-",
            f"--proxy-client-cert-file={front_proxy.cert}",
            f"--proxy-client-key-file={front_proxy.key}",
            # no kube-proxy: webhooks and aggregated APIs are called at their pod IPs
            "--enable-aggregator-routing=true",
            "--allow-privileged=true",
            "--endpoint-reconciler-type=none",
            "--profiling=false",
            *(audit_args(self.audit_policy_file, self.audit_log) if self.audit_log else []),
            *self.extra_apiserver_args,
        ]

    def _controller_manager_args(self, kubeconfig: Path) -> list[str]:
        pki = self.pki
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports.controller_manager}",
            "--leader-elect=false",
            "--use-service-account-credentials=true",
            f"--service-account-private-key-file={pki.sa_private}",
            f"--root-ca-file={pki.ca.cert}",
            f"--cluster-signing-cert-file={pki.ca.cert}",
            f"--cluster-signing-key-file={pki.ca.key}",
            "--controllers=*",
            "--profiling=false",
        ]

    def _scheduler_args(self, kubeconfig: Path) -> list[str]:
        return [
            f"--kubeconfig={kubeconfig}",
            f"--authentication-kubeconfig={kubeconfig}",
            f"--authorization-kubeconfig={kubeconfig}",
            "--bind-address=127.0.0.1",
            f"--secure-port={self.ports.scheduler}",
            "--leader-elect=false",
            "--profiling=false",
        ]

    # ---- processes ---------------------------------------------------------------------

    async def _spawn(self, name: str, args: list[str]) -> None:
        log_path = self.logs / f"{name}.log"
        with open(log_path, "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                *with_parent_death([str(find_binary(name)), *args]),
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out,
                start_new_session=True,
            )  # fmt: skip
        self.registry.add(proc.pid)
        self._argv[name] = args
        self.processes.append(Process(name, proc, log_path))

    def _check_alive(self) -> None:
        for process in self.processes:
            if process.proc.returncode is not None:
                raise ControlPlaneError(
                    f"{process.name} exited with code {process.proc.returncode}; "
                    f"last lines of {process.log_path}:\n{process.tail()}"
                )

    async def _wait_ready(self, url: str, deadline: float, client: bool = False) -> None:
        context = ssl.create_default_context(cafile=str(self.pki.ca.cert))
        if client:
            admin = self.pki.client(ADMIN)
            context.load_cert_chain(str(admin.cert), str(admin.key))
        else:
            # kube-controller-manager and kube-scheduler serve a self-signed certificate
            context.check_hostname = False
            context.verify_mode = ssl.CERT_NONE
        last = ""
        async with aiohttp.ClientSession() as session:
            while True:
                self._check_alive()
                with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                    async with session.get(
                        url, ssl=context, timeout=aiohttp.ClientTimeout(total=5)
                    ) as resp:
                        if resp.status == 200:
                            return
                        last = f"HTTP {resp.status}: {(await resp.text())[-500:]}"
                if time.monotonic() > deadline:
                    raise ControlPlaneError(f"{url} was not ready in time ({last or 'no answer'})")
                await asyncio.sleep(0.2)


async def _terminate(proc: asyncio.subprocess.Process, grace: float) -> None:
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), grace)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    await proc.wait()
