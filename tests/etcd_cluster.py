"""A real 3-member etcd cluster on 127.0.0.1 with client-cert TLS, for tests and benchmarks.

Certificates come from the openssl CLI; members are Debian's /usr/bin/etcd, each in its own
session; close() kills every member it started. Nothing is skipped when a tool is missing:
the cluster refuses to start and says how to install it.
"""

from __future__ import annotations

import ctypes
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
import urllib.request
import warnings
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from verify.pki import OpenSSL

INSTALL_HINT = "apt-get install -y etcd-server etcd-client openssl"
HOST = "127.0.0.1"
PR_SET_PDEATHSIG = 1


def require_tool(name: str) -> str:
    path = shutil.which(name) or (f"/usr/bin/{name}" if Path(f"/usr/bin/{name}").exists() else None)
    if path is None:
        raise RuntimeError(f"{name} is not installed; install it with: {INSTALL_HINT}")
    return path


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel kills the member if the test process dies
    without tearing down (SIGKILL, crash), so no etcd outlives its test run."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def free_ports(count: int) -> list[int]:
    """Ports the kernel hands out for port 0, all held open at once so they differ."""
    sockets = [socket.socket() for _ in range(count)]
    try:
        for sock in sockets:
            sock.bind((HOST, 0))
        return [sock.getsockname()[1] for sock in sockets]
    finally:
        for sock in sockets:
            sock.close()


@dataclass(frozen=True)
class Certs:
    ca: Path
    cert: Path  # client certificate signed by `ca`
    key: Path
    server_cert: Path
    server_key: Path
    other_ca: Path  # a CA that signs nothing the cluster uses
    other_cert: Path  # a client certificate signed by `other_ca`
    other_key: Path
    expired_cert: Path  # signed by `ca`, expired in 2001
    expired_key: Path
    future_cert: Path  # signed by `ca`, valid from 2990
    future_key: Path


class _OpenSSL(OpenSSL):
    """verify/pki.py's certificate maker, plus client certificates valid at other times."""

    def __init__(self, directory: Path) -> None:
        require_tool("openssl")
        super().__init__(directory)

    def dated_leaf(
        self, name: str, ca: str, extensions: str, start: str, end: str
    ) -> tuple[Path, Path]:
        """`openssl x509 -req` cannot set the dates; `openssl ca` can, given a minimal CA
        database. start, end: YYYYMMDDHHMMSSZ."""
        self.key(name)
        (self.dir / f"{name}.ext").write_text(extensions)
        self.run(
            "req", "-new", "-key", f"{name}-key.pem", "-out", f"{name}.csr", "-subj", f"/CN={name}"
        )
        if not (self.dir / "ca.cnf").exists():  # one database: each leaf its own serial
            (self.dir / "index.txt").write_text("")
            (self.dir / "ca.cnf").write_text(
                "[ca]\ndefault_ca = test\n[test]\ndatabase = index.txt\nnew_certs_dir = .\n"
                "serial = ca-db.srl\ndefault_md = sha256\npolicy = anything\n"
                "[anything]\ncommonName = supplied\n"
            )
            (self.dir / "ca-db.srl").write_text("1000\n")
        self.run(
            "ca",
            "-batch",
            "-config",
            "ca.cnf",
            "-cert",
            f"{ca}.pem",
            "-keyfile",
            f"{ca}-key.pem",
            "-in",
            f"{name}.csr",
            "-out",
            f"{name}.pem",
            "-notext",
            "-startdate",
            start,
            "-enddate",
            end,
            "-extfile",
            f"{name}.ext",
        )
        return self.dir / f"{name}.pem", self.dir / f"{name}-key.pem"


def make_certs(directory: Path, extra_ips: Sequence[str] = ()) -> Certs:
    """extra_ips: more addresses the server certificate is valid for (a VM reaches the host's
    127.0.0.1 as 10.0.2.100 through qemu's user-mode network)."""
    directory.mkdir(parents=True, exist_ok=True)
    tool = _OpenSSL(directory)
    client_ext = "extendedKeyUsage=clientAuth\nkeyUsage=critical,digitalSignature\n"
    tool.ca("ca")
    tool.ca("other-ca")
    sans = [f"IP:{HOST}", "DNS:localhost", *(f"IP:{ip}" for ip in extra_ips)]
    # one certificate serves the client and peer listeners: etcd's gRPC gateway and its peers
    # also dial with it, so it needs clientAuth too
    server = tool.leaf(
        "server",
        "ca",
        f"subjectAltName={','.join(sans)}\nextendedKeyUsage=serverAuth,clientAuth\n",
    )
    client = tool.leaf("client", "ca", client_ext)
    other = tool.leaf("other-client", "other-ca", client_ext)
    expired = tool.dated_leaf(
        "expired-client", "ca", client_ext, "20000101000000Z", "20010101000000Z"
    )
    future = tool.dated_leaf(
        "future-client", "ca", client_ext, "29900101000000Z", "29910101000000Z"
    )
    return Certs(
        directory / "ca.pem",
        *client,
        *server,
        directory / "other-ca.pem",
        *other,
        *expired,
        *future,
    )


