"""What one build made and from what, read from the records every step leaves in build/: the
typed input of the SBOM (sbom.py) and the provenance statements (provenance.py).

Like manifest.py it only reads: any subset of steps may have run, and what is missing is left out.
Records are what the steps wrote; the steps re-verify them before they use them, this does not.
"""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from . import __version__, lock, urls
from .cache import sha256_file
from .config import Config
from .errors import ConfigError, FlannelnodeError

REPO_ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class NodeFile:
    path: str
    mode: str
    size: int
    sha256: str


@dataclass(frozen=True)
class Flanneld:
    """flanneld for one arch, as fetch verified it against release.lock."""

    arch: str
    version: str
    asset: str
    asset_sha256: str
    sha256: str  # of flanneld itself (the asset's, for a bare binary)
    source: str  # where fetch got it, credentials redacted
    pinned: str | None  # release.lock's sha256 for the asset


@dataclass(frozen=True)
class Payload:
    arch: str
    input_digest: str
    tarball_sha256: str
    prefix: str
    files: tuple[NodeFile, ...]


@dataclass(frozen=True)
class Rpm:
    arch: str
    file: str
    sha256: str
    nvr: str
    input_digest: str
    spec_sha256: str
    source_date_epoch: str | None
    signed_sha256: str | None  # the copy build/repo publishes, if it was signed from this one


@dataclass(frozen=True)
class Image:
    target: str  # docker, qemu, amazon-ebs
    arch: str
    inputs: str  # the images step's input digest
    parts: dict[str, str]
    built_at: str | None
    image: str | None = None  # docker tag, AMI ids
    image_id: str | None = None  # docker image id (sha256:...)
    path: str | None = None  # qcow2
    sha256: str | None = None


@dataclass(frozen=True)
class Source:
    """This checkout of flannelnode: its commit, and whether files differ from it."""

    commit: str
    dirty: bool


@dataclass(frozen=True)
class Inventory:
    flannel_version: str
    release: str
    flanneld: tuple[Flanneld, ...]
    payloads: tuple[Payload, ...]
    rpms: tuple[Rpm, ...]
    images: tuple[Image, ...]
    lock_path: str
    lock_sha256: str | None
    source: Source | None
    tools: dict[str, str] = field(default_factory=dict)
    created: int = 0  # SOURCE_DATE_EPOCH, or the time it was gathered

    def payload(self, arch: str) -> Payload | None:
        return next((p for p in self.payloads if p.arch == arch), None)

    def flanneld_for(self, arch: str) -> Flanneld | None:
        return next((f for f in self.flanneld if f.arch == arch), None)


def _json(path: Path, step: str) -> Any:
    """The record, or None if the step has not run."""
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except ValueError:
        raise _malformed(path, step) from None


@contextmanager
def _reading(path: Path, step: str) -> Iterator[None]:
    """A record that is there but not what its step writes stops the SBOM: it would be wrong."""
    try:
        yield
    except (KeyError, TypeError, ValueError, AttributeError):
        raise _malformed(path, step) from None


def _malformed(path: Path, step: str) -> FlannelnodeError:
    return FlannelnodeError(
        f"{path}: not the record `build.py {step}` writes (not JSON, or a field is missing or "
        f"malformed), so the SBOM and provenance cannot say what was built. Run `build.py {step}` "
        "again, then `build.py manifest`."
    )


