"""Fixtures that turn the flanneld stand-in into a flannel release, through the product's gates.

`standin_binary` compiles it once per session (tests/standin) as STANDIN_VERSION;
`standin_build(version)` compiles (once per session and version) a stand-in of another flannel
release, for version-dependent behaviour; `standin_release` serves the default one from
the local release server as the bare asset `flanneld-amd64` of STANDIN_VERSION, pins its sha256
in the test project's own release.lock (never the repository's), points the project's config at
the server as its mirror and runs `build.py fetch`: download, sha256 check, ELF check, all real.

Load with `from tests.standin_release import standin_binary, standin_release  # noqa: F401`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from . import standin
from .assets import sha

# >= v0.18, so the seeder writes the v3 API the stand-in reads
STANDIN_VERSION = "v0.27.4"
STANDIN_ASSET = "flanneld-amd64"


@dataclass(frozen=True)
class StandinRelease:
    version: str
    asset: str
    body: bytes
    sha256: str
    mirror: str


@pytest.fixture(scope="session")
def standin_build(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], Path]:
    built: dict[str, Path] = {}

    def build(version: str) -> Path:
        if version not in built:
            out = tmp_path_factory.mktemp(f"standin-{version}") / STANDIN_ASSET
            built[version] = standin.build(out, version=version)
        return built[version]

    return build


@pytest.fixture(scope="session")
def standin_binary(standin_build: Callable[[str], Path]) -> Path:
    return standin_build(STANDIN_VERSION)


def config_text(mirror: str, extra: str = "") -> str:
    """A node.toml body (after the [fetch] lines Project.config writes) for the stand-in."""
    return f'[flannel]\nversion = "{STANDIN_VERSION}"\narches = ["amd64"]\n{extra}'


@pytest.fixture
def standin_release(server, project, standin_binary: Path) -> StandinRelease:
    """The stand-in served, pinned in the test lock, and fetched for amd64."""
    body = standin_binary.read_bytes()
    server.add(STANDIN_VERSION, STANDIN_ASSET, body)
    project.pin({STANDIN_VERSION: {STANDIN_ASSET: sha(body)}})
    project.config(config_text(server.url), mirror=server.url)
    result = project.run("fetch")
    assert result.rc == 0, result.err
    return StandinRelease(STANDIN_VERSION, STANDIN_ASSET, body, sha(body), server.url)


@pytest.fixture(scope="session")
def standin_arm64(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The stand-in compiled for arm64 (aarch64 cross gcc): a real AArch64 program."""
    out = tmp_path_factory.mktemp("standin-arm64") / "flanneld-arm64"
    return standin.build(out, arch="arm64", version=STANDIN_VERSION)


@pytest.fixture
def standin_release_multiarch(
    server, project, standin_binary: Path, standin_arm64: Path
) -> dict[str, StandinRelease]:
    """The stand-in for amd64 and arm64 served, pinned and fetched; arches amd64, arm64."""
    bodies = {"amd64": standin_binary.read_bytes(), "arm64": standin_arm64.read_bytes()}
    for arch, body in bodies.items():
        server.add(STANDIN_VERSION, f"flanneld-{arch}", body)
    project.pin({STANDIN_VERSION: {f"flanneld-{a}": sha(b) for a, b in bodies.items()}})
    project.config(
        f'[flannel]\nversion = "{STANDIN_VERSION}"\narches = ["amd64", "arm64"]\n',
        mirror=server.url,
    )
    result = project.run("fetch")
    assert result.rc == 0, result.err
    return {
        arch: StandinRelease(STANDIN_VERSION, f"flanneld-{arch}", body, sha(body), server.url)
        for arch, body in bodies.items()
    }
