"""The chart's RBAC, enforced by a real kube-apiserver (`--authorization-mode=Node,RBAC`).

The chart's ServiceAccount, ClusterRoles, Roles and bindings (not the Deployment) go into
the session's control plane; `SubjectAccessReview`s then ask the API server itself:

- the operator's account may make every call `gantry.rbac.RULES` lists, in every mode;
- it may not read Secrets, write cluster-scoped objects outside the list, use a verb a rule
  does not list, or (namespace list mode) touch a namespace it does not watch;
- a namespace editor (built-in `edit`, which aggregates `<release>-edit`) may create
  TrainingJobs and InferenceServices; a namespace viewer (built-in `view`) may only read.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml
from chart_testkit import CHART, ROOT, documents, run_helm, write_values
from kubernetes import client
from kubernetes.client import ApiClient
from kubernetes.client.exceptions import ApiException

from gantry import rbac
from gantry.controller.connection import environment_configuration
from gantry.k8s.client import KubeClient
from gantry.k8s.errors import ApiError
from tests.conftest import api_client_for, wait_for

RBAC_KINDS = ("ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding")
# Verbs a rule may list; any of them a rule leaves out must be denied.
VERBS = ("get", "list", "watch", "create", "update", "patch", "delete", "deletecollection")
MODES: dict[str, dict[str, Any]] = {
    "clusterwide": {},
    "clusterwide-ha": {"replicaCount": 2},
    "namespaces": {"watch": 2},
    "namespaces-ha": {"watch": 2, "replicaCount": 2},
}

Check = tuple[str, str, str, str | None]  # (verb, apiGroup, resource[/subresource], namespace)


def _short_id() -> str:
    return uuid.uuid4().hex[:8]


# --- talking to the API server as admin ---------------------------------------------------


def _create_or_replace(api: ApiClient, doc: Mapping[str, Any]) -> None:
    """Create `doc`, or replace it when it exists (the control plane lives for the session)."""
    core, rbac_api = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    name, namespace = doc["metadata"]["name"], doc["metadata"].get("namespace")
    create: dict[str, Callable[[], object]] = {
        "Namespace": lambda: core.create_namespace(doc),
        "ServiceAccount": lambda: core.create_namespaced_service_account(namespace, doc),
        "ClusterRole": lambda: rbac_api.create_cluster_role(doc),
        "ClusterRoleBinding": lambda: rbac_api.create_cluster_role_binding(doc),
        "Role": lambda: rbac_api.create_namespaced_role(namespace, doc),
        "RoleBinding": lambda: rbac_api.create_namespaced_role_binding(namespace, doc),
    }
    replace: dict[str, Callable[[], object]] = {
        "Namespace": lambda: None,  # nothing of ours to update
        "ServiceAccount": lambda: core.replace_namespaced_service_account(name, namespace, doc),
        "ClusterRole": lambda: rbac_api.replace_cluster_role(name, doc),
        "ClusterRoleBinding": lambda: rbac_api.replace_cluster_role_binding(name, doc),
        "Role": lambda: rbac_api.replace_namespaced_role(name, namespace, doc),
        "RoleBinding": lambda: rbac_api.replace_namespaced_role_binding(name, namespace, doc),
    }
    try:
        create[doc["kind"]]()
    except ApiException as err:
        if err.status != 409:
            raise
        replace[doc["kind"]]()


def _delete_quietly(delete: Callable[[], object]) -> None:
    try:
        delete()
    except ApiException as err:
        if err.status != 404:
            raise


def _namespace(name: str) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}}


@dataclass(frozen=True)
class Subject:
    user: str
    groups: tuple[str, ...] = ("system:authenticated",)

    @classmethod
    def service_account(cls, namespace: str, name: str) -> Subject:
        return cls(
            f"system:serviceaccount:{namespace}:{name}",
            (
                "system:serviceaccounts",
                f"system:serviceaccounts:{namespace}",
                "system:authenticated",
            ),
        )


def allowed(api: ApiClient, subject: Subject, check: Check) -> bool:
    """The API server's own answer: may `subject` make this call?"""
    verb, group, resource, namespace = check
    name, _, subresource = resource.partition("/")
    attributes = {"verb": verb, "group": group, "resource": name}
    if subresource:
        attributes["subresource"] = subresource
    if namespace:
        attributes["namespace"] = namespace
    review = client.AuthorizationV1Api(api).create_subject_access_review(
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SubjectAccessReview",
            "spec": {
                "user": subject.user,
                "groups": list(subject.groups),
                "resourceAttributes": attributes,
            },
        }
    )
    return bool(review.status.allowed)


