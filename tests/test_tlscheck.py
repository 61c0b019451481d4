"""`build.py userdata` refuses etcd TLS material a node could not use, through the real CLI.

Certificates come from the openssl CLI (tests/etcd_cluster.py, as for the etcd test cluster) where
it makes them, and from `cryptography` where a test needs an exact date, extension or chain.
"""

from __future__ import annotations

import stat
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from verify.pki import OpenSSL

from .etcd_cluster import Certs, make_certs

CLIENT_AUTH = ExtendedKeyUsageOID.CLIENT_AUTH
SERVER_AUTH = ExtendedKeyUsageOID.SERVER_AUTH


@dataclass(frozen=True)
class Made:
    cert: x509.Certificate
    key: ec.EllipticCurvePrivateKey
    cert_path: Path
    key_path: Path


class Pki:
    """A tiny CA toolkit: each call writes <name>.pem and <name>-key.pem (unencrypted PKCS#8)."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def make(
        self,
        name: str,
        issuer: Made | None = None,
        *,
        ca: bool = False,
        valid: tuple[timedelta, timedelta] = (timedelta(hours=-1), timedelta(days=365)),
        eku: list[x509.ObjectIdentifier] | None = None,
        basic: bool = True,
        curve: ec.EllipticCurve | None = None,
    ) -> Made:
        key = ec.generate_private_key(curve or ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        now = datetime.now(UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(issuer.cert.subject if issuer else subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now + valid[0])
            .not_valid_after(now + valid[1])
        )
        if basic:
            builder = builder.add_extension(x509.BasicConstraints(ca=ca, path_length=None), True)
        if ca:
            usage = dict.fromkeys(
                ("content_commitment", "key_encipherment", "data_encipherment", "key_agreement",
                 "encipher_only", "decipher_only", "digital_signature"), False,
            )  # fmt: skip
            builder = builder.add_extension(
                x509.KeyUsage(key_cert_sign=True, crl_sign=True, **usage), True
            )
        if eku is not None:
            builder = builder.add_extension(x509.ExtendedKeyUsage(eku), False)
        signer = issuer.key if issuer else key
        cert = builder.sign(signer, hashes.SHA256())
        cert_path, key_path = self.dir / f"{name}.pem", self.dir / f"{name}-key.pem"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        key_path.write_bytes(
            key.private_bytes(
                serialization.Encoding.PEM,
                serialization.PrivateFormat.PKCS8,
                serialization.NoEncryption(),
            )
        )
        return Made(cert, key, cert_path, key_path)

    def ca(self, name: str, **kw) -> Made:
        return self.make(name, ca=True, **kw)

    def client(self, name: str, issuer: Made, **kw) -> Made:
        kw.setdefault("eku", [CLIENT_AUTH])
        return self.make(name, issuer, **kw)


@pytest.fixture(scope="module")
def openssl_certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("openssl"))


@pytest.fixture
def pki(tmp_path: Path) -> Pki:
    directory = tmp_path / "pki"
    directory.mkdir()
    return Pki(directory)


def userdata(project, ca: Path, cert: Path, key: Path):
    project.config()
    return project.run(
        "userdata", "--etcd-ca", str(ca), "--etcd-cert", str(cert), "--etcd-key", str(key)
    )


def refused(project, res, flag: str, path: Path, *words: str) -> None:
    """Exit 2, one message naming the flag and the file, no traceback, nothing written."""
    assert res.rc == 2, (res.rc, res.err)
    assert "Traceback" not in res.err and "Traceback" not in res.out
    assert f"{flag} {path}" in res.err, res.err
    for word in words:
        assert word in res.err, res.err
    assert not (project.build / "userdata" / "user-data").exists()


# -- the good path


def test_good_material_is_written_0600_without_a_warning(project, pki):
    ca = pki.ca("ca")
    client = pki.client("client", ca)
    res = userdata(project, ca.cert_path, client.cert_path, client.key_path)
    assert res.rc == 0, res.err
    assert "warning" not in res.err
    out = project.build / "userdata" / "user-data"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    files = {f["path"]: f for f in yaml.safe_load(out.read_text())["write_files"]}
    assert files["/opt/etcd/ssl/flannel-client.pem"]["content"] == client.cert_path.read_text()
    assert files["/opt/etcd/ssl/flannel-client-key.pem"]["content"] == client.key_path.read_text()
    assert files["/opt/etcd/ssl/ca.pem"]["content"] == ca.cert_path.read_text()


def test_openssl_made_material_passes(project, openssl_certs):
    res = userdata(project, openssl_certs.ca, openssl_certs.cert, openssl_certs.key)
    assert res.rc == 0, res.err


def test_intermediate_after_the_client_certificate_is_followed(project, pki):
    root = pki.ca("root")
    inter = pki.make("intermediate", root, ca=True)
    client = pki.client("client", inter)
    chain = pki.dir / "chain.pem"
    chain.write_text(client.cert_path.read_text() + inter.cert_path.read_text())
    assert userdata(project, root.cert_path, chain, client.key_path).rc == 0
    (project.build / "userdata" / "user-data").unlink()
    # without the intermediate the root signs nothing the node presents: say what is missing
    res = userdata(project, root.cert_path, client.cert_path, client.key_path)
    refused(project, res, "--etcd-ca", root.cert_path, "did not sign", "intermediate")


def test_near_expiry_is_a_warning_not_an_error(project, pki):
    ca = pki.ca("ca")
    client = pki.client("client", ca, valid=(timedelta(hours=-1), timedelta(days=10)))
    res = userdata(project, ca.cert_path, client.cert_path, client.key_path)
    assert res.rc == 0, res.err
    assert "warning" in res.err and f"--etcd-cert {client.cert_path}" in res.err
    assert "expires" in res.err


# -- refused


def test_ca_that_did_not_sign_the_certificate(project, openssl_certs):
    c = openssl_certs
    res = userdata(project, c.other_ca, c.cert, c.key)
    refused(project, res, "--etcd-ca", c.other_ca, "did not sign", str(c.cert))


def test_ca_of_the_same_name_but_another_key(project, openssl_certs, tmp_path):
    """A CA re-created under the same name: names match, the signature does not."""
    again = make_certs(tmp_path / "again")
    res = userdata(project, again.ca, openssl_certs.cert, openssl_certs.key)
    refused(project, res, "--etcd-ca", again.ca, "same name")


def test_key_that_does_not_match_the_certificate(project, openssl_certs):
    c = openssl_certs
    res = userdata(project, c.ca, c.cert, c.other_key)
    refused(project, res, "--etcd-key", c.other_key, "does not belong", str(c.cert))


def test_expired_certificate(project, openssl_certs):
    c = openssl_certs
    res = userdata(project, c.ca, c.expired_cert, c.expired_key)
    refused(project, res, "--etcd-cert", c.expired_cert, "expired")


def test_expired_ca(project, pki):
    ca = pki.ca("ca", valid=(timedelta(days=-30), timedelta(days=-1)))
    client = pki.client("client", ca)
    res = userdata(project, ca.cert_path, client.cert_path, client.key_path)
    refused(project, res, "--etcd-ca", ca.cert_path, "expired")


def test_certificate_not_yet_valid(project, pki):
    ca = pki.ca("ca")
    client = pki.client("client", ca, valid=(timedelta(days=2), timedelta(days=365)))
    res = userdata(project, ca.cert_path, client.cert_path, client.key_path)
    refused(project, res, "--etcd-cert", client.cert_path, "not valid before")


@pytest.mark.parametrize("cut", ["end", "middle"])
def test_truncated_key(project, openssl_certs, tmp_path, cut):
    c = openssl_certs
    lines = c.key.read_text().splitlines(keepends=True)
    if cut == "end":  # copied half: no END line
        text = "".join(lines)[: len("".join(lines)) // 2]
    else:  # a line of the body lost: BEGIN and END still there
        text = "".join(lines[:1] + lines[2:])
    key = tmp_path / "truncated-key.pem"
    key.write_text(text)
    res = userdata(project, c.ca, c.cert, key)
    refused(project, res, "--etcd-key", key, "truncated")


@pytest.mark.parametrize("layout", ["pkcs8", "traditional"])
def test_passphrase_protected_key(project, pki, layout):
    ca = pki.ca("ca")
    client = pki.client("client", ca)
    fmt = {
        "pkcs8": serialization.PrivateFormat.PKCS8,  # BEGIN ENCRYPTED PRIVATE KEY
        "traditional": serialization.PrivateFormat.TraditionalOpenSSL,  # Proc-Type: 4,ENCRYPTED
    }[layout]
    key = pki.dir / "encrypted-key.pem"
    key.write_bytes(
        client.key.private_bytes(
            serialization.Encoding.PEM, fmt, serialization.BestAvailableEncryption(b"secret")
        )
    )
    res = userdata(project, ca.cert_path, client.cert_path, key)
    refused(project, res, "--etcd-key", key, "passphrase")


def test_client_certificate_passed_as_ca(project, openssl_certs):
    c = openssl_certs
    res = userdata(project, c.cert, c.cert, c.key)
    refused(project, res, "--etcd-ca", c.cert, "--etcd-cert", "not a CA")


def test_another_leaf_passed_as_ca(project, openssl_certs, pki):
    """etcd's server certificate (no basicConstraints) and a leaf marked CA:FALSE."""
    c = openssl_certs
    res = userdata(project, c.server_cert, c.cert, c.key)
    refused(project, res, "--etcd-ca", c.server_cert, "not a CA")
    ca = pki.ca("ca")
    leaf = pki.make("leaf", ca, ca=False)
    res = userdata(project, leaf.cert_path, c.cert, c.key)
    refused(project, res, "--etcd-ca", leaf.cert_path, "not a CA", "CA:FALSE")


