"""extract.py's guards one by one: the bounded reader under tarfile, each member check, unpack.

The limits are the documented ones (README, "Where flannel comes from"), written here, not read
from the module: a member may declare 256 MiB, the whole archive inflate to 769 MiB (three members
at the limit and 1 MiB of headers), one read take 4 MiB, and a stream hold 4096 header blocks.
"""

from __future__ import annotations

import gzip
import io
import re
import tarfile
from pathlib import Path

import pytest

from flannelnode.errors import IntegrityError
from flannelnode.extract import _checked, _Inflated, unpack

from .assets import elf, release_tarball

MiB = 1 << 20
MEMBER_LIMIT = 256 * MiB
INFLATED_LIMIT = 769 * MiB
READ_LIMIT = 4 * MiB
HEADER_BLOCKS = 4096


class Zeros:
    """An endless inflated stream that costs nothing to read: for the total limit."""

    def read(self, size: int) -> bytes:
        return bytes(size)


def _reader(data: bytes) -> _Inflated:
    return _Inflated(gzip.GzipFile(fileobj=io.BytesIO(gzip.compress(data))), "the-asset")


def test_reads_hand_out_the_stream_in_order_and_tell_counts_them() -> None:
    r = _reader(b"0123456789")
    assert r.tell() == 0
    assert r.read(4) == b"0123"
    assert r.tell() == 4
    assert r.read(100) == b"456789"  # a short read at the end counts what came, not what was asked
    assert r.tell() == 10
    assert r.read(5) == b""
    assert r.tell() == 10


@pytest.mark.parametrize("args", [(), (-1,), (None,)], ids=["no-size", "minus-one", "none"])
def test_an_unbounded_read_is_refused(args: tuple) -> None:
    with pytest.raises(IntegrityError, match=r"^the-asset: .* declares an unbounded block, too"):
        _reader(b"x").read(*args)


def test_one_read_may_take_4_mib_and_no_more() -> None:
    r = _reader(bytes(READ_LIMIT + 1))
    with pytest.raises(IntegrityError, match=f"declares a {READ_LIMIT + 1}-byte block, too big"):
        r.read(READ_LIMIT + 1)
    assert r.tell() == 0  # refused before reading
    assert len(r.read(READ_LIMIT)) == READ_LIMIT


@pytest.mark.parametrize("size", [512, 100, 1], ids=["block", "part", "byte"])
def test_a_stream_may_hold_4096_header_blocks_and_no_more(size: int) -> None:
    size = int(str(size))  # a size tarfile computed, not the constant
    r = _reader(bytes((HEADER_BLOCKS + 2) * tarfile.BLOCKSIZE))
    for _ in range(HEADER_BLOCKS):
        r.read(size)
    r.read(tarfile.BLOCKSIZE + 1)  # a body chunk, not a header: not counted
    here = int(str(r.tell()))  # equal to the position, not the same object
    assert r.seek(here) == here  # a seek to where it is reads nothing, counts nothing
    with pytest.raises(IntegrityError, match=r"^the-asset: refusing the archive: too many headers"):
        r.read(size)


def test_the_stream_may_inflate_to_769_mib_and_no_more() -> None:
    r = _Inflated(Zeros(), "the-asset")  # type: ignore[arg-type]
    while r.tell() < INFLATED_LIMIT - 1:
        r.read(min(READ_LIMIT, INFLATED_LIMIT - 1 - r.tell()))
    with pytest.raises(
        IntegrityError, match=r"^the-asset: refusing the archive: it inflates to more than 769 MiB"
    ):
        r.read(2)  # one byte over, from a position with its low bits set
    r.read(1)
    assert r.tell() == INFLATED_LIMIT
    with pytest.raises(IntegrityError, match="inflates to more than 769 MiB"):
        r.read(1)


def test_an_empty_read_is_no_refusal() -> None:
    r = _reader(b"abc")
    assert r.read(0) == b""
    assert r.tell() == 0


