"""Kubernetes kit shared by every Gantry reconciler.

Pure helpers (`conditions`, `ownership`, `quantity`, `children`' decisions) compute;
`client.KubeClient` and `events.event` do the I/O. Nothing is re-exported here, so a pure
module importing a helper never loads the Kubernetes client.
"""
