"""Which flannel release publishes which arch, as each asset kind, against flannel's own Makefile.

The oracle is not arch.py's table: it is transcribed from the Makefile at every release tag of
flannel-io/flannel (v0.6.0 to v0.28.9). The `release` target builds a bare `flanneld-<arch>` for
each `ARCH=` line; the `tar.gz` target (or `release`'s tarball prerequisite) names each
`flannel-$(TAG)-linux-<arch>.tar.gz`. Reproduce with, in a clone of flannel:

    for t in $(git tag | grep -E '^v0\\.([6-9]|[1-9][0-9])\\.[0-9]+$' | sort -V); do
      git show $t:Makefile | sed -n '/^release:/,/^$/p' | grep -oE '^\\tARCH=[a-z0-9]+'
      git show $t:Makefile | grep -oE 'flannel-\\$\\(TAG\\)-linux-[a-z0-9]+\\.tar\\.gz'
    done
"""

from __future__ import annotations

import pytest

from flannelnode import arch
from flannelnode.config import ConfigError, load

TAGS = [
    "v0.6.0",
    "v0.6.1",
    "v0.6.2",
    "v0.7.0",
    "v0.7.1",
    "v0.8.0",
    "v0.9.0",
    "v0.9.1",
    "v0.10.0",
    "v0.11.0",
    "v0.12.0",
    "v0.13.0",
    "v0.14.0",
    "v0.14.1",
    "v0.15.0",
    "v0.15.1",
    "v0.16.0",
    "v0.16.1",
    "v0.16.2",
    "v0.16.3",
    "v0.17.0",
    "v0.18.0",
    "v0.18.1",
    "v0.19.0",
    "v0.19.1",
    "v0.19.2",
    "v0.20.0",
    "v0.20.1",
    "v0.20.2",
    "v0.21.0",
    "v0.21.1",
    "v0.21.2",
    "v0.21.3",
    "v0.21.4",
    "v0.21.5",
    "v0.22.0",
    "v0.22.1",
    "v0.22.2",
    "v0.22.3",
    "v0.23.0",
    "v0.24.0",
    "v0.24.1",
    "v0.24.2",
    "v0.24.3",
    "v0.24.4",
    "v0.25.0",
    "v0.25.1",
    "v0.25.2",
    "v0.25.3",
    "v0.25.4",
    "v0.25.5",
    "v0.25.6",
    "v0.25.7",
    "v0.26.0",
    "v0.26.1",
    "v0.26.2",
    "v0.26.3",
    "v0.26.4",
    "v0.26.5",
    "v0.26.6",
    "v0.26.7",
    "v0.27.0",
    "v0.27.1",
    "v0.27.2",
    "v0.27.3",
    "v0.27.4",
    "v0.28.0",
    "v0.28.1",
    "v0.28.2",
    "v0.28.3",
    "v0.28.4",
    "v0.28.5",
    "v0.28.6",
    "v0.28.7",
    "v0.28.8",
    "v0.28.9",
]

# From the first tag on, each Makefile publishes the arches listed until the next entry.
BINARIES = {
    "v0.6.0": "amd64 arm arm64 ppc64le",
    "v0.8.0": "amd64 arm arm64 ppc64le s390x",
    "v0.16.2": "amd64 arm arm64 mips64le ppc64le s390x",
    "v0.24.0": "amd64 arm arm64 mips64le ppc64le riscv64 s390x",
    "v0.24.1": "amd64 arm arm64 ppc64le riscv64 s390x",
}
TARBALLS = {
    "v0.6.0": "amd64",
    "v0.7.1": "amd64 arm arm64 ppc64le",
    "v0.8.0": "amd64 arm arm64 ppc64le s390x",
    "v0.16.2": "amd64 arm arm64 mips64le ppc64le s390x",
    "v0.24.0": "amd64 arm arm64 mips64le ppc64le riscv64 s390x",
    "v0.24.1": "amd64 arm arm64 ppc64le riscv64 s390x",
}


