"""Turn a verified release asset into flanneld, refusing anything that is not what it claims.

A tarball may hold only the regular files flannel ships at its root; a member that is a link,
device, absolute path, `..` path, unexpected name or oversized is refused before anything is
written. flanneld must be an ELF executable for the requested architecture.
"""

from __future__ import annotations

import os
import shutil
import tarfile
from pathlib import Path, PurePosixPath

from .arch import ARCHES
from .errors import IntegrityError

TARBALL_MEMBERS = frozenset({"flanneld", "mk-docker-opts.sh", "README.md"})
MAX_MEMBER_BYTES = 256 * 1024 * 1024  # flanneld is ~40 MB; anything near this is not flannel

_ELF_MAGIC = b"\x7fELF"
_ELF_CLASS = {1: "32-bit", 2: "64-bit"}
_ELF_DATA = {1: "little-endian", 2: "big-endian"}
_ELF_TYPE_EXEC, _ELF_TYPE_DYN = 2, 3


def check_elf(path: Path, arch: str, origin: str) -> None:
    """Raise IntegrityError unless path is an ELF executable for arch (flannel's arch name)."""
    want = ARCHES[arch]
    with path.open("rb") as f:
        head = f.read(20)
    if len(head) < 20 or head[:4] != _ELF_MAGIC:
        raise IntegrityError(f"{origin}: flanneld is not an ELF executable (header {head[:4]!r})")
    elf_class, elf_data = head[4], head[5]
    order = "little" if elf_data == 1 else "big"
    e_type = int.from_bytes(head[16:18], order)
    e_machine = int.from_bytes(head[18:20], order)
    got = (elf_class, elf_data, e_machine)
    if got != (want.elf_class, want.elf_data, want.elf_machine):
        found = [a.name for a in ARCHES.values() if (a.elf_class, a.elf_data, a.elf_machine) == got]
        raise IntegrityError(
            f"{origin}: flanneld is built for "
            f"{found[0] if found else f'e_machine {e_machine}'} "
            f"({_ELF_CLASS.get(elf_class, '?')}, {_ELF_DATA.get(elf_data, '?')}), "
            f"not {arch}; the asset is mislabelled or was swapped"
        )
    if e_type not in (_ELF_TYPE_EXEC, _ELF_TYPE_DYN):
        raise IntegrityError(f"{origin}: flanneld is an ELF but no executable (e_type {e_type})")


def _safe_members(tar: tarfile.TarFile, origin: str) -> list[tarfile.TarInfo]:
    members = []
    for m in tar.getmembers():
        path = PurePosixPath(m.name)
        if path.is_absolute() or ".." in path.parts:
            raise IntegrityError(f"{origin}: refusing member {m.name!r}: path escapes the archive")
        if m.isdir() and path == PurePosixPath("."):
            continue
        if not m.isreg():
            raise IntegrityError(
                f"{origin}: refusing member {m.name!r}: not a regular file "
                "(links, devices and directories are never part of a flannel release)"
            )
        if str(path) not in TARBALL_MEMBERS:
            raise IntegrityError(
                f"{origin}: refusing member {m.name!r}: a flannel release tarball holds only "
                f"{', '.join(sorted(TARBALL_MEMBERS))}"
            )
        if m.size > MAX_MEMBER_BYTES:
            raise IntegrityError(f"{origin}: refusing member {m.name!r}: {m.size} bytes is too big")
        members.append(m)
    if "flanneld" not in {str(PurePosixPath(m.name)) for m in members}:
        raise IntegrityError(f"{origin}: the tarball holds no flanneld")
    return members


def unpack(asset_file: Path, kind: str, arch: str, dest: Path, origin: str) -> Path:
    """Place flanneld (and, from a tarball, its siblings) in the empty directory dest."""
    target = dest / "flanneld"
    if kind == "binary":
        shutil.copyfile(asset_file, target)
    else:
        try:
            with tarfile.open(asset_file, "r:gz") as tar:
                for m in _safe_members(tar, origin):
                    src = tar.extractfile(m)
                    assert src is not None  # regular files always have a body
                    with src, (dest / PurePosixPath(m.name).name).open("wb") as out:
                        shutil.copyfileobj(src, out, 1 << 20)
        except (tarfile.TarError, EOFError, OSError) as exc:
            raise IntegrityError(f"{origin}: not a readable .tar.gz: {exc}") from None
    os.chmod(target, 0o755)
    check_elf(target, arch, origin)
    return target
