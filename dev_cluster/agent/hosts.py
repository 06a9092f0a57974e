"""Service DNS for pods, as per-pod hosts files (the dev cluster has no kube-proxy/DNS).

Every pod gets its own hosts file, bind-mounted over `/etc/hosts`, listing:
- its own `hostname` (and `hostname.subdomain.ns.svc.cluster.local` when set);
- for each Service, `<svc>` (same namespace only, as the search path would),
  `<svc>.<ns>`, `<svc>.<ns>.svc`, `<svc>.<ns>.svc.cluster.local`:
  a ClusterIP Service resolves to ONE ready endpoint's pod IP (there is no kube-proxy,
  so the fake `spec.clusterIP` from 10.96.0.0/12 is not routable); a headless Service
  (`clusterIP: None`) resolves to every ready pod IP;
- `<hostname>.<subdomain>[.<ns>[.svc[.cluster.local]]]` for pods with hostname and
  subdomain when a Service named like the subdomain exists (ready pods only, unless the
  Service sets `publishNotReadyAddresses`).
The host side gets `<state>/hosts` with the fully-qualified names only; from the host,
reach services through pod IPs (`kubectl get pods -o wide`, EndpointSlices).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

Obj = dict[str, Any]
DOMAIN = "cluster.local"


@dataclass(frozen=True)
class PodAddress:
    namespace: str
    name: str
    ip: str
    ready: bool
    hostname: str
    subdomain: str


def pod_address(pod: Obj, ready: bool) -> PodAddress | None:
    meta, spec = pod.get("metadata") or {}, pod.get("spec") or {}
    ip = (pod.get("status") or {}).get("podIP")
    if not ip:
        return None
    return PodAddress(
        namespace=str(meta.get("namespace") or "default"),
        name=str(meta.get("name")),
        ip=str(ip),
        ready=ready,
        hostname=str(spec.get("hostname") or ""),
        subdomain=str(spec.get("subdomain") or ""),
    )


def service_records(
    services: Iterable[Obj],
    endpoints: dict[tuple[str, str], list[PodAddress]],
    pods: list[PodAddress],
) -> list[tuple[str, str, str]]:
    """(ip, fqdn-without-domain, namespace) records for every service and named pod."""
    records: list[tuple[str, str, str]] = []
    by_ns_sub: dict[tuple[str, str], list[PodAddress]] = {}
    for p in pods:
        if p.hostname and p.subdomain:
            by_ns_sub.setdefault((p.namespace, p.subdomain), []).append(p)
    for svc in sorted(
        services, key=lambda s: (s["metadata"].get("namespace", ""), s["metadata"]["name"])
    ):
        meta, spec = svc.get("metadata") or {}, svc.get("spec") or {}
        ns, name = str(meta.get("namespace") or "default"), str(meta.get("name"))
        publish_all = bool(spec.get("publishNotReadyAddresses"))
        members = sorted(endpoints.get((ns, name), []), key=lambda a: a.name)
        ready = [a for a in members if a.ready or publish_all]
        base = f"{name}.{ns}"
        if spec.get("type") == "ExternalName":
            continue
        if spec.get("clusterIP") == "None":
            records.extend((a.ip, base, ns) for a in ready)
        elif ready:
            records.append((ready[0].ip, base, ns))
        for p in sorted(by_ns_sub.get((ns, name), []), key=lambda a: a.name):
            if p.ready or publish_all:
                records.append((p.ip, f"{p.hostname}.{base}", ns))
    return records


def _names(base: str, record_ns: str, viewer_ns: str) -> list[str]:
    names = [base, f"{base}.svc", f"{base}.svc.{DOMAIN}"]
    short = base.rsplit(".", 1)[0]
    if record_ns == viewer_ns:
        names.insert(0, short)
    return names


def hosts_file(viewer: PodAddress | None, records: list[tuple[str, str, str]]) -> str:
    """The hosts file a pod (or, with viewer=None, the host) sees."""
    lines = ["127.0.0.1\tlocalhost", "::1\tlocalhost ip6-localhost ip6-loopback"]
    if viewer is not None:
        own = viewer.hostname or viewer.name
        if viewer.hostname and viewer.subdomain:
            fqdn = f"{viewer.hostname}.{viewer.subdomain}.{viewer.namespace}.svc.{DOMAIN}"
            lines.append(f"{viewer.ip}\t{fqdn}\t{own}")
        else:
            lines.append(f"{viewer.ip}\t{own}")
    for ip, base, ns in records:
        if viewer is None:
            names = [f"{base}.svc.{DOMAIN}", f"{base}.svc"]
        else:
            names = _names(base, ns, viewer.namespace)
        lines.append(ip + "\t" + " ".join(names))
    return "\n".join(lines) + "\n"


def write_in_place(path: Path, content: str) -> bool:
    """Rewrite the file's content in the same inode (bind mounts follow the inode)."""
    try:
        if path.read_text() == content:
            return False
    except FileNotFoundError:
        pass
    with open(path, "a+") as fh:
        fh.seek(0)
        fh.truncate()
        fh.write(content)
    return True
