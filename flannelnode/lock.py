"""release.lock: the sha256 of every flannel release asset flannelnode accepts (the trust root).

flannel publishes no checksums, so these pins are ours. The file is TOML, one table per release:

    ["v0.27.4"]
    "flanneld-amd64" = "fc1233aa..."

It is written by `build.py lock` only, sorted, so that a diff in review shows exactly what changed.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from . import atomic
from .errors import ConfigError, IntegrityError, describe_os_error

HEADER = """\
# release.lock: sha256 of every flannel release asset flannelnode accepts. This is the trust root.
# flannel publishes no checksums or signatures; every pin here was either copied from public pins
# of flannel's bare binaries (a public Salt formula's pillar) or recorded by `build.py lock` on
# first use. Review changes like code: a pin that changes for an existing asset is a supply-chain
# alarm, never a routine update.
"""

_SHA256 = re.compile(r"[0-9a-f]{64}")

Pins = dict[str, dict[str, str]]  # version -> asset name -> sha256


def read(path: Path) -> Pins:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no such lock file; pin a release with `build.py lock --version vX`"
        ) from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not a valid lock file (UTF-8 TOML): {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the lock file: {describe_os_error(exc)}") from None
    pins: Pins = {}
    for version, assets in raw.items():
        if not isinstance(assets, dict):
            raise ConfigError(f"{path}: [{version!r}] must be a table of asset = sha256")
        for asset, digest in assets.items():
            if not isinstance(digest, str) or not _SHA256.fullmatch(digest):
                raise ConfigError(
                    f"{path}: {version}.{asset}: {digest!r} is not a lowercase sha256 hex digest"
                )
        pins[version] = dict(assets)
    return pins


def render(pins: Pins) -> str:
    out = [HEADER]
    for version in sorted(pins, key=_version_key):
        out.append(f'\n["{version}"]\n')
        for asset in sorted(pins[version]):
            out.append(f'"{asset}" = "{pins[version][asset]}"\n')
    return "".join(out)


def write(path: Path, pins: Pins) -> None:
    atomic.write_text(path, render(pins))


def check(pins: Pins, version: str, asset: str, digest: str, lock_path: Path) -> None:
    """An existing, different pin is a supply-chain alarm."""
    known = pins.get(version, {}).get(asset)
    if known is not None and known != digest:
        raise IntegrityError(
            f"SUPPLY-CHAIN ALARM: {version}/{asset} is pinned in {lock_path} as\n"
            f"  {known}\nbut the download now hashes to\n  {digest}\n"
            "A published release asset must never change. The pin is kept, nothing was "
            "written, and the changed bytes were deleted, not cached. Find out why the asset "
            "changed (mirror tampering, a re-tagged release) before trusting it."
        )


def add(pins: Pins, version: str, asset: str, digest: str, lock_path: Path) -> bool:
    """Record a pin; True if it is new. An existing, different pin is a supply-chain alarm."""
    check(pins, version, asset, digest, lock_path)
    if pins.get(version, {}).get(asset) == digest:
        return False
    pins.setdefault(version, {})[asset] = digest
    return True


def _version_key(tag: str) -> tuple[int, ...]:
    return tuple(int(p) if p.isdigit() else -1 for p in tag.lstrip("v").split("."))
