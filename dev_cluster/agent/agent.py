"""The node agent: the dev node's kubelet, its kubelet API, and a local volume provisioner.

Scheduling, Jobs, Deployments, EndpointSlices, garbage collection and the rest are done by
the real kube-scheduler and kube-controller-manager; the agent only plays the node. It
talks to kube-apiserver over HTTPS as `system:node:<node>` (the Node authorizer and the
NodeRestriction admission plugin apply), list+watching what a kubelet watches.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp

from . import api as k8s
from .api import APIClient, APIError
from .container import Backoff
from .controllers import control_loop
from .dns import HostsWriter
from .informer import Informer, Trigger
from .kubelet import Kubelet, KubeletConfig
from .kubelet_server import KubeletServer
from .lease import NodeLease
from .node import NODE_NAME, NodeCapacity, host_capacity, node_object, node_status
from .provisioner import LocalProvisioner

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
    tls: ssl.SSLContext | None = None
    """Client TLS towards the API server (CA + the node's client certificate)."""
    serving_tls: ssl.SSLContext | None = None
    """Server TLS of the kubelet API (`kubectl logs` reaches it through the API server)."""
    kubelet_port: int = 0
    kubelet_version: str = "v0.0.0"


class NodeAgent:
    """Run with `await agent.run()`; cancel the task (or call `stop`) to shut down."""

    def __init__(self, config: AgentConfig) -> None:
        self.config = config
        self.client = APIClient(config.server, config.tls)
        c = self.client
        # the Node authorizer lets a node list and watch only the pods bound to it
        self.pods = Informer(c, k8s.PODS, field_selector=f"spec.nodeName={config.node_name}")
        self.services = Informer(c, k8s.SERVICES)
        self.slices = Informer(c, k8s.ENDPOINTSLICES)
        self.configmaps = Informer(c, k8s.CONFIGMAPS)
        self.secrets = Informer(c, k8s.SECRETS)
        self.pvcs = Informer(c, k8s.PVCS)
        self.pvs = Informer(c, k8s.PVS)
        self.informers = [
            self.pods, self.services, self.slices, self.configmaps, self.secrets, self.pvcs,
            self.pvs,
        ]  # fmt: skip
        self.hosts_trigger = Trigger()
        logs_root = config.logs_root or config.state_dir / "logs"
        self.kubelet = Kubelet(
            c,
            KubeletConfig(
                node_name=config.node_name,
                state_dir=config.state_dir,
                logs_root=logs_root,
                api_server=config.server,
                backoff=Backoff(config.backoff_base, config.backoff_cap),
            ),
            self.pods,
            self.configmaps,
            self.secrets,
            self.pvcs,
            self.pvs,
            self.hosts_trigger,
        )
        self.hosts = HostsWriter(
            self.services, self.slices, self.pods, self.kubelet.running, config.state_dir / "hosts"
        )
        self.kubelet.render_hosts = self.hosts.render
        self.server = KubeletServer(self.pods, logs_root, config.serving_tls, config.kubelet_port)
        self.lease = NodeLease(c, config.node_name)
        self._tasks: list[asyncio.Task[None]] = []
        self.ready = asyncio.Event()

    async def register_node(self) -> None:
        """Create (or refresh) the Node and post its status."""
        cap = self.config.capacity
        name = self.config.node_name
        try:
            node = await self.client.get(k8s.NODES, None, name)
        except APIError as exc:
            if exc.status != 404:
                raise
            node = await self.client.create(k8s.NODES, None, node_object(name, cap))
        status = node_status(cap, node.get("status"), self.server.port, self.config.kubelet_version)
        await self.client.patch(k8s.NODES, None, name, {"status": status}, sub="status")

    async def _heartbeat(self) -> None:
        """Post the node status every minute (the Lease carries the 10 s heartbeat)."""
        while True:
            await asyncio.sleep(60)
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
        await self.server.start()
        for _ in range(100):
            try:
                await self.register_node()
                break
            except (aiohttp.ClientError, OSError):
                await asyncio.sleep(0.1)
        else:
            await self.register_node()
        await self.lease.renew()
        self._tasks.extend(asyncio.create_task(i.run()) for i in self.informers)
        await asyncio.gather(*(i.synced.wait() for i in self.informers))

        async def kubelet() -> None:
            self.kubelet.reconcile()

        self._loop("kubelet", kubelet, self.pods, self.pvcs, self.pvs)
        self._loop(
            "dns",
            self.hosts.reconcile,
            self.services,
            self.slices,
            self.pods,
            trigger=self.hosts_trigger,
        )
        self._tasks.append(asyncio.create_task(self._heartbeat()))
        self._tasks.append(asyncio.create_task(self.lease.run()))
        self.ready.set()

    async def stop(self) -> None:
        """Stop every container first (nothing may outlive the agent), then the loops."""
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._tasks.clear()
        await self.kubelet.shutdown()
        await self.server.stop()
        await self.client.close()

    async def run(self) -> None:
        await self.start()
        try:
            await asyncio.Event().wait()
        finally:
            await self.stop()


class ProvisionerAgent:
    """The local-path provisioner, with its own identity (nodes may not create volumes)."""

    def __init__(self, server: str, tls: ssl.SSLContext | None, state_dir: Path) -> None:
        self.client = APIClient(server, tls)
        self.pvcs = Informer(self.client, k8s.PVCS)
        self.pvs = Informer(self.client, k8s.PVS)
        self.provisioner = LocalProvisioner(self.client, self.pvcs, self.pvs, state_dir)
        self._tasks: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(i.run()) for i in (self.pvcs, self.pvs)]
        await asyncio.gather(self.pvcs.synced.wait(), self.pvs.synced.wait())
        trigger = Trigger()
        self.pvcs.subscribe(trigger)
        self.pvs.subscribe(trigger)
        self._tasks.append(
            asyncio.create_task(control_loop("provisioner", trigger, self.provisioner.reconcile, 5))
        )

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        await self.client.close()
