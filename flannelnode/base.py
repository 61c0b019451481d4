"""base: the offline Debian bookworm bases of the docker and qemu targets, from the Debian mirror.

- docker, per arch: debootstrap --arch -> `docker load` of a one-layer image whose config names
  the arch (dockerarchive.py) as flannelnode/base-debian:bookworm (amd64) or
  flannelnode/base-debian:bookworm-<arch>, labelled with the recipe digest (no container registry
  involved). A foreign arch (arm64 on an amd64 host) is debootstrapped in one go: its programs run
  under qemu-user-static through binfmt_misc's F flag (emulation.py, images/binfmt.sh);
- qemu (amd64 only): a container of that image runs images/base/vm-setup.sh (kernel, GRUB, sshd,
  cloud-init), its filesystem is exported and images/base/make-disk.sh writes a BIOS-bootable qcow2
  without a mount or loop device -> <base_dir>/debian-bookworm.qcow2 (build/base/ by default).
  The container's tree is also committed as flannelnode/base-debian:bookworm-vm (labelled with
  the VM recipe and the root filesystem's UUID, which its grub.cfg and fstab name), from which
  flannelnode/diskimage.py assembles node disks without booting a VM.

Each is skipped when it exists with the same recipe digest (<base_dir>/debian-bookworm.json,
debian-bookworm-<arch>.json). Building needs root: debootstrap creates device nodes and chroots.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from . import dockerarchive, emulation, urls
from .cache import sha256_file
from .errors import ConfigError, FlannelnodeError
from .progress import Reporter
from .tools import require, require_docker_engine

SUITE = "bookworm"
NAME = f"debian-{SUITE}"
IMAGE = f"flannelnode/base-debian:{SUITE}"
VM_IMAGE = f"{IMAGE}-vm"
LABEL = "org.flannelnode.recipe"
UUID_LABEL = "org.flannelnode.root-uuid"
DEFAULT_MIRROR = "http://deb.debian.org/debian"
PACKAGES = (
    "systemd",
    "systemd-sysv",
    "dbus",
    "iproute2",
    "iptables",
    "python3",
    "procps",
    "ca-certificates",
)
RECIPE_DIR = Path(__file__).resolve().parent.parent / "images" / "base"
RECIPE_FILES = ("vm-setup.sh", "make-disk.sh")
DISK_MIB = 2048
# what docker import cannot take from the tree: a systemd node's entrypoint and environment
IMPORT_CHANGES = ('ENTRYPOINT ["/lib/systemd/systemd"]', "CMD []", "ENV container=docker")
TIMEOUTS = {
    "debootstrap": 1200.0,
    "import": 300.0,
    "vm-setup": 1200.0,
    "vm-commit": 600.0,
    "disk": 600.0,
}
ARCHES = ("amd64", "arm64")  # the arches a base (and so a node image) is built for
QCOW2_ARCH = "amd64"  # the qcow2 recipe is x86 (GRUB i386-pc, BIOS boot)
FOREIGN_DEBOOTSTRAP_TIMEOUT = 3600.0  # dpkg under qemu-user: several times slower
TAIL = 30


class BaseError(FlannelnodeError):
    pass


@dataclass(frozen=True)
class Base:
    image: str  # docker tag
    image_id: str  # sha256:...
    qcow2: Path | None
    qcow2_sha256: str | None
    recipe: str
    rebuilt: tuple[str, ...]
    vm_image_id: str | None = None  # VM_IMAGE: the qcow2's root tree, for diskimage.py
    root_uuid: str | None = None  # the root filesystem UUID its grub.cfg and fstab name


def image_name(arch: str = QCOW2_ARCH) -> str:
    """amd64's base keeps the tag it always had; other arches add theirs."""
    return IMAGE if arch == "amd64" else f"{IMAGE}-{arch}"


def record_path(base_dir: Path, arch: str = "amd64") -> Path:
    return base_dir / (f"{NAME}.json" if arch == "amd64" else f"{NAME}-{arch}.json")


