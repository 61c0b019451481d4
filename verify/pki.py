"""Throwaway etcd TLS material for a verify run: a CA, etcd's server certificate, a client
certificate, and a second CA that signs nothing (the "wrong CA" a broken node is given);
server_cert() adds the certificate of a second etcd (the late one) from the same CA.

Made with the openssl CLI, EC P-256, valid for two days. Nothing here is ever put into an image:
the client key reaches the nodes only through their cloud-init user-data, as in production.
"""

from __future__ import annotations

import ipaddress
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from flannelnode.errors import FlannelnodeError


@dataclass(frozen=True)
class Pki:
    ca: Path
    server_cert: Path
    server_key: Path
    client_cert: Path
    client_key: Path
    wrong_ca: Path  # a CA that signs nothing etcd uses


class OpenSSL:
    def __init__(self, directory: Path) -> None:
        binary = shutil.which("openssl")
        if binary is None:
            raise FlannelnodeError("openssl is missing: apt-get install -y openssl (make deps)")
        self.bin, self.dir = binary, directory

    def run(self, *args: str) -> None:
        result = subprocess.run(
            [self.bin, *args],
            cwd=self.dir,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        if result.returncode != 0:
            raise FlannelnodeError(f"openssl {args[0]} failed: {result.stderr.strip()}")

    def key(self, name: str) -> None:
        self.run("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256",
                 "-out", f"{name}-key.pem")  # fmt: skip

    def ca(self, name: str) -> Path:
        self.key(name)
        self.run("req", "-x509", "-new", "-key", f"{name}-key.pem", "-out", f"{name}.pem",
                 "-days", "2", "-subj", f"/CN=flannelnode verify {name}",
                 "-addext", "basicConstraints=critical,CA:TRUE",
                 "-addext", "keyUsage=critical,keyCertSign,cRLSign")  # fmt: skip
        return self.dir / f"{name}.pem"

    def leaf(self, name: str, ca: str, extensions: str) -> tuple[Path, Path]:
        self.key(name)
        (self.dir / f"{name}.ext").write_text(extensions)
        self.run("req", "-new", "-key", f"{name}-key.pem", "-out", f"{name}.csr",
                 "-subj", f"/CN={name}")  # fmt: skip
        self.run("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.pem", "-CAkey",
                 f"{ca}-key.pem", "-CAcreateserial", "-out", f"{name}.pem", "-days", "2",
                 "-extfile", f"{name}.ext")  # fmt: skip
        return self.dir / f"{name}.pem", self.dir / f"{name}-key.pem"


def _san(hosts: list[str]) -> str:
    names = []
    for host in hosts:
        try:
            ipaddress.ip_address(host)
            names.append(f"IP:{host}")
        except ValueError:
            names.append(f"DNS:{host}")
    return ",".join(names)


def make(directory: Path, server_hosts: list[str]) -> Pki:
    """Certificates in directory (0700). The server certificate is valid for server_hosts and
    also for client auth: etcd's gRPC gateway dials etcd's own listener with it."""
    directory.mkdir(parents=True, exist_ok=True)
    directory.chmod(0o700)
    tool = OpenSSL(directory)
    ca = tool.ca("ca")
    wrong = tool.ca("wrong-ca")
    server = server_cert(directory, "server", server_hosts)
    client = tool.leaf(
        "client", "ca", "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n"
    )
    return Pki(ca, *server, *client, wrong)


def server_cert(directory: Path, name: str, hosts: list[str]) -> tuple[Path, Path]:
    """Another etcd server certificate (and key) from the CA that make() put in directory."""
    return OpenSSL(directory).leaf(
        name, "ca", f"subjectAltName={_san(hosts)}\nextendedKeyUsage=serverAuth,clientAuth\n"
    )