def test_a_forward_seek_skips_by_reading() -> None:
    r = _reader(bytes(range(100)))
    assert r.seek(10) == 10
    assert r.tell() == 10
    assert r.read(2) == bytes([10, 11])
    assert r.seek(12) == 12  # where it already is
    assert r.read(1) == bytes([12])
    assert r.seek(20) == 20  # from 13: seven bytes on, whatever the bits of 13 and 20
    assert r.read(1) == bytes([20])
    assert r.seek(3 * MiB) == 100  # past the end: it stops there
    assert r.tell() == 100


def test_a_forward_seek_counts_toward_the_total() -> None:
    r = _Inflated(Zeros(), "the-asset")  # type: ignore[arg-type]
    assert r.seek(INFLATED_LIMIT) == INFLATED_LIMIT
    with pytest.raises(IntegrityError, match="inflates to more than 769 MiB"):
        r.seek(INFLATED_LIMIT + 1)


@pytest.mark.parametrize("pos, whence", [(4, 0), (0, 1), (0, 2), (10, 1), (10, -1)])
def test_only_a_forward_seek_from_the_start_is_allowed(pos: int, whence: int) -> None:
    r = _reader(bytes(100))
    r.read(5)
    with pytest.raises(IntegrityError, match=r"^the-asset: refusing the archive: it is not a"):
        r.seek(pos, whence)


def _info(name: str, kind: bytes = tarfile.REGTYPE, size: int = 0) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.size = kind, size
    return info


def test_the_root_directory_entry_is_skipped_once() -> None:
    seen: set[str] = set()
    assert _checked(_info(".", tarfile.DIRTYPE), "o", seen) is None
    assert _checked(_info("flanneld"), "o", seen) == "flanneld"
    with pytest.raises(IntegrityError, match=r"refusing member '\.': not a regular file"):
        _checked(_info(".", tarfile.DIRTYPE), "o", seen)


@pytest.mark.parametrize("name", ["bin", "flanneld", "+x"])
def test_any_other_directory_is_refused(name: str) -> None:
    with pytest.raises(IntegrityError, match=re.escape(f"member '{name}': not a regular file")):
        _checked(_info(name, tarfile.DIRTYPE), "o", set())


def test_a_regular_file_named_dot_is_refused() -> None:
    with pytest.raises(IntegrityError, match=r"refusing member '\.': a flannel release tarball"):
        _checked(_info("."), "o", set())


def test_the_member_limit_is_named_in_mib() -> None:
    with pytest.raises(IntegrityError, match=r"too big \(the limit is 256 MiB; flanneld is about"):
        _checked(_info("flanneld", size=MEMBER_LIMIT + 1), "o", set())
    assert _checked(_info("flanneld", size=MEMBER_LIMIT), "o", set()) == "flanneld"


def test_unpack_takes_the_kind_by_value(tmp_path: Path) -> None:
    # the kind comes from a parsed config: equal to "binary", never the same object
    kind = "".join(["bin", "ary"])
    asset = tmp_path / "flanneld-amd64"
    asset.write_bytes(elf("amd64"))
    (tmp_path / "out").mkdir()
    target = unpack(asset, kind, "amd64", tmp_path / "out", "o")
    assert target.read_bytes() == asset.read_bytes()
    assert target.stat().st_mode & 0o777 == 0o755


def test_unpack_places_each_member_of_a_tarball(tmp_path: Path) -> None:
    asset = tmp_path / "flannel.tar.gz"
    asset.write_bytes(release_tarball("arm64"))
    (tmp_path / "out").mkdir()
    target = unpack(asset, "".join(["tar", "ball"]), "arm64", tmp_path / "out", "o")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == [
        "README.md",
        "flanneld",
        "mk-docker-opts.sh",
    ]
    assert (tmp_path / "out" / "mk-docker-opts.sh").read_bytes() == b"#!/bin/sh\n"
    assert target.stat().st_mode & 0o777 == 0o755


@pytest.mark.parametrize("name", ["/flanneld", "/README.md", "../flanneld", "a/../../flanneld"])
def test_a_path_out_of_the_archive_is_named_as_one(name: str) -> None:
    with pytest.raises(
        IntegrityError, match=re.escape(f"member {name!r}: path escapes the archive")
    ):
        _checked(_info(name), "o", set())