def refused(api: ApiClient, subject: Subject, checks: list[Check], *, want: bool) -> list[Check]:
    """The checks whose answer is not `want` (empty when the API server agrees with all)."""
    assert checks
    return [c for c in checks if allowed(api, subject, c) is not want]


# --- one installation of the chart's RBAC ---------------------------------------------------


@dataclass(frozen=True)
class Install:
    release: str
    namespace: str  # the release's
    account: str
    watched: tuple[str, ...]  # () = the whole cluster
    elsewhere: str  # a namespace holding workloads, watched only in whole-cluster mode
    peering: bool
    docs: tuple[dict[str, Any], ...]

    @property
    def operator(self) -> Subject:
        return Subject.service_account(self.namespace, self.account)

    @property
    def clusterwide(self) -> bool:
        return not self.watched


def render(
    release: str, namespace: str, values: Mapping[str, Any], tmp: Path
) -> list[dict[str, Any]]:
    helm = ROOT / ".tools" / "bin" / "helm"
    if not helm.is_file():
        pytest.fail("helm is not installed: run `make tools`")
    values_file = write_values(tmp / f"{release}.yaml", values)
    result = run_helm(
        str(helm),
        "template",
        release,
        str(CHART),
        "--namespace",
        namespace,
        "--values",
        str(values_file),
    )
    assert result.returncode == 0, result.stderr
    return documents(result.stdout)


def install(api: ApiClient, tmp: Path, mode: str) -> Install:
    spec = MODES[mode]
    suffix = _short_id()
    release, namespace = f"rbac-{suffix}", f"gantry-{suffix}"
    watched = tuple(f"ml-{i}-{suffix}" for i in range(spec.get("watch", 0)))
    elsewhere = f"elsewhere-{suffix}"
    values: dict[str, Any] = (
        {"config": {"watchNamespaces": list(watched)}} if watched else {"clusterWide": True}
    )
    if "replicaCount" in spec:
        values["replicaCount"] = spec["replicaCount"]
    docs = [d for d in render(release, namespace, values, tmp) if d["kind"] in RBAC_KINDS]
    for ns in (namespace, elsewhere, *watched):
        _create_or_replace(api, _namespace(ns))
    # Roles before the bindings that name them, as `helm install` orders them.
    for doc in sorted(docs, key=lambda d: RBAC_KINDS.index(d["kind"])):
        _create_or_replace(api, doc)
    (account,) = [d["metadata"]["name"] for d in docs if d["kind"] == "ServiceAccount"]
    result = Install(
        release=release,
        namespace=namespace,
        account=account,
        watched=watched,
        elsewhere=elsewhere,
        peering=spec.get("replicaCount", 1) > 1,
        docs=tuple(docs),
    )
    # The authorizer learns of new bindings through its own watch, a moment after they are
    # stored: wait until it answers for the ClusterRoleBinding and each RoleBinding.
    sentinels: list[Check] = [("list", "", "namespaces", None)]
    sentinels += [("create", "", "events", ns) for ns in watched]
    for check in sentinels:
        wait_for(lambda c=check: allowed(api, result.operator, c), 30, f"RBAC to grant {check}")
    return result


def uninstall(api: ApiClient, installed: Install) -> None:
    core, rbac_api = client.CoreV1Api(api), client.RbacAuthorizationV1Api(api)
    for doc in installed.docs:
        name = doc["metadata"]["name"]
        if doc["kind"] == "ClusterRole":
            _delete_quietly(lambda n=name: rbac_api.delete_cluster_role(n))
        elif doc["kind"] == "ClusterRoleBinding":
            _delete_quietly(lambda n=name: rbac_api.delete_cluster_role_binding(n))
    for ns in (installed.namespace, installed.elsewhere, *installed.watched):
        _delete_quietly(lambda n=ns: core.delete_namespace(n))


@pytest.fixture(scope="module", params=sorted(MODES))
def installed(
    request: pytest.FixtureRequest, admin_api: ApiClient, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Install]:
    result = install(admin_api, tmp_path_factory.mktemp("values"), request.param)
    yield result
    uninstall(admin_api, result)


