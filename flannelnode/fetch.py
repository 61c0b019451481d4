"""fetch: pinned flannel release assets -> verified cache -> build/fetch/<version>/<arch>/flanneld.

Sources, first that applies per asset: the local file or directory the user names, the mirror,
GitHub. Whatever the source, the bytes must hash to the pin in release.lock before they are
cached or unpacked; nothing unverified ever lands in the cache or in build/.
"""

from __future__ import annotations

import json
import os
import tempfile
import threading
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from . import filelock, lock, parallel, urls
from .atomic import staged_dir
from .cache import Cache, sha256_file
from .config import Config
from .download import MAX_BACKOFF, MAX_SECONDS, download, session
from .errors import ConfigError, FetchError, FlannelnodeError, IntegrityError
from .extract import unpack
from .progress import Reporter
from .release import Asset, assets

RECORD = "release.json"
OFFLINE_HINT = (
    "GitHub is not reachable from here? Point --mirror (FLANNEL_MIRROR) at a mirror with "
    "GitHub's layout, or --local (FLANNEL_LOCAL / FLANNEL_TARBALL) at the assets carried in."
)


@dataclass(frozen=True)
class Fetched:
    version: str
    arch: str
    asset: str
    sha256: str
    source: str
    flanneld: str
    flanneld_sha256: str


def pinned(cfg: Config) -> list[tuple[Asset, str]]:
    pins = lock.read(cfg.fetch.lock)
    out, missing = [], []
    for asset in assets(cfg.flannel.version, cfg.flannel.arches, cfg.flannel.asset):
        digest = pins.get(asset.version, {}).get(asset.name)
        if digest is None:
            missing.append(asset)
        else:
            out.append((asset, digest))
    if missing:
        raise ConfigError(
            f"{cfg.fetch.lock}: {cfg.flannel.version} has no pin for "
            f"{', '.join(a.name for a in missing)}. flannelnode accepts only pinned assets; pin "
            f"them (trust on first use) with `build.py lock --version {cfg.flannel.version} "
            f"--asset {cfg.flannel.asset} --arch {','.join(a.arch for a in missing)}`, "
            "review, and commit release.lock"
        )
    return out


class Fetcher:
    """Gets verified asset bytes into the cache from the first source that has them."""

    def __init__(self, cfg: Config, reporter: Reporter, offline: bool = False) -> None:
        self.cfg = cfg
        self.cache = Cache(cfg.cache_dir)
        self.reporter = reporter
        self.offline = offline
        self._http: Any = None
        self._http_lock = threading.Lock()
        self.stop = threading.Event()

    @property
    def base_url(self) -> str:
        return self.cfg.fetch.mirror or self.cfg.fetch.github

    def local_file(self, asset: Asset) -> Path | None:
        local = self.cfg.fetch.local
        if local is None:
            return None
        if local.is_file():
            return local if local.name == asset.name else None
        for candidate in (local / asset.name, local / asset.version / asset.name):
            if candidate.is_file():
                return candidate
        return None

    def obtain(self, asset: Asset, digest: str) -> tuple[Path, str]:
        """Return (verified cache path, where it came from)."""
        hit = self.cache.verified(digest)
        if hit is not None:
            return hit, "cache"
        with self._locked(asset, digest):
            hit = self.cache.verified(digest)  # another run fetched it while we waited
            if hit is not None:
                return hit, "cache"
            self.cache.drop(digest)
            return self._obtain_locked(asset, digest)

    def _obtain_locked(self, asset: Asset, digest: str) -> tuple[Path, str]:
        local = self.local_file(asset)
        if local is not None:
            actual = sha256_file(local)
            _check(str(local), asset, digest, actual)
            return self.cache.store_copy(local, digest), str(local)
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
        actual = sha256_file(part)
        if actual != digest:
            part.unlink()
        _check(url, asset, digest, actual)
        return self.cache.store(part, digest), urls.redact(url)

    def _locked(self, asset: Asset, digest: str) -> AbstractContextManager[None]:
        """The digest's lock in the cache, waited for as long as its holder gets on with it."""
        fetch = self.cfg.fetch
        idle = (fetch.retries + 1) * (2 * fetch.timeout + MAX_BACKOFF) + 60
        return filelock.exclusive(
            self.cache.lock_file(digest),
            stop=self.stop,
            progress=lambda: self.cache.partial_progress(digest),
            idle_limit=idle,
            max_wait=MAX_SECONDS + idle,
            waiting=lambda: self.reporter.log(
                f"{asset.name}: another flannelnode run is fetching it into {self.cache.root}; "
                "waiting for it"
            ),
            what=f"{asset.name} ({asset.version})",
        )

    def download_unpinned(self, asset: Asset) -> tuple[Path, str, str]:
        """For `lock`: (verified-by-nobody download, its sha256, url). Trust on first use."""
        url = asset.url(self.base_url)
        local = self.local_file(asset)
        if local is not None:
            return local, sha256_file(local), str(local)
        part = self.cache.partial_path(asset.name, "unpinned")
        part.unlink(missing_ok=True)
        self._download(url, part, asset)
        return part, sha256_file(part), urls.redact(url)

    def _download(self, url: str, part: Path, asset: Asset) -> None:
        with self._http_lock:
            if self._http is None:
                self._http = session()
        self.reporter.log(f"downloading {url}")
        bar = self.reporter.transfer(asset.name)

        try:
            download(
                url,
                part,
                http=self._http,
                timeout=self.cfg.fetch.timeout,
                retries=self.cfg.fetch.retries,
                backoff=float(os.environ.get("FLANNELNODE_BACKOFF") or "0.5"),
                progress=bar,
                log=self.reporter.log,
                stop=self.stop,
            )
        except FetchError as exc:
            if not self.cfg.fetch.mirror and not self.cfg.fetch.local:
                raise FetchError(f"{exc}\n{OFFLINE_HINT}") from None
            raise


