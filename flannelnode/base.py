"""base: the offline Debian bookworm bases of the docker and qemu targets, from the Debian mirror.

- docker: debootstrap -> `docker import` as flannelnode/base-debian:bookworm, labelled with the
  recipe digest (no container registry involved);
- qemu: a container of that image runs images/base/vm-setup.sh (kernel, GRUB, sshd, cloud-init),
  its filesystem is exported and images/base/make-disk.sh writes a BIOS-bootable qcow2 without a
  mount or loop device -> <base_dir>/debian-bookworm.qcow2 (build/base/ by default). The
  container's tree is also committed as flannelnode/base-debian:bookworm-vm (labelled with the VM
  recipe and the root filesystem's UUID, which its grub.cfg and fstab name), from which
  flannelnode/diskimage.py assembles node disks without booting a VM.

Each is skipped when it exists with the same recipe digest (<base_dir>/debian-bookworm.json).
Building needs root: debootstrap creates device nodes and chroots.
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
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from . import urls
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


def record_path(base_dir: Path) -> Path:
    return base_dir / f"{NAME}.json"


def qcow2_path(base_dir: Path) -> Path:
    return base_dir / f"{NAME}.qcow2"


def recipe_digest() -> str:
    """What the docker base is made of; not the mirror (any mirror serves the same)."""
    h = hashlib.sha256(f"suite {SUITE}\nvariant minbase\npackages {' '.join(PACKAGES)}\n".encode())
    h.update(f"changes {IMPORT_CHANGES}\n".encode())
    return h.hexdigest()


def vm_recipe_digest(image_id: str) -> str:
    """What the qcow2 is made of: the docker base plus the VM recipe files."""
    h = hashlib.sha256(f"image {image_id}\ndisk {DISK_MIB}\n".encode())
    for name in RECIPE_FILES:
        h.update(f"{name} {sha256_file(RECIPE_DIR / name)}\n".encode())
    return h.hexdigest()


def debian_mirror(env: Mapping[str, str] | None = None, apt_dir: Path = Path("/etc/apt")) -> str:
    """FLANNELNODE_DEBIAN_MIRROR, else the host's Debian mirror for SUITE, else deb.debian.org."""
    env = os.environ if env is None else env
    if env.get("FLANNELNODE_DEBIAN_MIRROR"):
        try:
            return urls.check(env["FLANNELNODE_DEBIAN_MIRROR"])
        except ValueError as exc:
            raise ConfigError(f"environment variable FLANNELNODE_DEBIAN_MIRROR: {exc}") from None
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


def _run(step: str, cmd: Sequence[str], log: Path, **kw) -> None:
    """Run one recipe command with its output in log; a failure shows the log's last lines."""
    with log.open("ab") as out:
        out.write(f"\n$ {urls.scrub(' '.join(cmd))}\n".encode())
        out.flush()
        try:
            res = subprocess.run(
                cmd, stdout=out, stderr=subprocess.STDOUT, timeout=TIMEOUTS[step], **kw
            )
        except subprocess.TimeoutExpired:
            raise BaseError(f"base {step}: no result in {TIMEOUTS[step]:g}s (log: {log})") from None
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


def _build_image(work: Path, recipe: str, mirror: str, log: Path, reporter: Reporter) -> str:
    root = work / "rootfs"
    started = time.monotonic()
    reporter.log(f"base docker: debootstrap {SUITE} from {mirror} (about 2 minutes)")
    _run(
        "debootstrap",
        [
            "debootstrap",
            "--variant=minbase",
            f"--include={','.join(PACKAGES)}",
            SUITE,
            str(root),
            mirror,
        ],
        log,
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
    reporter.log(f"base docker: debootstrap took {time.monotonic() - started:.0f}s; importing")
    changes = [a for c in (*IMPORT_CHANGES, f"LABEL {LABEL}={recipe}") for a in ("--change", c)]
    tar = subprocess.Popen(
        ["tar", "-C", str(root), "--numeric-owner", "-c", "."], stdout=subprocess.PIPE
    )
    try:
        _run("import", ["docker", "import", *changes, "-", IMAGE], log, stdin=tar.stdout)
    finally:
        assert tar.stdout is not None
        tar.stdout.close()
        tar.wait(timeout=60)
    image_id, label = image_recipe()
    if label != recipe:
        raise BaseError(f"docker import did not leave {IMAGE} with recipe {recipe[:12]}")
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


def _load_record(base_dir: Path) -> dict:
    try:
        return json.loads(record_path(base_dir).read_text())
    except (OSError, ValueError):
        return {}


def _write_record(base_dir: Path, record: dict) -> None:
    path = record_path(base_dir)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def build(
    base_dir: Path,
    reporter: Reporter,
    targets: Sequence[str] = ("docker", "qemu"),
    *,
    force: bool = False,
) -> Base:
    """The docker base always (the qcow2 is made from it), the qcow2 when "qemu" is a target.

    base_dir is build/base for `build.py base`; it holds only config-independent output, so
    several build directories (and the tests) can share one.
    """
    require_docker_engine()
    recipe = recipe_digest()
    record = _load_record(base_dir)
    image_id, label = image_recipe()
    want_qcow2 = "qemu" in targets
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
            f"base: {IMAGE} up to date" + (f", {qcow2.name} up to date" if want_qcow2 else "")
        )
        return _result(record, image_id, qcow2 if want_qcow2 else None, recipe, ())

    if os.geteuid() != 0:
        raise BaseError("building the base image needs root (debootstrap): run it with sudo")
    require("debootstrap", "tar", *(["qemu-img", "mkfs.ext4", "sfdisk"] if want_qcow2 else []))
    base_dir.mkdir(parents=True, exist_ok=True)
    log = base_dir / f"{NAME}.log"
    log.write_text("")
    work = Path(tempfile.mkdtemp(prefix=".work.", dir=base_dir))
    rebuilt: list[str] = []
    seconds = dict(record.get("seconds", {}))
    try:
        mirror = debian_mirror()
        urls.remember(mirror)  # the host's own apt sources may carry credentials too
        if not image_ok:
            started = time.monotonic()
            previous = image_id
            image_id = _build_image(work, recipe, mirror, log, reporter)
            if previous and previous != image_id:  # the replaced base, now untagged
                subprocess.run(["docker", "rmi", previous], capture_output=True, timeout=120)
            seconds["docker"] = round(time.monotonic() - started, 1)
            record = {"recipe": recipe, "mirror": urls.redact(mirror)}
            rebuilt.append("docker")
        record.update(
            recipe=recipe, suite=SUITE, docker={"image": IMAGE, "id": image_id}, seconds=seconds
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
        _write_record(base_dir, record)
    finally:
        _remove_tree(work)
    return _result(record, image_id, qcow2 if want_qcow2 else None, recipe, tuple(rebuilt))


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


def _result(record: dict, image_id: str, qcow2: Path | None, recipe: str, rebuilt) -> Base:
    sha = record.get("qcow2", {}).get("sha256") if qcow2 else None
    vm = record.get("vm", {}) if qcow2 else {}
    return Base(
        IMAGE, image_id, qcow2, sha, recipe, tuple(rebuilt), vm.get("id"), vm.get("root_uuid")
    )