def operator_checks(installed: Install) -> list[Check]:
    """Every call `gantry.rbac` lists, where the operator makes it in this mode."""
    cluster_rules, namespace_rules = rbac.grants(
        clusterwide=installed.clusterwide, peering=installed.peering
    )
    checks: list[Check] = []
    for rule in cluster_rules:
        places: tuple[str | None, ...] = (None,)
        if rule.scope == "namespace":  # whole-cluster mode: watches span every namespace
            places = (None, installed.elsewhere)
        checks += [
            (verb, rule.api_group, rule.resource, ns) for verb in rule.verbs for ns in places
        ]
    for rule in namespace_rules:
        checks += [
            (verb, rule.api_group, rule.resource, ns)
            for verb in rule.verbs
            for ns in installed.watched
        ]
    return checks


# --- (a) the operator may do all it needs ----------------------------------------------------


def test_the_operator_may_make_every_call_of_the_allow_list(
    admin_api: ApiClient, installed: Install
) -> None:
    checks = operator_checks(installed)
    assert refused(admin_api, installed.operator, checks, want=True) == []
    # Every rule that applies in this mode was asked about.
    asked = {(group, resource) for _, group, resource, _ in checks}
    expected = {
        (r.api_group, r.resource)
        for r in rbac.RULES
        if rbac.enabled(r, clusterwide=installed.clusterwide, peering=installed.peering)
    }
    assert asked == expected


def test_every_rule_is_checked_in_some_mode() -> None:
    covered = {
        r
        for clusterwide in (True, False)
        for peering in (True, False)
        for r in rbac.RULES
        if rbac.enabled(r, clusterwide=clusterwide, peering=peering)
    }
    assert covered == set(rbac.RULES)
    assert {(bool(MODES[m].get("watch")), "replicaCount" in MODES[m]) for m in MODES} == {
        (False, False),
        (False, True),
        (True, False),
        (True, True),
    }


# --- (b) and nothing else --------------------------------------------------------------------


def test_the_operator_never_reads_or_writes_secrets(
    admin_api: ApiClient, installed: Install
) -> None:
    places = (None, installed.namespace, installed.elsewhere, *installed.watched)
    checks: list[Check] = [
        (verb, "", "secrets", ns)
        for verb in ("get", "list", "watch", "create", "update", "patch")
        for ns in places
    ]
    assert refused(admin_api, installed.operator, checks, want=False) == []


def test_cluster_scoped_writes_outside_the_list_are_denied(
    admin_api: ApiClient, installed: Install
) -> None:
    checks: list[Check] = [
        ("create", "", "namespaces", None),
        ("delete", "", "namespaces", None),
        ("create", "rbac.authorization.k8s.io", "clusterroles", None),
        ("patch", "rbac.authorization.k8s.io", "clusterroles", None),
        ("escalate", "rbac.authorization.k8s.io", "clusterroles", None),
        ("create", "rbac.authorization.k8s.io", "clusterrolebindings", None),
        ("patch", "rbac.authorization.k8s.io", "clusterrolebindings", None),
        ("bind", "rbac.authorization.k8s.io", "clusterroles", None),
        ("create", "", "nodes", None),
        ("patch", "", "nodes", None),
        ("patch", "", "nodes/status", None),
        ("create", "", "persistentvolumes", None),
        ("delete", "", "persistentvolumes", None),
        ("create", "apiextensions.k8s.io", "customresourcedefinitions", None),
        ("patch", "apiextensions.k8s.io", "customresourcedefinitions", None),
        ("delete", "apiextensions.k8s.io", "customresourcedefinitions", None),
        ("impersonate", "", "users", None),
        ("impersonate", "", "serviceaccounts", None),
        ("create", "", "serviceaccounts/token", installed.namespace),
    ]
    assert refused(admin_api, installed.operator, checks, want=False) == []


def test_verbs_a_rule_leaves_out_are_denied(admin_api: ApiClient, installed: Install) -> None:
    granted = set(operator_checks(installed))
    checks = [
        (verb, group, resource, ns)
        for _, group, resource, ns in granted
        for verb in (*VERBS, "bind", "escalate")
        if (verb, group, resource, ns) not in granted
    ]
    assert refused(admin_api, installed.operator, sorted(set(checks), key=str), want=False) == []


