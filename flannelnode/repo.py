"""repo: sign the RPMs and publish them as a signed yum repository.

build/repo/
  Packages/*.rpm               signed copies of build/rpm/*.rpm (those stay unsigned, reproducible)
  repodata/                    createrepo_c metadata; repomd.xml.asc is its detached signature
  RPM-GPG-KEY-flannelnode      the public key, for gpgkey= and `rpm --import`
  flannelnode.repo             drop into /etc/yum.repos.d/: gpgcheck=1, repo_gpgcheck=1

Every signature is checked with `rpm -K` against a throwaway rpmdb that holds only this public key:
Debian's rpmsign exits 0 without signing when its gpg is misconfigured, and an unsigned RPM passes
a plain `rpm -K` ("digests OK"). The whole tree is assembled in a temp dir and moved into place.

What is signed is re-verified first (integrity.py): the stage each RPM was built from, against its
manifest, the fetch record and release.lock; and each copy about to be signed, against the sha256
rpm.json recorded and, through its header's file list, against the payload manifest.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from . import integrity, payload
from .config import Config
from .errors import ConfigError, FlannelnodeError
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
        packages.append(_Package(arch, path, entry["sha256"], manifest))
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
    shutil.copystat(package.path, dst)
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
    baseurl = (baseurl or PLACEHOLDER_BASEURL).rstrip("/")
    out = build_dir / "repo"
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".repo.", dir=build_dir)).resolve()
    scratch = Path(tempfile.mkdtemp(prefix="flannelnode-sign-"))
    gpg: _Gpg | None = None
    try:
        packages = tmp / "Packages"
        packages.mkdir()
        copies = [packages / package.path.name for package in built]
        with ThreadPoolExecutor(max_workers=2) as pool:
            for job in [
                pool.submit(_copy_checked, package, copy, build_dir)
                for package, copy in zip(built, copies, strict=True)
            ]:
                job.result()
        if not unsigned:
            assert gpg_key is not None
            home = gpg_home
            if Path(gpg_key).is_file():
                home = scratch / "gnupg"
                home.mkdir(mode=0o700)
                gpg_key = _import_key_file(Path(gpg_key), home)
            gpg = _find_key(gpg_key, home, passphrase_file)
            _gpg(
                gpg,
                "--armor",
                "--output",
                str(tmp / KEY_FILE),
                "--export",
                gpg.fingerprint,
                what="gpg --export",
            )
            try:
                _sign_rpms(gpg, copies)
            except RpmError as exc:
                raise SigningError(_explain(str(exc))) from None
            check_signatures(copies, tmp / KEY_FILE, scratch)
            reporter.log(f"repo: signed {len(copies)} RPMs with key {gpg.fingerprint}")
        run(
            ["createrepo_c", "--quiet", "--general-compress-type", "gz", str(tmp)],
            "createrepo_c",
        )
        if gpg is not None:
            repomd = tmp / "repodata" / "repomd.xml"
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
        (tmp / REPO_FILE).write_text(_repo_file(baseurl, signed=gpg is not None))
        os.chmod(tmp, 0o755)
        _replace_dir(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    finally:
        if gpg is not None and gpg.home is not None and gpg.home.is_relative_to(scratch):
            subprocess.run(
                ["gpgconf", "--homedir", str(gpg.home), "--kill", "all"], capture_output=True
            )
        shutil.rmtree(scratch, ignore_errors=True)

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
    reporter.log(f"repo: {len(built)} packages in {out}")
    return Repo(
        path=out,
        rpms=[out / "Packages" / package.path.name for package in built],
        repo_file=out / REPO_FILE,
        key_file=out / KEY_FILE if gpg else None,
        fingerprint=gpg.fingerprint if gpg else None,
        signed=gpg is not None,
    )
