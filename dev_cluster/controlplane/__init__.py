"""A real Kubernetes control plane for the dev cluster: etcd, kube-apiserver,
kube-controller-manager and kube-scheduler, built from Kubernetes' own Go modules
(`dev_cluster/k8s`, `make tools`) and run as local processes with generated TLS."""

from .kubeconfig import write_kubeconfig
from .launcher import ControlPlane, ControlPlaneError, Ports, binaries_available, find_binary
from .pki import PKI, ClientIdentity, node_identity

__all__ = [
    "PKI",
    "ClientIdentity",
    "ControlPlane",
    "ControlPlaneError",
    "Ports",
    "binaries_available",
    "find_binary",
    "node_identity",
    "write_kubeconfig",
]
