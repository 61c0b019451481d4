"""repo: sign the RPMs and publish them as a signed yum repository, incrementally.

build/repo/
  Packages/*.rpm               signed copies of build/rpm/*.rpm (those stay unsigned, reproducible),
                               of the last `repo.keep` releases (version-releases), so that
                               `dnf downgrade` works
  repodata/                    createrepo_c metadata; repomd.xml.asc is its detached signature
  RPM-GPG-KEY-flannelnode      the public key, for gpgkey= and `rpm --import`
  flannelnode.repo             drop into /etc/yum.repos.d/: gpgcheck=1, repo_gpgcheck=1
  repo.json                    what each package was signed from, the key, repomd's digest

A published package is never signed again: its bytes stay what nodes' cached metadata says. A run
that finds nothing to add or drop runs no rpmsign, createrepo_c or gpg and leaves the tree as it is
(repostate.py decides). A run that changes it assembles the whole tree in a temp dir (kept packages
hard-linked after re-hashing them against repo.json) and moves it into place. Package mtimes and
repomd's revision and timestamps come from SOURCE_DATE_EPOCH: the same packages give the same
repomd.xml.

Every new signature is checked with `rpm -K` against a throwaway rpmdb that holds only this public
key: Debian's rpmsign exits 0 without signing when its gpg is misconfigured, and an unsigned RPM
passes a plain `rpm -K` ("digests OK").

What is signed is re-verified first (integrity.py): the stage each RPM was built from, against its
manifest, the fetch record and release.lock (on every run); and each copy about to be signed,
against the sha256 rpm.json recorded and, through its header's file list, against the payload
manifest.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from . import atomic, integrity, payload, repostate
from .cache import sha256_file
from .config import Config
from .errors import ConfigError, FlannelnodeError, IntegrityError
from .payload import MANIFEST, payload_dir
from .progress import Reporter
from .rpm import RECORD, RPM_DIR, RpmError, rpm_dir, run
from .tools import require

KEY_FILE = "RPM-GPG-KEY-flannelnode"
REPO_FILE = "flannelnode.repo"
REPO_ID = "flannelnode"
# The operator must replace it: nodes cannot reach a placeholder, and the .repo file says so.
PLACEHOLDER_BASEURL = "https://repo.invalid/flannelnode"


class SigningError(FlannelnodeError):
    pass


class NoKeyError(SigningError):
    exit_code = ConfigError.exit_code


@dataclass(frozen=True)
class Repo:
    path: Path
    rpms: list[Path]
    repo_file: Path
    key_file: Path | None
    fingerprint: str | None
    signed: bool
    changed: bool = True  # False: nothing was signed, indexed or dropped
    releases: tuple[str, ...] = ()  # the version-releases it holds, oldest first


@dataclass(frozen=True)
class _Gpg:
    home: Path | None
    fingerprint: str
    passphrase_file: Path | None

    def env(self) -> dict[str, str]:
        env = dict(os.environ, LC_ALL="C")
        if self.home is not None:
            env["GNUPGHOME"] = str(self.home)
        return env

    def args(self) -> list[str]:
        args = ["--batch", "--no-tty"]
        if self.passphrase_file is not None:
            args += ["--pinentry-mode", "loopback", "--passphrase-file", str(self.passphrase_file)]
        return args


def _gpg(gpg: _Gpg, *args: str, what: str) -> str:
    try:
        return run(["gpg", *gpg.args(), *args], what, gpg.env())
    except RpmError as exc:
        raise SigningError(_explain(str(exc))) from None


def _explain(message: str) -> str:
    lowered = message.lower()
    if any(
        hint in lowered
        for hint in ("bad passphrase", "no passphrase given", "inappropriate ioctl for device")
    ):
        return (
            f"{message}\nThe signing key needs its passphrase: pass the right one in a file "
            "(--gpg-passphrase-file); nothing was published."
        )
    return message


def _find_key(key: str, home: Path | None, passphrase_file: Path | None) -> _Gpg:
    """One secret key that can sign, by id, fingerprint or user id in `home` (GNUPGHOME)."""
    probe = _Gpg(home, "", passphrase_file)
    proc = subprocess.run(
        ["gpg", "--batch", "--with-colons", "--list-secret-keys", "--", key],
        capture_output=True,
        text=True,
        env=probe.env(),
    )
    where = f"GNUPGHOME={home}" if home else "the default GnuPG home"
    if proc.returncode != 0:
        raise NoKeyError(
            f"no secret key {key!r} in {where}: name a key id, fingerprint or user id that "
            "`gpg --list-secret-keys` shows there (or a key file), or build with --unsigned"
        )
    keys: list[tuple[str, str]] = []  # (fingerprint, capabilities)
    caps = ""
    for line in proc.stdout.splitlines():
        fields = line.split(":")
        if fields[0] == "sec":
            caps = fields[11]
        elif fields[0] == "fpr" and caps:
            keys.append((fields[9], caps))
            caps = ""
    if len(keys) != 1:
        listed = ", ".join(fpr for fpr, _ in keys)
        raise NoKeyError(f"{key!r} matches {len(keys)} secret keys ({listed}): name a fingerprint")
    fingerprint, caps = keys[0]
    if "S" not in caps:
        raise NoKeyError(
            f"key {fingerprint} cannot sign (expired, revoked or no signing subkey; "
            f"capabilities {caps!r})"
        )
    return _Gpg(home, fingerprint, passphrase_file)


def _import_key_file(path: Path, home: Path) -> str:
    """A secret key file goes into a private GNUPGHOME; returns the key's fingerprint."""
    proc = subprocess.run(
        ["gpg", "--batch", "--import-options", "import-show", "--with-colons", "--import", path],
        capture_output=True,
        text=True,
        env=dict(os.environ, GNUPGHOME=str(home), LC_ALL="C"),
    )
    if proc.returncode != 0:
        raise NoKeyError(f"{path}: gpg cannot import it as a key:\n{proc.stderr.strip()}")
    fprs = [f.split(":")[9] for f in proc.stdout.splitlines() if f.startswith("fpr:")]
    if not fprs:
        raise NoKeyError(f"{path}: holds no key")
    return fprs[0]


