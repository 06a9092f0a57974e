"""The dev cluster's node agent: a kubelet and the controllers Gantry relies on.

It runs the pods of an (emulated or real) Kubernetes API as local processes on one node,
`dev-node`: a scheduler, the kubelet (containers as processes with private mounts,
probes, restarts, logs, graceful deletion), per-pod DNS through hosts files, and the
Job, Deployment/ReplicaSet, EndpointSlice, PVC and PodDisruptionBudget controllers.
`python -m dev_cluster.agent --kubeconfig PATH --state-dir DIR [--gpus N]` runs it alone.

Known differences from a real node: no container images (see `images`), no network
namespace (pods share the host network; each binds its own 127.0.x.y address), no
cgroup limits (requests/limits only matter to scheduling), no kube-proxy (ClusterIPs
are not routable: names resolve to pod IPs, see `hosts`), mount points missing on the
host are created there as empty directories or files.
"""

from .agent import AgentConfig, NodeAgent
from .node import NODE_NAME, NodeCapacity, host_capacity

__all__ = ["NODE_NAME", "AgentConfig", "NodeAgent", "NodeCapacity", "host_capacity"]
