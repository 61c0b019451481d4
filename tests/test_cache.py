"""The content-addressed cache (flannelnode.cache) on its own: entries, partial files, records."""

from __future__ import annotations

import hashlib
import json
import shutil
from pathlib import Path

import pytest

from flannelnode import cache
from flannelnode.cache import Cache

DATA = b"flanneld stand-in\n"
DIGEST = hashlib.sha256(DATA).hexdigest()


def stored(root: Path, name: str, data: bytes) -> Path:
    path = root / "sha256" / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return path


def test_a_good_entry_is_served(tmp_path: Path) -> None:
    path = stored(tmp_path, DIGEST, DATA)
    assert Cache(tmp_path).verified(DIGEST) == path
    assert Cache(tmp_path).verified("ab" * 32) is None  # no entry


@pytest.mark.parametrize("name", ["0" * 64, "f" * 64], ids=["sorts-below", "sorts-above"])
def test_an_entry_that_does_not_hash_to_its_name_is_not_served(tmp_path: Path, name: str) -> None:
    stored(tmp_path, name, DATA)  # DIGEST lies strictly between the two names
    assert "0" * 64 < DIGEST < "f" * 64
    assert Cache(tmp_path).verified(name) is None


def test_a_partial_download_shows_in_the_progress_of_its_digest(tmp_path: Path) -> None:
    c = Cache(tmp_path)
    assert c.partial_progress(DIGEST) == ()
    part = c.partial_path("flanneld-amd64", DIGEST)
    part.write_bytes(b"12345")
    other = c.partial_path("flanneld-arm64", "ab" * 32)
    other.write_bytes(b"1")
    assert c.partial_progress(DIGEST) == ((part.name, 5),)
    assert part.name.startswith("flanneld-amd64.") and part.name.endswith(".part")


def test_store_into_a_cache_that_does_not_exist_yet(tmp_path: Path) -> None:
    c = Cache(tmp_path / "new" / "cache")
    src = tmp_path / "verified"
    src.write_bytes(DATA)
    target = c.store(src, DIGEST, "https://mirror.example/flanneld-amd64")
    assert target == c.path(DIGEST) and c.verified(DIGEST) == target
    assert not src.exists()
    assert c.source(DIGEST) == "https://mirror.example/flanneld-amd64"


def test_the_source_record_is_written_like_every_json_record_of_flannelnode(tmp_path) -> None:
    # two-space indent and a final newline, as manifest.json, release.json, ... (diff-friendly)
    c = Cache(tmp_path)
    src = tmp_path / "verified"
    src.write_bytes(DATA)
    c.store(src, DIGEST, "/media/usb/flanneld")
    text = (tmp_path / "sources" / f"{DIGEST}.json").read_text()
    record = {"sha256": DIGEST, "source": "/media/usb/flanneld"}
    assert text == json.dumps(record, indent=2) + "\n"


def test_a_failed_copy_leaves_nothing_and_raises_what_failed(tmp_path: Path) -> None:
    dest = tmp_path / "copy"
    with pytest.raises(FileNotFoundError) as missing:
        cache.copy(tmp_path / "missing", dest)
    assert missing.value.filename == str(tmp_path / "missing")
    assert not dest.exists()
    with pytest.raises(IsADirectoryError):
        cache.copy(tmp_path, dest)
    assert not dest.exists()


def test_a_copy_cut_by_ctrl_c_leaves_nothing(tmp_path: Path, monkeypatch) -> None:
    src, dest = tmp_path / "src", tmp_path / "copy"
    src.write_bytes(DATA)

    def cut(a: Path, b: Path) -> None:
        Path(b).write_bytes(DATA[:4])  # part of the file is written, then Ctrl-C
        raise KeyboardInterrupt

    monkeypatch.setattr(shutil, "copyfile", cut)
    with pytest.raises(KeyboardInterrupt):
        cache.copy(src, dest)
    assert not dest.exists()
