"""fetch: pinned flannel release assets -> verified cache -> build/fetch/<version>/<arch>/flanneld.

Sources (sources.py), first that applies per asset: the cache, the local file or directory the
user names, the mirror, GitHub. Whatever the source, the bytes must hash to the pin in
release.lock before they are unpacked, and unpack without complaint (archive members, ELF header)
before they are cached; nothing unverified or refused ever lands in the cache or in build/.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from . import lock, parallel
from .atomic import staged_dir
from .cache import sha256_file
from .config import Config
from .errors import ConfigError, FlannelnodeError
from .extract import unpack
from .progress import Reporter
from .release import Asset, assets
from .sources import Fetcher

RECORD = "release.json"


@dataclass(frozen=True)
class Fetched:
    version: str
    arch: str
    asset: str
    sha256: str
    source: str
    flanneld: str
    flanneld_sha256: str
    from_cache: bool = False  # source is where the cache entry originally came from


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

    def accept(verified: Path, source: str, from_cache: bool) -> Fetched:
        origin = f"{source}{', cached' if from_cache else ''} ({asset.name})"
        with staged_dir(out) as tmp:
            flanneld = unpack(verified, asset.kind, asset.arch, tmp, origin)
            record = Fetched(
                version=asset.version,
                arch=asset.arch,
                asset=asset.name,
                sha256=digest,
                source=source,
                flanneld=str(out / "flanneld"),
                flanneld_sha256=digest if asset.kind == "binary" else sha256_file(flanneld),
                from_cache=from_cache,
            )
            (tmp / RECORD).write_text(json.dumps(asdict(record), indent=2) + "\n")
        return record

    record = fetcher.obtain(asset, digest, accept)
    via = f"{record.source} (from the cache)" if record.from_cache else record.source
    fetcher.reporter.log(f"{asset.name}: verified sha256 {digest[:16]}... from {via}")
    return record


def fetch_dir(build_dir: Path, version: str, arch: str) -> Path:
    return build_dir / "fetch" / version / arch


def fetch(cfg: Config, build_dir: Path, reporter: Reporter, offline: bool = False) -> list[Fetched]:
    """Fetch and verify every configured arch in parallel; all or a clear error."""
    work = pinned(cfg)
    fetcher = Fetcher(cfg, reporter, offline)
    fetcher.check_local(list(work))
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
    fetcher.check_local([(a, None) for a in todo])

    def one(asset: Asset) -> tuple[Asset, str, str]:
        def accept(path: Path, digest: str, source: str) -> None:
            # a changed pin is refused before the bytes are unpacked, let alone cached
            lock.check(pins, asset.version, asset.name, digest, cfg.fetch.lock)
            with tempfile.TemporaryDirectory() as tmp:
                unpack(path, asset.kind, asset.arch, Path(tmp), f"{source} ({asset.name})")

        digest, source = fetcher.obtain_unpinned(asset, accept)
        return asset, digest, source

    results = run_parallel(fetcher, [(lambda a=a: one(a)) for a in todo])
    added = []
    for asset, digest, source in results:
        new = lock.add(pins, asset.version, asset.name, digest, cfg.fetch.lock)
        added.append((asset.name, digest, new))
        if new:  # an alarm, not a log line: it must be seen even with -q
            reporter.alarm(
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
