"""The chart grants exactly gantry.rbac's rules: no more, no less, no wildcard, no Secrets."""

from __future__ import annotations

from typing import Any

import pytest
from chart_testkit import NAMESPACE, Render, of_kind, one

from gantry import rbac

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)

MODES = {
    "clusterwide": {},
    "clusterwide-ha": {"replicaCount": 2},
    "namespaces": {"config": {"watchNamespaces": ["ml", "team-a"]}},
    "namespaces-ha": {"replicaCount": 2, "config": {"watchNamespaces": ["ml", "team-a"]}},
}


def flatten(policy_rules: list[dict[str, Any]]) -> set[Grant]:
    grants: set[Grant] = set()
    for rule in policy_rules:
        assert set(rule) <= {"apiGroups", "resources", "verbs"}, rule
        grants |= {
            (group, resource, verb)
            for group in rule["apiGroups"]
            for resource in rule["resources"]
            for verb in rule["verbs"]
        }
    return grants


def expected(rules: tuple[rbac.Rule, ...]) -> set[Grant]:
    return flatten(rbac.policy_rules(rules))


@pytest.mark.parametrize("mode", sorted(MODES))
def test_granted_rules_equal_the_allow_list(render: Render, mode: str) -> None:
    values: dict[str, Any] = MODES[mode]
    docs = render(values)
    namespaces = values.get("config", {}).get("watchNamespaces", [])
    cluster_rules, namespace_rules = rbac.grants(
        clusterwide=not namespaces, peering=values.get("replicaCount", 1) > 1
    )
    assert flatten(one(docs, "ClusterRole")["rules"]) == expected(cluster_rules)
    roles = of_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(namespaces)
    for role in roles:
        assert flatten(role["rules"]) == expected(namespace_rules)
    # One grant per resource keeps every rule reviewable.
    for rule in one(docs, "ClusterRole")["rules"] + [r for role in roles for r in role["rules"]]:
        assert len(rule["resources"]) == 1


@pytest.mark.parametrize("mode", sorted(MODES))
def test_bindings_give_the_roles_to_the_operator_account(render: Render, mode: str) -> None:
    docs = render(MODES[mode])
    account = one(docs, "ServiceAccount")["metadata"]["name"]
    deployment = one(docs, "Deployment")
    assert deployment["spec"]["template"]["spec"]["serviceAccountName"] == account
    subject = {"kind": "ServiceAccount", "name": account, "namespace": NAMESPACE}
    cluster_binding = one(docs, "ClusterRoleBinding")
    assert cluster_binding["subjects"] == [subject]
    assert cluster_binding["roleRef"]["name"] == one(docs, "ClusterRole")["metadata"]["name"]
    role_bindings = of_kind(docs, "RoleBinding")
    assert len(role_bindings) == len(of_kind(docs, "Role"))
    for binding in role_bindings:
        assert binding["subjects"] == [subject]
        assert binding["roleRef"]["kind"] == "Role"


@pytest.mark.parametrize("mode", sorted(MODES))
def test_no_rule_uses_a_wildcard_or_touches_secrets(render: Render, mode: str) -> None:
    docs = render(MODES[mode])
    for role in of_kind(docs, "ClusterRole") + of_kind(docs, "Role"):
        for group, resource, verb in flatten(role["rules"]):
            assert "*" not in (group + resource + verb)
            assert resource != "secrets"
            assert verb not in {"bind", "escalate", "impersonate"}


def test_the_allow_list_itself_is_least_privilege() -> None:
    seen: set[tuple[str, str]] = set()
    for rule in rbac.RULES:
        assert "*" not in rule.api_group + rule.resource + "".join(rule.verbs)
        assert rule.resource != "secrets"
        assert rule.verbs and len(set(rule.verbs)) == len(rule.verbs)
        assert rule.why
        assert (rule.api_group, rule.resource) not in seen, "one rule per resource"
        seen.add((rule.api_group, rule.resource))


def test_the_operator_holds_what_it_grants_to_trainers() -> None:
    # RBAC refuses to create a Role granting more than its creator holds (no `escalate`).
    from gantry.trainingjob.children import trainer_rbac

    (role,) = [o for o in trainer_rbac("digits-cnn") if o["kind"] == "Role"]
    granted = flatten([{k: v for k, v in r.items() if k != "resourceNames"} for r in role["rules"]])
    assert ("gantry.dev", "trainingjobs/status", "patch") in granted
    for clusterwide in (True, False):
        cluster_rules, namespace_rules = rbac.grants(clusterwide=clusterwide, peering=False)
        assert granted <= expected(cluster_rules + namespace_rules)


def test_disabling_rbac_renders_no_roles(render: Render) -> None:
    docs = render({"rbac": {"create": False}, "config": {"watchNamespaces": ["ml"]}})
    for kind in ("ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"):
        assert of_kind(docs, kind) == []