def _check(origin: str, asset: Asset, expected: str, actual: str) -> None:
    if actual != expected:
        raise IntegrityError(
            f"{origin}: sha256 mismatch for {asset.name} ({asset.version})\n"
            f"  expected {expected} (release.lock)\n"
            f"  actual   {actual}\n"
            "The file was not cached or unpacked. A truncated or tampered download, or a mirror "
            "serving something else: do not pin the new hash without finding out which."
        )


def _up_to_date(out: Path, digest: str) -> Fetched | None:
    try:
        record = Fetched(**json.loads((out / RECORD).read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if record.sha256 != digest:
        return None
    flanneld = out / "flanneld"
    if not flanneld.is_file() or sha256_file(flanneld) != record.flanneld_sha256:
        return None
    return record


def _publish(fetcher: Fetcher, asset: Asset, digest: str, out: Path) -> Fetched:
    """Unpack into a temp dir beside out, then swap it into place."""
    record = _up_to_date(out, digest)
    if record is not None:
        fetcher.reporter.log(f"{asset.name}: up to date in {out}")
        return record
    cached, source = fetcher.obtain(asset, digest)
    with staged_dir(out) as tmp:
        flanneld = unpack(cached, asset.kind, asset.arch, tmp, f"{source} ({asset.name})")
        record = Fetched(
            version=asset.version,
            arch=asset.arch,
            asset=asset.name,
            sha256=digest,
            source=source,
            flanneld=str(out / "flanneld"),
            flanneld_sha256=digest if asset.kind == "binary" else sha256_file(flanneld),
        )
        (tmp / RECORD).write_text(json.dumps(asdict(record), indent=2) + "\n")
    fetcher.reporter.log(f"{asset.name}: verified sha256 {digest[:16]}... from {source}")
    return record


def fetch_dir(build_dir: Path, version: str, arch: str) -> Path:
    return build_dir / "fetch" / version / arch


def fetch(cfg: Config, build_dir: Path, reporter: Reporter, offline: bool = False) -> list[Fetched]:
    """Fetch and verify every configured arch in parallel; all or a clear error."""
    work = pinned(cfg)
    fetcher = Fetcher(cfg, reporter, offline)
    return run_parallel(
        fetcher,
        [
            (lambda a=a, d=d: _publish(fetcher, a, d, fetch_dir(build_dir, a.version, a.arch)))
            for a, d in work
        ],
    )


def pin(cfg: Config, reporter: Reporter) -> list[tuple[str, str, bool]]:
    """`build.py lock`: download, check it is flanneld for the arch, record its sha256."""
    pins = lock.read(cfg.fetch.lock) if cfg.fetch.lock.exists() else {}
    fetcher = Fetcher(cfg, reporter)
    todo = assets(cfg.flannel.version, cfg.flannel.arches, cfg.flannel.asset)

    def one(asset: Asset) -> tuple[Asset, str, str]:
        path, digest, source = fetcher.download_unpinned(asset)
        with tempfile.TemporaryDirectory() as tmp:
            unpack(path, asset.kind, asset.arch, Path(tmp), f"{source} ({asset.name})")
        if path.parent == fetcher.cache.partial:
            fetcher.cache.store(path, digest)
        return asset, digest, source

    results = run_parallel(fetcher, [(lambda a=a: one(a)) for a in todo])
    added = []
    # lock.add raises the supply-chain alarm before anything is written
    for asset, digest, source in results:
        new = lock.add(pins, asset.version, asset.name, digest, cfg.fetch.lock)
        added.append((asset.name, digest, new))
        if new:
            reporter.log(
                f"TRUST ON FIRST USE: pinned {asset.version}/{asset.name} = {digest}\n"
                f"  from {source}. Nothing vouches for this hash but that download: compare it "
                "with an independent source before you commit release.lock."
            )
    if any(new for _, _, new in added):
        lock.write(cfg.fetch.lock, pins)
    return added


def run_parallel(fetcher: Fetcher, jobs: list) -> list:
    """Run jobs on a few threads; report every failure, raise the gravest."""
    with fetcher.reporter.bars():
        outcomes = parallel.run(jobs, fetcher.stop)
    results, failures = [], []
    for result, exc in outcomes:
        if exc is None:
            results.append(result)
        elif isinstance(exc, FlannelnodeError):
            failures.append(exc)
        else:
            raise exc
    if failures:
        worst = max(failures, key=lambda e: e.exit_code)
        raise type(worst)("\n".join(str(e) for e in failures))
    return results