def test_server_only_certificate(project, pki):
    ca = pki.ca("ca")
    server = pki.client("server", ca, eku=[SERVER_AUTH])
    res = userdata(project, ca.cert_path, server.cert_path, server.key_path)
    refused(project, res, "--etcd-cert", server.cert_path, "clientAuth")


def test_corrupt_certificate(project, openssl_certs, tmp_path):
    c = openssl_certs
    broken = tmp_path / "broken.pem"
    broken.write_text(
        "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n"
    )
    res = userdata(project, c.ca, broken, c.key)
    refused(project, res, "--etcd-cert", broken, "cannot be parsed")


def test_key_type_go_does_not_speak(project, pki):
    """flanneld and etcd are Go: crypto/tls has no secp256k1."""
    ca = pki.ca("ca")
    client = pki.client("client", ca, curve=ec.SECP256K1())
    res = userdata(project, ca.cert_path, client.cert_path, client.key_path)
    refused(project, res, "--etcd-key", client.key_path, "secp256k1")


def test_sha1_signature(project, tmp_path):
    """Go (flanneld, etcd) refuses SHA-1 signatures on the certificates it verifies."""
    tool = OpenSSL(tmp_path)
    ca = tool.ca("ca")
    tool.key("client")
    tool.run("req", "-new", "-key", "client-key.pem", "-out", "client.csr", "-subj", "/CN=c")
    tool.run("x509", "-req", "-sha1", "-in", "client.csr", "-CA", "ca.pem", "-CAkey",
             "ca-key.pem", "-CAcreateserial", "-out", "client.pem", "-days", "60")  # fmt: skip
    cert, key = tmp_path / "client.pem", tmp_path / "client-key.pem"
    res = userdata(project, ca, cert, key)
    refused(project, res, "--etcd-cert", cert, "SHA-1")


def test_verify_labs_material(tmp_path):
    """The lab's nodes pass the check; its wrong-CA node is refused, hence its check_tls=False."""
    from flannelnode import config
    from flannelnode.errors import ConfigError
    from flannelnode.userdata import TlsFiles, render
    from verify import pki as lab_pki

    p = lab_pki.make(tmp_path / "pki", ["127.0.0.1"])
    cfg = config.Config()
    warnings: list[str] = []
    render(cfg, TlsFiles(p.ca, p.client_cert, p.client_key), warn=warnings.append)
    assert len(warnings) == 2 and all("expires" in w for w in warnings)  # two-day certificates
    wrong = TlsFiles(p.wrong_ca, p.client_cert, p.client_key)
    with pytest.raises(ConfigError, match="did not sign"):
        render(cfg, wrong, warn=warnings.append)
    doc = yaml.safe_load(render(cfg, wrong, check_tls=False))
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    assert files[cfg.etcd.ca_file] == p.wrong_ca.read_text()
