"""release.lock: what a pin may look like, and its file as reviewers read it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from flannelnode import lock
from flannelnode.errors import ConfigError

GOOD = hashlib.sha256(b"flanneld").hexdigest()  # a real sha256: 64 lowercase hex digits


def _lock(tmp_path: Path, value: str) -> Path:
    path = tmp_path / "release.lock"
    path.write_text(f'["v0.27.4"]\n"flanneld-amd64" = {value}\n', encoding="utf-8")
    return path


def test_a_sha256_pin_is_read(tmp_path: Path) -> None:
    assert lock.read(_lock(tmp_path, f'"{GOOD}"')) == {"v0.27.4": {"flanneld-amd64": GOOD}}


@pytest.mark.parametrize(
    "value",
    [
        f'"{GOOD.upper()}"',  # uppercase: flannelnode's hashes are lowercase, compared as text
        f'"{GOOD[:-1]}"',  # 63 digits
        f'"{GOOD}0"',  # 65 digits
        f'"{GOOD[:-1]}g"',  # not hex
        f'"sha256:{GOOD}"',  # a prefix
        f'" {GOOD}"',  # a space
        f'"{GOOD}\\n"',  # a trailing newline (a regex "$" would let it through)
        '""',
        "42",
        f'["{GOOD}"]',
        "true",
    ],
    ids=[
        "upper",
        "63",
        "65",
        "not-hex",
        "prefix",
        "space",
        "newline",
        "empty",
        "int",
        "list",
        "bool",
    ],
)
def test_a_malformed_digest_is_refused_naming_the_pin(tmp_path: Path, value: str) -> None:
    with pytest.raises(ConfigError) as exc:
        lock.read(_lock(tmp_path, value))
    assert "v0.27.4.flanneld-amd64" in str(exc.value)
    assert "is not a lowercase sha256 hex digest" in str(exc.value)


def test_a_release_that_is_not_a_table_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "release.lock"
    path.write_text(f'"v0.27.4" = "{GOOD}"\n')
    with pytest.raises(ConfigError, match="must be a table of asset = sha256"):
        lock.read(path)


def test_a_malformed_lock_stops_fetch_before_any_download(server, project) -> None:
    project.lock.write_text(f'["v0.27.4"]\n"flanneld-amd64" = "{GOOD[:-1]}"\n')
    project.config('[flannel]\narches = ["amd64"]\n', mirror=server.url)
    res = project.run("fetch")
    assert res.rc == 2, res.err
    assert "not a lowercase sha256 hex digest" in res.err
    assert server.requests == []


def test_written_pins_read_back_sorted_by_version(tmp_path: Path) -> None:
    pins = {
        "v0.10.0": {"flanneld-arm64": GOOD, "flanneld-amd64": GOOD},
        "v0.9.1": {"flanneld-amd64": GOOD},
    }
    path = tmp_path / "release.lock"
    lock.write(path, pins)
    assert lock.read(path) == pins
    text = path.read_text()
    assert text.index('["v0.9.1"]') < text.index('["v0.10.0"]')  # numeric, not text order
    assert text.index('"flanneld-amd64"') < text.index('"flanneld-arm64"')