def test_namespaces_not_watched_are_out_of_reach(admin_api: ApiClient, installed: Install) -> None:
    if installed.clusterwide:
        # watching the whole cluster: every namespace, including one created later, is in reach
        cluster_rules, _ = rbac.grants(clusterwide=True, peering=installed.peering)
        reach: list[Check] = [
            (verb, rule.api_group, rule.resource, installed.elsewhere)
            for rule in cluster_rules
            if rule.scope == "namespace"
            for verb in rule.verbs
        ]
        assert refused(admin_api, installed.operator, reach, want=True) == []
        return
    _, namespace_rules = rbac.grants(clusterwide=False, peering=installed.peering)
    checks: list[Check] = [
        (verb, rule.api_group, rule.resource, ns)
        for rule in namespace_rules
        for verb in rule.verbs
        for ns in (installed.elsewhere, installed.namespace, None)
    ]
    assert refused(admin_api, installed.operator, checks, want=False) == []


# --- the operator's account, logged in as in its pod ----------------------------------------


def test_the_operator_pod_logs_in_as_its_account(
    admin_api: ApiClient, installed: Install, control_plane: Any, tmp_path: Path
) -> None:
    """The in-pod login path (token + ca.crt over https) against the real server."""
    token = client.CoreV1Api(admin_api).create_namespaced_service_account_token(
        installed.account, installed.namespace, {"spec": {"expirationSeconds": 600}}
    )
    mount = tmp_path / "serviceaccount"
    mount.mkdir()
    (mount / "token").write_text(token.status.token)
    (mount / "ca.crt").write_bytes(Path(control_plane.control_plane.pki.ca.cert).read_bytes())
    (mount / "namespace").write_text(installed.namespace)
    port = control_plane.url.rsplit(":", 1)[1]
    env = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": port}
    kube = KubeClient(ApiClient(environment_configuration(env, mount)))
    try:
        place = installed.watched[0] if installed.watched else installed.elsewhere
        assert kube.list("v1", "pods", place) == []
        assert kube.list("batch/v1", "jobs", place) == []
        with pytest.raises(ApiError) as denied:
            kube.list("v1", "secrets", place)
        assert denied.value.status == 403
        review = kube.create(
            {
                "apiVersion": "authentication.k8s.io/v1",
                "kind": "SelfSubjectReview",
                "metadata": {"name": "whoami"},
            }
        )
        assert review["status"]["userInfo"]["username"] == installed.operator.user
    finally:
        kube.close()


# --- (c) users: a namespace's editors and viewers --------------------------------------------


@dataclass(frozen=True)
class Team:
    namespace: str
    editor: Subject
    viewer: Subject
    install: Install


def _rules_of(api: ApiClient, role: str) -> set[tuple[str, str, str]]:
    found = client.RbacAuthorizationV1Api(api).read_cluster_role(role)
    return {
        (group, resource, verb)
        for rule in found.rules or []
        for group in rule.api_groups or []
        for resource in rule.resources or []
        for verb in rule.verbs or []
    }


@pytest.fixture(scope="module")
def team(admin_api: ApiClient, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Team]:
    """A default installation, and a namespace with an editor and a viewer (built-in roles)."""
    release = install(admin_api, tmp_path_factory.mktemp("values"), "clusterwide")
    suffix = _short_id()
    namespace = f"team-{suffix}"
    editor, viewer = Subject(f"alice-{suffix}"), Subject(f"bob-{suffix}")
    _create_or_replace(admin_api, _namespace(namespace))
    for subject, role in ((editor, "edit"), (viewer, "view")):
        _create_or_replace(
            admin_api,
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "RoleBinding",
                "metadata": {"name": f"{role}-{subject.user}", "namespace": namespace},
                "roleRef": {
                    "apiGroup": "rbac.authorization.k8s.io",
                    "kind": "ClusterRole",
                    "name": role,
                },
                "subjects": [
                    {"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": subject.user}
                ],
            },
        )
    # kube-controller-manager's clusterrole-aggregation controller folds the chart's roles
    # into the built-in ones.
    wanted = {
        "admin": {("gantry.dev", r, "create") for r in ("trainingjobs", "inferenceservices")},
        "edit": {("gantry.dev", r, "create") for r in ("trainingjobs", "inferenceservices")}
        | {("gantry.dev", "inferenceservices/scale", "patch")},
        "view": {("gantry.dev", r, "list") for r in ("trainingjobs", "inferenceservices")},
    }
    for role, rules in wanted.items():
        wait_for(
            lambda r=role, w=rules: w <= _rules_of(admin_api, r), 60, f"Gantry's rules in `{role}`"
        )
    # ... and the authorizer sees the aggregated roles and the team's bindings.
    for subject, check in (
        (editor, ("create", "gantry.dev", "trainingjobs", namespace)),
        (viewer, ("list", "gantry.dev", "trainingjobs", namespace)),
    ):
        wait_for(
            lambda s=subject, c=check: allowed(admin_api, s, c), 30, f"{subject.user}: {check}"
        )
    yield Team(namespace, editor, viewer, release)
    _delete_quietly(lambda: client.CoreV1Api(admin_api).delete_namespace(namespace))
    uninstall(admin_api, release)


