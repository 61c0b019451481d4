"""Assets carried in (--local, FLANNEL_LOCAL, FLANNEL_TARBALL): a file, or a directory of them.

A file is an asset's if it has the asset's upstream name, or, under any other name (a browser's
"flanneld-amd64 (1)", a renamed "flanneld"), if it hashes to the asset's pin. A file with the
upstream name is taken as the asset even when it does not hash to the pin: the pin check then
raises the alarm, since a swapped file is exactly what it is for.
"""

from __future__ import annotations

import threading
from pathlib import Path

from .cache import sha256_file
from .download import MAX_BYTES
from .errors import ConfigError
from .release import Asset


class LocalSource:
    def __init__(self, root: Path) -> None:
        self.root = root
        self._digests: dict[Path, tuple[tuple[int, int], str]] = {}
        self._lock = threading.Lock()  # one thread hashes a file; the others reuse its digest

    def find(self, asset: Asset, digest: str | None) -> Path | None:
        """The file for asset; by name, or (with its pin) by hash."""
        if self.root.is_file():
            if self.root.name == asset.name or (digest and self.digest(self.root) == digest):
                return self.root
            return None
        folders = [self.root, self.root / asset.version]
        for folder in folders:
            if (folder / asset.name).is_file():
                return folder / asset.name
        if digest is None:
            return None
        for folder in folders:
            for candidate in _files(folder):
                if self.digest(candidate) == digest:
                    return candidate
        return None

    def check(self, wanted: list[tuple[Asset, str | None]], flag: str) -> None:
        """A single file that is no asset of this build is a mistake (a wrong version, a wrong
        kind): say so instead of going to the network behind the user's back."""
        if not self.root.is_file() or any(self.find(a, d) for a, d in wanted):
            return
        names = ", ".join(a.name for a, _ in wanted)
        how = "named like or hashing to the pin of" if any(d for _, d in wanted) else "named like"
        raise ConfigError(
            f"{flag} {self.root}: not {how} any asset this build needs ({names}). Name the "
            "right file, or a directory of assets; check --version, --arch and --asset"
        )

    def digest(self, path: Path) -> str:
        stat = path.stat()
        key = (stat.st_size, stat.st_mtime_ns)
        with self._lock:
            known = self._digests.get(path)
            if known is None or known[0] != key:
                known = (key, sha256_file(path))
                self._digests[path] = known
        return known[1]


def _files(folder: Path) -> list[Path]:
    """Regular files directly in folder that could be an asset (not absurdly big)."""
    try:
        entries = sorted(folder.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [p for p in entries if p.is_file() and p.stat().st_size <= MAX_BYTES]