def _sign_rpms(gpg: _Gpg, rpms: list[Path]) -> None:
    """rpmsign in two processes at once: each re-reads its packages' 40 MB payloads."""
    halves = [rpms[0::2], rpms[1::2]]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for job in [pool.submit(_rpmsign, gpg, half) for half in halves if half]:
            job.result()


def _rpmsign(gpg: _Gpg, rpms: list[Path]) -> None:
    extra = " ".join(shlex.quote(arg) for arg in gpg.args())
    run(
        [
            "rpmsign",
            "--addsign",
            # Debian's rpm names a gpg2 binary that does not exist, and then "signs" nothing.
            "--define",
            "__gpg /usr/bin/gpg",
            "--define",
            f"_gpg_name {gpg.fingerprint}",
            "--define",
            "_gpg_digest_algo sha256",
            "--define",
            f"_gpg_sign_cmd_extra_args {extra}",
            *(["--define", f"_gpg_path {gpg.home}"] if gpg.home else []),
            *map(str, rpms),
        ],
        "rpmsign",
        gpg.env(),
    )


def check_signatures(rpms: list[Path], public_key: Path, work: Path) -> None:
    """Raise SigningError unless every RPM carries a signature that verifies with public_key."""
    db = work / "rpmdb"
    db.mkdir()
    run(["rpm", "--dbpath", str(db), "--import", str(public_key)], "rpm --import")
    with ThreadPoolExecutor(max_workers=2) as pool:
        for job in [pool.submit(_check_signature, rpm, db) for rpm in rpms]:
            job.result()


def _check_signature(rpm: Path, db: Path) -> None:
    proc = subprocess.run(
        ["rpm", "--dbpath", str(db), "-Kv", str(rpm)],
        capture_output=True,
        text=True,
        env=dict(os.environ, LC_ALL="C"),
    )
    lines = [line.strip() for line in proc.stdout.splitlines()]
    signed = [line for line in lines if "Signature, key ID" in line]
    if proc.returncode != 0 or not signed or not all(s.endswith(": OK") for s in signed):
        raise SigningError(
            f"{rpm.name}: signature check failed after rpmsign (`rpm -Kv`):\n"
            + "\n".join(lines[1:] or [proc.stderr.strip()])
            + "\nrpmsign reported success; its gpg setup is wrong. Nothing was published."
        )