def _git(*args: str) -> str | None:
    try:
        proc = subprocess.run(
            ["git", "-C", str(REPO_ROOT), *args], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return proc.stdout.strip() if proc.returncode == 0 else None


def source() -> Source | None:
    commit = _git("rev-parse", "--verify", "HEAD")
    if not commit:
        return None
    status = _git("status", "--porcelain", "--untracked-files=no")
    return Source(commit, dirty=bool(status))


def _created() -> int:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(epoch) if epoch.isdigit() else int(time.time())


def _pins(config: Config) -> dict[str, str]:
    try:
        return lock.read(config.fetch.lock).get(config.flannel.version, {})
    except ConfigError:
        return {}


def _flanneld(config: Config, build_dir: Path, arch: str, pins: dict[str, str]) -> Flanneld | None:
    path = build_dir / "fetch" / config.flannel.version / arch / "release.json"
    record = _json(path, "fetch")
    if record is None:
        return None
    with _reading(path, "fetch"):
        return Flanneld(
            arch=arch,
            version=record.get("version", config.flannel.version),
            asset=record["asset"],
            asset_sha256=record["sha256"],
            sha256=record.get("flanneld_sha256") or record["sha256"],
            source=urls.redact(str(record.get("source", ""))),
            pinned=pins.get(record["asset"]),
        )


def _payload(build_dir: Path, arch: str) -> Payload | None:
    path = build_dir / "payload" / arch / "manifest.json"
    manifest = _json(path, "payload")
    if manifest is None:
        return None
    with _reading(path, "payload"):
        return Payload(
            arch=arch,
            input_digest=manifest.get("input_digest", ""),
            tarball_sha256=manifest.get("tarball_sha256", ""),
            prefix=manifest.get("prefix", ""),
            files=tuple(
                NodeFile(f["path"], f["mode"], int(f["size"]), f["sha256"])
                for f in manifest["files"]
            ),
        )


def _signed_copies(build_dir: Path) -> dict[str, str]:
    """build/rpm sha256 -> the sha256 of the signed copy build/repo publishes."""
    path = build_dir / "repo" / "repo.json"
    record = _json(path, "repo")
    if record is None:
        return {}
    with _reading(path, "repo"):
        return {
            p["source_sha256"]: p["sha256"]
            for r in record.get("releases", [])
            for p in r.get("packages", [])
        }


def _rpms(config: Config, build_dir: Path) -> list[Rpm]:
    path = build_dir / "rpm" / "rpm.json"
    record = _json(path, "rpm")
    if record is None:
        return []
    signed = _signed_copies(build_dir)
    with _reading(path, "rpm"):
        return _rpm_entries(config, build_dir, record, signed)


def _rpm_entries(
    config: Config, build_dir: Path, record: dict[str, Any], signed: dict[str, str]
) -> list[Rpm]:
    rpms = []
    for arch in config.flannel.arches:
        entry = record.get(arch)
        if not isinstance(entry, dict) or not (build_dir / "rpm" / entry["file"]).is_file():
            continue
        key = entry.get("key", {})
        rpms.append(
            Rpm(
                arch=arch,
                file=entry["file"],
                sha256=entry["sha256"],
                nvr=entry.get("nvr", ""),
                input_digest=key.get("input_digest", ""),
                spec_sha256=key.get("spec_sha256", ""),
                source_date_epoch=key.get("source_date_epoch"),
                signed_sha256=signed.get(entry["sha256"]),
            )
        )
    return rpms


def _images(build_dir: Path) -> list[Image]:
    images = []
    for path in sorted((build_dir / "images").glob("*.json")):
        if path.name.startswith("."):
            continue
        record = _json(path, "images")
        if record is None:
            continue
        with _reading(path, "images"):
            images.append(
                Image(
                    target=record.get("target", path.stem),  # <target>-<arch>.json
                    arch=record.get("arch", ""),
                    inputs=record["inputs"],
                    parts={k: str(v) for k, v in record.get("parts", {}).items()},
                    built_at=record.get("built_at"),
                    image=record.get("image"),
                    image_id=record.get("image_id"),
                    path=record.get("path"),
                    sha256=record.get("sha256"),
                )
            )
    return images


def gather(config: Config, build_dir: Path, tools: dict[str, str | None]) -> Inventory:
    """tools: name -> version line, as manifest.py found them (None: not installed)."""
    pins = _pins(config)
    arches = config.flannel.arches
    rpms = _rpms(config, build_dir)
    lock_path = config.fetch.lock
    configured = f"{config.flannel.version.removeprefix('v')}-{config.rpm.release}"
    return Inventory(
        flannel_version=config.flannel.version,
        release=rpms[0].nvr if rpms else configured,
        flanneld=tuple(f for a in arches if (f := _flanneld(config, build_dir, a, pins))),
        payloads=tuple(p for a in arches if (p := _payload(build_dir, a))),
        rpms=tuple(rpms),
        images=tuple(_images(build_dir)),
        lock_path=lock_path.name,
        lock_sha256=sha256_file(lock_path) if lock_path.is_file() else None,
        source=source(),
        tools={"flannelnode": __version__, **{k: v for k, v in tools.items() if v}},
        created=_created(),
    )