def _gantry(verbs: tuple[str, ...], resources: tuple[str, ...], namespace: str) -> list[Check]:
    return [(v, "gantry.dev", r, namespace) for v in verbs for r in resources]


KINDS = ("trainingjobs", "inferenceservices")


def test_a_namespace_editor_manages_gantry_resources(admin_api: ApiClient, team: Team) -> None:
    writes = ("create", "update", "patch", "delete", "get", "list", "watch")
    may = _gantry(writes, KINDS, team.namespace) + _gantry(
        ("get", "update", "patch"), ("inferenceservices/scale",), team.namespace
    )
    assert refused(admin_api, team.editor, may, want=True) == []
    # Status is the operator's; other namespaces are not the editor's.
    may_not = _gantry(
        ("update", "patch"), ("trainingjobs/status", "inferenceservices/status"), team.namespace
    )
    may_not += _gantry(("create", "get"), KINDS, team.install.elsewhere)
    assert refused(admin_api, team.editor, may_not, want=False) == []


def test_a_namespace_viewer_reads_but_cannot_change(admin_api: ApiClient, team: Team) -> None:
    reads = _gantry(
        ("get", "list", "watch"),
        (*KINDS, "trainingjobs/status", "inferenceservices/status", "inferenceservices/scale"),
        team.namespace,
    )
    assert refused(admin_api, team.viewer, reads, want=True) == []
    writes = _gantry(("create", "update", "patch", "delete"), KINDS, team.namespace)
    writes += _gantry(("update", "patch"), ("inferenceservices/scale",), team.namespace)
    assert refused(admin_api, team.viewer, writes, want=False) == []


# --- the same, with real objects ---------------------------------------------------------------


def _example(kind: str) -> dict[str, Any]:
    for path in sorted((ROOT / "examples").glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            if doc and doc.get("kind") == kind and "gpu" not in path.name:
                return dict(doc)
    raise AssertionError(f"no example {kind} in examples/")


@pytest.fixture
def as_user(control_plane: Any) -> Iterator[Callable[[Subject], client.CustomObjectsApi]]:
    """CustomObjectsApi clients that act as a user (admin impersonating them)."""
    opened: list[ApiClient] = []

    def _as(subject: Subject) -> client.CustomObjectsApi:
        api = api_client_for(control_plane.kubeconfig)
        api.set_default_header("Impersonate-User", subject.user)
        opened.append(api)
        return client.CustomObjectsApi(api)

    yield _as
    for api in opened:
        api.close()


def test_an_editor_creates_and_a_viewer_only_reads(
    crds: list[dict[str, Any]], team: Team, as_user: Callable[[Subject], client.CustomObjectsApi]
) -> None:
    editor, viewer = as_user(team.editor), as_user(team.viewer)
    for kind, plural in (
        ("TrainingJob", "trainingjobs"),
        ("InferenceService", "inferenceservices"),
    ):
        body = _example(kind)
        made = editor.create_namespaced_custom_object(
            "gantry.dev", "v1alpha1", team.namespace, plural, body
        )
        name = made["metadata"]["name"]
        listed = viewer.list_namespaced_custom_object(
            "gantry.dev", "v1alpha1", team.namespace, plural
        )
        assert [o["metadata"]["name"] for o in listed["items"]] == [name]
        with pytest.raises(ApiException) as denied:
            viewer.create_namespaced_custom_object(
                "gantry.dev",
                "v1alpha1",
                team.namespace,
                plural,
                {**body, "metadata": {"name": f"{name}-2"}},
            )
        assert denied.value.status == 403
        with pytest.raises(ApiException) as denied:
            viewer.delete_namespaced_custom_object(
                "gantry.dev", "v1alpha1", team.namespace, plural, name
            )
        assert denied.value.status == 403
        editor.delete_namespaced_custom_object(
            "gantry.dev", "v1alpha1", team.namespace, plural, name
        )
