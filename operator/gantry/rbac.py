"""The operator's Kubernetes API allow-list: every (apiGroup, resource, verbs) it may use.

This table is the single source of the operator's permissions. The Helm chart renders its
ClusterRole/Roles from `charts/gantry/files/rbac-rules.yaml`, which is written from
`RULES` by `python -m gantry.rbac FILE` (`scripts/sync-chart-crds.sh`), and a test renders
the chart and checks the granted rules equal these exactly. Code that calls a new API must
add its rule here, with the reason.

Scopes:
- `cluster`: cluster-scoped resources (CRDs, namespaces, cluster peerings): always in a
  ClusterRole;
- `namespace`: namespaced resources: in the ClusterRole when the operator watches the whole
  cluster, else in one Role per watched namespace.

Features: `always`, or one of the two kopf peering modes, needed only when several replicas
share the work: `clusterwide-peering` (a ClusterKopfPeering, when the whole cluster is
watched) or `namespaced-peering` (a KopfPeering in each watched namespace).

Secrets are deliberately absent: pods reference them through `secretKeyRef`, so the operator
never reads a secret's value.
"""

from __future__ import annotations

import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml

Scope = Literal["cluster", "namespace"]
Feature = Literal["always", "clusterwide-peering", "namespaced-peering"]

# A child kind: the watch cache lists and watches it (the reconcilers never GET it), and
# children are created, then server-side applied (a patch) when they differ.
_CHILD = ("list", "watch", "create", "patch")


@dataclass(frozen=True)
class Rule:
    """One permission: `verbs` on `resource` of `api_group` ("" is the core group)."""

    api_group: str
    resource: str
    verbs: tuple[str, ...]
    why: str
    scope: Scope = "namespace"
    feature: Feature = "always"


RULES: tuple[Rule, ...] = (
    # --- framework (kopf) ---------------------------------------------------------------
    Rule(
        "apiextensions.k8s.io",
        "customresourcedefinitions",
        ("list", "watch"),
        "kopf discovers the served resources and follows CRDs being added or removed",
        scope="cluster",
    ),
    Rule(
        "",
        "namespaces",
        ("list", "watch"),
        "kopf resolves watchNamespaces (names or globs) against the namespaces that exist",
        scope="cluster",
    ),
    Rule(
        "kopf.dev",
        "clusterkopfpeerings",
        ("get", "list", "watch", "patch"),
        "cluster-wide HA: replicas announce themselves and pause while a peer is active",
        scope="cluster",
        feature="clusterwide-peering",
    ),
    Rule(
        "kopf.dev",
        "kopfpeerings",
        ("get", "list", "watch", "patch"),
        "namespaced HA: the same peering, one object per watched namespace",
        feature="namespaced-peering",
    ),
    Rule(
        "",
        "events",
        ("create", "list"),
        "kopf and the reconcilers post Events for every phase transition; a TrainingJob "
        "whose Job has no pods reads that Job's FailedCreate Events (quota, admission)",
    ),
    # --- Gantry's own resources ---------------------------------------------------------
    Rule(
        "gantry.dev",
        "trainingjobs",
        ("get", "list", "watch", "patch", "delete"),
        "kopf watches them (watch cache) and patches finalizers/annotations; the reconciler "
        "deletes one after ttlSecondsAfterFinished; the trainer Role grants get",
    ),
    Rule(
        "gantry.dev",
        "trainingjobs/status",
        ("get", "patch"),
        "phase, conditions and the model report; the trainer Role grants get/patch on it, "
        "and RBAC lets a Role grant only what its creator holds (no escalate)",
    ),
    Rule(
        "gantry.dev",
        "inferenceservices",
        ("get", "list", "watch", "patch", "delete"),
        "kopf watches them (watch cache) and patches finalizers/annotations; the uninstall "
        "hook deletes them while the operator still runs",
    ),
    Rule(
        "gantry.dev",
        "inferenceservices/status",
        ("patch",),
        "phase, conditions, endpoints, the model report and the autoscaler's view",
    ),
    # --- children of a TrainingJob and an InferenceService --------------------------------
    Rule(
        "batch",
        "jobs",
        ("get", "list", "watch", "create", "patch", "delete"),
        "one Indexed Job per training attempt (suspend toggled by patch, old attempts "
        "deleted) and the optimize Jobs; watch cache; get: a lost worker is noted on its Job",
    ),
    Rule(
        "",
        "pods",
        ("list", "watch"),
        "watch cache of worker, optimize and Triton pods: states, readiness, termination "
        "messages (model/optimize reports), a worker deleted mid-run",
    ),
    Rule(
        "",
        "pods/log",
        ("get",),
        "the failing worker's last log lines go into the Failed condition",
    ),
    Rule(
        "",
        "services",
        _CHILD,
        "headless rendezvous Service of a TrainingJob; Triton and headless Services",
    ),
    Rule(
        "",
        "serviceaccounts",
        _CHILD,
        "<job>-trainer identity, so workers can report progress and nothing else",
    ),
    Rule(
        "rbac.authorization.k8s.io",
        "roles",
        _CHILD,
        "the trainer Role: get/patch on its own trainingjobs/status (resourceNames)",
    ),
    Rule(
        "rbac.authorization.k8s.io",
        "rolebindings",
        _CHILD,
        "binds the trainer Role to <job>-trainer",
    ),
    Rule(
        "apps",
        "deployments",
        _CHILD,
        "the Triton Deployment; the built-in autoscaler patches its replicas",
    ),
    Rule(
        "",
        "persistentvolumeclaims",
        ("list", "watch", "create"),
        "watch cache of claim names (a service may wait for its model's claim); the default "
        "model-repository claim is created when absent",
    ),
    Rule(
        "policy",
        "poddisruptionbudgets",
        (*_CHILD, "delete"),
        "keeps Triton serving through node drains; removed when replicas drop to one",
    ),
    Rule(
        "autoscaling",
        "horizontalpodautoscalers",
        (*_CHILD, "delete"),
        "autoscaling mode hpa: an HPA on prometheus-adapter metrics; removed in other modes",
    ),
    Rule(
        "keda.sh",
        "scaledobjects",
        ("get", "create", "patch", "delete"),
        "autoscaling mode keda: a ScaledObject with Prometheus triggers; removed otherwise",
    ),
)