@dataclass
class Member:
    name: str
    client_port: int
    peer_port: int
    data_dir: Path
    log: Path
    process: subprocess.Popen | None = None

    @property
    def client_url(self) -> str:
        return f"https://{HOST}:{self.client_port}"

    @property
    def peer_url(self) -> str:
        return f"https://{HOST}:{self.peer_port}"

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class EtcdCluster:
    def __init__(self, workdir: Path, size: int = 3, extra_ips: Sequence[str] = ()) -> None:
        self.etcd = require_tool("etcd")
        self.workdir = workdir
        self.certs = make_certs(workdir / "pki", extra_ips)
        ports = free_ports(2 * size)
        self.members = [
            Member(
                f"m{i}",
                ports[2 * i],
                ports[2 * i + 1],
                workdir / f"m{i}.data",
                workdir / f"m{i}.log",
            )
            for i in range(size)
        ]
        self._ssl = ssl.create_default_context(cafile=str(self.certs.ca))
        self._ssl.load_cert_chain(str(self.certs.cert), str(self.certs.key))

    @property
    def endpoints(self) -> list[str]:
        return [m.client_url for m in self.members]

    def _command(self, member: Member) -> list[str]:
        c = self.certs
        initial = ",".join(f"{m.name}={m.peer_url}" for m in self.members)
        return [
            self.etcd,
            "--name",
            member.name,
            "--data-dir",
            str(member.data_dir),
            "--listen-client-urls",
            member.client_url,
            "--advertise-client-urls",
            member.client_url,
            "--listen-peer-urls",
            member.peer_url,
            "--initial-advertise-peer-urls",
            member.peer_url,
            "--initial-cluster",
            initial,
            "--initial-cluster-state",
            "new",
            "--initial-cluster-token",
            f"flannelnode-test-{os.getpid()}",
            "--client-cert-auth",
            "--trusted-ca-file",
            str(c.ca),
            "--cert-file",
            str(c.server_cert),
            "--key-file",
            str(c.server_key),
            "--peer-client-cert-auth",
            "--peer-trusted-ca-file",
            str(c.ca),
            "--peer-cert-file",
            str(c.server_cert),
            "--peer-key-file",
            str(c.server_key),
            "--enable-v2=true",
            "--heartbeat-interval",
            "50",
            "--election-timeout",
            "500",
            "--logger",
            "zap",
            "--log-level",
            "warn",
        ]

    def start_member(self, index: int) -> None:
        member = self.members[index]
        if member.running:
            return
        env = {k: v for k, v in os.environ.items() if not k.startswith("ETCD")}
        with member.log.open("a") as log:
            member.process = subprocess.Popen(
                self._command(member),
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env=env,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def stop_member(self, index: int) -> None:
        """Kill a member outright (a crashed or not-yet-booted node), keeping its data."""
        member = self.members[index]
        if member.process is None:
            return
        if member.process.poll() is None:
            member.process.send_signal(signal.SIGKILL)
            member.process.wait(timeout=10)
        member.process = None

    def start(self, timeout: float = 30.0) -> None:
        for index in range(len(self.members)):
            self.start_member(index)
        self.wait_healthy(timeout)

    def healthy(self, member: Member) -> bool:
        try:
            with urllib.request.urlopen(
                f"{member.client_url}/health", context=self._ssl, timeout=2
            ) as r:
                return json.load(r).get("health") == "true"
        except (OSError, ValueError):
            return False

    def wait_healthy(self, timeout: float = 30.0) -> None:
        """Until every running member reports health (it has a leader and serves a read)."""
        stop_at = time.monotonic() + timeout
        while time.monotonic() < stop_at:
            for member in self.members:
                if member.process is not None and member.process.poll() is not None:
                    raise RuntimeError(f"etcd {member.name} exited:\n{self.log_tail(member)}")
            if all(self.healthy(m) for m in self.members if m.running):
                return
            time.sleep(0.1)
        logs = "\n".join(self.log_tail(m) for m in self.members)
        raise RuntimeError(f"etcd cluster not healthy after {timeout}s:\n{logs}")

    def ensure_running(self) -> None:
        if not all(m.running for m in self.members):
            for index in range(len(self.members)):
                self.start_member(index)
        self.wait_healthy()

    def log_tail(self, member: Member, lines: int = 15) -> str:
        text = member.log.read_text(errors="replace") if member.log.exists() else ""
        return f"--- {member.name} ({member.log}) ---\n" + "\n".join(text.splitlines()[-lines:])

    def close(self) -> None:
        for index in range(len(self.members)):
            self.stop_member(index)

    def oracle(self):
        """An etcd3 gRPC client: an implementation independent of the seeder's HTTP gateway code.

        etcd3 0.12 has no failover, so it talks to one running member; it needs protobuf's pure
        Python implementation (its generated code predates protobuf 4), set before its first import.
        """
        os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")
        with warnings.catch_warnings():  # etcd3 0.12's generated protobuf code is old
            warnings.simplefilter("ignore", DeprecationWarning)
            import etcd3

        member = next(m for m in self.members if m.running)
        return etcd3.client(
            host=HOST,
            port=member.client_port,
            ca_cert=str(self.certs.ca),
            cert_key=str(self.certs.key),
            cert_cert=str(self.certs.cert),
            timeout=10,
        )

    def __enter__(self) -> EtcdCluster:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