def check_arch(arch: str) -> None:
    if arch not in ARCHES:
        known = ", ".join(ARCHES)
        raise ConfigError(f"no base image for arch {arch!r}; bases are built for {known}")


def qcow2_path(base_dir: Path) -> Path:
    return base_dir / f"{NAME}.qcow2"


def recipe_digest(arch: str = "amd64") -> str:
    """What the docker base is made of; not the mirror (any mirror serves the same).

    amd64's digest is what it was before bases had an arch: the docker engine is shared, and a
    new digest would rebuild every checkout's amd64 base for nothing."""
    h = hashlib.sha256(f"suite {SUITE}\nvariant minbase\npackages {' '.join(PACKAGES)}\n".encode())
    h.update(f"changes {IMPORT_CHANGES}\n".encode())
    if arch != "amd64":
        h.update(f"arch {arch}\n".encode())
    return h.hexdigest()


def vm_recipe_digest(image_id: str) -> str:
    """What the qcow2 is made of: the docker base plus the VM recipe files."""
    h = hashlib.sha256(f"image {image_id}\ndisk {DISK_MIB}\n".encode())
    for name in RECIPE_FILES:
        h.update(f"{name} {sha256_file(RECIPE_DIR / name)}\n".encode())
    return h.hexdigest()


def debian_mirror(configured: str | None = None, apt_dir: Path = Path("/etc/apt")) -> str:
    """images.debian_mirror (config.py checks it; FLANNELNODE_DEBIAN_MIRROR sets it), else the
    host's Debian mirror for SUITE, else deb.debian.org."""
    if configured:
        return configured.rstrip("/")
    for path in sorted(apt_dir.glob("sources.list.d/*.sources")):
        for stanza in re.split(r"\n\s*\n", _read(path)):
            fields = dict(
                (k.strip().lower(), v.strip())
                for k, _, v in (ln.partition(":") for ln in stanza.splitlines())
                if not k.startswith("#") and v
            )
            if "deb" in fields.get("types", "").split() and SUITE in fields.get("suites", ""):
                return fields.get("uris", DEFAULT_MIRROR).split()[0].rstrip("/")
    for path in [apt_dir / "sources.list", *sorted(apt_dir.glob("sources.list.d/*.list"))]:
        for line in _read(path).splitlines():
            m = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+(\S+)", line)
            if m and m.group(2) == SUITE:
                return m.group(1).rstrip("/")
    return DEFAULT_MIRROR


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""


def _run(step: str, cmd: Sequence[str], log: Path, timeout: float | None = None, **kw) -> None:
    """Run one recipe command with its output in log; a failure shows the log's last lines."""
    timeout = timeout or TIMEOUTS[step]
    with log.open("ab") as out:
        out.write(f"\n$ {urls.scrub(' '.join(cmd))}\n".encode())
        out.flush()
        try:
            res = subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT, timeout=timeout, **kw)
        except subprocess.TimeoutExpired:
            raise BaseError(f"base {step}: no result in {timeout:g}s (log: {log})") from None
        finally:
            _scrub(log)
    if res.returncode != 0:
        tail = log.read_text(errors="replace").splitlines()[-TAIL:]
        raise BaseError(
            f"base {step} failed (exit {res.returncode}); log: {log}\n" + "\n".join(tail)
        )


def _scrub(log: Path) -> None:
    """debootstrap may print the mirror URL it was given, credentials and all."""
    text = log.read_text(errors="replace")
    clean = urls.scrub(text)
    if clean != text:
        log.write_text(clean)


def _docker_out(*args: str, timeout: float = 60) -> str:
    res = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=timeout)
    return res.stdout.strip() if res.returncode == 0 else ""


def image_recipe(image: str = IMAGE, label: str = LABEL) -> tuple[str, str]:
    """(image id, label value: the recipe by default) of a local image, or ("", "") if none."""
    out = _docker_out(
        "image", "inspect", "--format", f'{{{{.Id}}}} {{{{index .Config.Labels "{label}"}}}}', image
    )
    image_id, _, value = out.partition(" ")
    return image_id, value.strip()


