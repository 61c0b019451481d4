"""payload: one staged root tree per arch, the single source of every file that lands on a node.

build/payload/<arch>/
  root/                         the tree, exact paths and modes (owner root)
  flannelnode-payload.tar       the same tree as a tarball (uid/gid 0, fixed mtime, sorted)
  manifest.json                 path, mode, size, sha256 of every file, plus the input digest

RPMs package root/; images install the RPM or unpack the tarball. Nothing else renders node files.
The tar is uncompressed on purpose: it only travels to Packer on this host, and gzip would cost
more than a second per arch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tarfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

from . import netconf, units
from .atomic import staged_dir
from .config import Config
from .errors import FlannelnodeError, IntegrityError
from .fetch import RECORD, Fetched, fetch_dir
from .progress import Reporter
from .units import NodeFile

TARBALL = "flannelnode-payload.tar"
MANIFEST = "manifest.json"
CHUNK = 1 << 20


@dataclass(frozen=True)
class Staged:
    arch: str
    root: Path
    tarball: Path
    manifest: Path
    digest: str
    rebuilt: bool


def net_conf(config: Config, *, public: bool) -> NodeFile:
    """flannel's network config for the seeder, in its one rendering (netconf.render). public:
    backend secrets replaced by a placeholder (the payload is published); else the real thing,
    0600 when it holds a secret."""
    network, hidden = netconf.without_secrets(config.network)
    if not public:
        network = config.network
    mode = 0o600 if hidden and not public else 0o644
    return NodeFile(
        f"{config.install.prefix}/cfg/net-conf.json", mode, netconf.render(network).encode()
    )


def node_files(config: Config) -> list[NodeFile]:
    """Every file but flanneld: rendered units and config, node scripts, the network config."""
    return [*units.render(config), *units.scripts(config), net_conf(config, public=True)]


def payload_dir(build_dir: Path, arch: str) -> Path:
    return build_dir / "payload" / arch


def _fetched(build_dir: Path, config: Config, arch: str) -> Fetched:
    record = fetch_dir(build_dir, config.flannel.version, arch) / RECORD
    try:
        return Fetched(**json.loads(record.read_text()))
    except FileNotFoundError:
        raise FlannelnodeError(
            f"{record} is missing: flannel {config.flannel.version} for {arch} has not been "
            "fetched. Run `build.py fetch` (or `make fetch`) first."
        ) from None


def _copy_verified(src: Path, dst: Path, sha256: str) -> None:
    """Copy and hash in one pass; the copy must be exactly what fetch verified."""
    digest = hashlib.sha256()
    with src.open("rb") as inp, dst.open("wb") as out:
        while chunk := inp.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256:
        dst.unlink()
        raise IntegrityError(
            f"{src}: sha256 {digest.hexdigest()} is not the {sha256} that fetch verified; the "
            "fetched binary changed on disk. Run `build.py fetch` again."
        )


def _input_digest(fetched: Fetched, files: list[NodeFile]) -> str:
    h = hashlib.sha256(f"flanneld {fetched.flanneld_sha256}\n".encode())
    for f in files:
        h.update(f"{f.path} {f.mode:o} {hashlib.sha256(f.content).hexdigest()}\n".encode())
    return h.hexdigest()


def _tar_filter(info: tarfile.TarInfo) -> tarfile.TarInfo:
    info.uid = info.gid = 0
    info.uname = info.gname = "root"
    info.mtime = int(os.environ.get("SOURCE_DATE_EPOCH") or 0)
    return info


def stage_arch(config: Config, build_dir: Path, arch: str, reporter: Reporter) -> Staged:
    fetched = _fetched(build_dir, config, arch)
    prefix = config.install.prefix
    files = node_files(config)
    digest = _input_digest(fetched, files)
    out = payload_dir(build_dir, arch)
    try:
        if json.loads((out / MANIFEST).read_text())["input_digest"] == digest:
            reporter.log(f"payload {arch}: up to date")
            return Staged(arch, out / "root", out / TARBALL, out / MANIFEST, digest, False)
    except (OSError, ValueError, KeyError):
        pass

    with staged_dir(out) as tmp:
        root = tmp / "root"
        entries = []
        flanneld = NodeFile(f"{prefix}/bin/flanneld", 0o755, b"")
        for f in sorted([*files, flanneld], key=lambda f: f.path):
            target = root / f.path.lstrip("/")
            target.parent.mkdir(parents=True, exist_ok=True)
            if f is flanneld:
                src = fetch_dir(build_dir, config.flannel.version, arch) / "flanneld"
                _copy_verified(src, target, fetched.flanneld_sha256)
                sha, size = fetched.flanneld_sha256, target.stat().st_size
            else:
                target.write_bytes(f.content)
                sha, size = hashlib.sha256(f.content).hexdigest(), len(f.content)
            os.chmod(target, f.mode)
            entries.append(
                {
                    "path": f.path,
                    "mode": f"{f.mode:04o}",
                    "owner": "root:root",
                    "size": size,
                    "sha256": sha,
                }
            )
        with tarfile.open(tmp / TARBALL, "w", format=tarfile.PAX_FORMAT) as tar:
            for e in entries:
                tar.add(
                    root / e["path"].lstrip("/"), arcname=e["path"].lstrip("/"), filter=_tar_filter
                )
        manifest = {
            "flannel_version": config.flannel.version,
            "arch": arch,
            "prefix": prefix,
            "asset": fetched.asset,
            "asset_sha256": fetched.sha256,
            "input_digest": digest,
            "files": entries,
        }
        (tmp / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    reporter.log(f"payload {arch}: staged {len(entries)} files in {out}")
    return Staged(arch, out / "root", out / TARBALL, out / MANIFEST, digest, True)


def stage(config: Config, build_dir: Path, reporter: Reporter) -> list[Staged]:
    for finding in netconf.check_config(config):
        if finding.level == "warning":
            reporter.log(finding.at(f"{config.source} [network]"))
    _, hidden = netconf.without_secrets(config.network)
    if hidden:
        reporter.log(
            f"payload: {', '.join(hidden)} replaced by a placeholder in net-conf.json; the "
            "secret reaches nodes only in the user-data (`build.py userdata`)"
        )
    # two at a time: hashing and copying release the GIL, and this host has two cores
    with ThreadPoolExecutor(max_workers=2) as pool:
        jobs = [
            pool.submit(stage_arch, config, build_dir, a, reporter) for a in config.flannel.arches
        ]
        return [job.result() for job in jobs]
