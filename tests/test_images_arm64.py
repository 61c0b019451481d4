"""arm64 node images built on this amd64 host, and the OCI archive that holds the node tag.

Real Packer, Docker, qemu-user (binfmt_misc, `make binfmt`) and skopeo. The arm64 base is
debootstrapped under emulation into build/base/ (shared with `make base`, about 4 minutes once).
flanneld in the arm64 image is the stand-in compiled for AArch64 (tests/standin, cross gcc):
a real arm64 program, which the image can run under emulation.
"""

from __future__ import annotations

import json
import os
import subprocess
import tarfile
import time
from pathlib import Path

import pytest

from flannelnode import config, images, ociindex
from flannelnode.progress import Reporter
from flannelnode.tools import require

from .conftest import packer_shim
from .elf_headers import SPEC
from .oci_check import check_oci_archive, skopeo_reads

REPO = Path(__file__).resolve().parent.parent
TEST_REPOSITORY = f"flannelnode-test/node-arm64-{os.getpid()}"


@pytest.fixture
def test_images():
    yield TEST_REPOSITORY
    refs = _docker("images", "--format", "{{.Repository}}:{{.Tag}}", TEST_REPOSITORY).split()
    for ref in refs:
        subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, timeout=120)


def _docker(*args: str, timeout: float = 300) -> str:
    res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    assert res.returncode == 0, f"docker {' '.join(args)}: {res.stderr}"
    return res.stdout


def _exported(image: str) -> dict[str, tuple[tarfile.TarInfo, bytes]]:
    """Every member of the image's filesystem, with the first 64 bytes of regular files."""
    container = _docker("create", "--pull=never", image).strip()
    out: dict[str, tuple[tarfile.TarInfo, bytes]] = {}
    try:
        export = subprocess.Popen(["docker", "export", container], stdout=subprocess.PIPE)
        assert export.stdout is not None
        with tarfile.open(fileobj=export.stdout, mode="r|") as tar:
            for member in tar:
                f = tar.extractfile(member) if member.isfile() else None
                body = f.read() if f is not None and member.size <= 64 << 20 else b""
                out[member.name] = (member, body)
        assert export.wait(timeout=300) == 0
    finally:
        _docker("rm", "-f", container)
    return out


def _elf_machine(head: bytes) -> tuple[int, int, int] | None:
    if not head.startswith(b"\x7fELF"):
        return None
    order = "little" if head[5] == 1 else "big"
    return head[4], head[5], int.from_bytes(head[18:20], order)


def _offline(image: str, *cmd: str) -> str:
    return _docker("run", "--pull=never", "--rm", "--entrypoint", cmd[0], image, *cmd[1:])


