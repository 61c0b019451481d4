"""Fixtures that turn the flanneld stand-in into a flannel release, through the product's gates.

`standin_binary` compiles it once per session (tests/standin); `standin_release` serves it from
the local release server as the bare asset `flanneld-amd64` of STANDIN_VERSION, pins its sha256
in the test project's own release.lock (never the repository's), points the project's config at
the server as its mirror and runs `build.py fetch`: download, sha256 check, ELF check, all real.

Load with `from tests.standin_release import standin_binary, standin_release  # noqa: F401`.
"""

from __future__ import annotations

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
def standin_binary(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return standin.build(tmp_path_factory.mktemp("standin") / STANDIN_ASSET)


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