@dataclass(frozen=True)
class _Package:
    arch: str
    path: Path
    sha256: str  # as `rpm` recorded it
    manifest: dict[str, Any]
    candidate: repostate.Candidate


def _packages(config: Config, build_dir: Path) -> list[_Package]:
    """The RPMs `rpm` recorded for the configured arches, built from the current, verified stage."""
    out = rpm_dir(build_dir)
    try:
        record = json.loads((out / RECORD).read_text())
    except (OSError, ValueError):
        record = {}
    packages = []
    for arch in config.flannel.arches:
        entry = record.get(arch)
        path = out / entry["file"] if entry else None
        if path is None or not path.is_file():
            raise RpmError(f"no RPM for {arch} in {out}: run `build.py rpm` (or `make rpm`) first")
        try:
            manifest = json.loads((payload_dir(build_dir, arch) / MANIFEST).read_text())
        except (OSError, ValueError):
            manifest = {}
        if (
            not isinstance(manifest, dict)
            or manifest.get("input_digest") != entry["key"]["input_digest"]
        ):
            raise RpmError(
                f"{path.name} was built from another payload than build/payload/{arch}: "
                "run `build.py rpm` (or `make rpm`) again"
            )
        key = entry["key"]
        candidate = repostate.Candidate(
            arch=arch,
            path=path,
            sha256=entry["sha256"],
            nvr=entry["nvr"],
            input_digest=key["input_digest"],
            spec_sha256=key["spec_sha256"],
            source_date_epoch=key.get("source_date_epoch"),
        )
        packages.append(_Package(arch, path, entry["sha256"], manifest, candidate))
    payload.verify_all(config, build_dir, {p.arch: p.manifest for p in packages})
    return packages


def _copy_checked(package: _Package, dst: Path, build_dir: Path) -> None:
    """What is signed is what `rpm` recorded, holding the files of the verified stage."""
    record = rpm_dir(build_dir) / RECORD
    integrity.copy_verified(
        package.path,
        dst,
        package.sha256,
        vouched_by=f"{record} records (written by `build.py rpm`)",
        fix="the package changed after `rpm` made it; nothing was signed. Find out what changed "
        f"it, then remove {package.path} and run `build.py rpm` again.",
    )
    integrity.check_rpm_files(
        dst,
        package.manifest,
        payload_dir(build_dir, package.arch) / MANIFEST,
        f"{package.path} is not what `rpm` made from this payload ({record} rewritten with it?); "
        f"nothing was signed. Find out what changed them, then remove {package.path.parent} and "
        "run `build.py rpm` again.",
    )