def test_the_arm64_standin_is_an_arm64_program(standin_arm64: Path) -> None:
    """Not an amd64 binary with a patched header: compiled for AArch64, and it runs (qemu-user)."""
    head = standin_arm64.read_bytes()[:64]
    assert _elf_machine(head) == SPEC["arm64"]
    res = subprocess.run(
        [str(standin_arm64), "--version"], capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0 and res.stderr.strip() == "v0.27.4", res  # as flanneld: stderr


@pytest.mark.slow
def test_arm64_docker_image_and_the_multi_arch_oci_index(
    project, standin_release_multiarch, base_dir, test_images, tmp_path
) -> None:
    require("packer", "skopeo")
    cfg = config.load(project.root / "node.toml", env={})
    assert cfg.flannel.arches == ["amd64", "arm64"]
    quiet = Reporter(quiet=True)
    started = time.monotonic()
    built = images.build(
        cfg, project.build, quiet, ("docker",), base_dir=base_dir, repository=test_images
    )
    print(f"docker amd64 + arm64 and the OCI index: {time.monotonic() - started:.1f}s")
    by_arch = {b.arch: b for b in built}
    assert [(b.target, b.arch) for b in built] == [("docker", "amd64"), ("docker", "arm64")]
    arm64 = by_arch["arm64"]
    record = json.loads((project.build / "images" / "docker-arm64.json").read_text())
    print(f"docker arm64 (Packer under qemu-user): {record['seconds']}s")
    assert record["target"] == "docker" and record["arch"] == "arm64"
    assert arm64.image == f"{test_images}:v0.27.4-arm64" and arm64.rebuilt

    # -- the image: arm64 by its config and by every binary in it
    [inspect] = json.loads(_docker("image", "inspect", arm64.image))
    assert (inspect["Architecture"], inspect["Os"]) == ("arm64", "linux")
    assert inspect["Config"]["Entrypoint"] == ["/lib/systemd/systemd"]
    assert "/var/lib/docker" in inspect["Config"]["Volumes"]
    files = _exported(arm64.image)
    manifest = json.loads((project.build / "payload" / "arm64" / "manifest.json").read_text())
    for entry in manifest["files"]:
        member, _ = files[entry["path"].lstrip("/")]
        assert f"{member.mode & 0o7777:04o}" == entry["mode"], entry["path"]
        assert (member.uid, member.gid) == (0, 0), entry["path"]
    assert files["opt/kubernetes/bin/flanneld"][1] == standin_release_multiarch["arm64"].body
    opt = {n: (m, body) for n, (m, body) in files.items() if n.startswith("opt/") and m.isfile()}
    elves = {n: _elf_machine(body[:64]) for n, (m, body) in opt.items() if _elf_machine(body)}
    assert "opt/kubernetes/bin/flanneld" in elves
    assert set(elves.values()) == {SPEC["arm64"]}, elves
    for name, (member, body) in opt.items():  # every executable is an arm64 ELF or a script
        if member.mode & 0o111:
            assert name in elves or body.startswith(b"#!"), name
    for system in ("usr/sbin/dockerd", "usr/bin/python3.11", "usr/lib/systemd/systemd"):
        assert _elf_machine(files[system][1][:64]) == SPEC["arm64"], system
    assert files["etc/machine-id"][1] == b""
    assert not [n for n in files if n.startswith("etc/ssh/ssh_host_")]
    enabled = _offline(arm64.image, "systemctl", "is-enabled", "flanneld", "docker")
    assert enabled.split() == ["enabled", "enabled"]
    version = _offline(arm64.image, "sh", "-c", "/opt/kubernetes/bin/flanneld --version 2>&1")
    assert version.strip() == "v0.27.4"  # the arm64 flanneld runs in its image

    # -- the OCI archive: both arches under the node tag, every digest right; skopeo reads it
    record = json.loads(ociindex.record_path(project.build, "v0.27.4").read_text())  # the index
    archive = ociindex.archive_path(project.build, "v0.27.4")
    assert record["path"] == str(archive) and record["size"] == archive.stat().st_size
    held = check_oci_archive(archive, "v0.27.4", {a: b.image_id for a, b in by_arch.items()})
    assert record["index_digest"] == held
    skopeo_reads(archive, "v0.27.4", ["amd64", "arm64"], tmp_path)

    # -- a second run with unchanged inputs: no Packer, no docker save; and how long it takes
    with pytest.MonkeyPatch.context() as mp:
        calls = packer_shim(project.root, mp)
        mp.setattr(ociindex, "write", _must_not_run)
        started = time.monotonic()
        again = images.build(
            cfg, project.build, quiet, ("docker",), base_dir=base_dir, repository=test_images
        )
        noop = time.monotonic() - started
    print(f"images docker amd64+arm64 no-op: {noop:.2f}s")
    assert not calls.exists(), calls.read_text()
    assert [b.rebuilt for b in again] == [False, False]
    assert ociindex.archive_path(project.build, "v0.27.4").stat().st_size == record["size"]

    # -- the manifest names both images and the archive
    assert project.run("manifest").rc == 0
    made = json.loads((project.build / "manifest.json").read_text())
    assert {"docker-amd64", "docker-arm64"} <= set(made["images"])
    assert made["oci_index"]["node-v0.27.4"]["sha256"] == record["sha256"]


def _must_not_run(*args, **kwargs):
    raise AssertionError("the OCI archive was written again with unchanged images")