def _unmount_under(path: Path) -> None:
    """debootstrap mounts /proc and /sys in its target; never rm -rf through a mount."""
    prefix = str(path.resolve()) + "/"
    with open("/proc/self/mountinfo") as f:
        points = [ln.split()[4] for ln in f if ln.split()[4].startswith(prefix)]
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True, timeout=60)


def _remove_tree(path: Path) -> None:
    if path.exists():
        _unmount_under(path)
        subprocess.run(["rm", "-rf", "--one-file-system", str(path)], timeout=300, check=False)


def _sources(mirror: str) -> str:
    """The image's apt sources: the mirror without credentials (the image may be published)."""
    security = "http://deb.debian.org/debian-security"
    public = urls.without_credentials(mirror)
    return (
        f"Types: deb\nURIs: {public}\nSuites: {SUITE} {SUITE}-updates\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n\n"
        f"Types: deb\nURIs: {security}\nSuites: {SUITE}-security\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )


def _build_image(
    work: Path, recipe: str, mirror: str, log: Path, reporter: Reporter, arch: str
) -> str:
    root = work / "rootfs"
    started = time.monotonic()
    foreign = arch != emulation.host_arch()
    about = "10 to 20 minutes: its dpkg runs under qemu-user" if foreign else "about 2 minutes"
    reporter.log(f"base docker {arch}: debootstrap {SUITE} from {mirror} ({about})")
    # a foreign arch in one stage, not --foreign + a second stage: with binfmt's F flag the
    # chroot runs arm64's dpkg and maintainer scripts as if they were native
    _run(
        "debootstrap",
        [
            "debootstrap",
            f"--arch={arch}",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(root),
            mirror,
        ],
        log,
        timeout=FOREIGN_DEBOOTSTRAP_TIMEOUT if foreign else None,
    )
    _unmount_under(root)
    (root / "etc/apt/sources.list").unlink(missing_ok=True)
    (root / "etc/apt/sources.list.d/debian.sources").write_text(_sources(mirror))
    for pattern in ("var/cache/apt/archives/*.deb", "var/lib/apt/lists/*", "var/log/*.log"):
        for p in root.glob(pattern):
            p.unlink() if p.is_file() else None
    (root / "etc/machine-id").write_text("")
    (root / "etc/hostname").write_text("localhost\n")
    (root / "etc/resolv.conf").unlink(missing_ok=True)
    reporter.log(f"base docker {arch}: debootstrap took {time.monotonic() - started:.0f}s; loading")
    image = image_name(arch)
    layer = work / "layer.tar"
    try:
        diff_id = dockerarchive.layer_from_tree(root, layer, timeout=TIMEOUTS["import"])
        _remove_tree(root)
        # IMPORT_CHANGES, as an image config
        config = dockerarchive.image_config(
            arch,
            diff_id,
            entrypoint=["/lib/systemd/systemd"],
            env=["container=docker"],
            labels={LABEL: recipe},
            created=dockerarchive.created_now(),
            created_by=f"flannelnode base: debootstrap --arch={arch} --variant=minbase {SUITE}",
        )
        image_id = dockerarchive.load(layer, config, image, timeout=TIMEOUTS["import"])
    except dockerarchive.ArchiveError as exc:
        raise BaseError(f"base docker {arch}: {exc}") from None
    finally:
        layer.unlink(missing_ok=True)
    found, label = image_recipe(image)
    if found != image_id or label != recipe:
        raise BaseError(f"docker load left {image} as {found or 'absent'}, not {image_id}")
    return image_id


def _build_qcow2(
    work: Path, image_id: str, out: Path, log: Path, reporter: Reporter
) -> tuple[str, str, str]:
    """(qcow2 sha256, VM image id, root UUID)."""
    started = time.monotonic()
    reporter.log("base qemu: kernel, GRUB, sshd and cloud-init in a container of the base")
    root_uuid = str(uuid.uuid4())
    name = f"flannelnode-base-vm-{os.getpid()}-{int(started)}"
    tree = work / "vmroot"
    tree.mkdir()
    try:
        _run(
            "vm-setup",
            [
                "docker", "run", "--pull=never", "--name", name, "--entrypoint", "/usr/bin/env",
                "-v", f"{RECIPE_DIR}:/recipe:ro",
                image_id, f"ROOT_UUID={root_uuid}", "/bin/sh", "/recipe/vm-setup.sh",
            ],
            log,
        )  # fmt: skip
        # the UUID goes in a label, not the environment: ROOT_UUID is not the image's to keep
        labels = (f"LABEL {LABEL}={vm_recipe_digest(image_id)}", f"LABEL {UUID_LABEL}={root_uuid}")
        changes = [a for c in (*IMPORT_CHANGES, *labels) for a in ("--change", c)]
        _run("vm-commit", ["docker", "commit", *changes, name, VM_IMAGE], log)
        vm_image_id, _ = image_recipe(VM_IMAGE)
        export = subprocess.Popen(["docker", "export", name], stdout=subprocess.PIPE)
        try:
            _run("vm-setup", ["tar", "-x", "-C", str(tree), "--numeric-owner"], log,
                 stdin=export.stdout)  # fmt: skip
        finally:
            assert export.stdout is not None
            export.stdout.close()
            export.wait(timeout=60)
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)
    (tree / ".dockerenv").unlink(missing_ok=True)
    shutil.rmtree(tree / "recipe", ignore_errors=True)
    reporter.log(f"base qemu: vm setup took {time.monotonic() - started:.0f}s; writing the disk")
    started = time.monotonic()
    tmp = work / out.name
    _run(
        "disk",
        [str(RECIPE_DIR / "make-disk.sh"), str(tree), root_uuid, str(DISK_MIB), str(tmp)],
        log,
    )
    digest = sha256_file(tmp)
    os.replace(tmp, out)
    reporter.log(f"base qemu: {out} in {time.monotonic() - started:.0f}s")
    return digest, vm_image_id, root_uuid


