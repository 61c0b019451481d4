"""ociindex: the node images of one flannel version, every arch, as one OCI image layout archive.

The classic docker image store cannot hold a manifest list, so the multi-arch node tag is written
as a file: build/images/node-<version>.oci.tar, an OCI image layout (oci-layout, index.json,
blobs/sha256/) made from `docker save` of each arch's image. Its index.json lists
- each arch's image manifest, with `platform: {architecture, os}` and the ref name
  `<version>-<arch>` (the docker tag it came from), and
- one image index with the ref name `<version>`: the multi-arch node tag, listing those manifests.
`skopeo copy --all oci-archive:node-<version>.oci.tar:<version> docker://REGISTRY/...:<version>`
pushes the multi-arch tag (README). Layers are stored as `docker save` gives them (uncompressed
tar, the config's diff_ids), so every digest is checked against the image config while copying.

Both `docker save` formats are read through their manifest.json: docker < 25 (legacy: <id>.json,
<layer>/layer.tar) and >= 25 (an OCI layout whose manifest.json points into blobs/).
The archive is rebuilt only when an image id changes (build/images/oci/node-<version>.json).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import shutil
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from .cache import sha256_file
from .errors import FlannelnodeError
from .progress import Reporter

MEDIA_INDEX = "application/vnd.oci.image.index.v1+json"
MEDIA_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
MEDIA_CONFIG = "application/vnd.oci.image.config.v1+json"
MEDIA_LAYER = "application/vnd.oci.image.layer.v1.tar"
REF_NAME = "org.opencontainers.image.ref.name"
FORMAT = "flannelnode oci index 1"  # part of the inputs: a new layout here rewrites the archive
SAVE_TIMEOUT = 1200.0
CHUNK = 1 << 20


class OciIndexError(FlannelnodeError):
    pass


@dataclass(frozen=True)
class Platform:
    arch: str
    image: str  # the docker tag, <repository>:<version>-<arch>
    image_id: str  # sha256:... (the config's digest)


def archive_path(build_dir: Path, version: str) -> Path:
    return build_dir / "images" / f"node-{version}.oci.tar"


def record_path(build_dir: Path, version: str) -> Path:
    return build_dir / "images" / "oci" / f"node-{version}.json"


def _canonical(doc: dict) -> bytes:
    return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def _put(blobs: Path, data: bytes) -> tuple[str, int]:
    digest = hashlib.sha256(data).hexdigest()
    (blobs / digest).write_bytes(data)
    return f"sha256:{digest}", len(data)


def _save(image_id: str, blobs: Path) -> tuple[dict[str, tuple[str, int]], list]:
    """docker save of one image into blobs/ (by content): {member name: (digest, size)}, and
    the save's manifest.json."""
    names: dict[str, tuple[str, int]] = {}
    links: dict[str, str] = {}
    manifest = None
    proc = subprocess.Popen(
        ["docker", "save", image_id], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                name = posixpath.normpath(member.name)
                if member.issym():
                    links[name] = posixpath.normpath(
                        posixpath.join(posixpath.dirname(name), member.linkname)
                    )
                    continue
                if not member.isfile():
                    continue
                src = tar.extractfile(member)
                assert src is not None
                if name == "manifest.json":
                    manifest = json.loads(src.read())
                    continue
                h = hashlib.sha256()
                fd, tmp = tempfile.mkstemp(dir=blobs, prefix=".in.")
                with os.fdopen(fd, "wb") as out:
                    while chunk := src.read(CHUNK):
                        h.update(chunk)
                        out.write(chunk)
                os.replace(tmp, blobs / h.hexdigest())
                names[name] = (f"sha256:{h.hexdigest()}", member.size)
    finally:
        proc.stdout.close()
        try:
            err = proc.stderr.read().decode(errors="replace").strip()
            proc.wait(timeout=SAVE_TIMEOUT)
        except subprocess.TimeoutExpired:
            proc.kill()
            raise OciIndexError(f"docker save {image_id}: no end in {SAVE_TIMEOUT:g}s") from None
    if proc.returncode != 0:
        raise OciIndexError(f"docker save {image_id} failed: {err}")
    if not isinstance(manifest, list) or len(manifest) != 1:
        raise OciIndexError(f"docker save {image_id}: no manifest.json for one image")
    for alias, target in links.items():
        if target in names:
            names[alias] = names[target]
    return names, manifest


def _image(p: Platform, blobs: Path) -> dict:
    """One arch's image into blobs/; returns its manifest's descriptor with the platform."""
    names, [saved] = _save(p.image_id, blobs)
    try:
        config_digest, config_size = names[posixpath.normpath(saved["Config"])]
        layers = [names[posixpath.normpath(layer)] for layer in saved["Layers"]]
    except KeyError as exc:
        raise OciIndexError(f"docker save {p.image}: {exc} is missing from the archive") from None
    if config_digest != p.image_id:
        raise OciIndexError(f"docker save {p.image}: config {config_digest}, not {p.image_id}")
    config = json.loads((blobs / config_digest.removeprefix("sha256:")).read_bytes())
    if config.get("architecture") != p.arch or config.get("os") != "linux":
        raise OciIndexError(
            f"{p.image} is an image for {config.get('os')}/{config.get('architecture')}, "
            f"not linux/{p.arch}"
        )
    diff_ids = config.get("rootfs", {}).get("diff_ids", [])
    if [d for d, _ in layers] != diff_ids:
        raise OciIndexError(f"docker save {p.image}: its layers are not the config's diff_ids")
    manifest = {
        "schemaVersion": 2,
        "mediaType": MEDIA_MANIFEST,
        "config": {"mediaType": MEDIA_CONFIG, "digest": config_digest, "size": config_size},
        "layers": [{"mediaType": MEDIA_LAYER, "digest": d, "size": n} for d, n in layers],
    }
    digest, size = _put(blobs, _canonical(manifest))
    platform = {"architecture": p.arch, "os": "linux"}
    if config.get("variant"):
        platform["variant"] = config["variant"]
    return {"mediaType": MEDIA_MANIFEST, "digest": digest, "size": size, "platform": platform}


def _mtime() -> int:
    epoch = os.environ.get("SOURCE_DATE_EPOCH", "")
    return int(epoch) if epoch.isdigit() else 0


def _tar_layout(layout: Path, out: Path) -> None:
    """Plain, sorted, owned by root, one timestamp: the same layout makes the same bytes."""
    mtime = _mtime()
    with tarfile.open(out, "w", format=tarfile.PAX_FORMAT) as tar:
        for path in sorted(layout.rglob("*")):
            info = tar.gettarinfo(str(path), arcname=str(path.relative_to(layout)))
            info.uid = info.gid = 0
            info.uname = info.gname = ""
            info.mtime = mtime
            info.mode = 0o755 if path.is_dir() else 0o644
            if path.is_file():
                with path.open("rb") as f:
                    tar.addfile(info, f)
            else:
                tar.addfile(info)


def write(out: Path, version: str, platforms: Sequence[Platform], work: Path) -> dict:
    """The OCI layout archive of platforms at out (replaced whole); returns what it holds."""
    layout = work / "layout"
    blobs = layout / "blobs" / "sha256"
    blobs.mkdir(parents=True)
    manifests = [_image(p, blobs) for p in platforms]
    node_index = {"schemaVersion": 2, "mediaType": MEDIA_INDEX, "manifests": manifests}
    index_digest, index_size = _put(blobs, _canonical(node_index))
    top = {
        "schemaVersion": 2,
        "mediaType": MEDIA_INDEX,
        "manifests": [
            {"mediaType": MEDIA_INDEX, "digest": index_digest, "size": index_size,
             "annotations": {REF_NAME: version}},
            *({**m, "annotations": {REF_NAME: f"{version}-{p.arch}"}}
              for m, p in zip(manifests, platforms, strict=True)),
        ],
    }  # fmt: skip
    (layout / "index.json").write_bytes(_canonical(top))
    (layout / "oci-layout").write_bytes(_canonical({"imageLayoutVersion": "1.0.0"}))
    tmp = work / out.name
    _tar_layout(layout, tmp)
    shutil.rmtree(layout)
    digest = sha256_file(tmp)
    out.parent.mkdir(parents=True, exist_ok=True)
    os.replace(tmp, out)
    return {
        "path": str(out),
        "sha256": digest,
        "size": out.stat().st_size,
        "index_digest": index_digest,
        "ref_name": version,
        "platforms": [
            {"arch": p.arch, "image": p.image, "image_id": p.image_id, "manifest": m["digest"]}
            for p, m in zip(platforms, manifests, strict=True)
        ],
    }


def _inputs(version: str, platforms: Sequence[Platform]) -> str:
    parts = [FORMAT, version, *(f"{p.arch} {p.image} {p.image_id}" for p in platforms)]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def update(
    build_dir: Path, version: str, platforms: Sequence[Platform], reporter: Reporter
) -> dict:
    """Write the archive unless the record says it holds these very images; returns the record."""
    platforms = sorted(platforms, key=lambda p: p.arch)
    inputs = _inputs(version, platforms)
    out, path = archive_path(build_dir, version), record_path(build_dir, version)
    try:
        record = json.loads(path.read_text())
    except (OSError, ValueError):
        record = {}
    if (
        record.get("inputs") == inputs
        and out.is_file()
        and out.stat().st_size == record.get("size")
    ):
        reporter.log(f"images oci index: {out.name} up to date")
        return record
    started = time.monotonic()
    arches = ", ".join(p.arch for p in platforms)
    reporter.log(f"images oci index: {out.name} ({arches}) from docker save")
    images_dir = build_dir / "images"
    images_dir.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=".oci.", dir=images_dir))
    try:
        held = write(out, version, platforms, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    record = {
        "inputs": inputs,
        **held,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": round(time.monotonic() - started, 1),
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)
    reporter.log(f"images oci index: {out} in {record['seconds']:.0f}s")
    return record
