"""Keeps every pod's hosts file (and `<state>/hosts`) in step with Services and endpoints."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from .hosts import PodAddress, hosts_file, pod_address, service_records, write_in_place
from .informer import Informer
from .podstatus import is_ready

Obj = dict[str, Any]


def selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    """A Service's equality-based selector matches these pod labels."""
    return all(labels.get(k) == v for k, v in selector.items())


class HostsWriter:
    def __init__(
        self,
        services: Informer,
        slices: Informer,
        pods: Informer,
        running: Callable[[], Iterable[tuple[PodAddress, Path]]],
        host_file: Path,
    ) -> None:
        self.services = services
        self.slices = slices
        self.pods = pods
        self.running = running
        self.host_file = host_file

    def records(self) -> list[tuple[str, str, str]]:
        addresses: dict[tuple[str, str], PodAddress] = {}
        labels: dict[tuple[str, str], dict[str, str]] = {}
        for pod in self.pods.items():
            addr = pod_address(pod, is_ready(pod) and not pod["metadata"].get("deletionTimestamp"))
            if addr is not None:
                addresses[(addr.namespace, addr.name)] = addr
                labels[(addr.namespace, addr.name)] = pod["metadata"].get("labels") or {}
        endpoints: dict[tuple[str, str], list[PodAddress]] = {}
        for s in self.slices.items():
            meta = s["metadata"]
            svc = (meta.get("labels") or {}).get("kubernetes.io/service-name")
            if not svc:
                continue
            ns = str(meta.get("namespace") or "default")
            members = endpoints.setdefault((ns, svc), [])
            for ep in s.get("endpoints") or []:
                ref = ep.get("targetRef") or {}
                known = addresses.get((ns, str(ref.get("name"))))
                ready = bool((ep.get("conditions") or {}).get("ready"))
                for ip in ep.get("addresses") or []:
                    members.append(
                        PodAddress(
                            ns,
                            str(ref.get("name") or ip),
                            ip,
                            ready,
                            known.hostname if known else "",
                            "",
                        )
                    )
        # A Service with a selector resolves to the pods it selects, read from the pods
        # themselves: where pod IPs are loopback addresses EndpointSlices refuse them (see
        # `ips`), and service names must work inside pods all the same.
        for svc in self.services.items():
            meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
            selector = spec.get("selector") or {}
            if not selector:
                continue
            ns = str(meta.get("namespace") or "default")
            endpoints[(ns, str(meta.get("name")))] = [
                addr
                for key, addr in addresses.items()
                if key[0] == ns and selects(selector, labels[key])
            ]
        return service_records(self.services.items(), endpoints, list(addresses.values()))

    def render(self, viewer: PodAddress) -> str:
        return hosts_file(viewer, self.records())

    async def reconcile(self) -> None:
        records = self.records()
        for viewer, path in self.running():
            path.parent.mkdir(parents=True, exist_ok=True)
            write_in_place(path, hosts_file(viewer, records))
        self.host_file.parent.mkdir(parents=True, exist_ok=True)
        write_in_place(self.host_file, hosts_file(None, records))
