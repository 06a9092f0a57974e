"""The chart grants exactly gantry.rbac's rules: no more, no less, no wildcard, no Secrets."""

from __future__ import annotations

from typing import Any

import pytest
from chart_testkit import NAMESPACE, RELEASE, Render, of_kind, one

from gantry import rbac

Grant = tuple[str, str, str]  # (apiGroup, resource, verb)

MODES = {
    "clusterwide": {"clusterWide": True},
    "clusterwide-ha": {"clusterWide": True, "replicaCount": 2},
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


def operator_cluster_role(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The operator's ClusterRole (the release's full name), not the aggregated user roles."""
    (role,) = [r for r in of_kind(docs, "ClusterRole") if r["metadata"]["name"] == RELEASE]
    return role


@pytest.mark.parametrize("mode", sorted(MODES))
def test_granted_rules_equal_the_allow_list(render: Render, mode: str) -> None:
    values: dict[str, Any] = MODES[mode]
    docs = render(values)
    namespaces = values.get("config", {}).get("watchNamespaces", [])
    cluster_rules, namespace_rules = rbac.grants(
        clusterwide=not namespaces, peering=values.get("replicaCount", 1) > 1
    )
    assert flatten(operator_cluster_role(docs)["rules"]) == expected(cluster_rules)
    roles = of_kind(docs, "Role")
    assert sorted(r["metadata"]["namespace"] for r in roles) == sorted(namespaces)
    for role in roles:
        assert flatten(role["rules"]) == expected(namespace_rules)
    # One grant per resource keeps every rule reviewable.
    for rule in operator_cluster_role(docs)["rules"] + [r for role in roles for r in role["rules"]]:
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
    assert cluster_binding["roleRef"]["name"] == operator_cluster_role(docs)["metadata"]["name"]
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


# --- the user roles, aggregated into the built-in admin/edit/view ---------------------

EDIT_VERBS = {"create", "update", "patch", "delete", "deletecollection", "get", "list", "watch"}
READ_VERBS = {"get", "list", "watch"}
AGGREGATE = "rbac.authorization.k8s.io/aggregate-to-"


def aggregated_into(role: dict[str, Any]) -> set[str]:
    labels = role["metadata"]["labels"]
    return {k.removeprefix(AGGREGATE) for k in labels if k.startswith(AGGREGATE)}


def user_roles(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The ClusterRoles that Kubernetes aggregates into its built-in roles."""
    return {r["metadata"]["name"]: r for r in of_kind(docs, "ClusterRole") if aggregated_into(r)}


def test_user_roles_aggregate_into_the_builtin_roles(render: Render) -> None:
    roles = user_roles(render())
    assert set(roles) == {f"{RELEASE}-edit", f"{RELEASE}-view"}
    edit, view = roles[f"{RELEASE}-edit"], roles[f"{RELEASE}-view"]
    assert aggregated_into(edit) == {"edit", "admin"}
    assert aggregated_into(view) == {"view", "edit", "admin"}
    for role in (edit, view):
        assert all(v == "true" for k, v in role["metadata"]["labels"].items() if AGGREGATE in k)


def test_the_edit_role_writes_gantry_resources_but_never_their_status(render: Render) -> None:
    grants = flatten(user_roles(render())[f"{RELEASE}-edit"]["rules"])
    for resource in ("trainingjobs", "inferenceservices"):
        assert {v for g, r, v in grants if (g, r) == ("gantry.dev", resource)} == EDIT_VERBS
        status = {v for g, r, v in grants if (g, r) == ("gantry.dev", f"{resource}/status")}
        assert status == READ_VERBS  # the operator alone reports status
    scale = {v for g, r, v in grants if (g, r) == ("gantry.dev", "inferenceservices/scale")}
    assert scale == {"get", "update", "patch"}
    assert {g for g, _, _ in grants} == {"gantry.dev"}
    assert not any(r == "trainingjobs/scale" for _, r, _ in grants)  # no scale subresource


def test_the_view_role_only_reads(render: Render) -> None:
    grants = flatten(user_roles(render())[f"{RELEASE}-view"]["rules"])
    assert {v for _, _, v in grants} == READ_VERBS
    assert {(g, r) for g, r, _ in grants} == {
        ("gantry.dev", r)
        for r in (
            "trainingjobs",
            "trainingjobs/status",
            "inferenceservices",
            "inferenceservices/status",
            "inferenceservices/scale",
        )
    }


def test_user_roles_take_the_release_name_and_can_be_left_out(render: Render) -> None:
    named = user_roles(render({"fullnameOverride": "ml-gantry"}))
    assert set(named) == {"ml-gantry-edit", "ml-gantry-view"}
    without = render({"rbac": {"aggregateRoles": False}})
    assert user_roles(without) == {}
    assert [r["metadata"]["name"] for r in of_kind(without, "ClusterRole")] == [RELEASE]


def test_the_operator_role_is_aggregated_nowhere(render: Render) -> None:
    assert aggregated_into(operator_cluster_role(render())) == set()
