"""The dev cluster's node agent: the kubelet of one node, `dev-node`.

It runs the pods kube-scheduler binds to the node as local processes (private mounts,
probes, restarts, logs, graceful deletion), reports pod and node status, keeps the node's
Lease fresh, mounts projected service-account tokens from the TokenRequest API, serves
the kubelet API that `kubectl logs` reaches through kube-apiserver, writes per-pod hosts
files for service names, and provisions directory-backed volumes for claims.

Known differences from a real node: no container images (see `images`; an image whose
registry host is under a reserved TLD such as `.invalid` fails its pull as a kubelet's
does: ErrImagePull, then ImagePullBackOff, the pod Pending), no network
namespace (pods share the host network; each binds its own 127.0.x.y address), no
cgroup limits (requests only matter to the scheduler), no kube-proxy (ClusterIPs are not
routable: names resolve to pod IPs, see `hosts`), no exec/attach/port-forward, and mount
points missing on the host are created there as empty directories or files.
"""

from .agent import AgentConfig, NodeAgent
from .node import NODE_NAME, NodeCapacity, host_capacity

__all__ = ["NODE_NAME", "AgentConfig", "NodeAgent", "NodeCapacity", "host_capacity"]