def _repo_file(baseurl: str, signed: bool) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(RPM_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return env.get_template(f"{REPO_FILE}.j2").render(
        repo_id=REPO_ID,
        baseurl=baseurl,
        key_file=KEY_FILE,
        signed=signed,
        placeholder=baseurl == PLACEHOLDER_BASEURL,
    )


def _loud(lines: list[str]) -> None:
    """Printed even with --quiet: an unsigned repo must never go unnoticed."""
    bar = "!" * 78
    print("\n".join([bar, *(f"!! {line}" for line in lines), bar]), file=sys.stderr, flush=True)


def _replace_dir(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _revision() -> str:
    """repomd's revision and timestamps: SOURCE_DATE_EPOCH, so the same packages give the same
    repomd.xml; the time of the run without it."""
    epoch = os.environ.get("SOURCE_DATE_EPOCH")
    if not epoch:
        return str(int(time.time()))
    if not epoch.isdigit():
        raise ConfigError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds")
    return epoch


def _key_request(gpg_key: str, gpg_home: Path | None) -> str:
    """The key as configured; a key file by its contents, so moving it changes nothing."""
    path = Path(gpg_key)
    if path.is_file():
        return f"file sha256:{sha256_file(path)}"
    return f"{gpg_key} in {gpg_home or 'the default GnuPG home'}"


def _check_published(out: Path, state: repostate.State) -> None:
    """Cheap, for a run that changes nothing: every published package is there with the size
    (and mtime) it was published with. A run that changes the repository re-hashes them all."""
    for p in state.published():
        path = out / "Packages" / p.file
        try:
            st = path.stat()
        except FileNotFoundError:
            st = None
        if st is None or st.st_size != p.size:
            raise IntegrityError(
                f"{path}: {'missing' if st is None else f'size {st.st_size}'} since "
                f"`build.py repo` published it with size {p.size} ({out / repostate.RECORD}); "
                f"nothing was signed. {_published_fix(out)}"
            )
        if int(st.st_mtime) != p.mtime:
            _restore_mtime(path, p, out)


def _restore_mtime(path: Path, published: repostate.Published, out: Path) -> None:
    """Only the mtime changed (a copy without -t): the recorded one goes back, as createrepo_c
    records it; other bytes are an alarm."""
    digest = sha256_file(path)
    if digest != published.sha256:
        raise IntegrityError(
            f"{path}: sha256 {digest}, but `build.py repo` published it as sha256 "
            f"{published.sha256} ({out / repostate.RECORD}); nothing was signed. "
            + _published_fix(out)
        )
    os.utime(path, (published.mtime, published.mtime))


def _published_fix(out: Path) -> str:
    return (
        f"Find out what changed it; then restore it, or move {out} away and run `build.py repo` "
        "again (the repository then starts over from the current build: older releases are no "
        "longer served)."
    )


def _metadata_intact(out: Path, state: repostate.State, signed: bool) -> bool:
    repomd = out / "repodata" / "repomd.xml"
    if not repomd.is_file() or sha256_file(repomd) != state.repomd_sha256:
        return False
    return not signed or (
        (out / "repodata" / "repomd.xml.asc").is_file() and (out / KEY_FILE).is_file()
    )


def _link_verified(src: Path, dst: Path, published: repostate.Published, out: Path) -> None:
    """A package kept from the published repository, re-hashed against the record first."""
    if not src.is_file():
        raise IntegrityError(
            f"{src}: missing since `build.py repo` published it ({out / repostate.RECORD}); "
            f"nothing was signed. {_published_fix(out)}"
        )
    _restore_mtime(src, published, out)
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)


def _mtime(candidate: repostate.Candidate) -> int:
    """A published package's mtime, which createrepo_c records: its build time when
    SOURCE_DATE_EPOCH fixed that, so a repository made again from the same packages is the same."""
    if candidate.source_date_epoch:
        return int(candidate.source_date_epoch)
    return int(candidate.path.stat().st_mtime)


def _resolve_key(
    gpg_key: str, gpg_home: Path | None, passphrase_file: Path | None, scratch: Path
) -> _Gpg:
    home = gpg_home
    if Path(gpg_key).is_file():
        home = scratch / "gnupg"
        home.mkdir(mode=0o700)
        gpg_key = _import_key_file(Path(gpg_key), home)
    return _find_key(gpg_key, home, passphrase_file)


@dataclass(frozen=True)
class _Run:
    """One `repo` run that changes the repository: where, with what key, which packages."""

    out: Path
    tmp: Path
    scratch: Path
    gpg: _Gpg | None
    build_dir: Path
    built: dict[str, _Package]  # by arch
    old: repostate.State | None
    reporter: Reporter


def _assemble(run_: _Run, plan: repostate.Plan, key_request: str | None) -> repostate.State:
    """The whole new tree in run_.tmp: kept packages linked (re-hashed), new ones signed."""
    packages = run_.tmp / "Packages"
    packages.mkdir()
    old = run_.old.published() if run_.old else []
    for pub in (p for _, pkgs in plan.releases for p in pkgs if isinstance(p, repostate.Published)):
        src = run_.out / "Packages" / pub.file
        _link_verified(src, packages / pub.file, pub, run_.out)
    new = plan.to_sign
    copies = [packages / c.path.name for c in new]
    with ThreadPoolExecutor(max_workers=2) as pool:
        for job in [
            pool.submit(_copy_checked, run_.built[c.arch], copy, run_.build_dir)
            for c, copy in zip(new, copies, strict=True)
        ]:
            job.result()
    gpg = run_.gpg
    if gpg is not None:
        _gpg(
            gpg,
            "--armor",
            "--output",
            str(run_.tmp / KEY_FILE),
            "--export",
            gpg.fingerprint,
            what="gpg --export",
        )
        if copies:
            try:
                _sign_rpms(gpg, copies)
            except RpmError as exc:
                raise SigningError(_explain(str(exc))) from None
            check_signatures(copies, run_.tmp / KEY_FILE, run_.scratch)
            run_.reporter.log(f"repo: signed {len(copies)} RPMs with key {gpg.fingerprint}")
    signed: dict[repostate.Candidate, repostate.Published] = {}
    for cand, copy in zip(new, copies, strict=True):
        mtime = _mtime(cand)
        os.utime(copy, (mtime, mtime))  # after rpmsign, which rewrites the file
        signed[cand] = repostate.published_from(
            cand, copy.name, sha256_file(copy), copy.stat().st_size, mtime
        )
    revision = _revision()
    previous = run_.out / "repodata"
    reuse = (
        ["--update", "--update-md-path", str(previous)]
        if run_.old and old and _metadata_intact(run_.out, run_.old, signed=False)
        else []
    )
    run(
        [
            "createrepo_c",
            "--quiet",
            "--general-compress-type",
            "gz",
            "--revision",
            revision,
            "--set-timestamp-to-revision",
            *reuse,
            str(run_.tmp),
        ],
        "createrepo_c",
    )
    repomd = run_.tmp / "repodata" / "repomd.xml"
    if gpg is not None:
        _gpg(
            gpg,
            "--local-user",
            gpg.fingerprint,
            "--armor",
            "--detach-sign",
            "--output",
            f"{repomd}.asc",
            str(repomd),
            what="gpg --detach-sign repomd.xml",
        )
    releases = [
        repostate.Release(
            nvr, tuple(signed[p] if isinstance(p, repostate.Candidate) else p for p in pkgs)
        )
        for nvr, pkgs in plan.releases
    ]
    return repostate.State(
        signer=gpg.fingerprint if gpg else None,
        key_request=key_request,
        releases=tuple(releases),
        revision=revision,
        repomd_sha256=sha256_file(repomd),
    )


def publish(
    config: Config,
    build_dir: Path,
    reporter: Reporter,
    *,
    gpg_key: str | None,
    gpg_home: Path | None,
    unsigned: bool,
    passphrase_file: Path | None = None,
    baseurl: str | None = None,
) -> Repo:
    """gpg_key: a key id, fingerprint or user id in gpg_home (GNUPGHOME, default gpg's own), or
    the path of an exported secret key file."""
    require("createrepo_c", "rpm")
    if unsigned and gpg_key:
        raise ConfigError("--unsigned and a signing key exclude each other: choose one")
    if not unsigned:
        require("rpmsign", "gpg")
        if not gpg_key:
            raise NoKeyError(
                "signing the repository needs a GPG key (--gpg-key KEYID, or a secret key file); "
                "an unsigned repository only with --unsigned"
            )
        if passphrase_file is not None and not passphrase_file.is_file():
            raise ConfigError(f"{passphrase_file}: no such passphrase file")
    built = _packages(config, build_dir)
    current = [p.candidate for p in built]
    baseurl = (baseurl or PLACEHOLDER_BASEURL).rstrip("/")
    repo_text = _repo_file(baseurl, signed=not unsigned)
    out = build_dir / "repo"
    key_request = None if unsigned else _key_request(gpg_key or "", gpg_home)
    keep = config.repo.keep

    old = repostate.load(out)
    if old is None and out.exists():
        reporter.log(
            f"repo: {out} has no {repostate.RECORD} (an older flannelnode published it): "
            "publishing it anew from the current build"
        )
    if old is not None and (old.signer is None) != unsigned:
        was = "unsigned" if old.signer is None else f"signed with key {old.signer}"
        reporter.log(f"repo: the repository was {was}: starting it over from the current build")
        old = None
    plan = repostate.plan(current, old, keep)
    for cand in plan.rebuilt_kept:
        reporter.log(
            f"repo: {cand.path.name} was rebuilt at another SOURCE_DATE_EPOCH from the same "
            "payload and spec: the published one is kept (same files, nothing signed)"
        )

    result: Repo | None = None
    if old is not None and plan.unchanged(old):
        _check_published(out, old)
        if old.key_request == key_request and _metadata_intact(out, old, signed=not unsigned):
            result = _unchanged(out, old, repo_text, current, reporter)
    if result is None:
        result = _change(
            out, old, plan, current, built, build_dir, reporter, key_request, repo_text,
            gpg_key=gpg_key, gpg_home=gpg_home, passphrase_file=passphrase_file, keep=keep,
        )  # fmt: skip

    if unsigned:
        _loud(
            [
                f"UNSIGNED repository in {out}: packages and metadata carry NO signature.",
                "Its .repo file sets gpgcheck=0: nodes will install whatever is served.",
                "For tests only. Sign with --gpg-key for anything a node will use.",
            ]
        )
    if baseurl == PLACEHOLDER_BASEURL:
        reporter.log(
            f"repo: WARNING: {out / REPO_FILE} has the placeholder baseurl {baseurl}; set the URL "
            "where build/repo/ will be served"
        )
    return result


def _result(
    out: Path, state: repostate.State, current: list[repostate.Candidate], changed: bool
) -> Repo:
    return Repo(
        path=out,
        rpms=[out / "Packages" / c.path.name for c in current],
        repo_file=out / REPO_FILE,
        key_file=out / KEY_FILE if state.signer else None,
        fingerprint=state.signer,
        signed=state.signer is not None,
        changed=changed,
        releases=tuple(r.nvr for r in state.releases),
    )


def _unchanged(
    out: Path,
    state: repostate.State,
    repo_text: str,
    current: list[repostate.Candidate],
    reporter: Reporter,
) -> Repo:
    """Nothing to sign, drop or index: no rpmsign, createrepo_c or gpg; at most the .repo file
    changes (another baseurl)."""
    repo_file = out / REPO_FILE
    changed = not repo_file.is_file() or repo_file.read_text() != repo_text
    if changed:
        atomic.write_text(repo_file, repo_text)
        reporter.log(f"repo: rewrote {repo_file} (another baseurl); nothing signed")
    releases = ", ".join(r.nvr for r in state.releases)
    reporter.log(f"repo: up to date ({len(state.published())} packages of {releases} in {out})")
    return _result(out, state, current, changed)


def _change(
    out: Path,
    old: repostate.State | None,
    plan: repostate.Plan,
    current: list[repostate.Candidate],
    built: list[_Package],
    build_dir: Path,
    reporter: Reporter,
    key_request: str | None,
    repo_text: str,
    *,
    gpg_key: str | None,
    gpg_home: Path | None,
    passphrase_file: Path | None,
    keep: int,
) -> Repo:
    out.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="flannelnode-sign-"))
    tmp: Path | None = None
    gpg: _Gpg | None = None
    try:
        if gpg_key is not None and key_request is not None:
            gpg = _resolve_key(gpg_key, gpg_home, passphrase_file, scratch)
            if old is not None and old.signer != gpg.fingerprint:
                reporter.log(
                    f"repo: the repository was signed with key {old.signer}, this run signs with "
                    f"{gpg.fingerprint}: starting it over from the current build (packages are "
                    "signed by one key)"
                )
                old = None
                plan = repostate.plan(current, None, keep)
            elif old is not None and plan.unchanged(old) and _metadata_intact(out, old, True):
                # the same key, configured another way: only the record changes
                state = dataclasses.replace(old, key_request=key_request)
                atomic.write_text(out / repostate.RECORD, repostate.dump(state))
                return _unchanged(out, state, repo_text, current, reporter)
        tmp = Path(tempfile.mkdtemp(prefix=".repo.", dir=build_dir)).resolve()
        by_arch = {p.arch: p for p in built}
        state = _assemble(
            _Run(out, tmp, scratch, gpg, build_dir, by_arch, old, reporter), plan, key_request
        )
        (tmp / REPO_FILE).write_text(repo_text)
        (tmp / repostate.RECORD).write_text(repostate.dump(state))
        os.chmod(tmp, 0o755)
        _replace_dir(tmp, out)
        tmp = None
    finally:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        if gpg is not None and gpg.home is not None and gpg.home.is_relative_to(scratch):
            subprocess.run(
                ["gpgconf", "--homedir", str(gpg.home), "--kill", "all"], capture_output=True
            )
        shutil.rmtree(scratch, ignore_errors=True)
    if plan.dropped:
        reporter.log(f"repo: dropped {', '.join(plan.dropped)} (keeps the last {keep} releases)")
    releases = ", ".join(r.nvr for r in state.releases)
    reporter.log(f"repo: {len(state.published())} packages of {releases} in {out}")
    return _result(out, state, current, True)
