"""Checks of an OCI image layout archive by the image-spec, without flannelnode's code, and
with skopeo (containers/image), the tool the README pushes it with; nothing leaves the host."""

from __future__ import annotations

import hashlib
import io
import json
import subprocess
import tarfile
from collections.abc import Sequence
from pathlib import Path

from flannelnode.tools import require


def skopeo_reads(archive: Path, tag: str, arches: Sequence[str], tmp_path: Path) -> None:
    """skopeo copies the multi-arch tag into a local OCI directory (the push, minus the
    registry), finds both platforms there, and reads one arch's image by its own name."""
    require("skopeo")
    copied = tmp_path / "copied"
    res = subprocess.run(
        ["skopeo", "copy", "--all", f"oci-archive:{archive}:{tag}", f"oci:{copied}:{tag}"],
        capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    raw = subprocess.run(
        ["skopeo", "inspect", "--raw", f"oci:{copied}:{tag}"],
        capture_output=True, text=True, timeout=120, check=True,
    ).stdout  # fmt: skip
    listed = json.loads(raw)
    assert sorted(m["platform"]["architecture"] for m in listed["manifests"]) == sorted(arches)
    for arch in arches:
        one = subprocess.run(
            ["skopeo", "inspect", f"oci-archive:{archive}:{tag}-{arch}"],
            capture_output=True, text=True, timeout=300, check=True,
        ).stdout  # fmt: skip
        assert json.loads(one)["Architecture"] == arch


def check_oci_archive(path: Path, version: str, image_ids: dict[str, str]) -> str:
    """The layout by the OCI image-spec, read here without flannelnode's code; returns the
    digest of the node tag's index."""
    blobs: dict[str, bytes] = {}
    sizes: dict[str, int] = {}
    with tarfile.open(path) as tar:
        names = tar.getnames()
        layout = json.load(tar.extractfile("oci-layout"))  # type: ignore[arg-type]
        index = json.load(tar.extractfile("index.json"))  # type: ignore[arg-type]
        for member in tar:
            if not member.isfile() or not member.name.startswith("blobs/"):
                continue
            algorithm, hexdigest = member.name.split("/")[1:]
            assert algorithm == "sha256", member.name
            f = tar.extractfile(member)
            assert f is not None
            h = hashlib.sha256()
            head = io.BytesIO()
            while chunk := f.read(1 << 20):
                h.update(chunk)
                if member.size < 1 << 20:
                    head.write(chunk)
            assert h.hexdigest() == hexdigest, f"{member.name} holds sha256:{h.hexdigest()}"
            sizes[f"sha256:{hexdigest}"] = member.size
            blobs[f"sha256:{hexdigest}"] = head.getvalue()
    assert layout == {"imageLayoutVersion": "1.0.0"}
    assert index["schemaVersion"] == 2
    assert index["mediaType"] == "application/vnd.oci.image.index.v1+json"
    assert not [n for n in names if n not in ("oci-layout", "index.json", "blobs")
                and not n.startswith("blobs/")]  # fmt: skip

    def blob(descriptor: dict) -> dict:
        digest = descriptor["digest"]
        assert sizes.get(digest) == descriptor["size"], descriptor
        return json.loads(blobs[digest])

    refs = {d["annotations"]["org.opencontainers.image.ref.name"]: d for d in index["manifests"]}
    assert set(refs) == {version, *(f"{version}-{a}" for a in image_ids)}
    node = refs[version]
    assert node["mediaType"] == "application/vnd.oci.image.index.v1+json"
    node_index = blob(node)
    platforms = {}
    for descriptor in node_index["manifests"]:
        assert descriptor["mediaType"] == "application/vnd.oci.image.manifest.v1+json"
        arch = descriptor["platform"]["architecture"]
        assert descriptor["platform"]["os"] == "linux"
        assert refs[f"{version}-{arch}"]["digest"] == descriptor["digest"]
        assert refs[f"{version}-{arch}"]["platform"] == descriptor["platform"]
        manifest = blob(descriptor)
        assert manifest["schemaVersion"] == 2
        assert manifest["config"]["mediaType"] == "application/vnd.oci.image.config.v1+json"
        assert manifest["config"]["digest"] == image_ids[arch]  # docker's image id
        image_config = blob(manifest["config"])
        assert (image_config["architecture"], image_config["os"]) == (arch, "linux")
        layers = manifest["layers"]
        assert layers and all(
            layer["mediaType"] == "application/vnd.oci.image.layer.v1.tar"
            and sizes.get(layer["digest"]) == layer["size"]
            for layer in layers
        )
        assert [layer["digest"] for layer in layers] == image_config["rootfs"]["diff_ids"]
        platforms[arch] = descriptor["digest"]
    assert set(platforms) == set(image_ids)
    return node["digest"]
