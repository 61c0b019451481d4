"""diskimage: the qcow2 of our own base, assembled from the base's VM tree without a VM boot.

Real docker, real provision.sh, real make-disk.sh; the disk is read back offline with debugfs
(e2fsprogs) on a raw copy, never mounted. That it boots and brings docker up on flannel is
tests/test_images.py::test_qemu_target_first_boot_brings_docker_up_on_flannel.
"""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

import pytest

from flannelnode import base, config, diskimage, images
from flannelnode.cache import sha256_file
from flannelnode.tools import require

from .conftest import packer_shim
from .vm import Ext4

REPO = Path(__file__).resolve().parent.parent


def _config(project) -> config.Config:
    return config.load(project.root / "node.toml", env={})


def _disk_containers() -> set[str]:
    out = subprocess.run(
        ["docker", "ps", "-aq", "--filter", "name=flannelnode-disk-"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout  # fmt: skip
    return set(out.split())


@pytest.mark.slow
def test_assembled_qcow2_holds_the_payload_and_nothing_node_specific(
    project, standin_release, base_dir, quiet, tmp_path, monkeypatch
) -> None:
    require("qemu-img", "sfdisk", "debugfs")
    cfg = _config(project)
    before = _disk_containers()
    calls = packer_shim(project.root, monkeypatch)  # any Packer run would fail the build
    [qemu] = images.build(cfg, project.build, quiet, ("qemu",), base_dir=base_dir)
    assert not calls.exists(), calls.read_text()
    assert qemu.rebuilt and qemu.method == "assembled"
    disk = Path(qemu.path or "")
    assert disk == project.build / "images" / "qemu" / "flannelnode-node-v0.27.4-amd64.qcow2"
    assert sha256_file(disk) == qemu.sha256
    # nothing half-made, no container left
    assert not [p for p in (project.build / "images").iterdir() if p.name.startswith(".qemu.")]
    assert _disk_containers() <= before

    # the record: the method and every input the assembly used
    record = json.loads(images.record_path(project.build, "qemu", "amd64").read_text())
    based = json.loads(base.record_path(base_dir).read_text())
    vm_id, uuid = based["vm"]["id"], based["vm"]["root_uuid"]
    assert record["method"] == "assembled" and record["size"] == disk.stat().st_size
    # images/validate.sh checked the tree before the disk was written, every check passed
    assert record["validation"]["failed"] == [] and record["validation"]["passed"] > 10
    parts = record["parts"]
    assert parts["base"] == vm_id == base.image_recipe(base.VM_IMAGE)[0]
    assert parts["root_uuid"] == uuid
    assert parts["make-disk"] == sha256_file(diskimage.MAKE_DISK)
    assert parts["provision"] == sha256_file(images.PROVISION)
    payload = json.loads((project.build / "payload" / "amd64" / "manifest.json").read_text())
    assert parts["payload"] == payload["input_digest"]

    fs = Ext4(disk, tmp_path / "disk.raw")
    try:
        # the payload, file by file: exact modes, root-owned, flanneld's bytes
        for entry in payload["files"]:
            st = fs.stat(entry["path"])
            assert st is not None, f"{entry['path']} missing from the disk"
            assert st["Type"] == "regular" and st["Mode"] == entry["mode"], (entry, st)
            assert (st["User"], st["Group"]) == ("0", "0"), (entry, st)
            assert int(st["Size"]) == entry["size"], (entry, st)
        flanneld = fs.read("/opt/kubernetes/bin/flanneld", tmp_path / "flanneld")
        assert flanneld == standin_release.body
        # enabled offline: the symlinks systemctl enable places
        for unit in ("flanneld.service", "docker.service"):
            link = fs.stat(f"/etc/systemd/system/multi-user.target.wants/{unit}")
            assert link is not None and link["Type"] == "symlink", (unit, link)

        # nothing a node must not share
        machine_id = fs.stat("/etc/machine-id")
        assert machine_id is not None and machine_id["Size"] == "0", machine_id
        assert fs.stat("/var/lib/dbus/machine-id") is None or fs.stat(
            "/var/lib/dbus/machine-id"
        )["Type"] == "symlink"  # fmt: skip
        assert not [n for n in fs.names("/etc/ssh") if n.startswith("ssh_host_")]
        cloud = fs.names("/var/lib/cloud") if fs.stat("/var/lib/cloud") else []
        assert not {"instance", "instances", "data", "sem"} & set(cloud), cloud
        assert fs.stat("/root/.ssh/authorized_keys") is None
        assert fs.stat("/var/lib/systemd/random-seed") is None
        assert fs.stat("/.dockerenv") is None
        assert set(fs.names("/tmp")) <= {".", ".."}, fs.names("/tmp")  # no upload, no script
        # docker's placeholders replaced by the base's files
        assert fs.read("/etc/hostname", tmp_path / "hostname") == b"localhost\n"
        assert b"localhost" in fs.read("/etc/hosts", tmp_path / "hosts")

        # it boots from the UUID its GRUB and fstab name
        stats = fs.run("stats -h")
        assert re.search(rf"Filesystem UUID:\s+{uuid}\b", stats), stats[:400]
        assert f"UUID={uuid} / ext4" in fs.read("/etc/fstab", tmp_path / "fstab").decode()
        assert f"root=UUID={uuid}" in fs.read("/boot/grub/grub.cfg", tmp_path / "grub").decode()
        size = subprocess.run(["qemu-img", "info", "--output=json", str(disk)],
                              capture_output=True, text=True, check=True).stdout  # fmt: skip
        assert json.loads(size)["virtual-size"] == diskimage.DISK_MIB << 20
    finally:
        (tmp_path / "disk.raw").unlink(missing_ok=True)

    # unchanged inputs: nothing is provisioned again
    [again] = images.build(cfg, project.build, quiet, ("qemu",), base_dir=base_dir)
    assert not again.rebuilt and again.sha256 == qemu.sha256 and again.method == "assembled"


def test_a_broken_provisioner_fails_the_assembly_cleanly(
    project, standin_release, base_dir, quiet, tmp_path, monkeypatch
) -> None:
    broken = tmp_path / "provision.sh"
    broken.write_text("#!/bin/sh\necho 'provision: about to break'\necho 'oops' >&2\nexit 3\n")
    monkeypatch.setattr(images, "PROVISION", broken)
    before = _disk_containers()
    with pytest.raises(diskimage.DiskImageError) as exc:
        images.build(_config(project), project.build, quiet, ("qemu",), base_dir=base_dir)
    message = str(exc.value)
    assert "provision: about to break" in message and "oops" in message
    assert "qcow2 provision failed (exit 3)" in message
    assert exc.value.exit_code == 1
    # nothing left: no qcow2, no record, no scratch dir, no container; the log stays
    assert not (project.build / "images" / "qemu").exists()
    assert not images.record_path(project.build, "qemu", "amd64").exists()
    assert not [p for p in (project.build / "images").iterdir() if p.name.startswith(".qemu.")]
    assert _disk_containers() <= before
    assert "oops" in (project.build / "images" / "qemu.log").read_text()


def _tree(root: Path, uuid: str) -> Path:
    (root / "etc").mkdir(parents=True)
    (root / "boot" / "grub").mkdir(parents=True)
    (root / "etc" / "fstab").write_text(f"UUID={uuid} / ext4 errors=remount-ro 0 1\n")
    (root / "boot" / "grub" / "grub.cfg").write_text(f"linux /vmlinuz root=UUID={uuid} ro\n")
    for name in ("hostname", "hosts", "resolv.conf"):  # docker export's placeholders
        (root / "etc" / name).write_text("")
        (root / "etc" / name).chmod(0o755)
    (root / ".dockerenv").write_text("")
    return root


def test_settle_replaces_dockers_placeholders(tmp_path: Path) -> None:
    uuid = "9f5094cf-0424-47b4-8d88-f9db503e66b1"
    root = _tree(tmp_path / "root", uuid)
    diskimage._settle(root, uuid)
    assert (root / "etc" / "hostname").read_text() == "localhost\n"
    assert "127.0.0.1\tlocalhost" in (root / "etc" / "hosts").read_text()
    for name in ("hostname", "hosts", "resolv.conf"):
        assert (root / "etc" / name).stat().st_mode & 0o7777 == 0o644, name
    assert not (root / ".dockerenv").exists()


@pytest.mark.parametrize("where", ["etc/fstab", "boot/grub/grub.cfg"])
def test_a_tree_whose_uuid_is_not_the_records_is_refused(tmp_path: Path, where: str) -> None:
    """A disk whose GRUB or fstab names another filesystem would not boot: refused by name."""
    uuid = "9f5094cf-0424-47b4-8d88-f9db503e66b1"
    root = _tree(tmp_path / "root", uuid)
    (root / where).write_text((root / where).read_text().replace(uuid, "0" * 8 + uuid[8:]))
    with pytest.raises(diskimage.DiskImageError) as exc:
        diskimage._settle(root, uuid)
    assert f"/{where}" in str(exc.value) and uuid in str(exc.value)
    assert "build.py base --force" in str(exc.value)
