"""The verify harness's own parts that need no node image: certificates, the key scan, the run
profile, file delivery, input checks. The harness end to end runs in `make verify`."""

from __future__ import annotations

import io
import os
import socket
import subprocess
import sys
import tarfile
import time
from pathlib import Path

import pytest

from verify import pki
from verify.checks import PEM_KEY
from verify.containers import Profile, VerifyError, put_files
from verify.runner import run

VERIFY = Path(__file__).resolve().parent.parent / "verify"


def test_server_certificate_names_the_lab_etcd(tmp_path: Path) -> None:
    p = pki.make(tmp_path / "pki", ["10.213.7.2", "etcd"])
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(p.server_cert)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "IP Address:10.213.7.2" in text and "DNS:etcd" in text
    assert "TLS Web Client Authentication" in text  # etcd's gateway dials etcd with it

    def verifies(ca: Path, cert: Path) -> bool:
        cmd = ["openssl", "verify", "-CAfile", str(ca), str(cert)]
        return subprocess.run(cmd, capture_output=True, check=False).returncode == 0

    assert verifies(p.ca, p.client_cert) and verifies(p.ca, p.server_cert)
    assert not verifies(p.wrong_ca, p.server_cert)
    assert oct(p.client_key.parent.stat().st_mode & 0o777) == "0o700"


def test_key_scan_finds_key_files_not_mentions(tmp_path: Path) -> None:
    p = pki.make(tmp_path / "pki", ["127.0.0.1"])
    assert PEM_KEY.search(p.client_key.read_bytes())
    rsa = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:1024"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert PEM_KEY.search(b"#cloud-config\nkey: |\n" + rsa)
    ed25519 = subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519"], capture_output=True, check=True
    ).stdout
    assert len(ed25519.splitlines()) == 3  # its body is one line
    assert PEM_KEY.search(ed25519)
    code = b'BEGIN = "-----BEGIN OPENSSH PRIVATE KEY-----"\nEND = "-----END PRIVATE KEY-----"\n'
    assert not PEM_KEY.search(code)


def test_run_profile() -> None:
    default = Profile().kwargs()
    assert default["cap_add"] == ["ALL"] and default["cap_drop"] == ["SYS_RESOURCE"]
    assert set(default["security_opt"]) == {"seccomp=unconfined", "apparmor=unconfined"}
    assert default["device_cgroup_rules"] == ["a *:* rwm"]
    assert "privileged" not in default
    privileged = Profile(privileged=True).kwargs()
    assert privileged["privileged"] is True and "cap_add" not in privileged
    for kwargs in (default, privileged):
        assert set(kwargs["tmpfs"]) == {"/run", "/run/lock", "/tmp"}
        assert kwargs["stop_signal"] == "SIGRTMIN+3"


class _Container:
    name = "fake"

    def __init__(self) -> None:
        self.archives: list[tuple[str, bytes]] = []

    def put_archive(self, path: str, data: bytes) -> bool:
        self.archives.append((path, data))
        return True


def test_put_files_creates_parents_and_keeps_modes() -> None:
    c = _Container()
    put_files(c, {"/var/lib/cloud/seed/nocloud/user-data": (b"#cloud-config\n", 0o600)})
    [(path, data)] = c.archives
    assert path == "/"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        members = {m.name: m for m in tar.getmembers()}
    assert [n for n, m in members.items() if m.isdir()] == [
        "var", "var/lib", "var/lib/cloud", "var/lib/cloud/seed", "var/lib/cloud/seed/nocloud"
    ]  # fmt: skip
    assert members["var/lib/cloud/seed/nocloud/user-data"].mode == 0o600


def test_run_refuses_an_unstaged_payload(tmp_path: Path) -> None:
    from flannelnode.config import Config

    with pytest.raises(VerifyError, match=r"run `build\.py payload`"):
        run("any-image", Config(), tmp_path / "build")


