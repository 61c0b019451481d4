"""A content-addressed store of verified release assets: <root>/sha256/<digest>.

Only verified files are ever moved in, and every hit is re-hashed, so a corrupted cache entry is
dropped and fetched again instead of being trusted.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

CHUNK = 1 << 20


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "sha256"
        self.partial = root / "partial"

    def path(self, digest: str) -> Path:
        return self.objects / digest

    def lookup(self, digest: str) -> Path | None:
        path = self.path(digest)
        if not path.is_file():
            return None
        if sha256_file(path) != digest:
            path.unlink()  # bit rot or tampering: never serve it, fetch again
            return None
        return path

    def partial_path(self, name: str, digest: str) -> Path:
        """Where an interrupted download of name waits to be resumed."""
        self.partial.mkdir(parents=True, exist_ok=True)
        return self.partial / f"{name}.{digest[:16]}.part"

    def store(self, verified: Path, digest: str) -> Path:
        """Move an already verified file into the store (atomic rename)."""
        self.objects.mkdir(parents=True, exist_ok=True)
        target = self.path(digest)
        os.replace(verified, target)
        return target

    def store_copy(self, verified: Path, digest: str) -> Path:
        """Copy a verified file the user owns (a local asset) into the store."""
        self.objects.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=self.objects, prefix=".in.")
        os.close(fd)
        try:
            shutil.copyfile(verified, tmp)
            if sha256_file(Path(tmp)) != digest:  # the source changed while we copied
                raise OSError(f"{verified} changed while it was copied into the cache")
            return self.store(Path(tmp), digest)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
