"""flannel's architectures: which releases publish them and what their ELF headers look like.

The release ranges are those of flannel's Makefile at each tag: its `release` target builds a
bare `flanneld-<arch>` per arch, its `tar.gz` target a `flannel-<tag>-linux-<arch>.tar.gz`, and
until v0.7.1 the tarball was made for amd64 only (tests/test_arch.py holds the transcription).
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    name: str  # flannel's (and Go's) name, as in asset names
    rpm: str  # RPM's %_arch
    elf_class: int  # 1 = 32-bit, 2 = 64-bit
    elf_data: int  # 1 = little endian, 2 = big endian
    elf_machine: int  # e_machine
    first: tuple[int, int, int]  # first flannel release with a bare binary for it
    first_tarball: tuple[int, int, int]  # first one with a tarball for it
    last: tuple[int, int, int] | None = None  # last one, when flannel dropped it


ARCHES: dict[str, Arch] = {
    a.name: a
    for a in (
        Arch("amd64", "x86_64", 2, 1, 62, (0, 6, 0), (0, 6, 0)),
        Arch("arm64", "aarch64", 2, 1, 183, (0, 6, 0), (0, 7, 1)),
        Arch("arm", "armv7hl", 1, 1, 40, (0, 6, 0), (0, 7, 1)),
        Arch("ppc64le", "ppc64le", 2, 1, 21, (0, 6, 0), (0, 7, 1)),
        Arch("s390x", "s390x", 2, 2, 22, (0, 8, 0), (0, 8, 0)),
        Arch("mips64le", "mips64el", 2, 1, 8, (0, 16, 2), (0, 16, 2), last=(0, 24, 0)),
        Arch("riscv64", "riscv64", 2, 1, 243, (0, 24, 0), (0, 24, 0)),
    )
}

# v0.5.x and older named their assets differently; they are not supported.
OLDEST_VERSION = (0, 6, 0)


def parse_version(tag: str) -> tuple[int, int, int]:
    """'v0.27.4' -> (0, 27, 4); raises ValueError on anything else."""
    if not tag.startswith("v"):
        raise ValueError("must look like v0.27.4 (a 'v', then major.minor.patch)")
    parts = tag[1:].split(".")
    if len(parts) != 3 or not all(p.isdigit() for p in parts):
        raise ValueError("must look like v0.27.4 (a 'v', then major.minor.patch)")
    major, minor, patch = (int(p) for p in parts)
    return major, minor, patch


def published(arch: Arch, version: tuple[int, int, int], asset: str) -> bool:
    """asset: "binary" (flanneld-<arch>) or "tarball" (flannel-<tag>-linux-<arch>.tar.gz)."""
    first = arch.first_tarball if asset == "tarball" else arch.first
    return first <= version and (arch.last is None or version <= arch.last)
