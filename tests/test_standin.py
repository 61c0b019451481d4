"""The flanneld stand-in (tests/standin) against the real 3-member TLS etcd cluster.

Runs the compiled ELF, as systemd would: flags as flanneld.service passes them, NOTIFY_SOCKET an
abstract unix socket, SIGTERM to stop. etcd is read back with the etcd3 gRPC client, an
independent implementation of the API the stand-in speaks through the JSON gateway.
"""

from __future__ import annotations

import ipaddress
import json
import os
import signal
import socket
import subprocess
import time
import uuid
import warnings
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flannelnode.extract import check_elf

from .etcd_cluster import EtcdCluster
from .standin_release import StandinRelease

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")  # before etcd3
with warnings.catch_warnings():  # etcd3 0.12's generated protobuf code is old
    warnings.simplefilter("ignore", DeprecationWarning)
    import etcd3


VXLAN = {"Network": "10.7.0.0/16", "Backend": {"Type": "vxlan"}}
LO_MTU = int(Path("/sys/class/net/lo/mtu").read_text())


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    return f"/standin/{request.node.name.replace('[', '-').rstrip(']')}-{uuid.uuid4().hex[:8]}"


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

    def ready(self, timeout: float = 20.0) -> str:
        """The sd_notify datagram, as systemd would receive it."""
        self.notify.settimeout(timeout)
        try:
            return self.notify.recv(4096).decode()
        except TimeoutError:
            self.process.kill()
            raise AssertionError(f"no READY=1 within {timeout}s:\n{self.stderr()}") from None

    def env(self) -> dict[str, str]:
        return dict(line.split("=", 1) for line in self.subnet_env.read_text().splitlines())

    def stop(self) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout=10)

    def stderr(self) -> str:
        if self.process.poll() is None:
            self.process.kill()
        return self.process.communicate(timeout=10)[1]


@pytest.fixture
def run(
    etcd: EtcdCluster, standin_binary: Path, prefix: str, tmp_path: Path
) -> Iterator[Callable[..., Agent]]:
    agents: list[Agent] = []

    def start(*extra: str, ca: Path | None = None, name: str = "a") -> Agent:
        c = etcd.certs
        notify = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        address = f"flannelnode-standin-{uuid.uuid4().hex}"
        notify.bind("\0" + address)
        env = {
            **os.environ,
            "NOTIFY_SOCKET": "@" + address,
            "FLANNEL_STANDIN_SUBNET_FILE": str(tmp_path / name / "subnet.env"),
            "FLANNEL_STANDIN_RETRY": "0.1",
        }
        process = subprocess.Popen(
            [
                str(standin_binary),
                "--ip-masq",
                f"--etcd-endpoints={','.join(etcd.endpoints)}",
                f"--etcd-cafile={ca or c.ca}",
                f"--etcd-certfile={c.cert}",
                f"--etcd-keyfile={c.key}",
                f"--etcd-prefix={prefix}",
                "--iface=lo",
                *extra,
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        agent = Agent(process, notify, tmp_path / name / "subnet.env")
        agents.append(agent)
        return agent

    yield start
    for agent in agents:
        if agent.process.poll() is None:
            agent.process.kill()
            agent.process.wait(timeout=10)
        agent.notify.close()


def leases(kv: etcd3.Etcd3Client, prefix: str) -> dict[str, tuple[dict, object]]:
    return {
        meta.key.decode(): (json.loads(value), meta)
        for value, meta in kv.get_prefix(f"{prefix}/subnets/")
    }


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
    assert agent.ready().startswith("READY=1")
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
    for n in (4, 12):
        kv.put(f"{prefix}/subnets/10.9.0.{n}-30", json.dumps({"PublicIP": f"198.51.100.{n}"}))
    agent = run("--public-ip=192.0.2.1")
    agent.ready()
    assert agent.env()["FLANNEL_SUBNET"] == "10.9.0.9/30"
    # no Backend means udp, as in flannel
    assert agent.env()["FLANNEL_MTU"] == str(LO_MTU - 28)
    held = leases(kv, prefix)
    assert held[f"{prefix}/subnets/10.9.0.4-30"][0]["PublicIP"] == "198.51.100.4"
    assert held[f"{prefix}/subnets/10.9.0.12-30"][0]["PublicIP"] == "198.51.100.12"


def test_restart_keeps_the_lease(run, kv, prefix: str) -> None:
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
    assert after[key][1].mod_revision == before[key][1].mod_revision  # not even rewritten
    assert "reusing lease" in second.stderr()


def test_waits_for_the_config_then_proceeds(run, kv, prefix: str) -> None:
    """First boot: flanneld may start before the seeder has written the config."""
    agent = run("--public-ip=192.0.2.3")
    time.sleep(1.0)
    assert agent.process.poll() is None
    assert not agent.subnet_env.exists()
    kv.put(f"{prefix}/config", json.dumps(VXLAN))
    assert agent.ready().startswith("READY=1")


def test_wrong_ca_fails_at_once_with_a_clear_line(run, etcd: EtcdCluster, kv, prefix) -> None:
    kv.put(f"{prefix}/config", json.dumps(VXLAN))
    agent = run("--public-ip=192.0.2.4", ca=etcd.certs.other_ca)
    rc = agent.process.wait(timeout=20)
    err = agent.stderr()
    assert rc == 1, err
    assert "TLS error with etcd" in err
    assert f"the CA {etcd.certs.other_ca} does not sign the server's certificate" in err
    assert "Traceback" not in err
    assert not agent.subnet_env.exists()
    assert leases(kv, prefix) == {}


def test_unknown_flags_are_ignored_with_a_warning(run, kv, prefix: str) -> None:
    kv.put(f"{prefix}/config", json.dumps(VXLAN))
    agent = run("--public-ip=192.0.2.5", "--kube-subnet-mgr=false", "-v=2")
    agent.ready()
    assert agent.stop() == 0
    err = agent.stderr()
    assert "ignoring unsupported flag --kube-subnet-mgr=false" in err
    assert "ignoring unsupported flag -v=2" in err


def test_bad_network_config_exits_2(run, kv, prefix: str) -> None:
    kv.put(f"{prefix}/config", json.dumps({"Network": "10.8.0.0/16", "SubnetLen": 31}))
    agent = run("--public-ip=192.0.2.6")
    assert agent.process.wait(timeout=20) == 2
    assert "SubnetLen 31 must be <= 30" in agent.stderr()
