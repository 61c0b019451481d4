"""ociindex on two small real images (amd64 and arm64, loaded into the real docker engine):
the OCI layout archive by the image-spec and as skopeo reads it, rewritten only when an image
changes, and an image of the wrong arch refused."""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flannelnode import dockerarchive, ociindex
from flannelnode.progress import Reporter
from flannelnode.tools import require

from .oci_check import check_oci_archive, skopeo_reads

GCC = {"amd64": "gcc", "arm64": "aarch64-linux-gnu-gcc"}
TAG = "v0.27.4"


def _image(arch: str, work: Path, repository: str, text: str = "") -> ociindex.Platform:
    """A one-layer image of arch: one static program compiled for it."""
    require(GCC[arch], "docker")
    root = work / f"root-{arch}"
    root.mkdir(parents=True)
    src = work / f"hello-{arch}.c"
    src.write_text(f'#include <stdio.h>\nint main(void) {{ puts("{arch}{text}"); return 0; }}\n')
    subprocess.run([GCC[arch], "-static", "-Os", "-o", str(root / "hello"), str(src)], check=True)
    layer = work / f"layer-{arch}.tar"
    diff_id = dockerarchive.layer_from_tree(root, layer)
    config = dockerarchive.image_config(
        arch, diff_id, entrypoint=["/hello"], env=[], labels={},
        created="2026-01-01T00:00:00Z", created_by="test",
    )  # fmt: skip
    tag = f"{repository}:{TAG}-{arch}"
    return ociindex.Platform(arch, tag, dockerarchive.load(layer, config, tag))


@pytest.fixture
def repository() -> Iterator[str]:
    name = f"flannelnode-test/oci-{os.getpid()}"
    yield name
    refs = subprocess.run(
        ["docker", "images", "--format", "{{.Repository}}:{{.Tag}}", name],
        capture_output=True, text=True, timeout=60,
    ).stdout.split()  # fmt: skip
    for ref in refs:
        subprocess.run(["docker", "rmi", "-f", ref], capture_output=True, timeout=120)


def test_both_arches_under_one_tag(tmp_path: Path, repository: str, monkeypatch) -> None:
    platforms = [_image(a, tmp_path / "src", repository) for a in ("arm64", "amd64")]
    build = tmp_path / "build"
    quiet = Reporter(quiet=True)
    record = ociindex.update(build, TAG, platforms, quiet)
    archive = ociindex.archive_path(build, TAG)
    assert archive == build / "images" / f"node-{TAG}.oci.tar"
    assert json.loads(ociindex.record_path(build, TAG).read_text()) == record
    ids = {p.arch: p.image_id for p in platforms}
    assert check_oci_archive(archive, TAG, ids) == record["index_digest"]
    assert [p["arch"] for p in record["platforms"]] == ["amd64", "arm64"]
    skopeo_reads(archive, TAG, ["amd64", "arm64"], tmp_path)
    assert not [p for p in (build / "images").iterdir() if p.name.startswith(".oci.")]

    # unchanged images: not written again
    def must_not_run(*args, **kwargs):
        raise AssertionError("written again")

    with monkeypatch.context() as mp:
        mp.setattr(ociindex, "write", must_not_run)
        assert ociindex.update(build, TAG, list(reversed(platforms)), quiet) == record

    # a new arm64 image: a new archive that holds it
    arm64 = _image("arm64", tmp_path / "src2", repository, text=" again")
    again = ociindex.update(build, TAG, [platforms[1], arm64], quiet)
    assert again["sha256"] != record["sha256"]
    check_oci_archive(archive, TAG, {"amd64": platforms[1].image_id, "arm64": arm64.image_id})


def test_an_image_of_another_arch_is_refused(tmp_path: Path, repository: str) -> None:
    amd64 = _image("amd64", tmp_path / "src", repository)
    claimed = ociindex.Platform("arm64", amd64.image, amd64.image_id)
    build = tmp_path / "build"
    with pytest.raises(ociindex.OciIndexError, match="for linux/amd64, not linux/arm64"):
        ociindex.update(build, TAG, [claimed], Reporter(quiet=True))
    assert not ociindex.archive_path(build, TAG).exists()
    assert not ociindex.record_path(build, TAG).exists()
