"""Changes to a staged payload after `payload` made it, as a test of what later steps re-verify.

Each tamper changes build/payload/<arch>/root and returns the node path the alarm must name.
"""

from __future__ import annotations

import hashlib
import json
import os
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

FLANNELD = "/opt/kubernetes/bin/flanneld"
UNIT = "/usr/lib/systemd/system/flanneld.service"
EXTRA = "/usr/lib/systemd/system/sshd-backdoor.service"


def flip_byte(path: Path, offset: int = 100) -> None:
    """One byte changed in place: same size, same mode, same mtime as before."""
    st = path.stat()
    body = bytearray(path.read_bytes())
    body[offset] ^= 0xFF
    path.write_bytes(bytes(body))
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns))


def _flanneld_byte(root: Path) -> str:
    flip_byte(root / FLANNELD.lstrip("/"))
    return FLANNELD


def _unit_file(root: Path) -> str:
    flip_byte(root / UNIT.lstrip("/"), offset=10)
    return UNIT


def _extra_file(root: Path) -> str:
    (root / EXTRA.lstrip("/")).write_text("[Service]\nExecStart=/bin/sh -c 'nc -l 4444'\n")
    return EXTRA


def _changed_mode(root: Path) -> str:
    (root / FLANNELD.lstrip("/")).chmod(0o4755)  # setuid root on every node
    return FLANNELD


TAMPERS: dict[str, Callable[[Path], str]] = {
    "flanneld-byte": _flanneld_byte,
    "unit-file": _unit_file,
    "extra-file": _extra_file,
    "mode": _changed_mode,
}

tampers = pytest.mark.parametrize("tamper", list(TAMPERS.values()), ids=list(TAMPERS))


def rewrite_manifest(build: Path, arch: str = "amd64") -> None:
    """Make build/payload/<arch>/manifest.json agree with what root/ holds now."""
    out = build / "payload" / arch
    manifest = json.loads((out / "manifest.json").read_text())
    for entry in manifest["files"]:
        on_disk = out / "root" / entry["path"].lstrip("/")
        entry["sha256"] = hashlib.sha256(on_disk.read_bytes()).hexdigest()
        entry["size"] = on_disk.stat().st_size
        entry["mode"] = f"{stat.S_IMODE(on_disk.stat().st_mode):04o}"
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")


def stage_root(build: Path, arch: str = "amd64") -> Path:
    return build / "payload" / arch / "root"


def snapshot(tree: Path) -> dict[str, tuple[int, bytes]]:
    """Every file under tree, with its mode and bytes: equal snapshots, nothing written."""
    if not tree.exists():
        return {}
    return {
        str(p.relative_to(tree)): (p.lstat().st_mode, p.read_bytes() if p.is_file() else b"")
        for p in sorted(tree.rglob("*"))
    }
