"""The embedded dev cluster: emulated API server + Gantry CRDs + node agent + operator.

`DevCluster` is the Python entry point (tests, demos); `gantry dev up` is the command.
Everything runs on one event loop in a background thread (or the caller's main thread
for `serve`); the operator runs as a subprocess `python -m gantry.controller` with
KUBECONFIG pointing at the cluster, in its own process group.

State directory (default `.gantry/dev`): `kubeconfig`, `dev.pid` (while `gantry dev up`
runs), `logs/<ns>/<pod>/<container>/<restart>.log`, `pvc/<ns>/<claim>/` (volume data),
`pods/` (per-pod volumes and hosts files), `hosts` (service names for the host side),
`operator.log`, and whatever the API server persists there.

kubectl against the dev cluster: `get`, `describe`, `apply`, `create`, `patch`,
`scale`, `delete`, `logs [--previous]`, `rollout status`, `wait` work. What does not:
`exec`, `attach`, `cp`, `port-forward`, `debug` (no pods/exec or pods/portforward: the
processes run on the host, so use their pod IP directly, e.g.
`curl http://$(kubectl get pod P -o jsonpath='{.status.podIP}'):8000`), `top` (no
metrics API), and ClusterIPs are not routable (no kube-proxy: from the host use pod IPs
or EndpointSlices; inside pods service names resolve to pod IPs). Extra printer columns
of `get` (e.g. `-o wide`) are whatever the API server's tables carry; `-o json/yaml`
and `custom-columns` always show everything.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import logging
import os
import signal
import socket
import sys
import threading
from collections.abc import Awaitable, Callable
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

import yaml

from .agent import AgentConfig, NodeAgent
from .agent.api import APIClient, APIError, Resource
from .agent.node import NodeCapacity, host_capacity

if TYPE_CHECKING:
    from kubernetes.client import ApiClient

log = logging.getLogger(__name__)
REPO_ROOT = Path(__file__).resolve().parents[1]
CRD_DIR = REPO_ROOT / "crds"
CRDS = Resource("apiextensions.k8s.io/v1", "customresourcedefinitions", namespaced=False)


def operator_available() -> bool:
    """Whether `python -m gantry.controller` can run here."""
    try:
        return importlib.util.find_spec("gantry.controller") is not None
    except ModuleNotFoundError:
        return False


def _free_local_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def operator_defaults(url: str) -> dict[str, str]:
    """The operator configuration this cluster needs (the user's GANTRY_* env wins):
    its Triton has only the Python backend, in-pod clients need the plain-HTTP URL, and
    nothing may listen on 0.0.0.0 (pods share the host network: a wildcard :8080 would
    take port 8080 from every pod IP), so liveness moves to 127.0.0.1 and the operator's
    own metrics (0.0.0.0 only) are off unless GANTRY_METRICS_PORT is set."""
    return {
        "GANTRY_TRITON_BACKENDS": "python",
        "GANTRY_API_URL": url,
        "GANTRY_LIVENESS": f"http://127.0.0.1:{_free_local_port()}/healthz",
        "GANTRY_METRICS_PORT": "0",
    }


def crd_documents(crd_dir: Path = CRD_DIR) -> list[dict[str, Any]]:
    docs: list[dict[str, Any]] = []
    for path in sorted(crd_dir.glob("*.yaml")) if crd_dir.is_dir() else []:
        for doc in yaml.safe_load_all(path.read_text()):
            if isinstance(doc, dict) and doc.get("kind") == "CustomResourceDefinition":
                docs.append(doc)
    return docs


async def apply_crds(
    client: APIClient, docs: list[dict[str, Any]], timeout: float = 30
) -> list[str]:
    """Create (or replace) each CRD and wait until it is Established; their names."""
    names = []
    for doc in docs:
        name = doc["metadata"]["name"]
        try:
            await client.create(CRDS, None, doc)
        except APIError as exc:
            if exc.status != 409:
                raise
            current = await client.get(CRDS, None, name)
            body = {
                **doc,
                "metadata": {
                    **doc["metadata"],
                    "resourceVersion": current["metadata"]["resourceVersion"],
                },
            }
            await client.replace(CRDS, None, name, body)
        names.append(name)
    deadline = asyncio.get_running_loop().time() + timeout
    for name in names:
        while True:
            crd = await client.get(CRDS, None, name)
            conditions = (crd.get("status") or {}).get("conditions") or []
            if any(
                c.get("type") == "Established" and c.get("status") == "True" for c in conditions
            ):
                break
            if asyncio.get_running_loop().time() > deadline:
                raise TimeoutError(f"CRD {name} did not become Established")
            await asyncio.sleep(0.1)
    return names


def _kill_group(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, sig)


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
    ) -> None:
        self.state_dir = Path(state_dir or Path.cwd() / ".gantry" / "dev").resolve()
        self.kubeconfig = (
            Path(kubeconfig).resolve() if kubeconfig else self.state_dir / "kubeconfig"
        )
        self.gpus = gpus
        self.cpu = cpu
        self.memory = memory
        self.operator = operator
        self.backoff_base = backoff_base
        self.port = port
        self.crd_dir = crd_dir
        self.url = ""
        self.crds: list[str] = []
        self.operator_pid: int | None = None
        self.operator_log = self.state_dir / "operator.log"
        self.agent: NodeAgent | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._stop: asyncio.Event | None = None
        self._ready = threading.Event()
        self._error: BaseException | None = None
        self._stop_requested = False

    # ---- the cluster itself (one event loop) ------------------------------------------

    def capacity(self) -> NodeCapacity:
        from .agent.quantity import parse_quantity

        host = host_capacity(self.gpus)
        return NodeCapacity(
            cpu=parse_quantity(self.cpu) if self.cpu else host.cpu,
            memory=parse_quantity(self.memory) if self.memory else host.memory,
            gpus=self.gpus,
        )

    async def serve(
        self, on_ready: Callable[[DevCluster], Awaitable[None] | None] | None = None
    ) -> None:
        """Run until `request_stop()`; every process started is stopped on the way out."""
        from .apiserver import running_apiserver, write_kubeconfig

        self.state_dir.mkdir(parents=True, exist_ok=True)
        self._loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        if self._stop_requested:
            self._stop.set()
        operator = None
        async with running_apiserver(port=self.port, state_dir=self.state_dir) as server:
            self.url = server.url
            self.kubeconfig.parent.mkdir(parents=True, exist_ok=True)
            write_kubeconfig(self.kubeconfig, server.url)
            client = APIClient(server.url)
            try:
                self.crds = await apply_crds(client, crd_documents(self.crd_dir))
            finally:
                await client.close()
            logs_root = getattr(server, "logs_root", None) or self.state_dir / "logs"
            self.agent = NodeAgent(
                AgentConfig(
                    server=server.url,
                    state_dir=self.state_dir,
                    logs_root=Path(logs_root),
                    capacity=self.capacity(),
                    backoff_base=self.backoff_base,
                )
            )
            await self.agent.start()
            try:
                if self.operator:
                    operator = await self._start_operator()
                self._ready.set()
                if on_ready is not None:
                    result = on_ready(self)
                    if result is not None:
                        await result
                await self._stop.wait()
            finally:
                if operator is not None:
                    await self._stop_operator(operator)
                await self.agent.stop()

    async def _start_operator(self) -> asyncio.subprocess.Process | None:
        if not operator_available():
            log.warning("gantry.controller is not importable: running without the operator")
            self.operator = False
            return None
        env = {**operator_defaults(self.url), **os.environ, "KUBECONFIG": str(self.kubeconfig)}
        with open(self.operator_log, "ab") as out:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "gantry.controller",
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=out, env=env,
                start_new_session=True,
            )  # fmt: skip
        self.operator_pid = proc.pid
        return proc

    async def _stop_operator(self, proc: asyncio.subprocess.Process) -> None:
        _kill_group(proc.pid, signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)
        _kill_group(proc.pid, signal.SIGKILL)
        await proc.wait()

    def request_stop(self) -> None:
        """Ask `serve` to stop (from any thread or a signal handler)."""
        self._stop_requested = True
        if self._loop is not None and self._stop is not None:
            self._loop.call_soon_threadsafe(self._stop.set)

    # ---- synchronous use ------------------------------------------------------------

    def start(
        self, operator: bool | None = None, gpus: int | None = None, timeout: float = 60
    ) -> DevCluster:
        """Start in a background thread and return once the node is Ready."""
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

    def stop(self, timeout: float = 60) -> None:
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
        """A `kubernetes` client ApiClient for this cluster."""
        from kubernetes import config

        client: ApiClient = config.new_client_from_config(  # type: ignore[no-untyped-call]
            config_file=str(self.kubeconfig)
        )
        return client
