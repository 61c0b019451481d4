"""The ELF check against oracles from outside flannelnode: the ELF specification's numbers and
real header bytes of each architecture's executables (tests/elf_headers.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from flannelnode.arch import ARCHES
from flannelnode.errors import IntegrityError
from flannelnode.extract import check_elf

from .elf_headers import REAL_HEADERS, SPEC


def test_every_arch_has_an_oracle() -> None:
    assert set(ARCHES) == set(SPEC) == set(REAL_HEADERS)


@pytest.mark.parametrize("arch", sorted(SPEC))
def test_the_table_matches_the_elf_specification(arch: str) -> None:
    a = ARCHES[arch]
    assert (a.elf_class, a.elf_data, a.elf_machine) == SPEC[arch]


@pytest.mark.parametrize("arch", sorted(REAL_HEADERS))
def test_a_real_header_is_accepted_for_its_arch_only(tmp_path: Path, arch: str) -> None:
    binary = tmp_path / "flanneld"
    binary.write_bytes(REAL_HEADERS[arch] + bytes(4096))
    check_elf(binary, arch, "test")
    for other in sorted(set(REAL_HEADERS) - {arch}):
        with pytest.raises(IntegrityError, match=f"built for {arch} .*, not {other};"):
            check_elf(binary, other, "test")


@pytest.mark.parametrize(
    ("arch", "words"),
    [
        ("arm", "(32-bit, little-endian)"),
        ("s390x", "(64-bit, big-endian)"),
        ("ppc64le", "(64-bit, little-endian)"),
    ],
)
def test_the_refusal_names_class_and_byte_order(tmp_path: Path, arch: str, words: str) -> None:
    binary = tmp_path / "flanneld"
    binary.write_bytes(REAL_HEADERS[arch] + bytes(64))
    with pytest.raises(IntegrityError) as exc:
        check_elf(binary, "amd64", "test")
    assert words in str(exc.value)


def test_a_big_endian_machine_number_is_read_big_endian(tmp_path: Path) -> None:
    # s390x's e_machine is 0x0016 stored big-endian; read little-endian it would be 0x1600
    head = bytearray(REAL_HEADERS["s390x"])
    assert head[18:20] == b"\x00\x16"
    binary = tmp_path / "flanneld"
    binary.write_bytes(bytes(head) + bytes(64))
    check_elf(binary, "s390x", "test")


@pytest.mark.parametrize(("e_type", "ok"), [(1, False), (2, True), (3, True), (4, False)])
def test_only_executables_and_pies_pass(tmp_path: Path, e_type: int, ok: bool) -> None:
    # ET_REL 1, ET_EXEC 2, ET_DYN 3 (Go's -buildmode=pie), ET_CORE 4
    head = bytearray(REAL_HEADERS["amd64"])
    head[16:18] = e_type.to_bytes(2, "little")
    binary = tmp_path / "flanneld"
    binary.write_bytes(bytes(head) + bytes(64))
    if ok:
        check_elf(binary, "amd64", "test")
    else:
        with pytest.raises(IntegrityError, match=f"no executable \\(e_type {e_type}\\)"):
            check_elf(binary, "amd64", "test")


@pytest.mark.parametrize(
    "body", [b"", b"\x7fELF", b"#!/bin/sh\nexec flanneld\n" + bytes(64), b"\x7fELG" + bytes(60)]
)
def test_not_an_elf_is_refused(tmp_path: Path, body: bytes) -> None:
    binary = tmp_path / "flanneld"
    binary.write_bytes(body)
    with pytest.raises(IntegrityError, match="not an ELF executable"):
        check_elf(binary, "amd64", "test")


def test_an_unknown_machine_is_named_by_number(tmp_path: Path) -> None:
    head = bytearray(REAL_HEADERS["amd64"])
    head[18:20] = (3).to_bytes(2, "little")  # EM_386
    binary = tmp_path / "flanneld"
    binary.write_bytes(bytes(head) + bytes(64))
    with pytest.raises(IntegrityError, match="built for e_machine 3 \\(64-bit, little-endian\\)"):
        check_elf(binary, "amd64", "test")


@pytest.mark.parametrize(("offset", "field"), [(4, "class"), (5, "byte order")])
@pytest.mark.parametrize("value", [0, 3])
def test_an_invalid_class_or_byte_order_is_named(
    tmp_path: Path, offset: int, field: str, value: int
) -> None:
    # the ELF specification: EI_CLASS 1 or 2, EI_DATA 1 or 2; 0 is ELFCLASSNONE / ELFDATANONE
    head = bytearray(REAL_HEADERS["amd64"])
    head[offset] = value
    binary = tmp_path / "flanneld"
    binary.write_bytes(bytes(head) + bytes(64))
    with pytest.raises(
        IntegrityError, match=f"^test: flanneld's ELF header has an invalid {field}"
    ):
        check_elf(binary, "amd64", "test")


@pytest.mark.parametrize("size", [19, 4])
def test_a_header_cut_short_is_no_elf_and_shows_its_first_bytes(tmp_path: Path, size: int) -> None:
    binary = tmp_path / "flanneld"
    binary.write_bytes(REAL_HEADERS["amd64"][:size])
    with pytest.raises(IntegrityError, match=r"not an ELF executable \(header b'\\x7fELF'\)$"):
        check_elf(binary, "amd64", "test")
    binary.write_bytes(b"MZ\x90\x00\x03" + bytes(60))  # a Windows executable
    with pytest.raises(IntegrityError, match=r"\(header b'MZ\\x90\\x00'\)$"):
        check_elf(binary, "amd64", "test")
