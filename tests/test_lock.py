"""release.lock: what a pin may look like, and its file as reviewers read it."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from flannelnode import lock
from flannelnode.errors import ConfigError, IntegrityError

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


def test_a_tag_with_a_non_numeric_part_sorts_before_the_release(tmp_path: Path) -> None:
    pins = {"v1.0.0": {"flanneld-amd64": GOOD}, "v1.0.rc1": {"flanneld-amd64": GOOD}}
    path = tmp_path / "release.lock"
    lock.write(path, pins)
    text = path.read_text()
    assert text.index('["v1.0.rc1"]') < text.index('["v1.0.0"]')


OTHER = hashlib.sha256(b"another flanneld").hexdigest()


def test_add_records_a_new_pin_and_says_so(tmp_path: Path) -> None:
    pins: lock.Pins = {"v0.27.4": {"flanneld-amd64": GOOD}}
    assert lock.add(pins, "v0.27.4", "flanneld-arm64", OTHER, tmp_path / "l") is True
    assert lock.add(pins, "v0.28.0", "flanneld-amd64", OTHER, tmp_path / "l") is True
    assert pins == {
        "v0.27.4": {"flanneld-amd64": GOOD, "flanneld-arm64": OTHER},
        "v0.28.0": {"flanneld-amd64": OTHER},
    }


def test_add_of_the_same_pin_changes_nothing(tmp_path: Path) -> None:
    pins: lock.Pins = {"v0.27.4": {"flanneld-amd64": GOOD}}
    assert lock.add(pins, "v0.27.4", "flanneld-amd64", GOOD, tmp_path / "l") is False
    assert pins == {"v0.27.4": {"flanneld-amd64": GOOD}}


@pytest.mark.parametrize("changed", [OTHER, GOOD[:-1] + chr(ord(GOOD[-1]) ^ 1), "0" * 64, "f" * 64])
def test_a_changed_pin_is_a_supply_chain_alarm(tmp_path: Path, changed: str) -> None:
    pins: lock.Pins = {"v0.27.4": {"flanneld-amd64": GOOD}}
    for call in (lock.check, lock.add):
        with pytest.raises(IntegrityError, match=r"SUPPLY-CHAIN ALARM: v0\.27\.4/flanneld-amd64"):
            call(pins, "v0.27.4", "flanneld-amd64", changed, tmp_path / "release.lock")
    assert pins == {"v0.27.4": {"flanneld-amd64": GOOD}}
    lock.check(pins, "v0.27.4", "flanneld-amd64", GOOD, tmp_path / "release.lock")
    lock.check(pins, "v0.27.4", "flanneld-arm64", changed, tmp_path / "release.lock")


def test_lock_file_errors_are_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such lock file"):
        lock.read(tmp_path / "missing.lock")
    bad = tmp_path / "bad.lock"
    bad.write_bytes(b'["v0.27.4"]\n"flanneld-amd64" = "\xff"\n')
    with pytest.raises(ConfigError, match=r"not a valid lock file \(UTF-8 TOML\)"):
        lock.read(bad)
    bad.write_text('["v0.27.4"\n')
    with pytest.raises(ConfigError, match=r"not a valid lock file \(UTF-8 TOML\)"):
        lock.read(bad)
    (tmp_path / "dir.lock").mkdir()
    with pytest.raises(ConfigError, match=r"cannot read the lock file: .*directory"):
        lock.read(tmp_path / "dir.lock")
