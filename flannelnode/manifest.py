"""build/manifest.json: what `make images` made, from what, with which tools; beside it the
same in the formats scanners and admission tools read: build/sbom.cdx.json (CycloneDX, sbom.py)
and build/provenance/*.intoto.json (in-toto / SLSA provenance, provenance.py).

Every step records its own inputs and outputs beside its artifacts (fetch's release.json, the
payload's manifest.json, rpm.json, repo.json, the images' <target>.json, the base's record); this
module only gathers them, so it can run after any subset of steps.
"""

from __future__ import annotations

import hashlib
import json
import platform
import subprocess
import time
from pathlib import Path
from typing import Any

from . import atomic
from .cache import sha256_file
from .config import Config

REPO_ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = (
    "images/*.pkr.hcl",
    "images/provision.sh",
    "images/validate.sh",
    "images/variants/*/*.pkrvars.hcl",
)
TOOLS = {
    "packer": ["packer", "version"],
    "rpmbuild": ["rpmbuild", "--version"],
    "docker": ["docker", "version", "--format", "{{.Server.Version}}"],
    "qemu": ["qemu-system-x86_64", "--version"],
    "createrepo_c": ["createrepo_c", "--version"],
}


def _json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _tool_version(argv: list[str]) -> str | None:
    try:
        proc = subprocess.run(argv, capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    lines = proc.stdout.strip().splitlines()
    return lines[0] if proc.returncode == 0 and lines else None


def gather(config: Config, build_dir: Path) -> dict[str, Any]:
    version = config.flannel.version
    arches: dict[str, Any] = {}
    for arch in config.flannel.arches:
        fetched = _json(build_dir / "fetch" / version / arch / "release.json") or {}
        payload = _json(build_dir / "payload" / arch / "manifest.json") or {}
        arches[arch] = {
            "asset": fetched.get("asset"),
            "asset_sha256": fetched.get("sha256"),
            "source": fetched.get("source"),
            "flanneld_sha256": fetched.get("flanneld_sha256"),
            "payload_digest": payload.get("input_digest"),
        }
    rpm_dir = build_dir / "rpm"
    rpms = {p.name: sha256_file(p) for p in sorted(rpm_dir.glob("*.rpm"))}
    repo = build_dir / "repo" / "repodata" / "repomd.xml"
    repo_record = _json(build_dir / "repo" / "repo.json") or {}
    images = {
        p.stem: _json(p)
        for p in sorted((build_dir / "images").glob("*.json"))
        if not p.name.startswith(".")
    }
    templates = {
        str(p.relative_to(REPO_ROOT)): hashlib.sha256(p.read_bytes()).hexdigest()
        for pattern in TEMPLATES
        for p in sorted(REPO_ROOT.glob(pattern))
    }
    return {
        "flannel_version": version,
        "generated_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "arches": arches,
        "rpms": rpms,
        "repo": {
            "repomd_sha256": sha256_file(repo) if repo.exists() else None,
            "signed": (repo.parent / "repomd.xml.asc").exists(),
            "releases": [r.get("nvr") for r in repo_record.get("releases", [])],
        },
        "base": {p.stem: _json(p) for p in sorted((build_dir / "base").glob("*.json"))},
        "images": images,
        # the multi-arch node tag as an OCI layout archive (ociindex.py), per flannel version
        "oci_index": {
            p.stem: _json(p) for p in sorted((build_dir / "images" / "oci").glob("*.json"))
        },
        "templates": templates,
        "tools": {
            "python": platform.python_version(),
            **{name: _tool_version(argv) for name, argv in TOOLS.items()},
        },
    }


def write(config: Config, build_dir: Path) -> Path:
    from . import inventory, provenance, sbom  # cyclonedx-python-lib: ~0.2 s to import

    manifest = gather(config, build_dir)
    found = inventory.gather(config, build_dir, manifest["tools"])
    text = sbom.render(found)
    atomic.write_text(build_dir / sbom.FILE, text)
    statements = provenance.write(found, build_dir / provenance.DIR)
    manifest["sbom"] = {
        "file": sbom.FILE,
        "format": f"CycloneDX {sbom.SCHEMA.to_version()}",
        "sha256": hashlib.sha256(text.encode()).hexdigest(),
    }
    manifest["provenance"] = {
        f"{provenance.DIR}/{name}": hashlib.sha256(body.encode()).hexdigest()
        for name, body in sorted(statements.items())
    }
    text = json.dumps(manifest, indent=2) + "\n"
    return atomic.write_text(build_dir / "manifest.json", text)
