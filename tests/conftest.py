from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from flannelnode import cli
from flannelnode.config import ENV_OVERRIDES
from flannelnode.progress import Reporter

from .release_server import ReleaseServer

REPO = Path(__file__).resolve().parent.parent
# environment overrides that describe the host, not a test's configuration: kept from the shell
HOST_KNOBS = ("FLANNELNODE_QEMU_ACCEL", "FLANNELNODE_DEBIAN_MIRROR")

# fixtures: a 3-member TLS etcd cluster, and the flanneld stand-in served as a pinned release
pytest_plugins = ["tests.conftest_etcd", "tests.standin_release"]


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """The tests' configuration comes from their own files, never from the caller's shell."""
    for var in [*ENV_OVERRIDES, "XDG_CACHE_HOME"]:
        if var not in HOST_KNOBS:
            monkeypatch.delenv(var, raising=False)
    for var in ("http_proxy", "https_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("FLANNELNODE_BACKOFF", "0.01")


@pytest.fixture
def no_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """No AWS credentials from the caller's shell or home, and no probe of the real metadata
    address; returns the empty home the SDK searches."""
    for var in list(os.environ):
        if var.startswith("AWS_"):
            monkeypatch.delenv(var)
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    return home


def packer_shim(root: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A `packer` first on PATH that records its arguments and fails, so nothing is built.
    Returns the file its calls go to (absent while it was never called)."""
    shim = root / "packer-shim"
    shim.mkdir()
    calls = root / "packer-calls"
    (shim / "packer").write_text(f'#!/bin/sh\necho "$@" >>{calls}\nexit 1\n')
    (shim / "packer").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    return calls


@pytest.fixture
def server() -> Iterator[ReleaseServer]:
    srv = ReleaseServer().start()
    yield srv
    srv.stop()


@dataclass
class Result:
    rc: int
    out: str
    err: str


@dataclass
class Project:
    """A working directory with its own node.toml, lock file, cache and build dir."""

    root: Path
    capsys: pytest.CaptureFixture[str]

    @property
    def lock(self) -> Path:
        return self.root / "release.lock"

    @property
    def cache(self) -> Path:
        return self.root / "cache"

    @property
    def build(self) -> Path:
        return self.root / "build"

    def config(self, text: str = "", **fetch: object) -> None:
        keys = {"lock": "release.lock", "cache_dir": "cache", **fetch}
        lines = ["[fetch]", *(f"{k} = {_toml(v)}" for k, v in keys.items())]
        (self.root / "node.toml").write_text("\n".join(lines) + "\n" + text)

    def pin(self, pins: dict[str, dict[str, str]]) -> None:
        from flannelnode import lock

        lock.write(self.lock, pins)

    def run(self, *args: str) -> Result:
        self.capsys.readouterr()
        rc = cli.main(
            ["--config", str(self.root / "node.toml"), "--build-dir", str(self.build), *args]
        )
        captured = self.capsys.readouterr()
        return Result(rc, captured.out, captured.err)

    def cached(self) -> list[Path]:
        objects = self.cache / "sha256"
        return sorted(objects.iterdir()) if objects.exists() else []

    def built(self) -> list[Path]:
        return (
            sorted(p for p in self.build.rglob("*") if p.is_file()) if self.build.exists() else []
        )


def _toml(value: object) -> str:
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return str(value).lower() if isinstance(value, bool) else str(value)


@pytest.fixture
def project(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> Iterator[Project]:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        yield Project(tmp_path, capsys)
    finally:
        os.chdir(cwd)


@pytest.fixture
def fetched(server, project) -> dict[str, bytes]:
    """amd64 and arm64 flanneld (ELF-headed test bodies) pinned, served and fetched."""
    from .assets import elf, sha

    bodies = {arch: elf(arch) for arch in ("amd64", "arm64")}
    for arch, body in bodies.items():
        server.add("v0.27.4", f"flanneld-{arch}", body)
    project.pin({"v0.27.4": {f"flanneld-{a}": sha(b) for a, b in bodies.items()}})
    project.config(mirror=server.url)
    result = project.run("fetch")
    assert result.rc == 0, result.err
    return bodies


@pytest.fixture(scope="session")
def base_dir() -> Path:
    """The checkout's shared base images (built on first use: minutes, then cached by recipe)."""
    return REPO / "build" / "base"


@pytest.fixture
def quiet() -> Reporter:
    return Reporter(quiet=True)
