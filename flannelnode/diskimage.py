"""diskimage: a node qcow2 assembled from the base's VM tree, without booting a VM.

For bases we build ourselves (debian-bookworm), base.py keeps the VM root tree as a docker image
(base.VM_IMAGE). A container of it runs images/provision.sh on the same upload directory and with
the same environment as the Packer templates give it; its filesystem is exported and
images/base/make-disk.sh writes the disk, with the base's root UUID (the one its grub.cfg, GRUB
core image and fstab name). Under TCG this replaces a boot, provisioning at emulated speed and a
shutdown by native-speed work (issue 16: 131-192 s with Packer).

What differs from a booted build, and why it is the same node:
- No build user: nothing booted, so no cloud-init run, no ssh host keys, no machine-id, no
  authorized_keys were ever made; FLANNELNODE_BUILD_USER is left empty.
- No network (--network=none): on this base provision.sh finds docker, cloud-init and locales
  installed and installs nothing; should that change, it fails here instead of reaching out.
- `systemctl enable` works offline (it places symlinks); provision.sh's module loading and
  sysctls fail in a container and say so: nodes apply both at every boot.
- docker mounts its own /etc/hostname, /etc/hosts and /etc/resolv.conf into every container and
  exports them as empty placeholders; the tree gets the base's values back (vm-setup.sh's).

Nothing half-made is left: the container is removed whatever happens, the tree and the disk are
written in the caller's scratch directory and the qcow2 is moved into place at the end.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

from .base import RECIPE_DIR
from .cache import sha256_file
from .errors import FlannelnodeError
from .tools import require, require_docker_engine

VARIANTS = ("debian-bookworm",)  # bases whose VM tree base.py keeps as a docker image
MAKE_DISK = RECIPE_DIR / "make-disk.sh"
DISK_MIB = 4096  # the Packer template's disk_size (4G)
METHOD = "assembled"
TOOLS = ("tar", "qemu-img", "mkfs.ext4", "sfdisk", "truncate", "dd")
UPLOAD = "/tmp/flannelnode"
# what the Packer templates set for provision.sh (images/node.pkr.hcl), minus the build user
ENV = {
    "FLANNELNODE_PAYLOAD": f"{UPLOAD}/flannelnode-payload.tar",
    "FLANNELNODE_RPMS": f"{UPLOAD}/rpms",
}
TIMEOUTS = {"create": 120.0, "provision": 900.0, "export": 600.0, "disk": 600.0}
# docker's placeholders, given back the base's contents (images/base/vm-setup.sh)
PLACEHOLDERS = {
    "etc/hostname": "localhost\n",
    "etc/hosts": "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n",
    "etc/resolv.conf": "",
}
TAIL = 30


class DiskImageError(FlannelnodeError):
    pass


def inputs(vm_image_id: str, root_uuid: str) -> dict[str, str]:
    """What an assembled disk is made of besides the payload and provision.sh (images.py has
    those): the VM tree, the disk recipe and size, the root UUID."""
    return {
        "method": METHOD,
        "base": vm_image_id,
        "root_uuid": root_uuid,
        "make-disk": sha256_file(MAKE_DISK),
        "disk_mib": str(DISK_MIB),
    }


def build(
    vm_image_id: str,
    root_uuid: str,
    upload: Path,
    provision: Path,
    out: Path,
    work: Path,
    log: Path,
    on_line: Callable[[str], None],
    check: Callable[[Path], None] | None = None,
) -> dict:
    """Provision a container of vm_image_id, write its tree to a qcow2 in work, move it to out.
    log gets every command's output (a diagnostic kept after a failure). check, when given, is
    called with the finished tree before the disk is written (it raises to stop the build).

    Returns the artifact record: path, sha256, size, method."""
    require(*TOOLS)
    require_docker_engine()
    name = f"flannelnode-disk-{os.getpid()}-{time.monotonic_ns()}"
    tree = work / "root"
    tree.mkdir()
    log.parent.mkdir(parents=True, exist_ok=True)
    log.write_text("")
    try:
        _docker(
            "create", ["create", "--pull=never", "--name", name, "--network=none",
                       *(a for k, v in ENV.items() for a in ("-e", f"{k}={v}")),
                       "--entrypoint", "/bin/sh", vm_image_id, "/tmp/provision.sh"],
            log,
        )  # fmt: skip
        # the file provisioner's upload: a copy inside the container, as Packer makes one
        _docker("create", ["cp", f"{upload}/.", f"{name}:{UPLOAD}"], log)
        _docker("create", ["cp", str(provision), f"{name}:/tmp/provision.sh"], log)
        started = time.monotonic()
        _stream("provision", ["docker", "start", "--attach", name], log, on_line)
        on_line(f"qcow2: provisioned in {time.monotonic() - started:.1f}s")
        started = time.monotonic()
        _export(name, tree, log)
        on_line(f"qcow2: tree exported in {time.monotonic() - started:.1f}s")
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=120)
    _settle(tree, root_uuid)
    if check is not None:
        check(tree)
    disk = work / out.name
    started = time.monotonic()
    _stream("disk", [str(MAKE_DISK), str(tree), root_uuid, str(DISK_MIB), str(disk)], log, on_line)
    shutil.rmtree(tree)  # gigabytes: not kept until the caller's cleanup
    digest = sha256_file(disk)
    on_line(f"qcow2: disk written in {time.monotonic() - started:.1f}s")
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(disk, out)
    return {"path": str(out), "sha256": digest, "size": out.stat().st_size, "method": METHOD}


def _settle(tree: Path, root_uuid: str) -> None:
    """The exported tree as the disk must hold it, and the UUID check that it boots."""
    (tree / ".dockerenv").unlink(missing_ok=True)
    for rel, text in PLACEHOLDERS.items():
        path = tree / rel
        path.unlink(missing_ok=True)
        path.write_text(text)
        path.chmod(0o644)
    for rel in ("etc/fstab", "boot/grub/grub.cfg"):
        try:
            text = (tree / rel).read_text()
        except OSError as exc:
            raise DiskImageError(f"the VM tree has no /{rel} ({exc.strerror})") from None
        if f"UUID={root_uuid}" not in text and f"--fs-uuid --set=root {root_uuid}" not in text:
            raise DiskImageError(
                f"/{rel} in the VM tree does not name root filesystem UUID {root_uuid}, which "
                "the base record gives; the base is inconsistent: run `build.py base --force`"
            )


def _export(name: str, tree: Path, log: Path) -> None:
    export = subprocess.Popen(
        ["docker", "export", name], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert export.stdout is not None
    try:
        # as root, tar keeps owners and modes (numeric: the build host's names do not matter)
        _run("export", ["tar", "-x", "-C", str(tree), "--numeric-owner"], log, stdin=export.stdout)
    finally:
        export.stdout.close()
        try:
            export.wait(timeout=60)
        except subprocess.TimeoutExpired:
            export.kill()
            export.wait(timeout=10)
    if export.returncode != 0:
        err = export.stderr.read().decode(errors="replace") if export.stderr else ""
        raise DiskImageError(f"docker export {name} failed (exit {export.returncode}): {err}")


def _docker(step: str, args: list[str], log: Path) -> None:
    _run(step, ["docker", *args], log)


def _run(step: str, cmd: list[str], log: Path, **kw) -> None:
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        out.flush()
        try:
            res = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, timeout=TIMEOUTS[step], **kw
            )
        except subprocess.TimeoutExpired:
            raise DiskImageError(f"qcow2 {step}: no result in {TIMEOUTS[step]:g}s") from None
    if res.returncode != 0:
        raise DiskImageError(f"qcow2 {step} failed (exit {res.returncode}):\n{_tail(log)}")


def _stream(step: str, cmd: list[str], log: Path, on_line: Callable[[str], None]) -> None:
    """Run cmd with its output passed on line by line (and kept in log), killed at its timeout
    even while the loop waits for a line."""
    timed_out = threading.Event()
    with log.open("ab") as out:
        out.write(f"\n$ {' '.join(cmd)}\n".encode())
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        assert proc.stdout is not None
        timer = threading.Timer(TIMEOUTS[step], lambda: (timed_out.set(), proc.kill()))
        timer.daemon = True
        timer.start()
        try:
            for raw in proc.stdout:
                out.write(raw)
                on_line(raw.decode(errors="replace").rstrip("\n"))
            proc.wait(timeout=60)  # its output closed: it is exiting
        except BaseException:
            proc.kill()
            proc.wait(timeout=10)
            raise
        finally:
            timer.cancel()
            proc.stdout.close()
    if timed_out.is_set():
        raise DiskImageError(f"qcow2 {step}: no result in {TIMEOUTS[step]:g}s:\n{_tail(log)}")
    if proc.returncode != 0:
        raise DiskImageError(f"qcow2 {step} failed (exit {proc.returncode}):\n{_tail(log)}")


def _tail(log: Path) -> str:
    lines = log.read_text(errors="replace").splitlines()[-TAIL:]
    return "\n".join(lines) + f"\n(all in {log})"
