"""flannel's architectures: which releases publish them and what their ELF headers look like."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Arch:
    name: str  # flannel's (and Go's) name, as in asset names
    rpm: str  # RPM's %_arch
    elf_class: int  # 1 = 32-bit, 2 = 64-bit
    elf_data: int  # 1 = little endian, 2 = big endian
    elf_machine: int  # e_machine
    first: tuple[int, int, int] = (0, 6, 0)  # first flannel release that publishes it
    last: tuple[int, int, int] | None = None  # last one, when flannel dropped it


ARCHES: dict[str, Arch] = {
    a.name: a
    for a in (
        Arch("amd64", "x86_64", 2, 1, 62),
        Arch("arm64", "aarch64", 2, 1, 183),
        Arch("arm", "armv7hl", 1, 1, 40),
        Arch("ppc64le", "ppc64le", 2, 1, 21),
        Arch("s390x", "s390x", 2, 2, 22),
        Arch("mips64le", "mips64el", 2, 1, 8, first=(0, 17, 0), last=(0, 24, 99)),
        Arch("riscv64", "riscv64", 2, 1, 243, first=(0, 24, 0)),
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


def published(arch: Arch, version: tuple[int, int, int]) -> bool:
    return arch.first <= version and (arch.last is None or version <= arch.last)
