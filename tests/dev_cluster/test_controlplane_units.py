"""The dev cluster's PKI and audit settings, without starting anything: who each certificate
says it is, what the API server audits and which chart values an operator gets."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from dev_cluster.controlplane.launcher import ControlPlane, audit_policy
from dev_cluster.controlplane.pki import (
    ADMIN,
    APISERVER_KUBELET_CLIENT,
    CA_NAME,
    CONTROLLER_MANAGER,
    LOCAL_PROVISIONER,
    PKI,
    SCHEDULER,
    ClientIdentity,
    node_identity,
)

NODE = "dev-node"
OPERATOR = "system:serviceaccount:gantry-system:gantry"


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> PKI:
    made = PKI(tmp_path_factory.mktemp("pki"))
    made.ensure(NODE)
    return made


def load(path: Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(path.read_bytes())


def names(cert: x509.Certificate, oid: x509.ObjectIdentifier) -> list[str]:
    return [str(a.value) for a in cert.subject.get_attributes_for_oid(oid)]


def sans(cert: x509.Certificate) -> tuple[set[str], set[str]]:
    ext = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    dns = set(ext.get_values_for_type(x509.DNSName))
    ips = {str(ip) for ip in ext.get_values_for_type(x509.IPAddress)}
    return dns, ips


def usages(cert: x509.Certificate) -> list[x509.ObjectIdentifier]:
    return list(cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value)


def signed_by(cert: x509.Certificate, ca: x509.Certificate) -> bool:
    try:
        cert.verify_directly_issued_by(ca)
    except (ValueError, TypeError):
        return False
    return True


def test_the_ca_is_a_self_signed_ca(pki: PKI) -> None:
    ca = load(pki.ca.cert)
    assert names(ca, NameOID.COMMON_NAME) == [CA_NAME]
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert signed_by(ca, ca)


def test_api_server_certificate_names_every_in_cluster_address(pki: PKI) -> None:
    cert = load(pki.apiserver.cert)
    assert names(cert, NameOID.COMMON_NAME) == ["kube-apiserver"]
    assert usages(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    dns, ips = sans(cert)
    assert {"kubernetes.default.svc", "kubernetes.default.svc.cluster.local", "localhost"} <= dns
    # KUBERNETES_SERVICE_HOST on the dev node, and the `kubernetes` Service's ClusterIP
    assert {"127.0.0.1", "10.96.0.1"} <= ips
    assert signed_by(cert, load(pki.ca.cert))
    assert not cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_kubelet_serving_certificate_is_for_the_node(pki: PKI) -> None:
    cert = load(pki.kubelet_serving(NODE).cert)
    assert names(cert, NameOID.COMMON_NAME) == [NODE]
    assert usages(cert) == [ExtendedKeyUsageOID.SERVER_AUTH]
    dns, ips = sans(cert)
    assert NODE in dns and "127.0.0.1" in ips
    assert signed_by(cert, load(pki.ca.cert))


@pytest.mark.parametrize(
    ("who", "user", "groups"),
    [
        (ADMIN, "kubernetes-admin", ["system:masters"]),
        (CONTROLLER_MANAGER, "system:kube-controller-manager", []),
        (SCHEDULER, "system:kube-scheduler", []),
        (APISERVER_KUBELET_CLIENT, "kube-apiserver-kubelet-client", []),
        (LOCAL_PROVISIONER, "system:gantry-dev:local-provisioner", []),
        (node_identity(NODE), "system:node:dev-node", ["system:nodes"]),
    ],
)
def test_client_certificates_carry_user_and_groups(
    pki: PKI, who: ClientIdentity, user: str, groups: list[str]
) -> None:
    """kube-apiserver reads the user from CN and the groups from O."""
    cert = load(pki.client(who).cert)
    assert names(cert, NameOID.COMMON_NAME) == [user]
    assert names(cert, NameOID.ORGANIZATION_NAME) == groups
    assert usages(cert) == [ExtendedKeyUsageOID.CLIENT_AUTH]
    assert signed_by(cert, load(pki.ca.cert))
    key = pki.client(who).key
    assert key.stat().st_mode & 0o777 == 0o600


def test_service_account_keys_are_an_rsa_pair(pki: PKI) -> None:
    from cryptography.hazmat.primitives import serialization

    private = serialization.load_pem_private_key(pki.sa_private.read_bytes(), password=None)
    public = serialization.load_pem_public_key(pki.sa_public.read_bytes())
    assert isinstance(private, rsa.RSAPrivateKey) and isinstance(public, rsa.RSAPublicKey)
    assert private.public_key().public_numbers() == public.public_numbers()


def test_ensure_is_idempotent_and_fills_in_what_is_missing(tmp_path: Path) -> None:
    pki = PKI(tmp_path / "pki")
    pki.ensure(NODE)
    files = sorted(p for p in pki.dir.iterdir())
    contents = {p: p.read_bytes() for p in files}
    pki.ensure(NODE)
    assert {p: p.read_bytes() for p in sorted(pki.dir.iterdir())} == contents

    pki.client(SCHEDULER).cert.unlink()
    pki.ensure(NODE)
    assert pki.client(SCHEDULER).cert.exists()
    assert pki.ca.cert.read_bytes() == contents[pki.ca.cert]  # the CA stays
    assert signed_by(load(pki.client(SCHEDULER).cert), load(pki.ca.cert))
    assert pki.dir.stat().st_mode & 0o777 == 0o700


def test_a_second_node_gets_its_own_identity(pki: PKI) -> None:
    pki.ensure("other-node")
    cert = load(pki.client(node_identity("other-node")).cert)
    assert names(cert, NameOID.COMMON_NAME) == ["system:node:other-node"]
    assert isinstance(cert.public_key(), ec.EllipticCurvePublicKey)
    dns, _ = sans(load(pki.kubelet_serving("other-node").cert))
    assert "other-node" in dns


# ---- auditing (off unless asked for) --------------------------------------------------


def test_the_api_server_audits_nothing_by_default(tmp_path: Path) -> None:
    args = ControlPlane(tmp_path)._apiserver_args()
    assert not [a for a in args if a.startswith("--audit")]


def test_an_audit_log_records_only_the_named_users_in_json_batches(tmp_path: Path) -> None:
    log = tmp_path / "audit" / "audit.log"
    cp = ControlPlane(tmp_path, audit_log=log, audit_users=[OPERATOR])
    flags = dict(a.split("=", 1) for a in cp._apiserver_args() if a.startswith("--audit"))
    assert flags["--audit-log-path"] == str(log)
    assert flags["--audit-policy-file"] == str(cp.audit_policy_file)
    assert flags["--audit-log-format"] == "json"
    assert flags["--audit-log-mode"] == "batch"  # never blocks a response on the log
    assert flags["--audit-log-batch-throttle-enable"] == "false"
    assert flags["--audit-log-maxsize"] == "0"  # one file for the whole run
    policy = audit_policy([OPERATOR])
    assert policy["kind"] == "Policy" and policy["omitStages"] == ["RequestReceived"]
    assert policy["rules"] == [{"level": "Metadata", "users": [OPERATOR]}, {"level": "None"}]
    assert audit_policy()["rules"] == [{"level": "Metadata"}]


def test_the_dev_cluster_audits_the_operators_service_account(tmp_path: Path) -> None:
    from dev_cluster.cluster import DevCluster

    assert DevCluster(tmp_path).operator_user() == OPERATOR
    assert DevCluster(tmp_path).audit_log is None
    named = DevCluster(tmp_path, operator_values={"serviceAccount": {"name": "ops"}})
    assert named.operator_user() == "system:serviceaccount:gantry-system:ops"


def test_an_operator_source_goes_first_on_the_operator_pods_pythonpath(tmp_path: Path) -> None:
    from dev_cluster.cluster import DevCluster

    assert "extraEnv" not in DevCluster(tmp_path).values()
    extra = [{"name": "GANTRY_X", "value": "1"}, {"name": "PYTHONPATH", "value": "/old"}]
    source = tmp_path / "baseline" / "operator"
    cluster = DevCluster(tmp_path, operator_source=source, operator_values={"extraEnv": extra})
    assert cluster.values()["extraEnv"] == [
        {"name": "PYTHONPATH", "value": str(source)},
        {"name": "GANTRY_X", "value": "1"},
    ]


def test_another_chart_gets_only_the_values_its_schema_declares(tmp_path: Path) -> None:
    import json

    from dev_cluster.cluster import DevCluster, fit_to_schema

    schema = {
        "type": "object",
        "additionalProperties": False,
        "properties": {
            "config": {
                "type": "object",
                "additionalProperties": False,
                "properties": {"tritonBackends": {"type": "array"}},
            },
            "extraEnv": {"type": "array"},
            "podLabels": {"type": "object", "properties": {}},
        },
    }
    values = {"config": {"tritonBackends": ["python"], "newSetting": 1}, "podLabels": {"a": "b"}}
    fitted, dropped = fit_to_schema(values, schema)
    assert fitted == {"config": {"tritonBackends": ["python"]}, "podLabels": {"a": "b"}}
    assert dropped == ["config.newSetting"]
    chart = tmp_path / "old-chart"
    chart.mkdir()
    (chart / "values.schema.json").write_text(json.dumps(schema))
    old = DevCluster(tmp_path, chart_dir=chart, operator_values={"unknown": True})
    assert set(old.values()) <= {"config", "extraEnv", "podLabels"}
    assert DevCluster(tmp_path, operator_values={"unknown": True}).values()["unknown"] is True
