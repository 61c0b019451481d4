"""flannel's release assets: their names and where GitHub (or a mirror of it) serves them."""

from __future__ import annotations

from dataclasses import dataclass

GITHUB_PATH = "flannel-io/flannel/releases/download"


@dataclass(frozen=True)
class Asset:
    version: str
    arch: str
    kind: str  # "binary" | "tarball"

    @property
    def name(self) -> str:
        if self.kind == "tarball":
            return f"flannel-{self.version}-linux-{self.arch}.tar.gz"
        return f"flanneld-{self.arch}"

    def url(self, base: str) -> str:
        """base replaces https://github.com: GitHub itself, or a mirror with GitHub's layout."""
        return f"{base.rstrip('/')}/{GITHUB_PATH}/{self.version}/{self.name}"


def assets(version: str, arches: list[str], kind: str) -> list[Asset]:
    return [Asset(version, arch, kind) for arch in arches]
