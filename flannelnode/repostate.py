"""What build/repo holds and what the next `repo` run must change: the record and the plan.

build/repo/repo.json records, per release (version-release, oldest first), each published package:
its name, sha256, size and mtime as published, and the build/rpm package it was signed from (its
sha256, payload digest, spec digest, SOURCE_DATE_EPOCH), plus the signing key and the repomd.xml
digest. `plan` compares it with the packages of the current build (build/rpm/rpm.json):

- a package already published from the same bytes is kept as it is (never signed again);
- one of the same version-release, payload and spec, only built at another SOURCE_DATE_EPOCH (a
  new commit), is kept as published: nodes that cached the metadata still find its bytes;
- one of the same version-release with other contents is refused: nodes that have it would never
  upgrade, and those that cached the metadata would fail with "checksum doesn't match";
- a new version-release is added beside the others, and the oldest beyond `keep` are dropped.

Nothing here runs a tool; repo.py signs and publishes what the plan says.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from .errors import EXIT_BAD_INPUT, FlannelnodeError, IntegrityError

RECORD = "repo.json"
FORMAT = 1


class ReleaseConflict(FlannelnodeError):
    """The same version-release with other contents: raise the release (bad input)."""

    exit_code = EXIT_BAD_INPUT


@dataclass(frozen=True)
class Candidate:
    """A package of the current build, as `rpm` recorded it in rpm.json."""

    arch: str
    path: Path
    sha256: str
    nvr: str
    input_digest: str
    spec_sha256: str
    source_date_epoch: str | None


@dataclass(frozen=True)
class Published:
    """A package in build/repo/Packages, and the build/rpm package it was signed from."""

    arch: str
    file: str
    sha256: str
    size: int
    mtime: int
    source_sha256: str
    input_digest: str
    spec_sha256: str
    source_date_epoch: str | None


@dataclass(frozen=True)
class Release:
    nvr: str
    packages: tuple[Published, ...]

    def get(self, arch: str) -> Published | None:
        return next((p for p in self.packages if p.arch == arch), None)


@dataclass(frozen=True)
class State:
    signer: str | None  # the signing key's fingerprint; None: an unsigned repository
    key_request: str | None  # the key as configured (id, user id or file), to notice a change
    releases: tuple[Release, ...] = ()  # oldest first
    revision: str = ""
    repomd_sha256: str = ""

    def published(self) -> list[Published]:
        return [p for r in self.releases for p in r.packages]


@dataclass
class Plan:
    """The releases the repository will hold; Candidates in them are still to be signed."""

    releases: list[tuple[str, list[Published | Candidate]]]
    dropped: list[str] = field(default_factory=list)  # version-releases no longer kept
    rebuilt_kept: list[Candidate] = field(default_factory=list)  # only SOURCE_DATE_EPOCH differs

    @property
    def to_sign(self) -> list[Candidate]:
        return [p for _, pkgs in self.releases for p in pkgs if isinstance(p, Candidate)]

    def unchanged(self, state: State | None) -> bool:
        return state is not None and not self.to_sign and not self.dropped


def load(repo_dir: Path) -> State | None:
    """The record of what build/repo holds; None if there is none (a new repository, or one an
    older flannelnode published, which replaced everything on every run anyway)."""
    path = repo_dir / RECORD
    if not path.exists():
        return None
    try:
        raw = json.loads(path.read_text())
        if raw.get("format") != FORMAT:
            raise ValueError
        return State(
            signer=raw["signer"],
            key_request=raw["key_request"],
            releases=tuple(
                Release(r["nvr"], tuple(Published(**p) for p in r["packages"]))
                for r in raw["releases"]
            ),
            revision=str(raw["revision"]),
            repomd_sha256=raw["repomd_sha256"],
        )
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        raise IntegrityError(
            f"{path}: not the record `build.py repo` writes (unreadable or a field is missing); "
            f"nothing was signed. Find out what changed it, then move {repo_dir} away and run "
            "`build.py repo` again."
        ) from None


def dump(state: State) -> str:
    raw: dict[str, Any] = {
        "format": FORMAT,
        "signer": state.signer,
        "key_request": state.key_request,
        "revision": state.revision,
        "repomd_sha256": state.repomd_sha256,
        "releases": [
            {"nvr": r.nvr, "packages": [asdict(p) for p in r.packages]} for r in state.releases
        ],
    }
    return json.dumps(raw, indent=2) + "\n"


def plan(current: list[Candidate], state: State | None, keep: int) -> Plan:
    """state None: a new repository (none yet, or another signing key) of the current build."""
    releases: list[tuple[str, list[Published | Candidate]]] = [
        (r.nvr, list(r.packages)) for r in (state.releases if state else ())
    ]
    result = Plan(releases)
    for cand in current:
        entry = next((pkgs for nvr, pkgs in releases if nvr == cand.nvr), None)
        if entry is None:
            releases.append((cand.nvr, [cand]))
            continue
        old = next((p for p in entry if p.arch == cand.arch), None)
        if old is None:
            entry.append(cand)
        elif isinstance(old, Published) and old.source_sha256 == cand.sha256:
            continue
        elif isinstance(old, Published) and (old.input_digest, old.spec_sha256) == (
            cand.input_digest,
            cand.spec_sha256,
        ):
            result.rebuilt_kept.append(cand)
        else:
            raise ReleaseConflict(
                f"{cand.path.name} has version-release {cand.nvr}, which the repository already "
                f"publishes with other contents ({old.file}, signed from sha256 "
                f"{old.source_sha256 if isinstance(old, Published) else '?'}, another payload or "
                f"spec). Nodes that have {cand.nvr} would never get it, and those that cached the "
                'metadata would fail with "checksum doesn\'t match". Raise the release '
                "(rpm.release in node.toml, RPM_RELEASE=, or `build.py rpm --release`) and run "
                "`build.py rpm` and `build.py repo` again; nothing was signed."
            )
    while len(releases) > keep:
        nvr, _ = releases.pop(0)
        result.dropped.append(nvr)
    return result


def published_from(cand: Candidate, file: str, sha256: str, size: int, mtime: int) -> Published:
    return Published(
        arch=cand.arch,
        file=file,
        sha256=sha256,
        size=size,
        mtime=mtime,
        source_sha256=cand.sha256,
        input_digest=cand.input_digest,
        spec_sha256=cand.spec_sha256,
        source_date_epoch=cand.source_date_epoch,
    )


def with_releases(state: State, releases: list[Release]) -> State:
    return replace(state, releases=tuple(releases))
