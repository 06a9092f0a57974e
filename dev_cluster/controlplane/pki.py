"""The dev cluster's certificates: one CA, serving certificates, client identities.

Generated at the first start and kept in `<state>/pki`, so a restarted cluster keeps its
identities (and kubeconfigs written earlier stay valid). Every certificate is signed by
the one CA; the API server, kubelet and clients all trust it. Keys are ECDSA P-256 (fast
to generate; Kubernetes accepts them everywhere) except the service-account signing key,
which is RSA because that is what every token consumer expects.
"""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

VALIDITY = datetime.timedelta(days=3650)
CA_NAME = "gantry-dev-ca"
# Names an in-cluster client may use for the API server (KUBERNETES_SERVICE_HOST is
# 127.0.0.1 on the dev node; the DNS names are what kubernetes.default resolves to).
API_SANS = (
    "localhost",
    "kubernetes",
    "kubernetes.default",
    "kubernetes.default.svc",
    "kubernetes.default.svc.cluster.local",
)
API_IPS = ("127.0.0.1", "10.96.0.1")


@dataclass(frozen=True)
class Pair:
    """A certificate and its key, as PEM files."""

    cert: Path
    key: Path


@dataclass(frozen=True)
class ClientIdentity:
    """Who a client certificate says it is: user name and groups (CN and O)."""

    file_stem: str
    user: str
    groups: tuple[str, ...] = ()


ADMIN = ClientIdentity("admin", "kubernetes-admin", ("system:masters",))
CONTROLLER_MANAGER = ClientIdentity("controller-manager", "system:kube-controller-manager")
SCHEDULER = ClientIdentity("scheduler", "system:kube-scheduler")
APISERVER_KUBELET_CLIENT = ClientIdentity(
    "apiserver-kubelet-client", "kube-apiserver-kubelet-client"
)
# kube-apiserver's identity towards aggregated API servers and webhooks (requestheader auth)
FRONT_PROXY_CLIENT = ClientIdentity("front-proxy-client", "front-proxy-client")
LOCAL_PROVISIONER = ClientIdentity("local-provisioner", "system:gantry-dev:local-provisioner")


def node_identity(node: str) -> ClientIdentity:
    """The kubelet's identity: the Node authorizer and NodeRestriction key on it."""
    return ClientIdentity(f"kubelet-{node}", f"system:node:{node}", ("system:nodes",))


def _new_key() -> ec.EllipticCurvePrivateKey:
    return ec.generate_private_key(ec.SECP256R1())


def _write_key(path: Path, key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey) -> None:
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    path.chmod(0o600)


_CA_KEY_USAGE = x509.KeyUsage(
    digital_signature=True,
    key_cert_sign=True,
    crl_sign=True,
    content_commitment=False,
    key_encipherment=False,
    data_encipherment=False,
    key_agreement=False,
    encipher_only=False,
    decipher_only=False,
)


def _name(common_name: str, organizations: tuple[str, ...] = ()) -> x509.Name:
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, o) for o in organizations]
    attrs.append(x509.NameAttribute(NameOID.COMMON_NAME, common_name))
    return x509.Name(attrs)


class PKI:
    """The certificates under one directory; `ensure()` creates what is missing."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.ca = Pair(directory / "ca.crt", directory / "ca.key")
        self.apiserver = Pair(directory / "apiserver.crt", directory / "apiserver.key")
        self.sa_public = directory / "sa.pub"
        self.sa_private = directory / "sa.key"

    def client(self, who: ClientIdentity) -> Pair:
        return Pair(self.dir / f"{who.file_stem}.crt", self.dir / f"{who.file_stem}.key")

    def kubelet_serving(self, node: str) -> Pair:
        return Pair(
            self.dir / f"kubelet-{node}-serving.crt", self.dir / f"kubelet-{node}-serving.key"
        )

    def ensure(self, node: str) -> None:
        """Create the CA, serving certificates, client certificates and SA keys if absent."""
        self.dir.mkdir(parents=True, exist_ok=True)
        self.dir.chmod(0o700)
        if not (self.ca.cert.exists() and self.ca.key.exists()):
            self._make_ca()
        self._ensure_serving(self.apiserver, "kube-apiserver", API_SANS, API_IPS)
        self._ensure_serving(self.kubelet_serving(node), node, ("localhost", node), ("127.0.0.1",))
        for who in (
            ADMIN,
            CONTROLLER_MANAGER,
            SCHEDULER,
            APISERVER_KUBELET_CLIENT,
            FRONT_PROXY_CLIENT,
            LOCAL_PROVISIONER,
        ):
            self._ensure_client(who)
        self._ensure_client(node_identity(node))
        if not (self.sa_private.exists() and self.sa_public.exists()):
            key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            _write_key(self.sa_private, key)
            self.sa_public.write_bytes(
                key.public_key().public_bytes(
                    serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
                )
            )

    # ---- signing ----------------------------------------------------------------------

    def _make_ca(self) -> None:
        key = _new_key()
        name = _name(CA_NAME)
        now = datetime.datetime.now(datetime.UTC)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(_CA_KEY_USAGE, critical=True)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), False)
            .sign(key, hashes.SHA256())
        )
        _write_key(self.ca.key, key)
        self.ca.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _sign(
        self,
        pair: Pair,
        subject: x509.Name,
        usage: x509.ObjectIdentifier,
        dns: tuple[str, ...] = (),
        ips: tuple[str, ...] = (),
    ) -> None:
        ca_key = serialization.load_pem_private_key(self.ca.key.read_bytes(), password=None)
        ca_cert = x509.load_pem_x509_certificate(self.ca.cert.read_bytes())
        if not isinstance(ca_key, ec.EllipticCurvePrivateKey):
            raise ValueError(f"{self.ca.key} is not the dev cluster's CA key")
        key = _new_key()
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(ca_cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=5))
            .not_valid_after(now + VALIDITY)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([usage]), critical=False)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), False
            )
        )
        if dns or ips:
            names: list[x509.GeneralName] = [x509.DNSName(d) for d in dns]
            names += [x509.IPAddress(ipaddress.ip_address(i)) for i in ips]
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        cert = builder.sign(ca_key, hashes.SHA256())
        _write_key(pair.key, key)
        pair.cert.write_bytes(cert.public_bytes(serialization.Encoding.PEM))

    def _ensure_serving(
        self, pair: Pair, common_name: str, dns: tuple[str, ...], ips: tuple[str, ...]
    ) -> None:
        if not (pair.cert.exists() and pair.key.exists()):
            self._sign(pair, _name(common_name), ExtendedKeyUsageOID.SERVER_AUTH, dns, ips)

    def _ensure_client(self, who: ClientIdentity) -> None:
        pair = self.client(who)
        if not (pair.cert.exists() and pair.key.exists()):
            self._sign(pair, _name(who.user, who.groups), ExtendedKeyUsageOID.CLIENT_AUTH)
