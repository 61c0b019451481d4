"""images: Packer templates, the docker and qemu targets, incremental rebuilds, clean failures.

Real Packer, Docker and QEMU. The base (debootstrap from the Debian mirror) is built once into
build/base/ of the checkout, shared with `make base`; every other output goes to tmp dirs. The
flanneld inside the docker image is the test stand-in (tests/standin), served and pinned like a
real release; the image is then booted by the verify harness (verify/) against a real etcd.
The qcow2 boots in qemu (tests/vm.py) against a real etcd on this host's loopback.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import verify
from flannelnode import base, config, images, netconf, packer, userdata
from flannelnode import manifest as manifest_mod
from flannelnode.cache import sha256_file
from flannelnode.tools import require
from verify.checks import SUBNET_ENV, dockerd_args, env_file, lease_network

from . import vm
from .conftest import packer_shim
from .etcd_cluster import EtcdCluster
from .standin_release import config_text
from .tamper import flip_byte, snapshot, stage_root, tampers
from .validation_checks import check_names

REPO = Path(__file__).resolve().parent.parent
# per test process: two checkouts testing at once must not remove each other's images
TEST_REPOSITORY = f"flannelnode-test/node-{os.getpid()}"
GENERATOR = "/usr/lib/systemd/system-generators/flannelnode-docker-generator"
SECRET_PSK = base64.b64encode(b"flannelnode-image-wireguard-psk!").decode()
SECRET_NETWORK = f"""
[network]
Network = "172.30.0.0/16"
[network.Backend]
Type = "wireguard"
PSK = "{SECRET_PSK}"
"""
# the datapath checks run for both backends the stand-in builds a datapath for
VXLAN_NETWORK = """
[network]
Network = "172.30.0.0/16"
[network.Backend]
Type = "vxlan"
"""
HOST_GW = {"Network": "172.30.0.0/16", "Backend": {"Type": "host-gw"}}
VM_TIMEOUT = 300  # VM start -> docker active; about a minute under TCG


def _config(project) -> config.Config:
    return config.load(project.root / "node.toml", env={})


def _docker(*args: str, timeout: float = 120) -> str:
    res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"docker {' '.join(args)}: {res.stderr}"
    return res.stdout


def _remove_test_images() -> None:
    """Newest first, by reference: an image with a child (the broken copy) cannot go first."""
    refs = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", TEST_REPOSITORY],
        capture_output=True,
        text=True,
        timeout=60,
    ).stdout.split()
    for ref in refs:
        subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, timeout=120)


@pytest.fixture
def test_images():
    yield TEST_REPOSITORY
    _remove_test_images()


# -- templates (packer fmt and validate of every target: tests/test_targets.py)


@pytest.mark.parametrize(
    "script", sorted(p.relative_to(REPO) for p in (REPO / "images").rglob("*.sh")), ids=str
)
def test_image_shell_scripts_are_shellcheck_clean(script: Path) -> None:
    require("shellcheck")
    res = subprocess.run(["shellcheck", str(REPO / script)], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout


# -- the driver, on Packer's null builder (no docker, no VM)


def test_packer_driver_streams_and_surfaces_a_failing_provisioner(tmp_path: Path) -> None:
    tpl = tmp_path / "null.pkr.hcl"
    tpl.write_text(
        'source "null" "n" {\n  communicator = "none"\n}\n'
        'build {\n  sources = ["source.null.n"]\n'
        '  provisioner "shell-local" {\n'
        '    inline = ["echo first, with a comma", "echo to stderr >&2", "exit 7"]\n  }\n}\n'
    )
    seen: list[str] = []
    with pytest.raises(packer.PackerError) as exc:
        packer.build(tpl, on_line=seen.append, timeout=60)
    assert any("first, with a comma" in line for line in seen)  # unescaped, live
    message = str(exc.value)
    assert "first, with a comma" in message and "to stderr" in message
    assert "exit status: 7" in message


# -- the docker target, end to end


def _exported_files(image: str) -> dict[str, tarfile.TarInfo | bytes]:
    container = _docker("create", "--pull=never", image).strip()
    try:
        raw = subprocess.run(
            ["docker", "export", container], capture_output=True, check=True, timeout=300
        ).stdout
    finally:
        _docker("rm", "-f", container)
    out: dict[str, tarfile.TarInfo | bytes] = {}
    with tarfile.open(fileobj=io.BytesIO(raw)) as tar:
        for member in tar:
            out[member.name] = member
            if member.isfile() and member.size < 1 << 20:
                data = tar.extractfile(member)
                out[member.name + "#data"] = data.read() if data else b""
    return out


# a private key itself, not code that mentions the marker: the BEGIN line and a base64 body
PEM_PRIVATE_KEY = re.compile(
    rb"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----\r?\n(?:[\w:, -]+\r?\n)*[A-Za-z0-9+/=]{40,}"
)


def _files_holding(image: str, needles: tuple[bytes | re.Pattern[bytes], ...]) -> dict[str, str]:
    """{path: sha256} of every regular file in the image whose content holds one of needles."""
    container = _docker("create", "--pull=never", image).strip()
    found: dict[str, str] = {}
    try:
        export = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
        assert export.stdout is not None
        with tarfile.open(fileobj=export.stdout, mode="r|") as tar:
            for member in tar:
                data = tar.extractfile(member) if member.isfile() else None
                body = data.read() if data else b""
                if any(n.search(body) if isinstance(n, re.Pattern) else n in body for n in needles):
                    found[member.name] = hashlib.sha256(body).hexdigest()
        assert export.wait(timeout=300) == 0
    finally:
        _docker("rm", "-f", container)
    return found


def _offline(image: str, *cmd: str) -> str:
    """Run a command in the image without booting it (systemctl works offline on unit files)."""
    return _docker("run", "--pull=never", "--rm", "--entrypoint", cmd[0], image, *cmd[1:])


def test_docker_target_end_to_end(project, standin_release, base_dir, quiet, test_images) -> None:
    mirror = standin_release.mirror
    project.config(config_text(mirror, VXLAN_NETWORK), mirror=mirror)
    cfg = _config(project)
    started = time.monotonic()
    built = images.build(
        cfg, project.build, quiet, ("docker",), base_dir=base_dir, repository=test_images
    )
    seconds = time.monotonic() - started
    print(f"docker target: {seconds:.1f}s")
    [docker] = built
    assert docker.rebuilt and docker.image == f"{test_images}:v0.27.4-amd64"
    assert docker.image_id and docker.image_id.startswith("sha256:")

    inspect = json.loads(_docker("image", "inspect", docker.image))[0]["Config"]
    assert inspect["Entrypoint"] == ["/lib/systemd/systemd"]
    assert not inspect["Cmd"]
    assert "container=docker" in inspect["Env"]
    assert "/var/lib/docker" in inspect["Volumes"]

    manifest = json.loads((project.build / "payload" / "amd64" / "manifest.json").read_text())
    files = _exported_files(docker.image)
    for entry in manifest["files"]:
        member = files[entry["path"].lstrip("/")]
        assert isinstance(member, tarfile.TarInfo)
        assert f"{member.mode & 0o7777:04o}" == entry["mode"], entry["path"]
        assert (member.uid, member.gid) == (0, 0), entry["path"]
    assert files["opt/kubernetes/bin/flanneld#data"] == standin_release.body
    # nothing shared between nodes
    assert files["etc/machine-id#data"] == b""
    assert not [n for n in files if n.startswith("etc/ssh/ssh_host_")]
    assert not [n for n in files if n.startswith("var/lib/apt/lists/") and "#" not in n
                and isinstance(files[n], tarfile.TarInfo) and files[n].isfile()]  # fmt: skip
    assert not [n for n in files if n.startswith("var/lib/cloud/instances/")]
    assert "usr/bin/cloud-init" in files and "usr/sbin/dockerd" in files
    # what flanneld's datapath runs on a node: iproute2, iptables (flannel's rules)
    assert "usr/sbin/iptables" in files and "usr/sbin/iptables-restore" in files
    assert "usr/bin/ip" in files or "bin/ip" in files

    enabled = _offline(docker.image, "systemctl", "is-enabled", "flanneld", "docker")
    assert enabled.split() == ["enabled", "enabled"]
    # the generator picks the drop-in for Debian's docker.io
    dropin = _offline(
        docker.image,
        "sh",
        "-c",
        "/usr/lib/systemd/system-generators/flannelnode-docker-generator /tmp/g && "
        "cat /tmp/g/docker.service.d/*.conf",
    )
    assert "flannel" in dropin and "DOCKER_NETWORK_OPTIONS" in dropin

    record = json.loads((project.build / "images" / "docker-amd64.json").read_text())
    assert record["image_id"] == docker.image_id and record["inputs"] == docker.inputs
    # checked while built: images/validate.sh ran last inside the image, every check passed, and
    # the record and the manifest carry the result; the script left nothing behind
    validated = record["validation"]
    names = [c["check"] for c in validated["checks"]]
    assert validated["failed"] == [] and validated["passed"] == len(names)
    assert all(c["ok"] for c in validated["checks"])
    assert names == check_names([e["path"] for e in manifest["files"]])
    gathered = manifest_mod.gather(cfg, project.build)
    assert gathered["images"]["docker-amd64"]["validation"] == validated
    assert not [n for n in files if n.startswith("tmp/") and "#" not in n], "left in /tmp"

    # -- a second run with unchanged inputs starts no Packer process at all
    with pytest.MonkeyPatch.context() as mp:
        calls = packer_shim(project.root, mp)
        started = time.monotonic()
        again = images.build(
            cfg, project.build, quiet, ("docker",), base_dir=base_dir, repository=test_images
        )
        noop = time.monotonic() - started
    print(f"docker target no-op: {noop:.2f}s")
    assert not calls.exists(), calls.read_text()
    assert [b.rebuilt for b in again] == [False] and again[0].image_id == docker.image_id

    # -- the image works: two nodes boot against a real etcd, seed once, lease, docker on
    # flannel, pods on them reach each other through vxlan; and through host-gw
    reports = project.root / "verify"
    rc = verify.run(docker.image, cfg, project.build, out_dir=reports, log=lambda *a: None)
    assert rc == 0, (reports / "summary.txt").read_text()
    assert (
        "PASS  test_forward_policy_drop_needs_flannels_forward_rules"
        in (reports / "summary.txt").read_text()
    )
    host_gw = dataclasses.replace(cfg, network=HOST_GW)
    reports = project.root / "verify-host-gw"
    rc = verify.run(docker.image, host_gw, project.build, out_dir=reports,
                    checks=("test_datapath.py",), log=lambda *a: None)  # fmt: skip
    summary = (reports / "summary.txt").read_text()
    assert rc == 0, summary
    assert summary.count("PASS  ") == summary.count("  test_") >= 9, summary

    # -- and verify is no rubber stamp: without the docker drop-in generator it fails, by name
    broken = f"{test_images}:broken-dropin"
    container = _docker(
        "create", "--pull=never", "--entrypoint", "rm", docker.image, "-f", GENERATOR
    ).strip()
    try:
        _docker("start", "-a", container)
        restore = ['ENTRYPOINT ["/lib/systemd/systemd"]', "CMD []"]
        _docker("commit", *(f"--change={c}" for c in restore), container, broken)
    finally:
        _docker("rm", "-f", container)
    reports = project.root / "verify-broken"
    rc = verify.run(
        broken,
        cfg,
        project.build,
        out_dir=reports,
        log=lambda *a: None,
        checks=("test_node.py",),
        pytest_args=("-k", "dockerd_runs_with_the_lease or payload_files"),
    )
    summary = (reports / "summary.txt").read_text()
    assert rc != 0, summary
    assert "FAIL  test_dockerd_runs_with_the_lease_and_mtu" in summary
    assert "FAIL  test_payload_files_modes_owners" in summary


def test_docker_image_keeps_a_backend_secret_out(
    project, standin_release, base_dir, quiet, test_images
) -> None:
    """A backend secret in the config reaches the nodes (verify seeds it from their user-data)
    and never the image: neither the PSK nor a private key the base did not already hold."""
    mirror = standin_release.mirror
    project.config(config_text(mirror, SECRET_NETWORK), mirror=mirror)
    cfg = _config(project)
    [docker] = images.build(
        cfg, project.build, quiet, ("docker",), base_dir=base_dir, repository=test_images
    )
    leaks = _files_holding(docker.image, (SECRET_PSK.encode(), PEM_PRIVATE_KEY))
    from_base = _files_holding(base.IMAGE, (PEM_PRIVATE_KEY,))  # libgnutls embeds a test key
    assert {p: h for p, h in leaks.items() if from_base.get(p) != h} == {}
    files = _exported_files(docker.image)
    net_conf = json.loads(files["opt/kubernetes/cfg/net-conf.json#data"])
    assert net_conf["Backend"]["PSK"] == netconf.SECRET_PLACEHOLDER

    # the nodes get the real one: net-conf.json 0600 from the user-data, and etcd's config
    reports = project.root / "verify"
    rc = verify.run(
        docker.image,
        cfg,
        project.build,
        out_dir=reports,
        checks=("test_image.py", "test_node.py"),
        pytest_args=("-k", "private_key or payload_files or etcd_holds_the_config"),
        log=lambda *a: None,
    )
    summary = (reports / "summary.txt").read_text()
    assert rc == 0, summary
    # the image's own key scan and payload check (on testinfra's host), each node's payload
    # files, the config in etcd
    assert summary.count("PASS  ") == 5, summary


def test_a_broken_provisioner_fails_cleanly(
    project, fetched, base_dir, quiet, test_images, tmp_path, monkeypatch
) -> None:
    broken = tmp_path / "provision.sh"
    broken.write_text("#!/bin/sh\necho 'provision: about to break'\necho 'oops' >&2\nexit 3\n")
    monkeypatch.setattr(images, "PROVISION", broken)
    before = set(_docker("ps", "-aq").split())
    with pytest.raises(packer.PackerError) as exc:
        images.build(
            _config(project), project.build, quiet, ("docker",), base_dir=base_dir,
            repository=test_images,
        )  # fmt: skip
    message = str(exc.value)
    assert "provision: about to break" in message and "oops" in message
    assert "exit status: 3" in message
    assert exc.value.exit_code != 0
    # nothing left: no image, no record, no scratch dir, no container
    assert not _docker("images", "-q", test_images).strip()
    assert not (project.build / "images" / "docker-amd64.json").exists()
    assert not [p for p in (project.build / "images").iterdir() if p.name.startswith(".docker.")]
    assert set(_docker("ps", "-aq").split()) <= before


def test_a_failing_validation_fails_images_naming_the_check(
    project, fetched, base_dir, tmp_path, monkeypatch
) -> None:
    """A provisioner that installs the payload with a wrong mode and leaves a machine-id: the
    real validate.sh fails the Packer build, and `build.py images` exits 1 naming the checks,
    with no image, no record and no container left."""
    broken = tmp_path / "provision.sh"
    broken.write_text(
        "#!/bin/sh\nset -eu\ntar -xf /tmp/flannelnode/flannelnode-payload.tar -C /\n"
        "chmod 0644 /opt/kubernetes/bin/flanneld\n"
        "echo 0123456789abcdef0123456789abcdef >/etc/machine-id\n"
    )
    monkeypatch.setattr(images, "PROVISION", broken)
    shared = base.build
    monkeypatch.setattr(base, "build", lambda _dir, *a, **kw: shared(base_dir, *a, **kw))
    before = set(_docker("ps", "-aq").split())
    images_before = set(_docker("images", "-q", images.REPOSITORY).split())
    started = time.monotonic()
    res = project.run("images", "--target", "docker")
    print(f"failing validation: {time.monotonic() - started:.1f}s")
    assert res.rc == 1, res.err
    assert "Traceback" not in res.err
    [line] = [ln for ln in res.err.splitlines() if "validation failed" in ln]
    assert line.startswith("error: images docker amd64: image validation failed (")
    assert "file:/opt/kubernetes/bin/flanneld: mode 644, expected 0755" in line
    assert "machine-id: /etc/machine-id holds 0123456789abcdef0123456789abcdef" in line
    assert "unit:flanneld.service: is-enabled: disabled" in line
    assert line.endswith("; no image was kept")
    assert set(_docker("images", "-q", images.REPOSITORY).split()) == images_before
    assert not (project.build / "images" / "docker-amd64.json").exists()
    assert set(_docker("ps", "-aq").split()) <= before


# -- a tampered payload stops images before the base image and before Packer


@pytest.fixture
def no_base_no_packer(project, monkeypatch) -> Iterator[list[str]]:
    """Records whether images got as far as the base image or Packer (and stops either)."""
    reached: list[str] = []
    calls = packer_shim(project.root, monkeypatch)

    def no_base(*args, **kwargs):
        reached.append("base")
        raise images.ImagesError("the test stops images at the base image")

    monkeypatch.setattr(base, "build", no_base)
    yield reached
    if calls.exists():
        reached.append("packer " + calls.read_text())


@tampers
def test_images_alarm_on_a_tampered_stage_before_base_and_packer(
    project, fetched, no_base_no_packer, tamper
) -> None:
    assert project.run("payload").rc == 0
    named = tamper(stage_root(project.build))
    before = snapshot(project.build / "payload")
    res = project.run("images", "--target", "docker,qemu")
    assert res.rc == 4, res.err
    assert named in res.err and "Traceback" not in res.err
    assert no_base_no_packer == []
    assert snapshot(project.build / "payload") == before  # not rebuilt behind the alarm
    assert not (project.build / "images").exists()


def test_images_alarm_on_a_tampered_payload_tarball(project, fetched, no_base_no_packer) -> None:
    assert project.run("payload").rc == 0
    tar = project.build / "payload" / "amd64" / "flannelnode-payload.tar"
    flip_byte(tar, offset=2000)
    res = project.run("images", "--target", "docker")
    assert res.rc == 4, res.err
    assert str(tar) in res.err
    assert no_base_no_packer == []


def test_images_upload_only_the_tarball_the_manifest_records(
    project, fetched, no_base_no_packer, monkeypatch
) -> None:
    """Changed after the check at the start (during a base build, say): Packer never sees it."""
    tar = project.build / "payload" / "amd64" / "flannelnode-payload.tar"

    def stage_then_tamper(*args, **kwargs):
        staged = stage(*args, **kwargs)
        flip_byte(tar, offset=2000)
        return staged

    # an EL base (no local base image to build) installs the RPM: build it first
    assert project.run("payload").rc == 0 and project.run("rpm").rc == 0
    stage = images.stage
    monkeypatch.setattr(images, "stage", stage_then_tamper)
    res = project.run("images", "--target", "docker", "--base", "rocky-9")
    assert res.rc == 4, res.err
    assert str(tar) in res.err and "Packer was not started" in res.err
    assert no_base_no_packer == []
    assert not [p for p in (project.build / "images").iterdir() if p.name.startswith(".docker.")]


def test_missing_packer_names_the_apt_package(monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(packer.PackerError, match=r"apt-get install -y packer"):
        packer.executable()


def test_base_mirror_comes_from_the_hosts_apt_sources(tmp_path: Path) -> None:
    apt = tmp_path / "apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list.d" / "debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n"
        "Components: main\n\nTypes: deb\nURIs: http://security.example/debian-security\n"
        "Suites: bookworm-security\nComponents: main\n"
    )
    assert base.debian_mirror(None, apt) == "http://mirror.example/debian"
    assert base.debian_mirror("http://x/d/", apt) == "http://x/d"  # images.debian_mirror
    assert base.debian_mirror(None, tmp_path / "none") == base.DEFAULT_MIRROR


# -- the qemu target (TCG here): a qcow2 whose first boot in a real VM brings docker up on flannel


def _vm_node_config(cfg: config.Config, etcd: EtcdCluster) -> config.Config:
    """The config as the VM sees it: the host's etcd through qemu's user-mode network."""
    port = etcd.members[0].client_port
    endpoints = [f"https://{vm.GUEST_HOST_IP}:{port}"]
    return dataclasses.replace(cfg, etcd=dataclasses.replace(cfg.etcd, endpoints=endpoints))


def _boot(disk: Path, node_cfg: config.Config, etcd: EtcdCluster, work: Path, name: str) -> vm.Vm:
    key, public = vm.ssh_keypair(work / "ssh")
    tls = userdata.TlsFiles(etcd.certs.ca, etcd.certs.cert, etcd.certs.key)
    iso, _ = vm.seed_iso(vm.user_data(node_cfg, tls, public), work, name)
    machine = vm.Vm(disk, work / name, iso, key, host_ports=(etcd.members[0].client_port,))
    machine.start()
    return machine


@pytest.mark.slow
def test_qemu_target_first_boot_brings_docker_up_on_flannel(
    project, standin_release, base_dir, quiet, tmp_path
) -> None:
    """The qcow2, built with the stand-in flanneld (v0.27.4, pinned and fetched like a release),
    boots in qemu with its own kernel, gets its user-data from a NoCloud seed ISO made by the
    project's seed-iso code, and reaches a real TLS etcd on this host (127.0.0.1, seen from the
    guest as 10.0.2.100 through a guestfwd; the guest reaches nothing else). Then, inside the VM:
    the seeder wrote the network config exactly once,
    br_netfilter was loaded by our modules-load.d file before flanneld (not by docker), our
    sysctls are in effect, flanneld holds a lease for the VM's address, dockerd runs with
    --bip/--mtu from subnet.env. VM start -> docker active is printed.

    The checks go over ssh (a per-run key added to the user-data) with testinfra's ssh backend,
    not the serial console: verify/checks.py's helpers work unchanged on that host, every command
    has its own exit code and output, and the console stays a clean boot log for the failure
    messages (each wait is bounded and reports the console tail and the guest's journal).

    Then the same image with the old payload's prerequisites (no modules-load.d and sysctl.d
    files, no modprobe before flanneld; edited offline with debugfs) boots to the failure real
    flanneld >= v0.26 has on a fresh VM: "Failed to check br_netfilter", and no docker.
    """
    require("qemu-system-x86_64", "qemu-img", "cloud-localds", "ssh", "sfdisk", "debugfs", "socat")
    cfg = _config(project)
    started = time.monotonic()
    accel = os.environ.get(vm.ACCEL_ENV) or None  # a host fact; conftest keeps it
    [qemu] = images.build(
        cfg, project.build, quiet, ("qemu",), base_dir=base_dir, accelerator=accel
    )
    print(f"qemu target: {time.monotonic() - started:.1f}s")
    assert qemu.path and Path(qemu.path).is_file()
    assert qemu.path.startswith(str(project.build / "images" / "qemu"))
    assert sha256_file(Path(qemu.path)) == qemu.sha256
    assert not [p for p in (project.build / "images").iterdir() if p.name.startswith(".qemu.")]
    # validated inside the VM as its last build step (over ssh, as root): every check passed
    validated = json.loads((project.build / "images" / "qemu-amd64.json").read_text())["validation"]
    assert validated["failed"] == [] and validated["passed"] == len(validated["checks"]) >= 24
    disk = Path(qemu.path)

    old = tmp_path / "old-payload.raw"
    try:
        with EtcdCluster(tmp_path / "etcd", size=1, extra_ips=[vm.GUEST_HOST_IP]) as etcd:
            node_cfg = _vm_node_config(cfg, etcd)
            oracle = etcd.oracle()
            prefix = cfg.etcd.prefix
            machine = _boot(disk, node_cfg, etcd, tmp_path, "good")
            try:
                _check_first_boot(machine, cfg, oracle, prefix)
            finally:
                machine.close()

            # -- the old payload: nothing of ours loads br_netfilter; flanneld refuses to start
            oracle.delete_prefix(prefix + "/")
            vm.without_module_loading(disk, old)
            machine = _boot(old, node_cfg, etcd, tmp_path, "old")
            try:
                _check_old_payload_fails(machine, oracle, prefix)
            finally:
                machine.close()
    finally:  # gigabytes: not left in pytest's kept tmp dirs, also not after a failure
        for big in (old, *tmp_path.glob("*/overlay.qcow2")):
            big.unlink(missing_ok=True)
        shutil.rmtree(project.build / "images" / "qemu", ignore_errors=True)


def _check_first_boot(machine: vm.Vm, cfg: config.Config, oracle, prefix: str) -> None:
    machine.wait_ssh(VM_TIMEOUT)
    machine.wait_for(
        "docker.service active",
        lambda: machine.ssh("systemctl is-active docker", 30).stdout.strip() == "active",
        VM_TIMEOUT - (time.monotonic() - machine.started_at),
    )
    to_docker = machine.since_start(machine.active_monotonic("docker"))
    print(f"qcow2 first boot, VM start -> docker active on flannel: {to_docker:.1f}s")
    machine.wait_cloud_init(VM_TIMEOUT - (time.monotonic() - machine.started_at))
    host = machine.testinfra_host()
    try:
        _first_boot_checks(machine, host, cfg, oracle, prefix)
    except AssertionError as exc:
        raise machine.error(f"first boot check failed: {exc}") from None


def _unit(host, unit: str, *props: str) -> dict[str, str]:
    out = host.check_output(f"systemctl show {unit} " + " ".join(f"-p {p}" for p in props))
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def _first_boot_checks(machine: vm.Vm, host, cfg: config.Config, oracle, prefix: str) -> None:
    # cloud-init ran from the seed ISO, cleanly
    status = host.run("cloud-init status --long")
    assert "status: done" in status.stdout and status.rc == 0, status.stdout + status.stderr
    assert "NoCloud" in status.stdout, status.stdout

    # the seeder wrote the network config exactly once (read back with the etcd3 gRPC client)
    value, meta = oracle.get(f"{prefix}/config")
    assert value is not None, f"no {prefix}/config in etcd"
    assert json.loads(value) == cfg.network
    assert meta.version == 1, f"{prefix}/config was written {meta.version} times"
    seed = _unit(host, "flannel-seed-etcd", "Result", "ActiveState")
    assert seed == {"Result": "success", "ActiveState": "active"}, seed

    # br_netfilter: loaded by systemd-modules-load from our file, before flanneld started
    assert host.file("/sys/module/br_netfilter").is_directory, "br_netfilter is not loaded"
    listed = host.check_output(
        "grep -lsx br_netfilter /etc/modules-load.d/*.conf /run/modules-load.d/*.conf "
        "/usr/lib/modules-load.d/*.conf /lib/modules-load.d/*.conf || true"
    ).split()
    assert set(listed) <= {vm.MODULES_LOAD, "/lib/modules-load.d/flannel.conf"}, listed
    assert listed, "no modules-load.d file lists br_netfilter"
    # by identifier, not -u: a message logged before journald listens comes in through kmsg,
    # without the unit field
    loaded = host.check_output("journalctl -b -o cat --no-pager -t systemd-modules-load")
    assert "Inserted module 'br_netfilter'" in loaded, loaded
    modules = _unit(host, "systemd-modules-load", "ExecMainExitTimestampMonotonic", "Result")
    flanneld = _unit(host, "flanneld", "ExecMainStartTimestampMonotonic", "NRestarts",
                     "ActiveState")  # fmt: skip
    docker = _unit(host, "docker", "ExecMainStartTimestampMonotonic")
    assert modules["Result"] == "success", modules
    order = [
        int(modules["ExecMainExitTimestampMonotonic"]),
        int(flanneld["ExecMainStartTimestampMonotonic"]),
        int(docker["ExecMainStartTimestampMonotonic"]),
    ]
    assert 0 < order[0] < order[1] < order[2], (modules, flanneld, docker)
    # and flanneld came up at the first try (the stand-in exits without br_netfilter, as v0.26+)
    assert flanneld["ActiveState"] == "active" and flanneld["NRestarts"] == "0", flanneld

    # our sysctls are in effect
    wanted = {}
    for line in host.file(vm.SYSCTL).content_string.splitlines():
        if "=" in line and not line.lstrip().startswith(("#", ";")):
            key, value = (part.strip() for part in line.split("=", 1))
            wanted[key] = value
    assert "net.bridge.bridge-nf-call-iptables" in wanted, wanted
    actual = {key: host.sysctl(key) for key in wanted}
    assert actual == {k: int(v) for k, v in wanted.items()}, actual
    sysctl = _unit(host, "systemd-sysctl", "Result")
    assert sysctl["Result"] == "success", sysctl

    # flanneld holds a lease for the VM's own address
    env = env_file(host, SUBNET_ENV)
    lease = lease_network(env)
    vm_ip = host.check_output(f"ip -4 -o route get {vm.GUEST_HOST_IP}").split(" src ")[1].split()[0]
    held = {
        meta.key.decode().rsplit("/", 1)[-1]: json.loads(value)
        for value, meta in oracle.get_prefix(f"{prefix}/subnets/")
    }
    assert list(held) == [f"{lease.network_address}-{lease.prefixlen}"], held
    assert next(iter(held.values()))["PublicIP"] == vm_ip, (held, vm_ip)

    # dockerd runs on that lease: its flags and its bridge
    args = dockerd_args(host)
    assert f"--bip={env['FLANNEL_SUBNET']}" in args, args
    assert f"--mtu={env['FLANNEL_MTU']}" in args, args
    bridge = host.interface("docker0").addresses
    assert env["FLANNEL_SUBNET"].split("/")[0] in bridge, bridge


def _check_old_payload_fails(machine: vm.Vm, oracle, prefix: str) -> None:
    def failed_for_br_netfilter() -> bool:
        res = machine.ssh("journalctl -b -o cat --no-pager -u flanneld", 30)
        return "Failed to check br_netfilter" in res.stdout

    machine.wait_ssh(VM_TIMEOUT)
    machine.wait_for("flanneld failing with 'Failed to check br_netfilter'",
                     failed_for_br_netfilter, VM_TIMEOUT)  # fmt: skip
    host = machine.testinfra_host()
    try:
        assert not host.file("/sys/module/br_netfilter").exists
        assert not host.file("/proc/sys/net/bridge").exists
        assert not host.file(SUBNET_ENV).exists
        assert not host.service("docker").is_running
        assert not list(oracle.get_prefix(f"{prefix}/subnets/")), "a lease without flanneld?"
        assert oracle.get(f"{prefix}/config")[0] is not None, "the seeder did not run"
    except AssertionError as exc:
        raise machine.error(f"old payload check failed: {exc}") from None
    print("old payload: " + machine.out("journalctl -b -o cat --no-pager -u flanneld | "
                                        "grep -m1 'br_netfilter'").strip())  # fmt: skip
