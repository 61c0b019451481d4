"""Release assets built by the tests: ELF headers for each arch, tarballs (good and hostile)."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import tarfile

from .elf_headers import REAL_HEADERS


def elf(arch: str, size: int = 64 * 1024) -> bytes:
    """A file that starts like a real executable for arch (a real header, see elf_headers.py)
    and is random after it: it passes a header check, it does not run. Never built from
    flannelnode's own table, so a wrong number there fails the tests."""
    head = REAL_HEADERS[arch]
    return head + os.urandom(size - len(head))


def sha(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def tarball(members: list[tuple[str, bytes | None, bytes]]) -> bytes:
    """members: (name, body or None, type flag) -> a .tar.gz. Links take their target as body."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, body, kind in members:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.mode = 0o755
            if kind in (tarfile.SYMTYPE, tarfile.LNKTYPE):
                info.linkname = (body or b"").decode()
                tar.addfile(info)
            else:
                info.size = len(body or b"")
                tar.addfile(info, io.BytesIO(body or b""))
    return buf.getvalue()


def release_tarball(arch: str) -> bytes:
    return tarball(
        [
            ("flanneld", elf(arch), tarfile.REGTYPE),
            ("mk-docker-opts.sh", b"#!/bin/sh\n", tarfile.REGTYPE),
            ("README.md", b"flannel\n", tarfile.REGTYPE),
        ]
    )


def gzip_bomb(declared: int = 10 * 10**9, kind: bytes = tarfile.REGTYPE) -> bytes:
    """A .tar.gz whose first member (or pax header) declares `declared` bytes and whose
    compressed stream really holds that many zeros after it: ~10 MB that inflate to 10 GB."""
    info = tarfile.TarInfo("flanneld")
    info.type = kind
    info.size = declared
    info.mode = 0o755
    head = gzip.compress(info.tobuf(tarfile.GNU_FORMAT), mtime=0)
    block = 64 << 20
    zeros = gzip.compress(bytes(block), compresslevel=9, mtime=0)  # gzip members concatenate
    return head + zeros * (declared // block + 1)