def test_late_etcd_certificate_from_the_same_ca(tmp_path: Path) -> None:
    p = pki.make(tmp_path / "pki", ["10.213.7.2"])
    cert, key = pki.server_cert(tmp_path / "pki", "server-late", ["10.213.7.250", "etcd-late"])
    text = subprocess.run(
        ["openssl", "x509", "-noout", "-text", "-in", str(cert)],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert "IP Address:10.213.7.250" in text and "DNS:etcd-late" in text
    ok = subprocess.run(["openssl", "verify", "-CAfile", str(p.ca), str(cert)], check=False)
    assert ok.returncode == 0 and key.exists()


def test_late_etcd_delay_is_an_option_with_bounds() -> None:
    from flannelnode.config import Config
    from verify.__main__ import parser
    from verify.lab import LATE_ETCD_DELAY, Lab, _lower_half

    assert LATE_ETCD_DELAY == 180
    assert parser().parse_args([]).late_etcd_delay == LATE_ETCD_DELAY
    assert parser().parse_args(["--late-etcd-delay", "95"]).late_etcd_delay == 95
    assert "--late-etcd-delay" in parser().format_help()
    for bad in (-1, 601):
        with pytest.raises(VerifyError, match="late etcd delay"):
            Lab("any-image", Config(), late_etcd_delay=bad)
    assert _lower_half("10.213.7.0/24") == "10.213.7.0/25"  # etcd-late's .250 is never handed out


def test_run_refuses_unknown_checks(tmp_path: Path) -> None:
    from flannelnode.config import Config

    with pytest.raises(VerifyError, match="unknown checks"):
        run("any-image", Config(), tmp_path / "build", checks=("test_nothing.py",))


def test_probe_reports_the_address_it_saw_and_pings(tmp_path: Path) -> None:
    """verify/probe.py on loopback: the TCP server names its peer, ICMP echo gets its reply."""
    from verify import probe

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen(
        [sys.executable, probe.__file__, "serve", str(port), "--seconds", "20"]
    )
    try:
        for _ in range(50):
            done = subprocess.run(
                [sys.executable, probe.__file__, "connect", "127.0.0.1", str(port)],
                capture_output=True, text=True, timeout=30, check=False,
            )  # fmt: skip
            if done.returncode == 0:
                break
            time.sleep(0.1)
        assert (done.returncode, done.stdout) == (0, "peer 127.0.0.1\n"), done
    finally:
        server.kill()
        server.wait(timeout=10)
    assert probe.main(["ping", "127.0.0.1", "84"]) == 0
    assert probe.main(["connect", "127.0.0.1", str(port), "--timeout", "1"]) == 1


def test_expected_entries_are_flannels() -> None:
    import ipaddress

    from verify.pods import expected_entries

    net = ipaddress.ip_network("10.5.7.0/24")
    value = {"PublicIP": "10.213.1.3", "BackendData": {"VNI": 1, "VtepMAC": "0e:00:00:00:00:01"}}
    assert expected_entries("host-gw", net, value, "eth0") == {
        "route": [{"gateway": "10.213.1.3", "dev": "eth0", "onlink": False}]
    }
    assert expected_entries("vxlan", net, value, "flannel.1") == {
        "route": [{"gateway": "10.5.7.0", "dev": "flannel.1", "onlink": True}],
        "neigh": [{"lladdr": "0e:00:00:00:00:01", "state": ["PERMANENT"]}],
        "fdb": [("0e:00:00:00:00:01", ("self",), "permanent")],
    }


def test_image_checks_run_on_testinfras_host_fixture(project, fetched, tmp_path: Path) -> None:
    """verify/test_image.py through plain pytest and testinfra's --hosts (docker:// here, ssh://
    for a VM or an instance): a container of the local Debian base with the payload unpacked
    and the base's dbus machine-id removed, as provision.sh leaves them, passes the file, ELF and
    pristine checks; a wrong mode fails."""
    assert project.run("payload").rc == 0
    payload = project.build / "payload" / "amd64"
    name = f"flannelnode-test-image-checks-{os.getpid()}"
    subprocess.run(
        ["docker", "run", "-d", "--name", name, "--network", "none", "--entrypoint", "sleep",
         "flannelnode/base-debian:bookworm", "infinity"],
        check=True, capture_output=True, timeout=120,
    )  # fmt: skip

    def checks() -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider",
             str(VERIFY / "test_image.py"),
             f"--rootdir={VERIFY.parent}", f"--hosts=docker://{name}",
             f"--payload-manifest={payload / 'manifest.json'}",
             "-k", "payload_files or elf or private_key or node_makes"],
            capture_output=True, text=True, timeout=300,
        )  # fmt: skip

    try:
        subprocess.run(
            ["docker", "cp", str(payload / "flannelnode-payload.tar"), f"{name}:/tmp/p.tar"],
            check=True, capture_output=True, timeout=60,
        )  # fmt: skip
        subprocess.run(
            ["docker", "exec", name, "sh", "-c", "tar -xf /tmp/p.tar -C / && rm /tmp/p.tar && "
             "rm /var/lib/dbus/machine-id"],  # the base has one; provision.sh removes it
            check=True, timeout=60,
        )  # fmt: skip
        good = checks()
        assert good.returncode == 0 and "4 passed" in good.stdout, good.stdout + good.stderr
        subprocess.run(
            ["docker", "exec", name, "chmod", "0644", "/opt/kubernetes/bin/flanneld"], check=True
        )
        bad = checks()
        assert bad.returncode == 1 and "1 failed, 3 passed" in bad.stdout, bad.stdout
        assert "/opt/kubernetes/bin/flanneld: 0644 root:root, expected 0755 root:root" in bad.stdout
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120)


class _Exec:
    """A container whose `docker exec` output is lost the first `lost` times (seen under load:
    exit 0 and no output, for a command that always prints JSON)."""

    def __init__(self, output: bytes, lost: int) -> None:
        self.output, self.lost, self.calls = output, lost, 0

    def exec_run(self, cmd: list[str], demux: bool = False):
        from docker.models.containers import ExecResult

        self.calls += 1
        return ExecResult(0, b"" if self.calls <= self.lost else self.output)


class _Node:
    def __init__(self, container: _Exec) -> None:
        self.name, self.container = "node-a", container


def test_ip_json_asks_again_when_docker_loses_the_output() -> None:
    from verify.pods import ip_json

    container = _Exec(b'[{"ifname": "eth0", "mtu": 1500}]\n', lost=2)
    assert ip_json(_Node(container), "ip -j link show dev eth0") == [
        {"ifname": "eth0", "mtu": 1500}
    ]
    assert container.calls == 3


def test_ip_json_refuses_output_that_never_comes() -> None:
    from verify.pods import ip_json

    container = _Exec(b"[]\n", lost=99)
    with pytest.raises(AssertionError, match=r"node-a: `ip -j link show dev eth0` printed nothing"):
        ip_json(_Node(container), "ip -j link show dev eth0")
    assert container.calls == 3
