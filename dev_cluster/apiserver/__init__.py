"""An emulated Kubernetes API server for Gantry's embedded dev cluster.

kopf, the official ``kubernetes`` client and kubectl 1.33 talk to it as to a real
kube-apiserver for everything Gantry does: discovery, CRUD on built-in kinds and on
every CRD registered at runtime, the three patch formats plus server-side apply,
watches resumable by resourceVersion, ``status``/``scale``/``log`` subresources,
finalizers, ownerReference garbage collection, namespace and CRD cleanup, and CRD
structural-schema + CEL validation with the real server's error messages.

Why our own emulator rather than kmock 0.8 (the kopf author's mock server), measured
on our machines: kmock's ``KubernetesEmulator`` does not stamp resourceVersion, uid or
creationTimestamp (kopf's JSON patches then fail), answers 500 where the API answers
422, ignores ``resourceVersion`` on watch (replays everything), keeps status merged into
the object, fails on ``GET /api/v1/namespaces`` and has no server command. It is also
slow: ~80 creates/s falling to ~8/s by 2,000 objects, where a focused in-memory aiohttp
emulator took ~3,850 creates/s. ``bench/apiserver.py`` prints this server's figures.

Layout (one job per module): ``store`` (objects, global resourceVersion, history,
watch fan-out, persistence), ``engine`` (API semantics without HTTP), ``gc`` (garbage
collector, namespace and CRD cleanup), ``validation``/``schema``/``cel_rules``
(admission), ``patching``, ``selectors``, ``discovery``, ``openapi``, ``routing``,
``watch``, ``app`` (aiohttp handlers), ``server`` (lifecycle), ``logs`` (pod log files),
``kubeconfig``, ``testing`` (threaded server), ``cli``.

Differences from a real cluster, on purpose or not yet done:

* Plain HTTP, no authentication: bearer tokens are accepted and ignored; RBAC objects
  are stored but **RBAC is not enforced**; no admission webhooks, quotas or limit ranges.
* Server-side apply is create-or-merge (strategic merge for built-in kinds, JSON merge
  for custom resources) without field ownership: ``managedFields`` are not tracked,
  conflicts are never reported and fields dropped from an applied manifest stay.
* No conversion between versions: a multi-version CRD (and HPAs, served as
  autoscaling/v1 and v2) serve the stored object under
  each version's apiVersion. ``events`` (core/v1) and ``events.k8s.io/v1`` events are
  stored separately.
* Built-in kinds are validated minimally (names, labels, containers, selectors, CRDs);
  immutable fields (e.g. a pod's spec) are not enforced. The OpenAPI v3 documents
  describe built-in kinds as free-form objects, so ``kubectl explain`` is useful for
  custom resources only; ``/openapi/v2`` is 404 (kubectl then computes strategic merge
  patches from its compiled-in types).
* kubectl: ``get`` gets server-side ``Table`` rows (CRD printer columns; pods,
  deployments, services, namespaces and jobs have their usual columns; other kinds show
  NAME and AGE). ``kubectl create configmap|secret|namespace|serviceaccount`` post
  protobuf, which is decoded for those kinds only: ``kubectl create deployment|job|...``
  fail with 415 (use ``kubectl apply -f`` instead). Aggregated discovery is not served
  (kubectl falls back to the legacy documents); CBOR bodies are refused with 415.
* No controllers besides the garbage collector and the namespace/CRD cleanup (the node
  agent runs pods); pods bound to a node and deleted with a grace period stay
  terminating until the agent deletes them with ``gracePeriodSeconds=0``.
* Container logs are files the node agent writes; see :mod:`.logs` for the layout.
"""

from __future__ import annotations

from .kubeconfig import write_kubeconfig
from .logs import log_path
from .server import APIServer, running_apiserver

__all__ = ["APIServer", "log_path", "running_apiserver", "write_kubeconfig"]
