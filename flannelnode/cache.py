"""A content-addressed store of verified release assets: <root>/sha256/<digest>.

Only verified files are ever moved in (an atomic rename), and every hit is re-hashed, so a
corrupted cache entry is dropped and fetched again instead of being trusted.

One cache may be shared by any number of concurrent runs (every checkout of a user shares the
default one). Reading a valid entry needs no lock: entries are complete before they appear and
never change. Everything else about a digest (downloading into its partial file, dropping a bad
entry, moving the verified file in) happens only while holding <root>/locks/<digest>.lock, so a
digest is downloaded by one run at a time and a run that waited for the lock finds the result.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
from pathlib import Path

from . import atomic


def sha256_file(path: Path) -> str:
    with path.open("rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


class Cache:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.objects = root / "sha256"
        self.partial = root / "partial"
        self.sources = root / "sources"  # <digest>.json: where each entry came from

    def path(self, digest: str) -> Path:
        return self.objects / digest

    def verified(self, digest: str) -> Path | None:
        """The entry, if it is there and still hashes to its name."""
        path = self.path(digest)
        try:
            return path if sha256_file(path) == digest else None
        except FileNotFoundError:
            return None

    def drop(self, digest: str) -> None:
        """Remove an entry (bit rot or tampering: never serve it). Hold the digest's lock."""
        self.path(digest).unlink(missing_ok=True)

    def lock_file(self, key: str) -> Path:
        """The lock that guards key (a digest): see the module docstring."""
        return self.root / "locks" / f"{key}.lock"

    def partial_progress(self, digest: str) -> tuple[tuple[str, int], ...]:
        """Changes while a run downloads digest: tells a waiter a live holder from a hung one."""
        found = []
        for part in self.partial.glob(f"*.{digest[:16]}.part"):
            with contextlib.suppress(FileNotFoundError):
                found.append((part.name, part.stat().st_size))
        return tuple(sorted(found))

    def partial_path(self, name: str, digest: str, kind: str = "part") -> Path:
        """Where a download of name for digest waits to be verified (or resumed). Hold its lock."""
        self.partial.mkdir(parents=True, exist_ok=True)
        return self.partial / f"{name}.{digest[:16]}.{kind}"

    def store(self, verified: Path, digest: str, source: str) -> Path:
        """Move an already verified and accepted file into the store (atomic rename), and note
        where it came from (a URL without credentials, or a local path) for later hits."""
        self.objects.mkdir(parents=True, exist_ok=True)
        target = self.path(digest)
        os.replace(verified, target)
        record = {"sha256": digest, "source": source}
        atomic.write_text(self.sources / f"{digest}.json", json.dumps(record, indent=2) + "\n")
        return target

    def source(self, digest: str) -> str | None:
        """Where the entry came from, if a flannelnode that notes it stored it."""
        try:
            source = json.loads((self.sources / f"{digest}.json").read_text())["source"]
        except (OSError, ValueError, KeyError, TypeError):
            return None
        return source if isinstance(source, str) else None


def copy(src: Path, dest: Path) -> Path:
    """A private copy of a file the user owns (a local asset), to verify and use: the user's file
    may change while we read it, the copy does not."""
    try:
        shutil.copyfile(src, dest)
    except BaseException:
        dest.unlink(missing_ok=True)
        raise
    return dest
