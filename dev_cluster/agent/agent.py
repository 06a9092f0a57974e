"""The node agent: one Node, the kubelet, and the controllers Gantry relies on.

Everything goes through the HTTP API (list + watch with resourceVersion resume, and
writes), as a kubelet and controller-manager would on a real cluster.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from . import api as k8s
from .api import APIClient, APIError
from .container import Backoff
from .controllers import control_loop
from .deployments import DeploymentController, ReplicaSetController
from .dns import HostsWriter
from .endpoints import EndpointsController
from .informer import Informer, Trigger
from .jobs import JobController
from .kubelet import Kubelet, KubeletConfig
from .node import NODE_NAME, NodeCapacity, host_capacity, node_object, node_status
from .pdb import DisruptionController
from .pvc import ClaimBinder
from .scheduling import Scheduler

log = logging.getLogger(__name__)


@dataclass
class AgentConfig:
    server: str
    state_dir: Path
    logs_root: Path | None = None
    capacity: NodeCapacity = field(default_factory=host_capacity)
    node_name: str = NODE_NAME
    backoff_base: float = 10.0
    backoff_cap: float = 300.0
    resync: float = 1.0


class NodeAgent:
    """Run with `await agent.run()`; cancel the task (or call `stop`) to shut down."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.client = APIClient(config.server)
        c = self.client
        self.pods = Informer(c, k8s.PODS)
        self.nodes = Informer(c, k8s.NODES)
        self.services = Informer(c, k8s.SERVICES)
        self.slices = Informer(c, k8s.ENDPOINTSLICES)
        self.configmaps = Informer(c, k8s.CONFIGMAPS)
        self.secrets = Informer(c, k8s.SECRETS)
        self.pvcs = Informer(c, k8s.PVCS)
        self.jobs = Informer(c, k8s.JOBS)
        self.deployments = Informer(c, k8s.DEPLOYMENTS)
        self.replicasets = Informer(c, k8s.REPLICASETS)
        self.pdbs = Informer(c, k8s.PDBS)
        self.informers = [
            self.pods, self.nodes, self.services, self.slices, self.configmaps, self.secrets,
            self.pvcs, self.jobs, self.deployments, self.replicasets, self.pdbs,
        ]  # fmt: skip
        self.hosts_trigger = Trigger()
        self.kubelet = Kubelet(
            c,
            KubeletConfig(
                node_name=config.node_name,
                state_dir=config.state_dir,
                logs_root=config.logs_root or config.state_dir / "logs",
                api_server=config.server,
                backoff=Backoff(config.backoff_base, config.backoff_cap),
            ),
            self.pods,
            self.configmaps,
            self.secrets,
            self.pvcs,
            self.hosts_trigger,
        )
        self.hosts = HostsWriter(
            self.services, self.slices, self.pods, self.kubelet.running, config.state_dir / "hosts"
        )
        self.kubelet.render_hosts = self.hosts.render
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()

    async def register_node(self) -> None:
        """Create (or refresh) the Node and post its status; repeated as a heartbeat."""
        cap = self.config.capacity
        name = self.config.node_name
        try:
            node = await self.client.get(k8s.NODES, None, name)
        except APIError as exc:
            if exc.status != 404:
                raise
            node = await self.client.create(k8s.NODES, None, node_object(name, cap))
        labels = node_object(name, cap)["metadata"]["labels"]
        if any((node["metadata"].get("labels") or {}).get(k) != v for k, v in labels.items()):
            node = await self.client.patch(k8s.NODES, None, name, {"metadata": {"labels": labels}})
        status = node_status(cap, node.get("status"))
        self.nodes.upsert(
            await self.client.patch(k8s.NODES, None, name, {"status": status}, sub="status")
        )

    async def _heartbeat(self) -> None:
        while True:
            await asyncio.sleep(20)
            with contextlib.suppress(APIError, aiohttp.ClientError, OSError):
                await self.register_node()

    def _loop(
        self,
        name: str,
        reconcile: Callable[[], Awaitable[None]],
        *sources: Informer,
        trigger: Trigger | None = None,
    ) -> None:
        trig = trigger or Trigger()
        for s in sources:
            s.subscribe(trig)
        self._tasks.append(
            asyncio.create_task(control_loop(name, trig, reconcile, self.config.resync))
        )

    async def start(self) -> None:
        self.config.state_dir.mkdir(parents=True, exist_ok=True)
        leftovers = self.kubelet.registry.reap_leftovers()
        if leftovers:
            log.warning("stopped %d container(s) left running by an earlier agent", len(leftovers))
        for _ in range(100):
            try:
                await self.register_node()
                break
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.1)
        else:
            await self.register_node()
        self._tasks.extend(asyncio.create_task(i.run()) for i in self.informers)
        await asyncio.gather(*(i.synced.wait() for i in self.informers))

        async def kubelet() -> None:
            self.kubelet.reconcile()

        sched = Scheduler(self.client, self.pods, self.nodes, self.config.node_name)
        self._loop("scheduler", sched.reconcile, self.pods, self.nodes)
        self._loop("kubelet", kubelet, self.pods)
        self._loop(
            "pvc", ClaimBinder(self.client, self.pvcs, self.config.state_dir).reconcile, self.pvcs
        )
        self._loop(
            "endpoints",
            EndpointsController(self.client, self.services, self.pods, self.slices).reconcile,
            self.services,
            self.pods,
            self.slices,
        )
        self._loop(
            "dns",
            self.hosts.reconcile,
            self.services,
            self.slices,
            self.pods,
            trigger=self.hosts_trigger,
        )
        self._loop(
            "jobs", JobController(self.client, self.jobs, self.pods).reconcile, self.jobs, self.pods
        )
        self._loop(
            "replicasets",
            ReplicaSetController(self.client, self.replicasets, self.pods).reconcile,
            self.replicasets,
            self.pods,
        )
        self._loop(
            "deployments",
            DeploymentController(
                self.client, self.deployments, self.replicasets, self.pods
            ).reconcile,
            self.deployments,
            self.replicasets,
            self.pods,
        )
        self._loop(
            "pdb",
            DisruptionController(self.client, self.pdbs, self.pods).reconcile,
            self.pdbs,
            self.pods,
        )
        self._tasks.append(asyncio.create_task(self._heartbeat()))
        self.ready.set()

    async def stop(self) -> None:
        """Stop every container first (nothing may outlive the agent), then the loops."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.kubelet.shutdown()
        await self.client.close()

    async def run(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()
