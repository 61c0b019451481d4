"""Re-verify what a step is about to package, sign or upload against what earlier steps recorded.

fetch checks flanneld against release.lock, and payload copies exactly what fetch checked. Every
later step reads files in build/ that anything with write access there can change, so payload
(before it calls a stage up to date), rpm, repo and images re-hash what they use:

- the fetch record: its asset hashes to release.lock's pin (for a bare binary, so does flanneld);
- the payload manifest: its flanneld digest is the fetch record's, every other file is what the
  config renders (path, mode, size, sha256);
- the stage: root/ holds exactly the manifest's files, each with the manifest's sha256, size and
  mode; the tarball, where a step ships it, has the manifest's sha256;
- an RPM: the sha256 rpm.json recorded, and a header file list (path, mode, size, sha256) that is
  the payload manifest's. rpm checks the file digests of that header on every node at install.

A mismatch is an IntegrityError (exit 4) naming the file, both digests and what to do. Nothing is
rebuilt behind it: the files stay as found, for whoever looks into how they changed. Cost: one
sha256 pass over the stage (about 30 ms for a 40 MB flanneld with SHA-NI), one `rpm -qp` per RPM.
"""

from __future__ import annotations

import hashlib
import os
import stat
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from . import lock
from .cache import sha256_file
from .errors import FlannelnodeError, IntegrityError
from .fetch import Fetched

CHUNK = 1 << 20  # copy_verified reads this much at a time
SHA256_DIGEST_ALGO = "8"  # rpm's PGPHASHALGO_SHA256, as the spec sets _binary_filedigest_algorithm

# (mode, size, sha256) of one regular file; mode as four octal digits, like the manifest's
FileFacts = tuple[str, int, str]


def _payload_fix(stage: Path) -> str:
    return (
        "Nothing was packaged or signed, and the files are left as they are. Find out what "
        f"changed them, then remove {stage} and run `build.py payload` again (and `build.py rpm` "
        "after it)."
    )


def check_fetched(fetched: Fetched, record: Path, lock_path: Path) -> None:
    """The fetch record must still vouch for what release.lock pins."""
    fix = (
        f"Find out what changed it, then remove {record.parent} and run `build.py fetch` again; "
        "nothing was staged, packaged or signed."
    )
    pin = lock.read(lock_path).get(fetched.version, {}).get(fetched.asset)
    if pin is None:
        raise IntegrityError(
            f"{record}: {fetched.version}/{fetched.asset} is not pinned in {lock_path} any more; "
            f"flannelnode uses only pinned assets. {fix}"
        )
    if fetched.sha256 != pin:
        raise IntegrityError(
            f"{record}: {fetched.asset} recorded as sha256 {fetched.sha256}\n"
            f"  but {lock_path} pins {pin}\n{fix}"
        )
    if fetched.asset.startswith("flanneld-") and fetched.flanneld_sha256 != pin:
        raise IntegrityError(
            f"{record}: flanneld recorded as sha256 {fetched.flanneld_sha256}\n"
            f"  but {lock_path} pins {pin} for {fetched.asset}, the bare binary itself\n{fix}"
        )


def check_stage(
    root: Path,
    manifest: Mapping[str, Any],
    manifest_path: Path,
    fetched: Fetched,
    record: Path,
    *,
    rendered: Mapping[str, FileFacts],
    tarball: Path | None = None,
) -> None:
    """root holds exactly the manifest's files; the manifest holds fetch's flanneld and the
    rendered files (node path -> facts, from the config: all files but flanneld)."""
    stage = root.parent
    expected = _manifest_files(manifest, manifest_path, stage)
    flanneld = f"{manifest['prefix']}/bin/flanneld"
    if (manifest.get("flannel_version"), manifest.get("asset")) != (fetched.version, fetched.asset):
        raise FlannelnodeError(
            f"{stage} was staged from {manifest.get('flannel_version')} "
            f"{manifest.get('asset')}, {record} is {fetched.version} {fetched.asset}: run "
            "`build.py payload` (and `build.py rpm`) again"
        )
    for what, recorded, verified in (
        (flanneld, expected.get(flanneld, ("", 0, ""))[2], fetched.flanneld_sha256),
        (fetched.asset, manifest.get("asset_sha256"), fetched.sha256),
    ):
        if recorded != verified:
            raise IntegrityError(
                f"{manifest_path}: {what} recorded as sha256 {recorded or '(none)'}\n"
                f"  but fetch verified {verified} ({record}, against release.lock)\n"
                + _payload_fix(stage)
            )

    drift = [
        f"  {path}: the manifest records {_facts(expected.get(path))}, the config renders "
        f"{_facts(rendered.get(path))}"
        for path in sorted(set(expected) - {flanneld} | set(rendered))
        if expected.get(path) != rendered.get(path)
    ]
    if drift:
        raise IntegrityError(
            f"{manifest_path} does not record what the config renders:\n"
            + "\n".join(drift)
            + "\n"
            + _payload_fix(stage)
        )

    problems = [
        line
        for path, facts in sorted(_tree(root).items())
        if (line := _compare(f"{root}{path}", facts, expected.pop(path, None), path == flanneld))
    ]
    problems += [f"  {root}{path}: missing" for path in sorted(expected)]
    if tarball is not None:
        want = manifest.get("tarball_sha256")
        got = sha256_file(tarball) if tarball.is_file() else "(missing)"
        if got != want:
            problems.append(f"  {tarball}: sha256 {got}, the manifest says {want or '(none)'}")
    if problems:
        raise IntegrityError(
            f"{stage} does not match {manifest_path}, written by `build.py payload`:\n"
            + "\n".join(problems)
            + "\n"
            + _payload_fix(stage)
        )


