"""Turn a verified release asset into flanneld, refusing anything that is not what it claims.

A tarball may hold only the regular files flannel ships at its root, each once; a member that is
a link, device, sparse file, absolute path, `..` path, unexpected name or oversized is refused.
flanneld must be an ELF executable for the requested architecture.

The archive is read as a stream and checked member by member as its header arrives, so a member
that declares 10 GB is refused before one byte of it is inflated (tarfile's getmembers() would
inflate the whole stream first). The inflated stream itself is bounded too: in total, and per
read, since tarfile reads a pax or GNU long-name header in one read of whatever size it declares.
Members are written into dest as they come; the caller's dest is a staging dir that is deleted
when anything is refused.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tarfile
from collections.abc import Iterator
from pathlib import Path, PurePosixPath

from .arch import ARCHES
from .errors import IntegrityError

TARBALL_MEMBERS = frozenset({"flanneld", "mk-docker-opts.sh", "README.md"})
MAX_MEMBER_BYTES = 256 * 1024 * 1024  # flanneld is ~40 MB; anything near this is not flannel
MAX_INFLATED_BYTES = len(TARBALL_MEMBERS) * MAX_MEMBER_BYTES + (1 << 20)  # + headers, padding
MAX_READ = 4 << 20  # one read of the inflated stream: a header, or one copy chunk (1 MiB)
MAX_SMALL_READS = 4096  # header blocks (512 bytes each): a few per member, never thousands
COPY_CHUNK = 1 << 20

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
    for value, names, field in (
        (elf_class, _ELF_CLASS, "class"),
        (elf_data, _ELF_DATA, "byte order"),
    ):
        if value not in names:
            raise IntegrityError(
                f"{origin}: flanneld's ELF header has an invalid {field} ({value}); the file is "
                "damaged or no executable"
            )
    order = "little" if elf_data == 1 else "big"
    e_type = int.from_bytes(head[16:18], order)
    e_machine = int.from_bytes(head[18:20], order)
    got = (elf_class, elf_data, e_machine)
    if got != (want.elf_class, want.elf_data, want.elf_machine):
        found = [a.name for a in ARCHES.values() if (a.elf_class, a.elf_data, a.elf_machine) == got]
        raise IntegrityError(
            f"{origin}: flanneld is built for "
            f"{found[0] if found else f'e_machine {e_machine}'} "
            f"({_ELF_CLASS[elf_class]}, {_ELF_DATA[elf_data]}), "
            f"not {arch}; the asset is mislabelled or was swapped"
        )
    if e_type not in (_ELF_TYPE_EXEC, _ELF_TYPE_DYN):
        raise IntegrityError(f"{origin}: flanneld is an ELF but no executable (e_type {e_type})")


class _Inflated:
    """The inflated tar stream for tarfile (read, tell, forward seek), refusing to grow past
    MAX_INFLATED_BYTES or to hand out more than MAX_READ bytes at once."""

    def __init__(self, gz: gzip.GzipFile, origin: str) -> None:
        self._gz = gz
        self._origin = origin
        self._pos = 0
        self._small = 0

    def tell(self) -> int:
        return self._pos

    def read(self, size: int = -1) -> bytes:
        if size is None or size < 0 or size > MAX_READ:
            raise IntegrityError(
                f"{self._origin}: refusing the archive: a header declares "
                f"{'an unbounded' if size is None or size < 0 else f'a {size}-byte'} block, "
                "too big for a flannel release tarball"
            )
        self._small += size <= tarfile.BLOCKSIZE
        if self._small > MAX_SMALL_READS:
            raise IntegrityError(f"{self._origin}: refusing the archive: too many headers")
        self._account(size)
        data = self._gz.read(size)
        self._pos += len(data)
        return data

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence != 0 or pos < self._pos:
            raise IntegrityError(f"{self._origin}: refusing the archive: it is not a plain stream")
        while self._pos < pos:  # skipping forward still inflates: it counts toward the limit
            if not self.read(min(COPY_CHUNK, pos - self._pos)):
                break
        return self._pos

    def _account(self, size: int) -> None:
        if self._pos + size > MAX_INFLATED_BYTES:
            raise IntegrityError(
                f"{self._origin}: refusing the archive: it inflates to more than "
                f"{MAX_INFLATED_BYTES >> 20} MiB (too big for a flannel release tarball)"
            )


def _checked(m: tarfile.TarInfo, origin: str, seen: set[str]) -> str | None:
    """The member's file name, None for the root directory entry, or IntegrityError."""
    path = PurePosixPath(m.name)
    if path.is_absolute() or ".." in path.parts:
        raise IntegrityError(f"{origin}: refusing member {m.name!r}: path escapes the archive")
    if m.isdir() and path == PurePosixPath(".") and "." not in seen:
        seen.add(".")
        return None
    if not m.isreg() or m.issparse():
        raise IntegrityError(
            f"{origin}: refusing member {m.name!r}: not a regular file "
            "(links, devices, directories and sparse files are never part of a flannel release)"
        )
    if str(path) not in TARBALL_MEMBERS:
        raise IntegrityError(
            f"{origin}: refusing member {m.name!r}: a flannel release tarball holds only "
            f"{', '.join(sorted(TARBALL_MEMBERS))}"
        )
    if str(path) in seen:
        raise IntegrityError(f"{origin}: refusing member {m.name!r}: it is in the archive twice")
    if m.size > MAX_MEMBER_BYTES:
        raise IntegrityError(
            f"{origin}: refusing member {m.name!r}: {m.size} bytes is too big "
            f"(the limit is {MAX_MEMBER_BYTES >> 20} MiB; flanneld is about 40 MB)"
        )
    seen.add(str(path))
    return str(path)


def _members(tar: tarfile.TarFile, origin: str) -> Iterator[tuple[tarfile.TarInfo, str]]:
    """Checked members, one header at a time (never getmembers(): see the module docstring)."""
    seen: set[str] = set()
    for m in tar:
        name = _checked(m, origin, seen)
        if name is not None:
            yield m, name
    if "flanneld" not in seen:
        raise IntegrityError(f"{origin}: the tarball holds no flanneld")


def _unpack_tarball(asset_file: Path, dest: Path, origin: str) -> None:
    try:
        with (
            asset_file.open("rb") as raw,
            gzip.GzipFile(fileobj=raw, mode="rb") as gz,
            tarfile.open(fileobj=_Inflated(gz, origin), mode="r:") as tar,  # type: ignore[arg-type]
        ):
            for m, name in _members(tar, origin):
                src = tar.extractfile(m)
                assert src is not None  # regular files always have a body
                with src, (dest / name).open("wb") as out:
                    shutil.copyfileobj(src, out, COPY_CHUNK)
    except (tarfile.TarError, EOFError, OSError) as exc:  # gzip.BadGzipFile is an OSError
        raise IntegrityError(f"{origin}: not a readable .tar.gz: {exc}") from None


def unpack(asset_file: Path, kind: str, arch: str, dest: Path, origin: str) -> Path:
    """Place flanneld (and, from a tarball, its siblings) in the empty directory dest."""
    target = dest / "flanneld"
    if kind == "binary":
        shutil.copyfile(asset_file, target)
    else:
        _unpack_tarball(asset_file, dest, origin)
    os.chmod(target, 0o755)
    check_elf(target, arch, origin)
    return target