def _load_record(base_dir: Path, arch: str) -> dict:
    try:
        return json.loads(record_path(base_dir, arch).read_text())
    except (OSError, ValueError):
        return {}


def _write_record(base_dir: Path, record: dict, arch: str) -> None:
    path = record_path(base_dir, arch)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def build(
    base_dir: Path,
    reporter: Reporter,
    targets: Sequence[str] = ("docker", "qemu"),
    *,
    arch: str = QCOW2_ARCH,
    force: bool = False,
    mirror: str | None = None,
) -> Base:
    """arch's docker base always (the qcow2 is made from it), the qcow2 when "qemu" is a target
    (amd64 only). mirror: images.debian_mirror of the config (None: the host's apt sources).

    base_dir is build/base for `build.py base`; it holds only config-independent output, so
    several build directories (and the tests) can share one.
    """
    check_arch(arch)
    want_qcow2 = "qemu" in targets
    if want_qcow2 and arch != QCOW2_ARCH:
        raise BaseError(f"base qemu: the qcow2 is built for {QCOW2_ARCH} only, not {arch}")
    require_docker_engine()
    image = image_name(arch)
    recipe = recipe_digest(arch)
    record = _load_record(base_dir, arch)
    image_id, label = image_recipe(image)
    qcow2 = qcow2_path(base_dir)
    image_ok = not force and label == recipe
    qcow2_ok = not want_qcow2 or (
        image_ok
        and qcow2.is_file()
        and record.get("qcow2", {}).get("recipe") == vm_recipe_digest(image_id)
        and record.get("qcow2", {}).get("size") == qcow2.stat().st_size
        and _vm_image_ok(record, vm_recipe_digest(image_id))
    )
    if image_ok and qcow2_ok:
        reporter.log(
            f"base: {image} up to date" + (f", {qcow2.name} up to date" if want_qcow2 else "")
        )
        if record.get("docker", {}).get("id") != image_id:  # made, but its record was not
            record.update(recipe=recipe, suite=SUITE, arch=arch,
                          docker={"image": image, "id": image_id})  # fmt: skip
            base_dir.mkdir(parents=True, exist_ok=True)
            _write_record(base_dir, record, arch)
        return _result(record, image, image_id, qcow2 if want_qcow2 else None, recipe, ())

    if os.geteuid() != 0:
        raise BaseError("building the base image needs root (debootstrap): run it with sudo")
    require("debootstrap", "tar", *(["qemu-img", "mkfs.ext4", "sfdisk"] if want_qcow2 else []))
    if not image_ok:
        emulation.require(arch)
    base_dir.mkdir(parents=True, exist_ok=True)
    log = base_dir / (f"{NAME}.log" if arch == "amd64" else f"{NAME}-{arch}.log")
    log.write_text("")
    work = Path(tempfile.mkdtemp(prefix=".work.", dir=base_dir))
    rebuilt: list[str] = []
    seconds = dict(record.get("seconds", {}))
    try:
        mirror = debian_mirror(mirror)
        urls.remember(mirror)  # the host's own apt sources may carry credentials too
        if not image_ok:
            started = time.monotonic()
            previous = image_id
            image_id = _build_image(work, recipe, mirror, log, reporter, arch)
            if previous and previous != image_id:  # the replaced base, now untagged
                subprocess.run(["docker", "rmi", previous], capture_output=True, timeout=120)
            seconds["docker"] = round(time.monotonic() - started, 1)
            record = {"recipe": recipe, "mirror": urls.redact(mirror)}
            rebuilt.append("docker")
        record.update(
            recipe=recipe,
            suite=SUITE,
            arch=arch,
            docker={"image": image, "id": image_id},
            seconds=seconds,
        )
        if not qcow2_ok:
            _remove_tree(work / "rootfs")
            record.pop("qcow2", None)
            qcow2.unlink(missing_ok=True)
            started = time.monotonic()
            record.pop("vm", None)
            previous_vm, _ = image_recipe(VM_IMAGE)
            digest, vm_image_id, root_uuid = _build_qcow2(work, image_id, qcow2, log, reporter)
            if previous_vm and previous_vm != vm_image_id:  # the replaced VM tree, now untagged
                subprocess.run(["docker", "rmi", previous_vm], capture_output=True, timeout=120)
            seconds["qcow2"] = round(time.monotonic() - started, 1)
            record["qcow2"] = {
                "path": str(qcow2),
                "sha256": digest,
                "size": qcow2.stat().st_size,
                "from_image": image_id,
                "recipe": vm_recipe_digest(image_id),
            }
            record["vm"] = {"image": VM_IMAGE, "id": vm_image_id, "root_uuid": root_uuid}
            rebuilt.append("qemu")
        _write_record(base_dir, record, arch)
    finally:
        _remove_tree(work)
    return _result(record, image, image_id, qcow2 if want_qcow2 else None, recipe, tuple(rebuilt))


def _vm_image_ok(record: dict, vm_recipe: str) -> bool:
    """VM_IMAGE is the tree the recorded qcow2 was written from: same id, recipe and UUID."""
    vm = record.get("vm", {})
    vm_id, label = image_recipe(VM_IMAGE)
    _, root_uuid = image_recipe(VM_IMAGE, UUID_LABEL)
    return bool(vm_id) and (vm_id, label, root_uuid) == (
        vm.get("id"),
        vm_recipe,
        vm.get("root_uuid"),
    )


def _result(
    record: dict, image: str, image_id: str, qcow2: Path | None, recipe: str, rebuilt
) -> Base:
    sha = record.get("qcow2", {}).get("sha256") if qcow2 else None
    vm = record.get("vm", {}) if qcow2 else {}
    return Base(
        image, image_id, qcow2, sha, recipe, tuple(rebuilt), vm.get("id"), vm.get("root_uuid")
    )