# Before v0.6.0 flannel had no Makefile release targets, and its assets had other names.
OLDER = ["v0.5.0", "v0.5.1", "v0.5.2", "v0.5.3", "v0.5.4", "v0.5.5", "v0.5.6"]


def _makefile_says(changes: dict[str, str], tag: str) -> set[str]:
    if tag in OLDER:
        return set()
    listed = [t for t in changes if arch.parse_version(t) <= arch.parse_version(tag)]
    return set(changes[max(listed, key=arch.parse_version)].split())


@pytest.mark.parametrize(("asset", "changes"), [("binary", BINARIES), ("tarball", TARBALLS)])
@pytest.mark.parametrize("tag", OLDER + TAGS)
def test_published_matches_flannels_makefile(tag: str, asset: str, changes: dict) -> None:
    version = arch.parse_version(tag)
    ours = {a.name for a in arch.ARCHES.values() if arch.published(a, version, asset)}
    assert ours == _makefile_says(changes, tag)


def test_every_arch_flannel_ever_published_is_known() -> None:
    ever = set().union(*(set(v.split()) for v in [*BINARIES.values(), *TARBALLS.values()]))
    assert set(arch.ARCHES) == ever


@pytest.mark.parametrize(
    ("toml", "message"),
    [
        (
            'version = "v0.7.0"\nasset = "tarball"\narches = ["arm64"]',
            'v0.7.0 publishes no tarball for arm64; its bare binaries are: asset = "binary"',
        ),
        (
            'version = "v0.24.1"\nasset = "tarball"\narches = ["mips64le"]',
            r"v0.24.1 publishes no tarball for mips64le$",
        ),
        (
            'version = "v0.24.1"\narches = ["amd64", "mips64le"]',
            "v0.24.1 publishes no binary for mips64le",
        ),
        ('version = "v0.16.1"\narches = ["mips64le"]', "v0.16.1 publishes no binary for mips64le"),
        ('version = "v0.7.1"\narches = ["s390x"]', "v0.7.1 publishes no binary for s390x"),
    ],
)
def test_the_config_refuses_an_arch_the_release_lacks(tmp_path, toml: str, message: str) -> None:
    (tmp_path / "node.toml").write_text(f"[flannel]\n{toml}\n")
    with pytest.raises(ConfigError, match=message):
        load(tmp_path / "node.toml", env={})


@pytest.mark.parametrize(
    "toml",
    [
        'version = "v0.6.0"\narches = ["amd64", "arm", "arm64", "ppc64le"]',
        'version = "v0.16.2"\nasset = "tarball"\narches = ["mips64le"]',
        'version = "v0.24.0"\nasset = "tarball"\narches = ["mips64le", "riscv64"]',
        'version = "v0.28.9"\narches = ["amd64", "arm", "arm64", "ppc64le", "riscv64", "s390x"]',
    ],
)
def test_the_config_accepts_what_the_release_has(tmp_path, toml: str) -> None:
    (tmp_path / "node.toml").write_text(f"[flannel]\n{toml}\n")
    load(tmp_path / "node.toml", env={})


@pytest.mark.parametrize(
    "tag", ["0.27.4", "v0.27", "v0.27.4.1", "v0.27.x", "v0.27.-4", "v.27.4", ""]
)
def test_a_malformed_version_is_refused_with_the_expected_form(tag: str) -> None:
    with pytest.raises(ValueError, match=r"must look like v0\.27\.4"):
        arch.parse_version(tag)


def test_v0_6_0_is_the_oldest_release_accepted(tmp_path) -> None:
    (tmp_path / "node.toml").write_text('[flannel]\nversion = "v0.5.6"\narches = ["amd64"]\n')
    with pytest.raises(ConfigError, match=r"older than v0\.6\.0"):
        load(tmp_path / "node.toml", env={})
