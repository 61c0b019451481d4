"""Backend secrets and private keys never land in what is published: the payload tree and tarball,
every RPM, the repo. They reach a node only in the user-data (0600), and the node seeder refuses
the payload's placeholder. (The node image is scanned in tests/test_images.py, where it is built.)
"""

from __future__ import annotations

import base64
import json
import stat
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from flannelnode import netconf

from .etcd_cluster import make_certs

REPO = Path(__file__).resolve().parent.parent
SEEDER = REPO / "scripts" / "flannel-seed-etcd"
PSK = base64.b64encode(b"flannelnode-test-wireguard-psk!!").decode()  # a valid WireGuard key
NETWORK = f"""
[network]
Network = "10.244.0.0/16"
[network.Backend]
Type = "wireguard"
PSK = "{PSK}"
"""
PRIVATE_KEY = b"PRIVATE KEY-----"


def published_bytes(build: Path) -> dict[str, bytes]:
    """Every file of payload/, rpm/ and repo/, RPMs as their decompressed cpio payload."""
    out: dict[str, bytes] = {}
    for top in ("payload", "rpm", "repo"):
        for path in sorted((build / top).rglob("*")):
            if not path.is_file():
                continue
            data = path.read_bytes()
            if path.suffix == ".rpm":
                cpio = subprocess.run(
                    ["rpm2cpio", str(path)], capture_output=True, check=True, timeout=60
                ).stdout
                assert b"flanneld" in cpio, path  # really the decompressed payload
                data += cpio
            out[str(path.relative_to(build))] = data
    return out


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def test_backend_secret_stays_out_of_every_published_artifact(project, fetched, certs):
    project.config(NETWORK)  # fetched already: no download from here on
    for step in (["payload"], ["rpm"], ["repo", "--unsigned"]):
        result = project.run(*step)
        assert result.rc == 0, result.err
        assert PSK not in result.out + result.err
    lint = project.run("lint")
    assert "Backend.PSK" in lint.out and "user-data" in lint.out and PSK not in lint.out

    published = published_bytes(project.build)
    assert any(name.endswith(".rpm") for name in published) and "repo/repodata/repomd.xml" in (
        published
    )
    for name, data in published.items():
        assert PSK.encode() not in data, f"the PSK is in {name}"
        assert PRIVATE_KEY not in data, f"a private key is in {name}"
    # the payload holds the placeholder where the secret was, and says so
    net_conf = project.build / "payload" / "amd64" / "root" / "opt/kubernetes/cfg/net-conf.json"
    assert json.loads(net_conf.read_text())["Backend"]["PSK"] == netconf.SECRET_PLACEHOLDER
    assert stat.S_IMODE(net_conf.stat().st_mode) == 0o644

    # the user-data carries the secret, in a 0600 file, and is itself 0600
    result = project.run(
        "userdata",
        "--etcd-ca", str(certs.ca), "--etcd-cert", str(certs.cert), "--etcd-key", str(certs.key),
    )  # fmt: skip
    assert result.rc == 0, result.err
    out = project.build / "userdata" / "user-data"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    files = {f["path"]: f for f in yaml.safe_load(out.read_text())["write_files"]}
    delivered = files["/opt/kubernetes/cfg/net-conf.json"]
    assert json.loads(delivered["content"])["Backend"]["PSK"] == PSK
    assert delivered["permissions"] == "0600"

    # `config` shows what the artifacts show
    shown = project.run("config")
    assert shown.rc == 0 and PSK not in shown.out
    assert json.loads(shown.out)["network"]["Backend"]["PSK"] == netconf.SECRET_PLACEHOLDER


def test_payload_step_says_where_the_secret_went(project, fetched):
    project.config(NETWORK)
    result = project.run("payload")
    assert result.rc == 0, result.err
    assert "Backend.PSK replaced by a placeholder" in result.err
    assert "user-data" in result.err


@pytest.mark.parametrize(
    "backend, key",
    [
        ({"Type": "ipsec", "psk": "x" * 96}, "psk"),  # flannel matches keys case-insensitively
        (
            {"Type": "tencent-vpc", "AccessKeyID": "id", "AccessKeySecret": "s3cr3t"},
            "AccessKeySecret",
        ),
        ({"type": "vxlan", "Password": "hunter22"}, "Password"),  # unknown, but named like one
    ],
)
def test_every_kind_of_backend_secret_is_replaced(backend, key):
    public, hidden = netconf.without_secrets({"Network": "10.0.0.0/8", "Backend": backend})
    assert hidden == [f"Backend.{key}"]
    assert public["Backend"][key] == netconf.SECRET_PLACEHOLDER
    assert backend[key] != netconf.SECRET_PLACEHOLDER  # the config itself is untouched
    untouched = {k: v for k, v in public["Backend"].items() if k != key}
    assert untouched == {k: v for k, v in backend.items() if k != key}


def test_node_seeder_refuses_the_placeholder_instead_of_seeding_it():
    network = {"Network": "10.244.0.0/16", "Backend": {"Type": "wireguard"}}
    network["Backend"]["PSK"] = netconf.SECRET_PLACEHOLDER
    result = subprocess.run(
        [sys.executable, str(SEEDER), "--endpoints", "https://127.0.0.1:1",
         "--config-json", json.dumps(network), "--deadline", "1"],
        capture_output=True, text=True, timeout=30, check=False,
    )  # fmt: skip
    assert result.returncode == 2, result.stderr
    assert "Backend.PSK holds a placeholder" in result.stderr
    assert "Traceback" not in result.stderr
    # the seeder's copy of the placeholder is the payload's
    assert json.dumps(netconf.SECRET_PLACEHOLDER) in SEEDER.read_text()
