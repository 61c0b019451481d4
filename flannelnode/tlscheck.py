"""tlscheck: etcd client TLS material, checked at build time the way a node will use it.

On the node flanneld and flannel-seed-etcd present --etcd-cert/--etcd-key to etcd and trust
--etcd-ca; Go's crypto/tls and crypto/x509 (in flanneld and in etcd) judge them there. A mistake
found at first boot costs every node built from the user-data, so each rule below is one of theirs,
applied here with a message that names the flag, the file and what to do:

- every file is complete PEM (a BEGIN without its END is a truncated copy) and parses;
- the CA file holds CA certificates only, not the client certificate or another leaf;
- the key is unencrypted (flanneld reads no passphrase), of a type Go's TLS speaks, and is the
  key of the first certificate in the cert file (Go's X509KeyPair takes that one as the leaf);
- a chain leads from that certificate, through intermediates that follow it in the cert file, to a
  certificate of the CA file, each link a valid signature (not SHA-1, which Go refuses);
- every certificate of the chain is valid now (a warning when one ends within WARN_DAYS), and
  allows client authentication wherever it restricts its extended key usage (Go checks the
  whole chain, root included).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

from cryptography import x509
from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.types import PublicKeyTypes
from cryptography.x509.oid import ExtendedKeyUsageOID

from .errors import ConfigError

WARN_DAYS = 30
GO_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)  # crypto/tls's ECDSA curves
WEAK_DIGESTS = {"sha1": "SHA-1", "md5": "MD5"}  # Go refuses these in certificate signatures
EKU_NAMES = {
    ExtendedKeyUsageOID.SERVER_AUTH: "serverAuth",
    ExtendedKeyUsageOID.CLIENT_AUTH: "clientAuth",
    ExtendedKeyUsageOID.CODE_SIGNING: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION: "emailProtection",
    ExtendedKeyUsageOID.TIME_STAMPING: "timeStamping",
    ExtendedKeyUsageOID.OCSP_SIGNING: "OCSPSigning",
}
MAX_CHAIN = 8

PrivateKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey
_Ext = TypeVar("_Ext", bound=x509.ExtensionType)

_BEGIN = re.compile(r"-----BEGIN ([A-Z0-9 ]+)-----")
# a block's body holds no other BEGIN: a truncated block is never read as spanning into the next
_BLOCK = re.compile(
    r"-----BEGIN ([A-Z0-9 ]+)-----\r?\n(?:(?!-----BEGIN ).)*?-----END \1-----", re.S
)
_ENCRYPTED_HEADER = re.compile(r"^Proc-Type:\s*4,ENCRYPTED", re.M)  # OpenSSL's traditional PEM


@dataclass(frozen=True)
class PemFile:
    flag: str  # the command-line flag that named the file
    path: Path
    text: str

    def __str__(self) -> str:
        return f"{self.flag} {self.path}"


def check(ca: PemFile, cert: PemFile, key: PemFile, now: datetime | None = None) -> list[str]:
    """Raise ConfigError for material a node cannot use; return warnings (lines to show)."""
    try:
        return _check(ca, cert, key, now or datetime.now(UTC))
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        # a malformed field that cryptography parses lazily; the rules above name the usual cases
        raise ConfigError(
            f"{ca}, {cert}, {key}: the TLS material cannot be checked ({exc}); "
            "re-export the files as PEM from your CA tooling"
        ) from None


def _check(ca: PemFile, cert: PemFile, key: PemFile, now: datetime) -> list[str]:
    anchors = _certificates(ca)
    presented = _certificates(cert)
    leaf, extras = presented[0], presented[1:]
    for anchor in anchors:
        if anchor == leaf:
            raise ConfigError(
                f"{ca}: not a CA: it is the client certificate itself (the one in {cert}); "
                "pass the CA certificate that signed it (often ca.pem)"
            )
        _require_ca(anchor, ca, f"pass the CA certificate that signed {cert}")
    private = _private_key(key)
    _require_pair(private, leaf, extras, anchors, cert, key)
    chain = _chain(leaf, extras, anchors, ca, cert)
    warnings = []
    for position, (certificate, source) in enumerate(chain):
        what = "the client certificate" if position == 0 else f"the CA {_name(certificate)}"
        warning = _require_current(certificate, source, what, now)
        if warning:
            warnings.append(warning)
        _require_client_auth(certificate, source, what)
    return warnings


def _blocks(source: PemFile) -> list[tuple[str, str]]:
    """(label, PEM text) per complete block, refusing a BEGIN whose END is missing."""
    complete = list(_BLOCK.finditer(source.text))
    starts = {m.start() for m in complete}
    for begin in _BEGIN.finditer(source.text):
        if begin.start() not in starts:
            raise ConfigError(
                f"{source}: the '{begin.group(1)}' block has no END line: the file is truncated; "
                "copy it again in full"
            )
    return [(m.group(1), m.group(0)) for m in complete]


def _certificates(source: PemFile) -> list[x509.Certificate]:
    found = []
    for number, (label, text) in enumerate(_blocks(source), 1):
        if label != "CERTIFICATE":
            continue  # Go skips other blocks too (keys, EC PARAMETERS, ...)
        try:
            certificate = x509.load_pem_x509_certificate(text.encode("ascii"))
            certificate.extensions  # noqa: B018  parsed lazily: fail here, naming the file
            certificate.public_key()
        except (ValueError, UnsupportedAlgorithm) as exc:
            raise ConfigError(
                f"{source}: certificate block {number} cannot be parsed ({exc}): the file is "
                "truncated or corrupt; copy it again from your CA"
            ) from None
        found.append(certificate)
    if not found:
        raise ConfigError(f"{source}: no complete certificate in it; is this the right file?")
    return found


def _private_key(source: PemFile) -> PrivateKey:
    blocks = [(label, text) for label, text in _blocks(source) if label.endswith("PRIVATE KEY")]
    if not blocks:
        raise ConfigError(f"{source}: no complete private key in it; is this the right file?")
    label, text = blocks[0]
    encrypted = (
        f"{source}: the key is protected by a passphrase, and flanneld cannot ask for one; "
        "write an unencrypted copy (openssl pkey -in KEY -out PLAIN) and keep the user-data secret"
    )
    if label == "ENCRYPTED PRIVATE KEY" or _ENCRYPTED_HEADER.search(text):
        raise ConfigError(encrypted)
    try:
        key = serialization.load_pem_private_key(text.encode("ascii"), password=None)
    except TypeError:  # cryptography's word for "encrypted, and no password given"
        raise ConfigError(encrypted) from None
    except (ValueError, UnsupportedAlgorithm) as exc:
        detail = str(exc).rsplit("Details: ", 1)[-1]  # past cryptography's generic preamble
        raise ConfigError(
            f"{source}: cannot be read as a private key ({detail}): the file is truncated or "
            "corrupt; copy it again in full"
        ) from None
    if isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, GO_CURVES):
        return key
    if isinstance(key, rsa.RSAPrivateKey | ed25519.Ed25519PrivateKey):
        return key
    kind = key.curve.name if isinstance(key, ec.EllipticCurvePrivateKey) else type(key).__name__
    raise ConfigError(
        f"{source}: a {kind} key, which flanneld and etcd (Go's crypto/tls) cannot use; "
        "issue the client certificate for an ECDSA P-256/P-384/P-521, RSA or Ed25519 key"
    )


def _spki(public_key: PublicKeyTypes) -> bytes:
    return public_key.public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    )


def _require_pair(
    private: PrivateKey,
    leaf: x509.Certificate,
    extras: list[x509.Certificate],
    anchors: list[x509.Certificate],
    cert: PemFile,
    key: PemFile,
) -> None:
    mine = _spki(private.public_key())
    if mine == _spki(leaf.public_key()):
        return
    hint = "pass the key that was made with this certificate"
    if any(mine == _spki(c.public_key()) for c in extras):
        hint = f"it is the key of a later certificate in {cert}: put the client certificate first"
    elif any(mine == _spki(c.public_key()) for c in anchors):
        hint = "it is the CA's key: pass the client's key (never hand the CA key to nodes)"
    raise ConfigError(
        f"{key}: does not belong to the certificate in {cert} ({_name(leaf)}): their public "
        f"keys differ; {hint}"
    )


def _require_ca(certificate: x509.Certificate, source: PemFile, todo: str) -> None:
    name = _name(certificate)
    basic = _extension(certificate, x509.BasicConstraints)
    if basic is not None and not basic.ca:
        raise ConfigError(f"{source}: {name} is not a CA (basicConstraints CA:FALSE); {todo}")
    usage = _extension(certificate, x509.KeyUsage)
    if usage is not None and not usage.key_cert_sign:
        raise ConfigError(
            f"{source}: {name} is not a CA: its keyUsage does not allow signing certificates; "
            f"{todo}"
        )
    if basic is None and certificate.issuer != certificate.subject:
        raise ConfigError(
            f"{source}: {name} is not a CA: like a client or server certificate, it has no "
            f"basicConstraints and another certificate issued it; {todo}"
        )


def _chain(
    leaf: x509.Certificate,
    extras: list[x509.Certificate],
    anchors: list[x509.Certificate],
    ca: PemFile,
    cert: PemFile,
) -> list[tuple[x509.Certificate, PemFile]]:
    """leaf -> intermediates from the cert file -> a certificate of the CA file."""
    chain, current, pool = [(leaf, cert)], leaf, list(extras)
    while len(chain) <= MAX_CHAIN:
        # before the signature check, which fails on SHA-1 too; the anchor's own is never checked
        what = "the client certificate" if current is leaf else f"the CA {_name(current)}"
        _require_strong_signature(current, cert, what)
        anchor, anchor_named = _issuer(current, anchors)
        if anchor is not None:
            return [*chain, (anchor, ca)]
        step, _ = _issuer(current, pool)
        if step is None:
            raise ConfigError(_not_signed(current, leaf, anchors, anchor_named, ca, cert))
        _require_ca(step, cert, f"remove it from {cert}, or replace it with the intermediate CA")
        basic = _extension(step, x509.BasicConstraints)
        if basic is None:  # Go refuses an intermediate without basicConstraints
            raise ConfigError(
                f"{cert}: the intermediate {_name(step)} has no basicConstraints CA:TRUE, "
                "so Go refuses it as an issuer; re-issue it as a CA"
            )
        pool.remove(step)
        chain.append((step, cert))
        current = step
    raise ConfigError(f"{cert}: the chain is longer than {MAX_CHAIN}; is this the right file?")


def _issuer(
    certificate: x509.Certificate, candidates: list[x509.Certificate]
) -> tuple[x509.Certificate | None, bool]:
    """The candidate that signed certificate, and whether any candidate at least bore its name."""
    named = False
    for candidate in candidates:
        if candidate.subject != certificate.issuer:
            continue
        named = True
        try:
            certificate.verify_directly_issued_by(candidate)
        except (InvalidSignature, ValueError, TypeError, UnsupportedAlgorithm):
            continue
        return candidate, True
    return None, named


def _not_signed(
    current: x509.Certificate,
    leaf: x509.Certificate,
    anchors: list[x509.Certificate],
    named: bool,
    ca: PemFile,
    cert: PemFile,
) -> str:
    what = (
        f"the certificate in {cert}"
        if current is leaf
        else f"the intermediate {_name(current)} in {cert}"
    )
    issuer = f'"{current.issuer.rfc4514_string()}"'
    if named:
        return (
            f"{ca}: did not sign {what}: it holds a CA of the same name, {issuer}, but with "
            "another key (a CA made again under the same name?); pass the CA certificate that "
            "really issued it, or a client certificate from this CA"
        )
    held = ", ".join(_name(a) for a in anchors)
    return (
        f"{ca}: did not sign {what} (issued by {issuer}; the CA file holds {held}); pass the "
        f"CA that issued it, or if {issuer} is an intermediate CA, append its certificate to "
        f"{cert} after the client certificate"
    )


def _require_current(
    certificate: x509.Certificate, source: PemFile, what: str, now: datetime
) -> str | None:
    start, end = certificate.not_valid_before_utc, certificate.not_valid_after_utc
    if now < start:
        raise ConfigError(
            f"{source}: {what} is not valid before {_when(start)} (now: {_when(now)}); "
            "a node booting before then cannot reach etcd: check this host's clock and the "
            "issuing CA's, or wait and build then"
        )
    if now > end:
        raise ConfigError(
            f"{source}: {what} expired on {_when(end)}; issue a new one and build again"
        )
    if end - now < timedelta(days=WARN_DAYS):
        days = (end - now).days
        return (
            f"warning: {source}: {what} expires on {_when(end)}, in {days} day(s); nodes that "
            "first boot after that cannot reach etcd: renew it and build the user-data again"
        )
    return None


def _require_client_auth(certificate: x509.Certificate, source: PemFile, what: str) -> None:
    usage = _extension(certificate, x509.ExtendedKeyUsage)
    if usage is None:
        return
    oids = set(usage)
    if (
        ExtendedKeyUsageOID.CLIENT_AUTH in oids
        or ExtendedKeyUsageOID.ANY_EXTENDED_KEY_USAGE in oids
    ):
        return
    names = ", ".join(EKU_NAMES.get(o, o.dotted_string) for o in usage) or "empty"
    raise ConfigError(
        f"{source}: {what} does not allow TLS client authentication (its extendedKeyUsage is "
        f"{names}), so etcd refuses it from flanneld; issue it with extendedKeyUsage "
        "clientAuth (for example openssl's -addext extendedKeyUsage=clientAuth)"
    )


def _require_strong_signature(certificate: x509.Certificate, source: PemFile, what: str) -> None:
    try:
        digest = certificate.signature_hash_algorithm
    except UnsupportedAlgorithm:
        return  # one cryptography cannot name: the signature check that follows judges it
    if digest is not None and digest.name in WEAK_DIGESTS:
        raise ConfigError(
            f"{source}: {what} is signed with {WEAK_DIGESTS[digest.name]}, which Go (flanneld, "
            "etcd) refuses; re-issue it signed with SHA-256"
        )


def _extension(certificate: x509.Certificate, kind: type[_Ext]) -> _Ext | None:
    try:
        return certificate.extensions.get_extension_for_class(kind).value
    except x509.ExtensionNotFound:
        return None


def _name(certificate: x509.Certificate) -> str:
    return f'"{certificate.subject.rfc4514_string()}"'


def _when(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M UTC")
