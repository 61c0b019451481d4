"""dockerarchive: a root tree -> a one-layer image in the local docker engine, for any arch.

`docker import --platform` is ignored by docker 20.10 (Debian 12's docker.io) unless the daemon
runs experimental, so an imported arm64 tree would be labelled amd64. Instead the image is
written in the format `docker save` makes (manifest.json, the image config, one layer.tar) with
the config's architecture set, and handed to `docker load`, which every engine version takes.
"""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from .errors import FlannelnodeError

CHUNK = 1 << 20


class ArchiveError(FlannelnodeError):
    pass


def image_config(
    arch: str,
    diff_id: str,
    *,
    entrypoint: Sequence[str],
    env: Sequence[str],
    labels: Mapping[str, str],
    created: str,
    created_by: str,
) -> dict:
    """The image config (OCI image-spec config, which docker's is) of a one-layer image."""
    return {
        "architecture": arch,
        "os": "linux",
        "created": created,
        "config": {
            "Entrypoint": list(entrypoint),
            "Cmd": [],
            "Env": list(env),
            "Labels": dict(labels),
        },
        "rootfs": {"type": "layers", "diff_ids": [diff_id]},
        "history": [{"created": created, "created_by": created_by}],
    }


def created_now() -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())


def layer_from_tree(root: Path, out: Path, timeout: float = 600) -> str:
    """tar of root (numeric owners, as the tree holds them) into out; returns its sha256:..."""
    with out.open("wb") as f:
        res = subprocess.run(
            ["tar", "-C", str(root), "--numeric-owner", "-c", "."],
            stdout=f,
            stderr=subprocess.PIPE,
            timeout=timeout,
        )
    if res.returncode != 0:
        raise ArchiveError(f"tar of {root} failed: {res.stderr.decode(errors='replace').strip()}")
    h = hashlib.sha256()
    with out.open("rb") as f:
        while chunk := f.read(CHUNK):
            h.update(chunk)
    return f"sha256:{h.hexdigest()}"


def _add_bytes(tar: tarfile.TarFile, name: str, data: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def load(layer: Path, config: dict, tag: str, timeout: float = 600) -> str:
    """docker load of one layer with config, tagged tag; returns the image id (sha256:...)."""
    config_bytes = json.dumps(config, sort_keys=True, separators=(",", ":")).encode()
    image_id = hashlib.sha256(config_bytes).hexdigest()
    manifest = [
        {"Config": f"{image_id}.json", "RepoTags": [tag], "Layers": [f"{image_id}/layer.tar"]}
    ]
    proc = subprocess.Popen(
        ["docker", "load", "-q"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )  # fmt: skip
    assert proc.stdin is not None
    try:
        with tarfile.open(fileobj=proc.stdin, mode="w|") as tar:
            _add_bytes(tar, f"{image_id}.json", config_bytes)
            tar.add(str(layer), arcname=f"{image_id}/layer.tar")
            _add_bytes(tar, "manifest.json", json.dumps(manifest).encode())
    except BrokenPipeError:
        pass  # docker load stopped reading: its stderr says why
    finally:
        proc.stdin.close()
        proc.stdin = None  # closed: communicate() must not flush it
    try:
        _, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.communicate()
        raise ArchiveError(f"docker load of {tag}: no result in {timeout:g}s") from None
    if proc.returncode != 0:
        raise ArchiveError(f"docker load of {tag} failed: {err.decode(errors='replace').strip()}")
    return f"sha256:{image_id}"
