"""userdata: cloud-init #cloud-config with the TLS material, flanneld config and first boot."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess

import pytest
import yaml

from flannelnode import config
from flannelnode.payload import node_files

from .etcd_cluster import make_certs


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory):
    return make_certs(tmp_path_factory.mktemp("certs"))


def _userdata(project, certs, *extra: str):
    return project.run(
        "userdata",
        "--etcd-ca", str(certs.ca),
        "--etcd-cert", str(certs.cert),
        "--etcd-key", str(certs.key),
        *extra,
    )  # fmt: skip


def test_userdata_passes_cloud_inits_schema_and_carries_the_certs(project, certs):
    project.config()
    res = _userdata(project, certs)
    assert res.rc == 0, res.err
    out = project.build / "userdata" / "user-data"
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    tool = shutil.which("cloud-init")
    assert tool, "cloud-init is missing: apt-get install -y cloud-init (or make deps)"
    schema = subprocess.run(
        [tool, "schema", "--config-file", str(out)], capture_output=True, text=True, check=False
    )
    assert schema.returncode == 0, schema.stdout + schema.stderr
    assert "Valid cloud-config" in schema.stdout
    # the validator is live: the same command rejects a broken document
    broken = out.with_name("broken")
    broken.write_text(out.read_text().replace("runcmd:", "runcmd: 5\nbogus:", 1))
    rejected = subprocess.run(
        [tool, "schema", "--config-file", str(broken)], capture_output=True, text=True, check=False
    )
    assert rejected.returncode != 0

    text = out.read_text()
    assert text.startswith("#cloud-config\n")
    doc = yaml.safe_load(text)
    # in the order a person reads them: what is written, then what runs; each file path first
    assert list(doc) == ["write_files", "runcmd"]
    assert list(doc["write_files"][0]) == ["path", "owner", "permissions", "content"]
    files = {f["path"]: f for f in doc["write_files"]}
    # exactly these: the TLS files, then what user-data writes over the payload's copies
    assert list(files) == [
        "/opt/etcd/ssl/ca.pem",
        "/opt/etcd/ssl/flannel-client.pem",
        "/opt/etcd/ssl/flannel-client-key.pem",
        "/opt/kubernetes/cfg/flanneld",
        "/opt/kubernetes/cfg/net-conf.json",
        "/opt/kubernetes/cfg/flannel-seed",
    ]
    for node_path, local in [
        ("/opt/etcd/ssl/ca.pem", certs.ca),
        ("/opt/etcd/ssl/flannel-client.pem", certs.cert),
        ("/opt/etcd/ssl/flannel-client-key.pem", certs.key),
    ]:
        assert files[node_path]["content"] == local.read_text()
        assert files[node_path]["permissions"] == "0600"
        assert files[node_path]["owner"] == "root:root"
    # the flanneld config is the payload's, byte for byte: one source for node files
    cfg = config.load(project.root / "node.toml", env={})
    payload = {f.path: f for f in node_files(cfg)}
    for path in ("/opt/kubernetes/cfg/flanneld", "/opt/kubernetes/cfg/net-conf.json"):
        assert files[path]["content"].encode() == payload[path].content
        assert files[path]["permissions"] == "0644"
    seed = files["/opt/kubernetes/cfg/flannel-seed"]
    assert seed["permissions"] == "0644"
    options = seed["content"].splitlines()[-1]
    assert options.startswith('SEED_OPTIONS="--endpoints=https://192.168.31.61:2379,https://192')
    for option in (
        "--cacert=/opt/etcd/ssl/ca.pem",
        "--cert=/opt/etcd/ssl/flannel-client.pem",
        "--key=/opt/etcd/ssl/flannel-client-key.pem",
        "--config-file=/opt/kubernetes/cfg/net-conf.json",
        "--flannel-version=v0.27.4",
        "--deadline=300",
    ):
        assert f" {option}" in options
    shell, flags, script = doc["runcmd"][0]
    assert (shell, flags) == ("/bin/sh", "-ec")
    assert script.splitlines() == [
        "systemctl daemon-reload",
        "systemctl enable --now flanneld.service",
        "systemctl enable --now docker.service",
    ]


def test_seed_options_parse_as_the_seeder_reads_them(project, certs):
    """SEED_OPTIONS, split as systemd splits $VAR, is a command line the real seeder accepts."""
    from flannelnode.seed import seeder

    project.config()
    assert _userdata(project, certs).rc == 0
    doc = yaml.safe_load((project.build / "userdata" / "user-data").read_text())
    content = next(f["content"] for f in doc["write_files"] if f["path"].endswith("flannel-seed"))
    value = content.splitlines()[-1].split("=", 1)[1].strip('"')
    args = seeder().parser().parse_args(value.split())
    assert args.deadline == 300 and args.prefix == "/coreos.com/network"


def test_userdata_refuses_a_certificate_given_as_key(project, certs):
    project.config()
    res = project.run(
        "userdata",
        "--etcd-ca", str(certs.ca),
        "--etcd-cert", str(certs.cert),
        "--etcd-key", str(certs.cert),
    )  # fmt: skip
    assert res.rc == 2 and "--etcd-key" in res.err and "PRIVATE KEY" in res.err
    assert not (project.build / "userdata").exists()


def test_userdata_missing_file_exits_2(project, certs, tmp_path):
    project.config()
    res = project.run(
        "userdata",
        "--etcd-ca", str(tmp_path / "nope.pem"),
        "--etcd-cert", str(certs.cert),
        "--etcd-key", str(certs.key),
    )  # fmt: skip
    assert res.rc == 2 and "nope.pem: no such file" in res.err


def test_seed_iso_is_a_nocloud_cidata_volume(project, certs):
    project.config()
    assert _userdata(project, certs).rc == 0
    res = project.run("seed-iso", "--instance-id", "node-1")
    assert res.rc == 0, res.err
    iso = project.build / "userdata" / "seed.iso"
    with iso.open("rb") as f:
        f.seek(16 * 2048)  # ISO 9660 primary volume descriptor
        pvd = f.read(2048)
    assert pvd[1:6] == b"CD001"
    assert pvd[40:72].decode().strip().lower() == "cidata"
    assert stat.S_IMODE(iso.stat().st_mode) == 0o600
    assert _iso_files(iso) == {"/meta-data", "/user-data"}


def _iso_files(iso) -> set[str]:
    listing = subprocess.run(
        ["isoinfo", "-f", "-R", "-i", str(iso)], capture_output=True, text=True, check=True
    ).stdout
    return set(listing.split())


def test_seed_iso_carries_a_network_config(project, certs, tmp_path):
    project.config()
    assert _userdata(project, certs).rc == 0
    network = tmp_path / "network-config"
    network.write_text("version: 2\nethernets:\n  eth0:\n    addresses: [10.9.0.5/24]\n")
    missing = project.run("seed-iso", "--network-config", str(tmp_path / "none.yaml"))
    assert missing.rc == 2 and "none.yaml: no such file" in missing.err
    res = project.run("seed-iso", "--network-config", str(network))
    assert res.rc == 0, res.err
    iso = project.build / "userdata" / "seed.iso"
    assert _iso_files(iso) == {"/meta-data", "/user-data", "/network-config"}
    extracted = subprocess.run(
        ["isoinfo", "-R", "-i", str(iso), "-x", "/network-config"],
        capture_output=True, check=True,
    ).stdout  # fmt: skip
    assert extracted == network.read_bytes()


def test_userdata_over_ec2s_16k_limit_is_a_warning(project, certs, tmp_path):
    project.config()
    res = _userdata(project, certs)
    assert res.rc == 0 and "16384" not in res.err  # the usual size: no warning
    bundle = tmp_path / "ca-bundle.pem"
    bundle.write_text(certs.ca.read_text() * 30)  # a long CA bundle
    res = project.run(
        "userdata",
        "--etcd-ca", str(bundle),
        "--etcd-cert", str(certs.cert),
        "--etcd-key", str(certs.key),
    )  # fmt: skip
    assert res.rc == 0, res.err
    out = project.build / "userdata" / "user-data"
    assert out.stat().st_size > 16384
    assert "over EC2's 16384-byte user-data limit" in res.err


def test_a_pem_file_without_a_final_newline_gets_one(project, certs, tmp_path):
    key = tmp_path / "key.pem"
    key.write_text(certs.key.read_text().rstrip("\n"))
    project.config()
    res = _userdata_with(project, certs, key=key)
    assert res.rc == 0, res.err
    doc = yaml.safe_load((project.build / "userdata" / "user-data").read_text())
    files = {f["path"]: f["content"] for f in doc["write_files"]}
    assert files["/opt/etcd/ssl/flannel-client-key.pem"] == certs.key.read_text()


@pytest.mark.parametrize("kind", ["directory", "binary"])
def test_a_pem_path_that_is_not_pem_text_exits_2_naming_it(project, certs, tmp_path, kind):
    ca = tmp_path / "ca.pem"
    if kind == "directory":
        ca.mkdir()
    else:
        ca.write_bytes(b"\x30\x82\x03\xff" + bytes(range(128, 256)))  # DER, not PEM
    project.config()
    res = _userdata_with(project, certs, ca=ca)
    assert res.rc == 2
    assert f"--etcd-ca {ca}: cannot read it as PEM text" in res.err
    assert not (project.build / "userdata" / "user-data").exists()


def _userdata_with(project, certs, **given):
    paths = {"ca": certs.ca, "cert": certs.cert, "key": certs.key, **given}
    return project.run("userdata", *(a for k, v in paths.items() for a in (f"--etcd-{k}", str(v))))


@pytest.mark.parametrize(("size", "warned"), [(16384, False), (16385, True)])
def test_ec2_user_data_limit_is_16_kib_inclusive(tmp_path, size, warned):
    """EC2 accepts user-data up to 16 KB (16384 bytes) raw, before base64."""
    from flannelnode.userdata import ec2_size_warning

    path = tmp_path / "user-data"
    path.write_bytes(b"#" * size)
    warning = ec2_size_warning(path)
    assert (warning is not None) == warned
    if warned:
        assert f"{size} bytes" in warning


def test_the_default_seed_deadline_is_the_clis(certs, tmp_path):
    """render() without a deadline (verify's nodes) and the CLI's default agree: 300 s."""
    from flannelnode import userdata

    cfg = config.loads(None, "node.toml", tmp_path, env={})
    tls = userdata.TlsFiles(certs.ca, certs.cert, certs.key)
    assert " --deadline=300" in userdata.render(cfg, tls)
    # as verify's lab nodes call it: options by name
    assert " --deadline=60" in userdata.render(cfg, tls, seed_deadline=60, check_tls=False)


def test_a_failing_cloud_localds_is_one_line_exit_1(project, certs, tmp_path, monkeypatch):
    """cloud-localds cannot be made to fail with inputs seed-iso accepts (they are checked first);
    a cloud-localds that fails as a full disk makes it fail."""
    project.config()
    assert _userdata(project, certs).rc == 0
    tools = tmp_path / "bin"
    tools.mkdir()
    fake = tools / "cloud-localds"
    fake.write_text("#!/bin/sh\necho 'genisoimage: No space left on device' >&2\nexit 1\n")
    fake.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tools}:{os.environ['PATH']}")
    res = project.run("seed-iso")
    assert res.rc == 1
    assert res.err.strip().splitlines()[-1] == (
        "error: cloud-localds failed: genisoimage: No space left on device"
    )
    assert not (project.build / "userdata" / "seed.iso").exists()


def test_seed_iso_creates_the_folders_of_its_output(project, certs, tmp_path):
    project.config()
    assert _userdata(project, certs).rc == 0
    out = tmp_path / "isos" / "node-1" / "seed.iso"
    res = project.run("seed-iso", "-o", str(out))
    assert res.rc == 0, res.err
    assert out.is_file()


def test_userdata_writes_flanneld_options_and_the_network_config_with_its_secrets(tmp_path):
    # a prefix that sorts after /usr, where the systemd units are: only the two files still
    from flannelnode.userdata import config_files

    text = (
        '[install]\nprefix = "/var/lib/kube"\n'
        '[network]\nNetwork = "10.244.0.0/16"\n'
        '[network.Backend]\nType = "ipsec"\nPSK = "' + "7" * 96 + '"\n'
    )
    cfg = config.loads(text, "node.toml", tmp_path, env={})
    files = config_files(cfg)
    assert [f.path for f in files] == [
        "/var/lib/kube/cfg/flanneld",
        "/var/lib/kube/cfg/net-conf.json",
    ]
    net_conf = files[1]
    assert "7" * 96 in net_conf.content.decode()  # the real key: user-data is the node's own copy
    assert net_conf.mode == 0o600
