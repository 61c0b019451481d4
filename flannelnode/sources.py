"""Verified asset bytes from the first source that has them: the cache, a local file, the network.

Whatever the source, the bytes must hash to the pin in release.lock and then pass the caller's own
check (`accept`: archive members, ELF header, unpacking into a staging dir) before they are moved
into the cache. Bytes that fail either are deleted, never cached; a cache entry that fails the
check is dropped. All of it happens under the digest's lock in the cache (see cache.py).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Hashable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import Any, TypeVar

from . import filelock, urls
from .cache import Cache, copy, sha256_file
from .config import Config
from .download import MAX_BACKOFF, MAX_SECONDS, download, session
from .errors import FetchError, IntegrityError
from .local import LocalSource
from .progress import Reporter
from .release import Asset

T = TypeVar("T")

OFFLINE_HINT = (
    "GitHub is not reachable from here? Point --mirror (FLANNEL_MIRROR) at a mirror with "
    "GitHub's layout, or --local (FLANNEL_LOCAL / FLANNEL_TARBALL) at the assets carried in."
)


class Fetcher:
    def __init__(self, cfg: Config, reporter: Reporter, offline: bool = False) -> None:
        self.cfg = cfg
        self.cache = Cache(cfg.cache_dir)
        self.reporter = reporter
        self.offline = offline
        self.local = LocalSource(cfg.fetch.local) if cfg.fetch.local else None
        self._http: Any = None
        self._http_lock = threading.Lock()
        self.stop = threading.Event()  # set on Ctrl-C: every wait and transfer ends

    @property
    def base_url(self) -> str:
        return self.cfg.fetch.mirror or self.cfg.fetch.github

    def check_local(self, wanted: list[tuple[Asset, str | None]]) -> None:
        if self.local is not None:
            self.local.check(
                wanted, "the local source (--local, FLANNEL_LOCAL, FLANNEL_TARBALL, fetch.local)"
            )

    def local_file(self, asset: Asset, digest: str | None) -> Path | None:
        return self.local.find(asset, digest) if self.local else None

    def obtain(self, asset: Asset, digest: str, accept: Callable[[Path, str, bool], T]) -> T:
        """accept(verified file, its source, whether from the cache) for the pinned asset; its
        result. The source of a cache hit is where the entry originally came from.

        accept refuses by raising IntegrityError: the bytes are then deleted, not cached.
        """
        hit = self.cache.verified(digest)
        if hit is None:
            with self._locked(asset, digest):
                hit = self.cache.verified(digest)  # another run fetched it while we waited
                if hit is None:
                    return self._fetch_locked(asset, digest, accept)
        # a hit is used outside the lock: entries never change, and the runs that waited for
        # this one must not unpack one after the other
        try:
            return accept(hit, self.cache.source(digest) or "cache", True)
        except IntegrityError:  # cached by an older flannelnode that checked less
            with self._locked(asset, digest):
                self.cache.drop(digest)
            raise

    def _fetch_locked(self, asset: Asset, digest: str, accept: Callable[[Path, str, bool], T]) -> T:
        self.cache.drop(digest)  # bit rot or tampering: fetch again
        got, source = self._get(asset, digest)
        try:
            result = accept(got, source, False)
        except IntegrityError:
            got.unlink(missing_ok=True)
            raise
        self.cache.store(got, digest, source)
        return result

    def _get(self, asset: Asset, digest: str) -> tuple[Path, str]:
        """(a private file that hashes to digest, its source). Hold the digest's lock."""
        local = self.local_file(asset, digest)
        if local is not None:
            got = copy(local, self.cache.partial_path(asset.name, digest, "local"))
            _check(str(local), asset, digest, got)
            return got, str(local)
        if self.offline:
            where = f" nor in {self.cfg.fetch.local}" if self.cfg.fetch.local else ""
            raise FetchError(
                f"{asset.name} ({asset.version}) is not in the cache {self.cache.root}{where}, "
                "and --offline forbids the network. Run once without --offline, or name the "
                "assets with --local"
            )
        url = asset.url(self.base_url)
        part = self.cache.partial_path(asset.name, digest)
        self._download(url, part, asset)
        _check(urls.redact(url), asset, digest, part)
        return part, urls.redact(url)

    def obtain_unpinned(
        self, asset: Asset, accept: Callable[[Path, str, str], None]
    ) -> tuple[str, str]:
        """For `lock` (trust on first use): (sha256, source) of the asset once accept(file,
        sha256, source) took it. A refused download is deleted; an accepted one is cached."""
        local = self.local_file(asset, None)
        if local is not None:
            digest = sha256_file(local)
            accept(local, digest, str(local))
            return digest, str(local)
        url = asset.url(self.base_url)
        key = f"{asset.version}-{asset.name}"
        part = self.cache.partial_path(key, "unpinned")
        with self._lock(key, f"{asset.name} ({asset.version})", lambda: _size(part)):
            part.unlink(missing_ok=True)  # nothing vouches for an old partial: start afresh
            self._download(url, part, asset)
            digest = sha256_file(part)
            try:
                accept(part, digest, urls.redact(url))
            except IntegrityError:
                part.unlink(missing_ok=True)
                raise
            self.cache.store(part, digest, urls.redact(url))
        return digest, urls.redact(url)

    def _locked(self, asset: Asset, digest: str) -> AbstractContextManager[None]:
        return self._lock(
            digest, f"{asset.name} ({asset.version})", lambda: self.cache.partial_progress(digest)
        )

    def _lock(
        self, key: str, what: str, progress: Callable[[], Hashable]
    ) -> AbstractContextManager[None]:
        """key's lock in the cache, waited for as long as its holder gets on with it."""
        fetch = self.cfg.fetch
        idle = (fetch.retries + 1) * (2 * fetch.timeout + MAX_BACKOFF) + 60
        return filelock.exclusive(
            self.cache.lock_file(key),
            stop=self.stop,
            progress=progress,
            idle_limit=idle,
            max_wait=MAX_SECONDS + idle,
            waiting=lambda: self.reporter.log(
                f"{what}: another flannelnode run is fetching it into {self.cache.root}; "
                "waiting for it"
            ),  # what starts with the asset name
            what=what,
        )

    def _logger(self, asset: Asset) -> Callable[[str], None]:
        """Log lines of this asset, each named after it: downloads run side by side."""

        def log(msg: str) -> None:
            self.reporter.log("\n".join(f"{asset.name}: {line}" for line in msg.splitlines()))

        return log

    def _download(self, url: str, part: Path, asset: Asset) -> None:
        with self._http_lock:
            if self._http is None:
                self._http = session()
        log = self._logger(asset)
        log(f"downloading {urls.redact(url)}")
        try:
            download(
                url,
                part,
                http=self._http,
                timeout=self.cfg.fetch.timeout,
                retries=self.cfg.fetch.retries,
                backoff=self.cfg.fetch.backoff,
                progress=self.reporter.transfer(asset.name),
                log=log,
                stop=self.stop,
            )
        except FetchError as exc:
            if not self.cfg.fetch.mirror and not self.cfg.fetch.local:
                raise FetchError(f"{exc}\n{OFFLINE_HINT}") from None
            raise


def _size(path: Path) -> int:
    try:
        return path.stat().st_size
    except FileNotFoundError:
        return -1


def _check(origin: str, asset: Asset, expected: str, got: Path) -> None:
    """Delete got and raise unless it hashes to expected."""
    actual = sha256_file(got)
    if actual != expected:
        got.unlink()
        raise IntegrityError(
            f"{origin}: sha256 mismatch for {asset.name} ({asset.version})\n"
            f"  expected {expected} (release.lock)\n"
            f"  actual   {actual}\n"
            "The file was not cached or unpacked. A truncated or tampered download, or a mirror "
            "serving something else: do not pin the new hash without finding out which."
        )