def _facts(facts: FileFacts | None) -> str:
    return f"mode {facts[0]}, size {facts[1]}, sha256 {facts[2]}" if facts else "no such file"


def _manifest_files(
    manifest: Mapping[str, Any], manifest_path: Path, stage: Path
) -> dict[str, FileFacts]:
    try:
        if not isinstance(manifest["prefix"], str):
            raise TypeError
        return {
            e["path"]: (f"{int(e['mode'], 8):04o}", int(e["size"]), str(e["sha256"]))
            for e in manifest["files"]
        }
    except (KeyError, TypeError, ValueError):
        raise IntegrityError(
            f"{manifest_path}: not a payload manifest any more (a field is missing or malformed). "
            + _payload_fix(stage)
        ) from None


def _tree(root: Path) -> dict[str, FileFacts | str]:
    """Every non-directory under root: its facts, or what it is instead of a regular file."""
    found: dict[str, FileFacts | str] = {}
    for top, dirs, files in os.walk(root):
        for name in [*dirs, *files]:  # a symlink to a directory is listed, never followed
            path = os.path.join(top, name)
            st = os.lstat(path)
            if stat.S_ISDIR(st.st_mode):
                continue
            node = "/" + os.path.relpath(path, root)
            if stat.S_ISREG(st.st_mode):
                found[node] = (
                    f"{stat.S_IMODE(st.st_mode):04o}",
                    st.st_size,
                    sha256_file(Path(path)),
                )
            else:
                found[node] = "a symlink" if stat.S_ISLNK(st.st_mode) else "not a regular file"
    return found


def _compare(
    path: str, actual: FileFacts | str, wanted: FileFacts | None, pinned: bool = False
) -> str | None:
    """How actual differs from wanted (None: a file the manifest lacks), or None if it does not."""
    if wanted is None:
        digest = f"sha256 {actual[2]}" if isinstance(actual, tuple) else actual
        return f"  {path}: not in the manifest ({digest})"
    if isinstance(actual, str):
        return f"  {path}: {actual}, the manifest says a file with sha256 {wanted[2]}"
    if actual == wanted:
        return None
    (mode, size, digest), (want_mode, want_size, want_digest) = actual, wanted
    diffs = []
    if digest != want_digest:
        vouched = ", which fetch verified against release.lock" if pinned else ""
        diffs.append(f"sha256 {digest}, the manifest says {want_digest}{vouched}")
    if size != want_size:
        diffs.append(f"size {size}, the manifest says {want_size}")
    if mode != want_mode:
        diffs.append(f"mode {mode}, the manifest says {want_mode}")
    return f"  {path}: " + "; ".join(diffs)


def copy_verified(src: Path, dst: Path, sha256: str, *, vouched_by: str, fix: str) -> None:
    """Copy and hash in one pass: dst is exactly sha256, or it is removed and this raises."""
    digest = hashlib.sha256()
    with src.open("rb") as inp, dst.open("wb") as out:
        while chunk := inp.read(CHUNK):
            digest.update(chunk)
            out.write(chunk)
    if digest.hexdigest() != sha256:
        dst.unlink()
        raise IntegrityError(
            f"{src}: sha256 {digest.hexdigest()} is not the {sha256} that {vouched_by}; {fix}"
        )


def check_rpm_files(rpm: Path, manifest: Mapping[str, Any], manifest_path: Path, fix: str) -> None:
    """The package header lists exactly the manifest's files, with their modes, sizes, digests."""
    expected = _manifest_files(manifest, manifest_path, manifest_path.parent)
    problems = [
        line
        for path, facts in sorted(_rpm_files(rpm, fix).items())
        if (line := _compare(path, facts, expected.pop(path, None)))
    ]
    problems += [f"  {path}: missing" for path in sorted(expected)]
    if problems:
        raise IntegrityError(
            f"{rpm.name}: its files are not those of {manifest_path}:\n"
            + "\n".join(problems)
            + "\n"
            + fix
        )


def _rpm_files(rpm: Path, fix: str) -> dict[str, FileFacts | str]:
    """Every non-directory in the package header: its facts, or what it is instead of a file."""
    proc = subprocess.run(
        [
            "rpm",
            "-qp",
            "--nosignature",
            "--qf",
            "%{FILEDIGESTALGO}\n[%{FILEMODES:octal} %{FILESIZES} %{FILEDIGESTS} %{FILENAMES}\n]",
            str(rpm),
        ],
        capture_output=True,
        text=True,
        env=dict(os.environ, LC_ALL="C"),
    )
    lines = proc.stdout.splitlines()
    if proc.returncode != 0 or not lines:
        raise IntegrityError(f"{rpm.name}: rpm cannot read it ({proc.stderr.strip()}). {fix}")
    if lines[0] != SHA256_DIGEST_ALGO:
        raise IntegrityError(
            f"{rpm.name}: its file digests are not sha256 (algorithm {lines[0]}), as `build.py "
            f"rpm` makes them. {fix}"
        )
    found: dict[str, FileFacts | str] = {}
    for line in lines[1:]:
        try:
            mode, size, digest, path = line.split(" ", 3)
            kind, perm, length = stat.S_IFMT(int(mode, 8)), stat.S_IMODE(int(mode, 8)), int(size)
        except ValueError:
            raise IntegrityError(f"{rpm.name}: unreadable file entry {line!r}. {fix}") from None
        if kind == stat.S_IFREG:
            found[path] = (f"{perm:04o}", length, digest)
        elif kind != stat.S_IFDIR:  # directories: the spec owns ours, %dir, with no content
            found[path] = "a symlink" if kind == stat.S_IFLNK else "not a regular file"
    return found
