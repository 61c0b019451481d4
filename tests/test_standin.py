"""The flanneld stand-in (tests/standin) against the real 3-member TLS etcd cluster.

Runs the compiled ELF, as systemd would: flags as flanneld.service passes them, NOTIFY_SOCKET an
abstract unix socket, SIGTERM to stop. etcd is read back with the etcd3 gRPC client (v3) or a
raw HTTPS GET (v2), implementations independent of the stand-in's.

`test_contract` is the contract table: one case per behaviour of real flanneld that node
artifacts depend on, named after the point of flanneld's start-up order it checks (1 flags,
2 --version, 3 environment, 4 renew margin, 5 TLS files, 6 config wait, 7 address family,
8 br_netfilter, 9 interface, 10 lease, 11 subnet file, 12 READY/signals, api: etcd v2/v3,
dp: the datapath). The dp cases run stand-ins in two network namespaces joined by a veth pair
(tests/netns.py), with the datapath on; every other case runs it on this host with
FLANNEL_STANDIN_DATAPATH=off, since the host's devices and iptables are not the tests' to change.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import signal
import socket
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from flannelnode.extract import check_elf
from flannelnode.seed import SEEDER

from .etcd_cluster import EtcdCluster, free_ports
from .netns import ADDRESSES, Namespaces
from .standin_release import STANDIN_VERSION, StandinRelease

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")  # before etcd3
with warnings.catch_warnings():  # etcd3 0.12's generated protobuf code is old
    warnings.simplefilter("ignore", DeprecationWarning)
    import etcd3


PROBE = Path(__file__).resolve().parent.parent / "verify" / "probe.py"
VXLAN_ONLY = {"Backend": {"Type": "vxlan"}}
VXLAN = {"Network": "10.7.0.0/16", **VXLAN_ONLY}
LO_MTU = int(Path("/sys/class/net/lo/mtu").read_text())
WAIT = 3.0  # how long a retrying stand-in is watched before the test concludes it keeps waiting


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    name = request.node.name.replace("[", "-").rstrip("]").replace("/", "-")
    return f"/standin/{name}-{uuid.uuid4().hex[:8]}"


@pytest.fixture
def kv(etcd: EtcdCluster) -> Iterator[etcd3.Etcd3Client]:
    client = etcd.oracle()
    yield client
    client.close()


@dataclass
class Agent:
    process: subprocess.Popen[str]
    notify: socket.socket
    subnet_env: Path
    _err: str | None = field(default=None)

    def ready(self, timeout: float = 20.0) -> str:
        """The sd_notify datagram, as systemd would receive it; the subnet file must exist by
        then (flanneld writes it before READY=1)."""
        self.notify.settimeout(timeout)
        try:
            message = self.notify.recv(4096).decode()
        except TimeoutError:
            raise AssertionError(f"no READY=1 within {timeout}s:\n{self.stderr()}") from None
        assert self.subnet_env.exists(), f"READY=1 before {self.subnet_env} was written"
        return message

    def keeps_waiting(self, seconds: float = WAIT) -> None:
        """Still running after `seconds`, never READY, no subnet file."""
        self.notify.settimeout(seconds)
        try:
            message = self.notify.recv(4096).decode()
        except TimeoutError:
            message = ""
        assert message == "", f"unexpected notification {message!r}:\n{self.stderr()}"
        assert self.process.poll() is None, f"exited {self.process.returncode}:\n{self.stderr()}"
        assert not self.subnet_env.exists()

    def exit_code(self, timeout: float = 20.0) -> int:
        return self.process.wait(timeout=timeout)

    def env(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.subnet_env.read_text().splitlines())

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)

    def stderr(self) -> str:
        if self._err is None:
            if self.process.poll() is None:
                self.process.kill()
            self._err = self.process.communicate(timeout=10)[1]
        return self._err


@dataclass
class Runner:
    """Starts stand-ins the way flanneld.service does, with the test cluster's TLS files."""

    etcd: EtcdCluster
    build: Callable[[str], Path]
    prefix: str
    tmp: Path
    agents: list[Agent] = field(default_factory=list)

    def subnet_file(self, name: str = "a") -> Path:
        return self.tmp / name / "subnet.env"

    def __call__(
        self,
        *extra: str,
        ca: Path | None = None,
        cert: Path | None = None,
        key: Path | None = None,
        name: str = "a",
        version: str = STANDIN_VERSION,
        env: dict[str, str] | None = None,
        endpoints: list[str] | None = None,
        iface: str | None = "--iface=127.0.0.1",
        flags: list[str] | None = None,
        netns: tuple[Namespaces, int] | None = None,
    ) -> Agent:
        """netns: (namespaces, index): run inside that namespace, datapath on, the default
        route's interface (the veth)."""
        c = self.etcd.certs
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        address = f"flannelnode-standin-{uuid.uuid4().hex}"
        if netns is None:
            notify.bind("\0" + address)
            notify_socket, prefix, datapath = "@" + address, [], "off"
        else:  # an abstract socket belongs to its network namespace: a file instead
            notify_socket = str(netns[0].dir / f"{address[-8:]}.notify")
            notify.bind(notify_socket)
            prefix, datapath, iface = netns[0].prefix(netns[1]), "on", None
        if flags is None:
            flags = [
                "--ip-masq",
                f"--etcd-endpoints={','.join(endpoints or self.etcd.endpoints)}",
                f"--etcd-cafile={ca or c.ca}",
                f"--etcd-certfile={cert or c.cert}",
                f"--etcd-keyfile={key or c.key}",
                f"--etcd-prefix={self.prefix}",
                f"--subnet-file={self.subnet_file(name)}",
                *([iface] if iface else []),
            ]
        process = subprocess.Popen(
            [*prefix, str(self.build(version)), *flags, *extra],
            # this host's own devices and iptables are no test's to change: the datapath is
            # checked in network namespaces (the dp- cases) and node containers (verify)
            env={
                **os.environ,
                "NOTIFY_SOCKET": notify_socket,
                "FLANNEL_STANDIN_DATAPATH": datapath,
                **(env or {}),
            },
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        agent = Agent(process, notify, self.subnet_file(name))
        self.agents.append(agent)
        return agent


@pytest.fixture
def run(
    etcd: EtcdCluster, standin_build: Callable[[str], Path], prefix: str, tmp_path: Path
) -> Iterator[Runner]:
    runner = Runner(etcd, standin_build, prefix, tmp_path)
    yield runner
    for agent in runner.agents:
        if agent.process.poll() is None:
            agent.process.kill()
            agent.process.wait(timeout=10)
        agent.notify.close()


def leases(kv: etcd3.Etcd3Client, prefix: str) -> dict[str, tuple[dict, object]]:
    return {
        meta.key.decode(): (json.loads(value), meta)
        for value, meta in kv.get_prefix(f"{prefix}/subnets/")
    }


def lease_ttl(kv: etcd3.Etcd3Client, meta: object) -> int:
    assert meta.lease_id, "the lease key has no etcd lease (no TTL)"
    return int(kv.get_lease_info(meta.lease_id).TTL)


def v2_get(etcd: EtcdCluster, key: str, recursive: bool = False) -> dict | None:
    context = ssl.create_default_context(cafile=str(etcd.certs.ca))
    context.load_cert_chain(str(etcd.certs.cert), str(etcd.certs.key))
    member = next(m for m in etcd.members if m.running)
    query = "?quorum=true" + ("&recursive=true" if recursive else "")
    try:
        with urllib.request.urlopen(
            f"{member.client_url}/v2/keys{key}{query}", context=context, timeout=10
        ) as response:
            return json.load(response)["node"]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise


def seed(etcd: EtcdCluster, prefix: str, network: dict, version: str) -> None:
    """The node's own seeder, as flannel-seed-etcd.service runs it."""
    c = etcd.certs
    result = subprocess.run(
        [
            sys.executable,
            str(SEEDER),
            "--endpoints",
            ",".join(etcd.endpoints),
            "--cacert",
            str(c.ca),
            "--cert",
            str(c.cert),
            "--key",
            str(c.key),
            "--prefix",
            prefix,
            "--config-json",
            json.dumps(network),
            "--flannel-version",
            version,
        ],
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 0, result.stderr


# --- the contract table --------------------------------------------------------------------------


@dataclass
class Ctx:
    run: Runner
    kv: etcd3.Etcd3Client
    prefix: str
    etcd: EtcdCluster
    tmp: Path

    def config(self, network: dict | None = None) -> None:
        self.kv.put(f"{self.prefix}/config", json.dumps(network or VXLAN))

    def proc_sys(self, *present: str) -> dict[str, str]:
        """A /proc/sys stand-in holding only the given net/bridge entries."""
        root = self.tmp / f"proc-sys-{uuid.uuid4().hex[:6]}"
        (root / "net" / "bridge").mkdir(parents=True)
        for name in present:
            (root / "net" / "bridge" / name).write_text("1\n")
        return {"FLANNEL_STANDIN_PROC_SYS": str(root)}

    def usage_exit(self, agent: Agent, message: str) -> None:
        assert agent.exit_code() == 0
        err = agent.stderr()
        assert message in err, err
        assert "Usage: " in err and "-etcd-endpoints string" in err, err
        assert not agent.subnet_env.exists()
        assert leases(self.kv, self.prefix) == {}

    def fatal(self, agent: Agent, message: str) -> None:
        assert agent.exit_code() == 1, agent.stderr()
        err = agent.stderr()
        assert message in err, err
        assert "Traceback" not in err, err
        assert not agent.subnet_env.exists()


CASES: dict[str, Callable[[Ctx], None]] = {}


def case(point: str) -> Callable[[Callable[[Ctx], None]], Callable[[Ctx], None]]:
    def register(fn: Callable[[Ctx], None]) -> Callable[[Ctx], None]:
        assert point not in CASES
        CASES[point] = fn
        return fn

    return register


@case("1-single-and-double-dash-and-separate-values")
def _(t: Ctx) -> None:
    t.config()
    c = t.etcd.certs
    agent = t.run(
        flags=[
            "-ip-masq",
            "-etcd-endpoints",
            ",".join(t.etcd.endpoints),
            f"-etcd-cafile={c.ca}",
            "--etcd-certfile",
            str(c.cert),
            f"--etcd-keyfile={c.key}",
            "-etcd-prefix",
            t.prefix,
            "-subnet-file",
            str(t.run.subnet_file()),
            "--iface",
            "192.0.2.250",  # absent: the next --iface is tried, as in flannel
            "-iface=127.0.0.1",
        ]
    )
    assert agent.ready() == "READY=1"
    assert agent.env()["FLANNEL_IPMASQ"] == "true"
    assert agent.stop() == 0
    assert "Could not find valid interface matching 192.0.2.250" in agent.stderr()


@case("1-bool-flag-takes-no-separate-value")
def _(t: Ctx) -> None:
    # `-ip-masq false`: the bool is set, "false" is the first non-flag argument and ends parsing,
    # so the unknown flag after it is never looked at
    t.config()
    agent = t.run("-ip-masq", "false", "--no-such-flag")
    agent.ready()
    assert agent.env()["FLANNEL_IPMASQ"] == "true"


@case("1-bool-flag-explicit-false")
def _(t: Ctx) -> None:
    t.config()
    agent = t.run("--ip-masq=false")
    agent.ready()
    assert agent.env()["FLANNEL_IPMASQ"] == "false"


@case("1-double-dash-ends-flags")
def _(t: Ctx) -> None:
    t.config()
    agent = t.run("--", "--no-such-flag")
    assert agent.ready() == "READY=1"


@case("1-unknown-flag-usage-exit-0")
def _(t: Ctx) -> None:
    t.config()
    t.usage_exit(t.run("--kube-subnet-mgrr"), "flag provided but not defined: -kube-subnet-mgrr")


@case("1-bad-int-value-usage-exit-0")
def _(t: Ctx) -> None:
    t.usage_exit(
        t.run("--subnet-lease-renew-margin=soon"),
        'invalid value "soon" for flag -subnet-lease-renew-margin: parse error',
    )


@case("1-bad-bool-value-usage-exit-0")
def _(t: Ctx) -> None:
    t.usage_exit(t.run("--ip-masq=yes"), 'invalid boolean value "yes" for -ip-masq: parse error')


@case("1-missing-value-usage-exit-0")
def _(t: Ctx) -> None:
    t.usage_exit(t.run("--public-ip"), "flag needs an argument: -public-ip")


@case("1-help-usage-exit-0")
def _(t: Ctx) -> None:
    t.usage_exit(t.run("-h"), "Usage: ")


@case("1-every-v0.27-flag-accepted")
def _(t: Ctx) -> None:
    t.config()
    agent = t.run(
        "--etcd-username=",
        "--etcd-password=",
        "--iface-regex=^127\\.",
        "--iface-can-reach=",
        "--public-ip=192.0.2.9",
        "--public-ipv6=",
        "--subnet-lease-renew-margin=30",
        "--ip-masq-fully-random-disable",
        "--kube-subnet-mgr=false",
        "--kube-api-url=",
        "--kube-annotation-prefix=flannel.alpha.coreos.com",
        "--kubeconfig-file=",
        "--version=false",
        "--healthz-ip=127.0.0.1",
        "--healthz-port=0",
        "--iptables-resync=5",
        "--iptables-forward-rules=true",
        "--ip-blackhole-route=false",
        "--net-config-path=/etc/kube-flannel/net-conf.json",
        "--set-node-network-unavailable=true",
        "-v=2",
        "-vmodule=main=2",
        "-log_backtrace_at=main.go:1",
    )
    assert agent.ready() == "READY=1"


@case("1-flag-of-a-later-release-refused-by-v0.17")
def _(t: Ctx) -> None:
    t.usage_exit(
        t.run("--iface-can-reach=127.0.0.1", version="v0.17.0"),
        "flag provided but not defined: -iface-can-reach",
    )


@case("2-version-on-stderr-exit-0")
def _(t: Ctx) -> None:
    for version in (STANDIN_VERSION, "v0.17.0"):
        agent = t.run("--version", version=version)
        assert agent.exit_code() == 0
        out, err = agent.process.communicate(timeout=10)
        assert (out, err) == ("", f"{version}\n")


@case("2-version-not-read-from-environment")
def _(t: Ctx) -> None:
    # flanneld checks --version before it reads FLANNELD_*: this one goes on to the margin check
    agent = t.run("--subnet-lease-renew-margin=0", env={"FLANNELD_VERSION": "true"})
    t.fatal(agent, "Invalid subnet-lease-renew-margin option, out of acceptable range")


@case("3-env-sets-unset-flags")
def _(t: Ctx) -> None:
    t.config()
    elsewhere = t.tmp / "env" / "subnet.env"
    c = t.etcd.certs
    agent = t.run(
        flags=[f"--etcd-endpoints={','.join(t.etcd.endpoints)}", "--iface=127.0.0.1"],
        env={
            "FLANNELD_IP_MASQ": "true",
            "FLANNELD_ETCD_CAFILE": str(c.ca),
            "FLANNELD_ETCD_CERTFILE": str(c.cert),
            "FLANNELD_ETCD_KEYFILE": str(c.key),
            "FLANNELD_ETCD_PREFIX": t.prefix,
            "FLANNELD_SUBNET_FILE": str(elsewhere),
            "FLANNELD_PUBLIC_IP": "192.0.2.31",
        },
    )
    agent.subnet_env = elsewhere
    agent.ready()
    assert agent.env()["FLANNEL_IPMASQ"] == "true"
    [(value, _)] = leases(t.kv, t.prefix).values()
    assert value["PublicIP"] == "192.0.2.31"


@case("3-env-does-not-override-command-line")
def _(t: Ctx) -> None:
    t.config()
    decoy = t.tmp / "decoy" / "subnet.env"
    agent = t.run(
        "--ip-masq=false",
        env={"FLANNELD_IP_MASQ": "true", "FLANNELD_SUBNET_FILE": str(decoy)},
    )
    agent.ready()
    assert agent.env()["FLANNEL_IPMASQ"] == "false"
    assert not decoy.exists()


@case("3-env-bad-value-logged-and-ignored")
def _(t: Ctx) -> None:
    t.config()
    agent = t.run(env={"FLANNELD_SUBNET_LEASE_RENEW_MARGIN": "soon"})
    assert agent.ready() == "READY=1"
    assert agent.stop() == 0
    assert 'invalid value "soon" for FLANNELD_SUBNET_LEASE_RENEW_MARGIN' in agent.stderr()


@case("4-renew-margin-out-of-range-exit-1")
def _(t: Ctx) -> None:
    for margin in ("0", "1440", "-5"):
        agent = t.run(f"--subnet-lease-renew-margin={margin}")
        t.fatal(agent, "Invalid subnet-lease-renew-margin option, out of acceptable range")


@case("5-tls-file-missing-exit-1")
def _(t: Ctx) -> None:
    missing = t.tmp / "missing.pem"
    for tls in ({"ca": missing}, {"cert": missing}, {"key": missing}):
        agent = t.run(**tls)
        t.fatal(agent, f"Failed to create SubnetManager: open {missing}: no such file")


@case("5-tls-file-unreadable-exit-1")
def _(t: Ctx) -> None:
    directory = t.tmp / "a-directory.pem"
    directory.mkdir()
    t.fatal(t.run(cert=directory), "Failed to create SubnetManager: ")


@case("5-tls-key-not-matching-cert-exit-1")
def _(t: Ctx) -> None:
    agent = t.run(key=t.etcd.certs.other_key)
    t.fatal(agent, "Failed to create SubnetManager: tls: private key does not match public key")


@case("6-wrong-ca-retries-forever-no-ready")
def _(t: Ctx) -> None:
    t.config()
    agent = t.run(ca=t.etcd.certs.other_ca)
    agent.keeps_waiting()
    assert agent.stop() == 0
    err = agent.stderr()
    assert "Couldn't fetch network config" in err
    assert "x509: certificate signed by unknown authority" in err, err
    assert any(endpoint in err for endpoint in t.etcd.endpoints), err
    assert err.count("Couldn't fetch network config") == 1, "logged once per change, not a flood"
    assert leases(t.kv, t.prefix) == {}


@case("6-rejected-client-cert-retries-no-ready")
def _(t: Ctx) -> None:
    t.config()
    agent = t.run(cert=t.etcd.certs.other_cert, key=t.etcd.certs.other_key)
    agent.keeps_waiting()
    assert agent.stop() == 0
    assert "remote error: tls: " in agent.stderr()


@case("6-etcd-unreachable-retries-no-ready")
def _(t: Ctx) -> None:
    [port] = free_ports(1)
    agent = t.run(endpoints=[f"https://127.0.0.1:{port}"])
    agent.keeps_waiting()
    assert agent.stop() == 0
    assert f"dial tcp 127.0.0.1:{port}: connect: connection refused" in agent.stderr()


@case("6-config-absent-then-written-ready")
def _(t: Ctx) -> None:
    agent = t.run()
    agent.keeps_waiting(1.5)
    t.config()
    assert agent.ready() == "READY=1"
    assert agent.stop() == 0
    assert "flannel config not found in etcd store" in agent.stderr()


@case("6-invalid-config-retries-no-ready")
def _(t: Ctx) -> None:
    t.config({"Network": "10.8.0.0/16", "SubnetLen": 31})
    agent = t.run()
    agent.keeps_waiting()
    assert agent.stop() == 0
    assert "Couldn't fetch network config: SubnetLen must be less than /31" in agent.stderr()


@case("12-sigint-while-waiting-exit-0")
def _(t: Ctx) -> None:
    agent = t.run()
    agent.keeps_waiting(1.0)
    agent.process.send_signal(signal.SIGINT)
    assert agent.exit_code(10) == 0


@case("7-no-address-family-exit-1")
def _(t: Ctx) -> None:
    t.config({"Network": "10.7.0.0/16", "EnableIPv4": False})
    t.fatal(t.run(), "none defined stack")


@case("8-br-netfilter-absent-v0.27-exit-1")
def _(t: Ctx) -> None:
    t.config()
    agent = t.run(env=t.proc_sys())
    t.fatal(agent, "Failed to check br_netfilter")
    assert leases(t.kv, t.prefix) == {}  # checked before any lease is taken


@case("8-br-netfilter-present-v0.27-runs")
def _(t: Ctx) -> None:
    t.config()
    agent = t.run(env=t.proc_sys("bridge-nf-call-iptables"))
    assert agent.ready() == "READY=1"


@case("8-br-netfilter-not-checked-before-v0.26")
def _(t: Ctx) -> None:
    t.config()
    agent = t.run(env=t.proc_sys(), version="v0.25.7")
    assert agent.ready() == "READY=1"


@case("8-enable-nftables-v0.27-still-checks-exit-1")
def _(t: Ctx) -> None:
    t.config({**VXLAN, "EnableNFTables": True})
    t.fatal(t.run(env=t.proc_sys()), "Failed to check br_netfilter")


@case("8-enable-nftables-skips-check-from-v0.28")
def _(t: Ctx) -> None:
    t.config({**VXLAN, "EnableNFTables": True})
    agent = t.run(env=t.proc_sys(), version="v0.28.0")
    assert agent.ready() == "READY=1"


@case("8-ipv6-needs-bridge-nf-call-ip6tables-exit-1")
def _(t: Ctx) -> None:
    t.config({**VXLAN, "EnableIPv6": True, "IPv6Network": "fd42:7::/48"})
    agent = t.run("--public-ipv6=::1", env=t.proc_sys("bridge-nf-call-iptables"))
    t.fatal(agent, "bridge-nf-call-ip6tables")


@case("9-iface-name-without-usable-address-exit-1")
def _(t: Ctx) -> None:
    # flannel takes global or link-local addresses only: lo by name has none
    t.config()
    agent = t.run(iface="--iface=lo")
    t.fatal(agent, "Failed to find interface to use that matches the interfaces")
    assert "failed to find IPv4 address for interface lo" in agent.stderr()


@case("9-no-such-iface-exit-1")
def _(t: Ctx) -> None:
    t.config()
    t.fatal(t.run(iface="--iface=nosuch0"), "Failed to find interface to use")


@case("9-iface-regex-matches-name-without-usable-address-exit-1")
def _(t: Ctx) -> None:
    # 127.0.0.1 is no candidate for the regex (loopback), the name lo is, but has no address
    t.config()
    agent = t.run(iface="--iface-regex=^(127\\.0\\.0\\.1|lo)$")
    t.fatal(agent, "failed to find IPv4 address for interface lo")


@case("9-iface-can-reach")
def _(t: Ctx) -> None:
    t.config()
    agent = t.run(iface="--iface-can-reach=127.0.0.1")
    assert agent.ready() == "READY=1"
    [(value, _)] = leases(t.kv, t.prefix).values()
    assert value["PublicIP"] == "127.0.0.1"


@case("hook-safety-cap-ends-a-leaked-stand-in")
def _(t: Ctx) -> None:
    [port] = free_ports(1)
    agent = t.run(
        endpoints=[f"https://127.0.0.1:{port}"], env={"FLANNEL_STANDIN_MAX_SECONDS": "1.5"}
    )
    assert agent.exit_code(10) == 0
    assert "FLANNEL_STANDIN_MAX_SECONDS=1.5 reached" in agent.stderr()


@case("10-lease-24h-ttl-and-reuse-from-subnet-file")
def _(t: Ctx) -> None:
    t.config()
    previous = t.run.subnet_file()
    previous.parent.mkdir(parents=True)
    previous.write_text("FLANNEL_NETWORK=10.7.0.0/16\nFLANNEL_SUBNET=10.7.77.1/24\n")
    agent = t.run("--public-ip=192.0.2.77")
    agent.ready()
    assert agent.env()["FLANNEL_SUBNET"] == "10.7.77.1/24"
    [(key, (value, meta))] = leases(t.kv, t.prefix).items()
    assert key == f"{t.prefix}/subnets/10.7.77.0-24"
    assert value["PublicIP"] == "192.0.2.77"
    assert 24 * 3600 - 60 < lease_ttl(t.kv, meta) <= 24 * 3600
    assert agent.stop() == 0
    assert "Found previously leased subnet (10.7.77.0/24), reusing" in agent.stderr()


@case("11-subnet-file-ipv4")
def _(t: Ctx) -> None:
    t.config()
    agent = t.run("--public-ip=192.0.2.11")
    agent.ready()
    lines = agent.subnet_env.read_text().splitlines()
    assert [line.split("=")[0] for line in lines] == [
        "FLANNEL_NETWORK",
        "FLANNEL_SUBNET",
        "FLANNEL_MTU",
        "FLANNEL_IPMASQ",
    ]
    env = agent.env()
    assert env["FLANNEL_NETWORK"] == "10.7.0.0/16"
    assert env["FLANNEL_MTU"] == str(LO_MTU - 50)
    assert env["FLANNEL_IPMASQ"] == "true"
    assert agent.subnet_env.stat().st_mode & 0o777 == 0o644
    assert not (agent.subnet_env.parent / ".subnet.env").exists()


@case("11-subnet-file-ipv6-only")
def _(t: Ctx) -> None:
    t.config({"EnableIPv4": False, "EnableIPv6": True, "IPv6Network": "fd42:6::/56", **VXLAN_ONLY})
    agent = t.run(iface="--iface=::1")
    agent.ready()
    lines = agent.subnet_env.read_text().splitlines()
    assert [line.split("=")[0] for line in lines] == [
        "FLANNEL_IPV6_NETWORK",
        "FLANNEL_IPV6_SUBNET",
        "FLANNEL_MTU",
        "FLANNEL_IPMASQ",
    ]
    env = agent.env()
    assert env["FLANNEL_IPV6_NETWORK"] == "fd42:6::/56"
    subnet = ipaddress.ip_interface(env["FLANNEL_IPV6_SUBNET"])
    assert subnet.network.prefixlen == 64 and subnet.ip == subnet.network.network_address + 1
    assert subnet.network.subnet_of(ipaddress.ip_network("fd42:6::/56"))
    [(key, (value, _))] = leases(t.kv, t.prefix).items()
    # flannel's key for an IPv6 lease: the (empty) IPv4 part, '&', the IPv6 subnet
    assert key == f"{t.prefix}/subnets/0.0.0.0-0&{subnet.network.network_address}-64"
    assert value["PublicIPv6"] == "::1"


@case("11-subnet-file-dual-stack")
def _(t: Ctx) -> None:
    t.config({**VXLAN, "EnableIPv6": True, "IPv6Network": "fd42:5::/48"})
    agent = t.run("--public-ipv6=::1")
    agent.ready()
    lines = agent.subnet_env.read_text().splitlines()
    assert [line.split("=")[0] for line in lines] == [
        "FLANNEL_NETWORK",
        "FLANNEL_SUBNET",
        "FLANNEL_IPV6_NETWORK",
        "FLANNEL_IPV6_SUBNET",
        "FLANNEL_MTU",
        "FLANNEL_IPMASQ",
    ]
    env = agent.env()
    v4 = ipaddress.ip_interface(env["FLANNEL_SUBNET"]).network
    v6 = ipaddress.ip_interface(env["FLANNEL_IPV6_SUBNET"]).network
    [key] = leases(t.kv, t.prefix)
    assert key == f"{t.prefix}/subnets/{v4.network_address}-24&{v6.network_address}-64"


@case("12-ready-only-after-subnet-file-then-sigterm-exit-0")
def _(t: Ctx) -> None:
    t.config()
    agent = t.run()
    assert agent.ready() == "READY=1"  # ready() also asserts the file was there first
    assert agent.stop() == 0


@case("api-v0.17-reads-and-leases-through-etcd-v2")
def _(t: Ctx) -> None:
    seed(t.etcd, t.prefix, VXLAN, "v0.17.0")
    agent = t.run("--public-ip=192.0.2.17", version="v0.17.0")
    assert agent.ready() == "READY=1"
    subnet = ipaddress.ip_interface(agent.env()["FLANNEL_SUBNET"]).network
    node = v2_get(t.etcd, f"{t.prefix}/subnets", recursive=True)
    [lease] = node["nodes"]
    assert lease["key"] == f"{t.prefix}/subnets/{subnet.network_address}-24"
    assert json.loads(lease["value"])["PublicIP"] == "192.0.2.17"
    assert 24 * 3600 - 60 < lease["ttl"] <= 24 * 3600
    assert leases(t.kv, t.prefix) == {}  # nothing in the v3 keyspace
    assert agent.stop() == 0


@case("api-v0.27-does-not-see-a-v2-config")
def _(t: Ctx) -> None:
    seed(t.etcd, t.prefix, VXLAN, "v0.17.0")
    agent = t.run()
    agent.keeps_waiting()
    assert agent.stop() == 0
    assert "flannel config not found in etcd store" in agent.stderr()
    assert v2_get(t.etcd, f"{t.prefix}/subnets") is None


# --- the datapath, in two network namespaces (tests/netns.py) --------------------------------


@contextlib.contextmanager
def namespaces(t: Ctx) -> Iterator[Namespaces]:
    ns = Namespaces([m.client_port for m in t.etcd.members])
    try:
        yield ns
    finally:
        for agent in t.run.agents:
            if agent.process.poll() is None:
                agent.process.kill()
                agent.process.wait(timeout=10)
        ns.close()


def ns_json(ns: Namespaces, index: int, *argv: str) -> Any:
    return json.loads(ns.exec(index, *argv) or "[]")


def lease_by_ip(t: Ctx, ip: str) -> tuple[ipaddress.IPv4Network, dict, str]:
    for key, (value, _) in leases(t.kv, t.prefix).items():
        if value["PublicIP"] == ip:
            address, length = key.rsplit("/", 1)[1].split("-")
            return ipaddress.ip_network(f"{address}/{length}"), value, key
    raise AssertionError(f"no lease for {ip}: {leases(t.kv, t.prefix)}")


def until(probe: Callable[[], Any], seconds: float = 10.0) -> Any:
    """probe() until truthy, at most `seconds`; its last value."""
    stop_at = time.monotonic() + seconds
    while not (value := probe()) and time.monotonic() < stop_at:
        time.sleep(0.1)
    return value


def vxlan_entries(ns: Namespaces, index: int, net: ipaddress.IPv4Network, public: str) -> dict:
    gateway = str(net.network_address)
    return {
        "route": [
            (r.get("gateway"), r.get("dev"), r.get("flags"))
            for r in ns_json(ns, index, "ip", "-j", "route", "show", "exact", str(net))
        ],
        "neigh": [
            (n.get("lladdr"), n.get("state"))
            for n in ns_json(
                ns, index, "ip", "-j", "neigh", "show", "dev", "flannel.1", "to", gateway
            )
        ],
        "fdb": [
            (f.get("mac"), f.get("flags"), f.get("state"))
            for f in ns_json(ns, index, "bridge", "-j", "fdb", "show", "dev", "flannel.1")
            if f.get("dst") == public
        ],
    }


def ping(ns: Namespaces, index: int, host: str) -> bool:
    argv = [sys.executable, str(PROBE), "ping", host, "84"]
    return "reply from" in ns.exec(index, *argv, check=False)


@case("dp-vxlan-device-entries-rules-and-path")
def _(t: Ctx) -> None:
    t.config()
    with namespaces(t) as ns:
        a, b = t.run(name="a", netns=(ns, 0)), t.run(name="b", netns=(ns, 1))
        assert a.ready() == b.ready() == "READY=1"
        net_a, lease_a, _ = lease_by_ip(t, ADDRESSES[0])
        net_b, lease_b, _ = lease_by_ip(t, ADDRESSES[1])
        [dev] = ns_json(ns, 0, "ip", "-d", "-j", "link", "show", "dev", "flannel.1")
        data = dev["linkinfo"]["info_data"]
        assert dev["address"] == lease_a["BackendData"]["VtepMAC"]
        assert lease_a["BackendData"]["VNI"] == data["id"] == 1
        assert (data["port"], data["learning"], data["local"], data["link"]) == (
            8472, False, ADDRESSES[0], "eth0"
        )  # fmt: skip
        assert dev["mtu"] == 1500 - 50 == int(a.env()["FLANNEL_MTU"])
        [addr] = ns_json(ns, 0, "ip", "-j", "-4", "addr", "show", "dev", "flannel.1")
        assert [(i["local"], i["prefixlen"]) for i in addr["addr_info"]] == [
            (str(net_a.network_address), 32)
        ]
        mac_b = lease_b["BackendData"]["VtepMAC"]
        want = {
            "route": [(str(net_b.network_address), "flannel.1", ["onlink"])],
            "neigh": [(mac_b, ["PERMANENT"])],
            "fdb": [(mac_b, ["self"], "permanent")],
        }
        got = until(lambda: (e := vxlan_entries(ns, 0, net_b, ADDRESSES[1])) == want and e)
        assert got == want, vxlan_entries(ns, 0, net_b, ADDRESSES[1])
        # across the overlay: a's flannel.1 to b's
        assert until(lambda: ping(ns, 0, str(net_b.network_address)))
        nat = ns.exec(0, "iptables", "-t", "nat", "-S")
        assert '-A POSTROUTING -m comment --comment "flanneld masq" -j FLANNEL-POSTRTG' in nat
        assert (
            "-A FLANNEL-POSTRTG -s 10.7.0.0/16 ! -d 224.0.0.0/4 -m comment --comment "
            '"flanneld masq" -j MASQUERADE --random-fully' in nat
        ), nat
        assert f"-A FLANNEL-POSTRTG -s {net_a} -d 10.7.0.0/16" in nat, nat
        fwd = ns.exec(0, "iptables", "-S")
        assert '-A FORWARD -m comment --comment "flanneld forward" -j FLANNEL-FWD' in fwd
        accept = '-A FLANNEL-FWD -d 10.7.0.0/16 -m comment --comment "flanneld forward" -j ACCEPT'
        assert accept in fwd, fwd
        assert "FLANNEL" not in sh_host("iptables", "-t", "nat", "-S") + sh_host("iptables", "-S")


@case("dp-vxlan-restart-keeps-device-mac-lease-and-peer-entries")
def _(t: Ctx) -> None:
    t.config()
    with namespaces(t) as ns:
        a, b = t.run(name="a", netns=(ns, 0)), t.run(name="b", netns=(ns, 1))
        a.ready(), b.ready()
        net_a, lease_a, _ = lease_by_ip(t, ADDRESSES[0])
        before = until(lambda: all((e := vxlan_entries(ns, 1, net_a, ADDRESSES[0])).values()) and e)
        assert before and all(before.values()), before
        assert a.stop() == 0
        assert ns_json(ns, 0, "ip", "-j", "link", "show", "dev", "flannel.1"), "device gone"
        again = t.run(name="a", netns=(ns, 0))
        assert again.ready() == "READY=1"
        assert lease_by_ip(t, ADDRESSES[0])[:2] == (net_a, lease_a)  # same VtepMAC
        [dev] = ns_json(ns, 0, "ip", "-j", "link", "show", "dev", "flannel.1")
        assert dev["address"] == lease_a["BackendData"]["VtepMAC"]
        time.sleep(1)  # b has seen the rewritten lease by now
        assert vxlan_entries(ns, 1, net_a, ADDRESSES[0]) == before
        assert until(lambda: ping(ns, 1, str(net_a.network_address)))


@case("dp-host-gw-route-via-public-ip-follows-the-lease")
def _(t: Ctx) -> None:
    t.config({"Network": "10.7.0.0/16", "Backend": {"Type": "host-gw"}})
    with namespaces(t) as ns:
        a, b = t.run(name="a", netns=(ns, 0)), t.run(name="b", netns=(ns, 1))
        a.ready(), b.ready()
        assert int(a.env()["FLANNEL_MTU"]) == 1500
        net_b, _, key_b = lease_by_ip(t, ADDRESSES[1])

        def routes() -> list:
            shown = ns_json(ns, 0, "ip", "-j", "route", "show", "exact", str(net_b))
            return [(r.get("gateway"), r.get("dev")) for r in shown]

        assert until(routes) == [(ADDRESSES[1], "eth0")]
        assert not ns_json(ns, 0, "ip", "-j", "link", "show", "type", "vxlan")
        assert b.stop() == 0
        t.kv.delete(key_b)  # the lease goes: its route goes
        assert until(lambda: routes() == []), routes()


@case("dp-host-gw-public-ip-not-the-interfaces-exit-1")
def _(t: Ctx) -> None:
    t.config({"Network": "10.7.0.0/16", "Backend": {"Type": "host-gw"}})
    t.fatal(t.run("--public-ip=192.0.2.5"), "your PublicIP differs from interface IP")


@case("dp-no-ip-masq-no-forward-rules-none-set")
def _(t: Ctx) -> None:
    t.config()
    with namespaces(t) as ns:
        agent = t.run("--ip-masq=false", "--iptables-forward-rules=false", name="a",
                      netns=(ns, 0))  # fmt: skip
        agent.ready()
        assert "FLANNEL" not in ns.exec(0, "iptables", "-t", "nat", "-S")
        assert "FLANNEL" not in ns.exec(0, "iptables", "-S")


def sh_host(*argv: str) -> str:
    return subprocess.run(argv, capture_output=True, text=True, timeout=30, check=True).stdout


@pytest.mark.parametrize("point", list(CASES))
def test_contract(point: str, run: Runner, kv, prefix: str, etcd: EtcdCluster, tmp_path) -> None:
    CASES[point](Ctx(run, kv, prefix, etcd, tmp_path))


# --- the rest ------------------------------------------------------------------------------------


def test_compiled_flanneld_is_an_amd64_elf(standin_binary: Path) -> None:
    check_elf(standin_binary, "amd64", "stand-in")
    with pytest.raises(Exception, match="not arm64"):
        check_elf(standin_binary, "arm64", "stand-in")


def test_release_goes_through_fetch_and_payload(standin_release: StandinRelease, project) -> None:
    result = project.run("payload")
    assert result.rc == 0, result.err
    manifest = json.loads((project.build / "payload/amd64/manifest.json").read_text())
    flanneld = next(f for f in manifest["files"] if f["path"].endswith("/bin/flanneld"))
    assert flanneld["sha256"] == standin_release.sha256
    assert flanneld["mode"] == "0755"


def test_claims_a_lease_put_if_absent_and_writes_subnet_env(run, kv, prefix: str) -> None:
    kv.put(f"{prefix}/config", json.dumps(VXLAN))
    agent = run("--public-ip=192.0.2.1")
    assert agent.ready() == "READY=1"
    env = agent.env()
    assert env["FLANNEL_NETWORK"] == "10.7.0.0/16"
    assert env["FLANNEL_MTU"] == str(LO_MTU - 50)
    assert env["FLANNEL_IPMASQ"] == "true"
    subnet = ipaddress.ip_interface(env["FLANNEL_SUBNET"])
    assert subnet.ip == subnet.network.network_address + 1
    assert subnet.network.prefixlen == 24
    # flannel's defaults: neither the first nor the last /24 of the network
    assert subnet.network not in (
        ipaddress.ip_network("10.7.0.0/24"),
        ipaddress.ip_network("10.7.255.0/24"),
    )
    held = leases(kv, prefix)
    key = f"{prefix}/subnets/{subnet.network.network_address}-24"
    assert list(held) == [key]
    value, meta = held[key]
    assert value["PublicIP"] == "192.0.2.1"
    assert value["BackendType"] == "vxlan"
    assert meta.version == 1
    assert agent.stop() == 0


def test_two_nodes_get_distinct_leases(run, kv, prefix: str) -> None:
    kv.put(f"{prefix}/config", json.dumps(VXLAN))
    a = run("--public-ip=192.0.2.1", name="a")
    b = run("--public-ip=192.0.2.2", name="b")
    a.ready(), b.ready()
    assert a.env()["FLANNEL_SUBNET"] != b.env()["FLANNEL_SUBNET"]
    owners = sorted(value["PublicIP"] for value, _ in leases(kv, prefix).values())
    assert owners == ["192.0.2.1", "192.0.2.2"]


def test_never_takes_a_subnet_another_node_holds(run, kv, prefix: str) -> None:
    # /28 split in /30s: flannel's defaults leave .4, .8 and .12; two are someone else's
    kv.put(f"{prefix}/config", json.dumps({"Network": "10.9.0.0/28", "SubnetLen": 30}))
    lease = kv.lease(3600)
    for n in (4, 12):
        kv.put(
            f"{prefix}/subnets/10.9.0.{n}-30",
            json.dumps({"PublicIP": f"198.51.100.{n}"}),
            lease=lease,
        )
    agent = run("--public-ip=192.0.2.1")
    agent.ready()
    assert agent.env()["FLANNEL_SUBNET"] == "10.9.0.9/30"
    # no Backend means udp, as in flannel
    assert agent.env()["FLANNEL_MTU"] == str(LO_MTU - 28)
    held = leases(kv, prefix)
    assert held[f"{prefix}/subnets/10.9.0.4-30"][0]["PublicIP"] == "198.51.100.4"
    assert held[f"{prefix}/subnets/10.9.0.12-30"][0]["PublicIP"] == "198.51.100.12"


def test_restart_keeps_the_lease(run, kv, prefix: str) -> None:
    """Same PublicIP, no previous subnet file: flannel finds its lease by IP and rewrites it
    with a fresh 24 h TTL (same key, same value)."""
    kv.put(f"{prefix}/config", json.dumps(VXLAN))
    first = run("--public-ip=192.0.2.7", name="first")
    first.ready()
    before = leases(kv, prefix)
    assert first.stop() == 0
    second = run("--public-ip=192.0.2.7", name="second")
    second.ready()
    assert second.env() == first.env()
    after = leases(kv, prefix)
    assert list(after) == list(before)
    key = next(iter(after))
    assert after[key][0] == before[key][0]
    assert after[key][1].mod_revision > before[key][1].mod_revision
    assert 24 * 3600 - 60 < lease_ttl(kv, after[key][1]) <= 24 * 3600
    assert second.stop() == 0
    assert "for current IP (192.0.2.7), reusing" in second.stderr()