def enabled(rule: Rule, *, clusterwide: bool, peering: bool) -> bool:
    """Whether an installation in this mode needs `rule` at all."""
    if rule.feature == "always":
        return True
    if not peering:
        return False
    return (rule.feature == "clusterwide-peering") == clusterwide


def grants(*, clusterwide: bool, peering: bool) -> tuple[tuple[Rule, ...], tuple[Rule, ...]]:
    """(ClusterRole rules, rules of the Role in each watched namespace) for one mode.

    Watching the whole cluster puts everything in the ClusterRole; a namespace list keeps
    only cluster-scoped discovery there and grants the rest namespace by namespace.
    """
    needed = tuple(r for r in RULES if enabled(r, clusterwide=clusterwide, peering=peering))
    if clusterwide:
        return needed, ()
    return (
        tuple(r for r in needed if r.scope == "cluster"),
        tuple(r for r in needed if r.scope == "namespace"),
    )


def policy_rules(selected: Iterable[Rule]) -> list[dict[str, Any]]:
    """Kubernetes PolicyRules, one per resource, so each grant stays reviewable."""
    return [
        {"apiGroups": [r.api_group], "resources": [r.resource], "verbs": list(r.verbs)}
        for r in selected
    ]


def chart_document() -> dict[str, Any]:
    """The data file the Helm chart renders its roles from."""
    return {
        "rules": [
            {
                "apiGroup": r.api_group,
                "resource": r.resource,
                "verbs": list(r.verbs),
                "scope": r.scope,
                "feature": r.feature,
                "why": r.why,
            }
            for r in RULES
        ]
    }


def render_chart_file() -> str:
    header = "# Generated from gantry.rbac.RULES by scripts/sync-chart-crds.sh. Do not edit.\n"
    return header + yaml.safe_dump(chart_document(), sort_keys=False, width=100)


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print("usage: python -m gantry.rbac OUTPUT.yaml", file=sys.stderr)
        return 2
    Path(argv[0]).write_text(render_chart_file(), encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
