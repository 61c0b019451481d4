"""rpm and repo: package contents, rpmlint, reproducibility, signing, and dnf (yum v4) installing,
upgrading and removing flannel-node from the signed repository into an installroot.

Everything is real: rpmbuild, rpmsign, gpg, createrepo_c, dnf. The only test-only piece is a stub
RPM (in a separate, unsigned repo) standing in for systemd, iptables, python3 and dockerd: busybox
as /bin/sh, /dev/null, and systemctl/systemd-tmpfiles scripts that log their arguments, so the
scriptlets really run and the test sees what they did.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import stat
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flannelnode import config as config_mod
from flannelnode import repo, rpm
from flannelnode.progress import Reporter

from .assets import elf, sha
from .tamper import (
    FLANNELD,
    UNIT,
    flip_byte,
    rewrite_manifest,
    snapshot,
    stage_root,
    tampers,
)

EPOCH = "1700000000"
TOOLS = {  # command -> Debian package
    "rpmbuild": "rpm",
    "rpmsign": "rpm",
    "createrepo_c": "createrepo-c",
    "dnf": "dnf",
    "gpg": "gnupg",
    "rpmlint": "rpmlint",
    "busybox": "busybox-static",
}
REPO_ROOT = Path(__file__).resolve().parent.parent
# rpmlint findings caused by the test stand-in for flanneld (an ELF header and random bytes), on
# top of the product's own filters in rpm/flannel-node.rpmlintrc. A real Go flanneld has these.
STANDIN_FILTERS = [
    r"missing-PT_GNU_STACK-section .*/bin/flanneld$",
]
STUB_SPEC = """\
%global debug_package %{nil}
%global __os_install_post %{nil}
%global _build_id_links none
Name: flannelnode-test-stub
Version: 1
Release: 1
Summary: Test-only stand-in for systemd, iptables, python3 and a docker engine
License: MIT
AutoReqProv: no
Provides: systemd
Provides: iptables
Provides: python3
%description
Test only: never shipped.
%install
mkdir -p %{buildroot}/bin %{buildroot}/usr/bin %{buildroot}/usr/lib/systemd %{buildroot}/dev
mkdir -p %{buildroot}/var/log
cp %{busybox} %{buildroot}/bin/sh
ln -s ../../bin/sh %{buildroot}/usr/bin/env
for tool in bin/systemctl bin/systemd-tmpfiles bin/dockerd lib/systemd/systemd-sysctl; do
  printf '#!/bin/sh\\necho "%s $*" >> /var/log/stub-calls\\n' ${tool##*/} > %{buildroot}/usr/$tool
  chmod 755 %{buildroot}/usr/$tool
done
%files
/bin/sh
/usr/bin/env
/usr/bin/systemctl
/usr/bin/systemd-tmpfiles
/usr/bin/dockerd
/usr/lib/systemd/systemd-sysctl
%dir /var/log
%dev(c,1,3) %attr(666,root,root) /dev/null
"""


@pytest.fixture(autouse=True, scope="module")
def _tools() -> None:
    """Fail, never skip: these tests are the proof that `make rpm repo` works."""
    missing = {pkg for cmd, pkg in TOOLS.items() if shutil.which(cmd) is None}
    if missing:
        pytest.fail(f"missing tools: apt-get install {' '.join(sorted(missing))} (make deps)")
    static = subprocess.run(["ldd", shutil.which("busybox")], capture_output=True, text=True)
    if static.returncode == 0:
        pytest.fail("busybox is dynamically linked: apt-get install busybox-static")


def _run(*cmd: str | Path, check: bool = True, **kw) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, **kw)
    if check and proc.returncode != 0:
        pytest.fail(
            f"{' '.join(map(str, cmd))} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


@pytest.fixture(scope="module")
def signing_key(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, str]]:
    """A throwaway GnuPG home with one passphrase-less RSA signing key: (home, fingerprint)."""
    home = tmp_path_factory.mktemp("gnupg")
    home.chmod(0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    _run(
        "gpg",
        "--batch",
        "--passphrase",
        "",
        "--quick-gen-key",
        "flannelnode test <test@flannelnode.invalid>",
        "rsa2048",
        "sign",
        "never",
        env=env,
    )
    listing = _run("gpg", "--with-colons", "--list-secret-keys", env=env).stdout
    fpr = next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    yield home, fpr
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)


@pytest.fixture(scope="module")
def stub_repo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An unsigned repo holding only the stub RPM (for the host arch, busybox is native)."""
    work = tmp_path_factory.mktemp("stub")
    (work / "stub.spec").write_text(STUB_SPEC)
    out = work / "repo"
    _run(
        "rpmbuild",
        "-bb",
        "--quiet",
        "--define",
        f"_topdir {work}/top",
        "--define",
        f"_rpmdir {out}",
        "--define",
        f"busybox {shutil.which('busybox')}",
        work / "stub.spec",
    )
    _run("createrepo_c", "--quiet", out)
    return out


def _cfg(project):
    return config_mod.load(project.root / "node.toml")


def _build(project, release: str = "1") -> list[rpm.Built]:
    return rpm.build(_cfg(project), project.build, Reporter(quiet=True), release=release)


def _publish(project, signing_key, **kw) -> repo.Repo:
    home, fpr = signing_key
    kw.setdefault("baseurl", f"file://{project.build / 'repo'}")
    return repo.publish(
        _cfg(project),
        project.build,
        Reporter(quiet=True),
        gpg_key=kw.pop("gpg_key", fpr),
        gpg_home=home,
        unsigned=kw.pop("unsigned", False),
        **kw,
    )


@pytest.fixture
def built(project, fetched, monkeypatch) -> list[rpm.Built]:
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    assert project.run("payload").rc == 0
    return _build(project)


def _qp(path: Path, fmt: str) -> str:
    return _run("rpm", "-qp", "--qf", fmt, path).stdout


def test_rpm_packages_the_payload_exactly(project, built):
    assert [(b.arch, b.rpm_arch, b.path.name) for b in built] == [
        ("amd64", "x86_64", "flannel-node-0.27.4-1.x86_64.rpm"),
        ("arm64", "aarch64", "flannel-node-0.27.4-1.aarch64.rpm"),
    ]
    for b in built:
        manifest = json.loads((project.build / "payload" / b.arch / "manifest.json").read_text())
        head = _qp(b.path, "%{NAME} %{VERSION} %{RELEASE} %{ARCH} %{BUILDHOST} %{BUILDTIME}")
        assert head == f"flannel-node 0.27.4 1 {b.rpm_arch} flannelnode {EPOCH}"
        rows = _qp(
            b.path,
            "[%{FILEMODES:octal} %{FILEUSERNAME}:%{FILEGROUPNAME} "
            "%{FILEFLAGS:fflags}_ %{FILEDIGESTS} %{FILENAMES}\n]",
        ).splitlines()
        files, dirs = {}, []
        for row in rows:
            mode, owner, flags, *digest, path = row.split()
            assert owner == "root:root", row
            if int(mode, 8) & stat.S_IFDIR:
                dirs.append(path)
            else:
                files[path] = (f"{int(mode, 8) & 0o7777:04o}", flags.rstrip("_"), digest[0])
        licence = "/usr/share/licenses/flannel-node/flannel-LICENSE"
        flags = {"/opt/kubernetes/cfg/flanneld": "cn", "/opt/kubernetes/cfg/net-conf.json": "cn"}
        flags[licence] = "l"  # %license: flannel's licence ships with its binary
        assert files == {
            e["path"]: (e["mode"], flags.get(e["path"], ""), e["sha256"]) for e in manifest["files"]
        }
        assert _run("rpm", "-qpL", b.path).stdout.split() == [licence]
        assert (
            "Apache License"
            in (project.build / "payload" / b.arch / "root" / licence[1:]).read_text()
        )
        # our own directories, none that the filesystem or systemd package owns
        assert dirs == [
            "/opt/kubernetes",
            "/opt/kubernetes/bin",
            "/opt/kubernetes/cfg",
            "/usr/share/flannelnode",
            "/usr/share/flannelnode/docker",
            "/usr/share/licenses/flannel-node",
            "/var/lib/flannelnode",  # the seeder's marker directory (no StateDirectory=)
        ]
        requires = set(_run("rpm", "-qp", "--requires", b.path).stdout.split("\n"))
        assert {"systemd", "iptables", "/usr/bin/dockerd", "python3", "/bin/sh"} <= requires
        assert not any("RichDependencies" in r for r in requires)  # installable by EL7's yum too
        assert _run("rpm", "-qp", "--conflicts", b.path).stdout.split() == ["flannel"]
        scripts = _run("rpm", "-qp", "--scripts", b.path).stdout
        assert "systemctl --no-reload preset flanneld.service" in scripts
        assert "systemd-tmpfiles --create flannel.conf" in scripts
        assert "systemctl --no-reload disable --now flanneld.service" in scripts
        assert "systemctl --no-block try-restart flanneld.service" in scripts
        assert "systemctl restart systemd-modules-load.service" in scripts
        assert "/usr/lib/systemd/systemd-sysctl 90-flannel.conf" in scripts
        for name in ("POSTIN", "PREUN", "POSTUN"):
            body = _qp(b.path, f"%{{{name}}}")
            assert body.rstrip().endswith("exit 0"), name  # never fails a transaction
            assert "%" not in body, name  # no unexpanded macro left


def test_every_flannel_arch_gets_its_rpm_arch(project, server, monkeypatch):
    arches = ["amd64", "arm64", "arm", "ppc64le", "s390x", "riscv64"]
    bodies = {arch: elf(arch) for arch in arches}
    for arch, body in bodies.items():
        server.add("v0.27.4", f"flanneld-{arch}", body)
    project.pin({"v0.27.4": {f"flanneld-{a}": sha(b) for a, b in bodies.items()}})
    project.config(f"[flannel]\narches = {json.dumps(arches)}\n", mirror=server.url)
    assert project.run("fetch").rc == 0
    assert project.run("payload").rc == 0
    built = _build(project)
    assert [_qp(b.path, "%{ARCH}") for b in built] == [
        "x86_64",
        "aarch64",
        "armv7hl",
        "ppc64le",
        "s390x",
        "riscv64",
    ]
    for b in built:
        inside = _run(
            "sh",
            "-c",
            f"rpm2cpio {b.path} | cpio -i --quiet --to-stdout "
            "./opt/kubernetes/bin/flanneld | sha256sum",
        ).stdout.split()[0]
        assert inside == sha(bodies[b.arch])  # not stripped, not touched


def test_rpm_is_reproducible_and_incremental(project, built, monkeypatch):
    first = {b.arch: b.path.read_bytes() for b in built}
    mtimes = {b.arch: b.path.stat().st_mtime_ns for b in built}
    again = _build(project)
    assert not any(b.rebuilt for b in again)
    assert {b.arch: b.path.stat().st_mtime_ns for b in again} == mtimes

    # from scratch, with a payload staged anew (other mtimes): byte-identical
    shutil.rmtree(project.build / "rpm")
    shutil.rmtree(project.build / "payload")
    time.sleep(0.01)
    assert project.run("payload").rc == 0
    rebuilt = _build(project)
    assert all(b.rebuilt for b in rebuilt)
    assert {b.arch: b.path.read_bytes() for b in rebuilt} == first

    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(EPOCH) + 86400))
    later = _build(project)
    assert all(b.rebuilt for b in later)
    assert later[0].path.read_bytes() != first["amd64"]

    two = _build(project, release="2")
    assert [b.path.name for b in two] == [
        "flannel-node-0.27.4-2.x86_64.rpm",
        "flannel-node-0.27.4-2.aarch64.rpm",
    ]
    assert sorted(p.name for p in (project.build / "rpm").iterdir()) == sorted(
        [*(b.path.name for b in two), "rpm.json"]
    )  # the release-1 packages are gone: the repo publishes what rpm.json lists


def test_rpm_needs_the_payload(project, fetched):
    with pytest.raises(rpm.RpmError, match=r"run `build.py payload`"):
        _build(project)
    assert not (project.build / "rpm").exists()


def test_rpm_refuses_an_unsafe_release(project, built):
    with pytest.raises(rpm.RpmError, match="release '1-2'"):
        _build(project, release="1-2")


def test_rpmlint_accepts_only_the_reasoned_filters(project, built, signing_key, tmp_path):
    published = _publish(project, signing_key)
    rc = tmp_path / "test.rpmlintrc"
    rc.write_text(
        (REPO_ROOT / "rpm" / "flannel-node.rpmlintrc").read_text()
        + "".join(f'addFilter(r"{f}")\n' for f in STANDIN_FILTERS)
    )
    spec = tmp_path / "flannel-node.spec"
    manifest = json.loads((project.build / "payload" / "amd64" / "manifest.json").read_text())
    spec.write_text(rpm.render_spec(rpm.spec_context(manifest, "1"), EPOCH))
    # rpmlint checks signatures against ~/.rpmdb (Debian's rpm): a private HOME that trusts the key
    home = tmp_path / "home"
    _run("rpm", "--dbpath", home / ".rpmdb", "--import", published.key_file)
    lint = _run(
        "rpmlint",
        "-r",
        rc,
        *published.rpms,
        spec,
        check=False,
        env=dict(os.environ, HOME=str(home)),
    )
    assert lint.returncode == 0, lint.stdout + lint.stderr
    assert " 0 errors" in lint.stdout, lint.stdout


def _gpg_env(home: Path) -> dict[str, str]:
    return dict(os.environ, GNUPGHOME=str(home))


def test_repo_is_signed_end_to_end(project, built, signing_key, tmp_path):
    fpr = signing_key[1]
    published = _publish(project, signing_key, baseurl="https://repo.example.com/flannel/")
    out = project.build / "repo"
    assert published.signed and published.fingerprint == fpr
    assert sorted(p.name for p in out.iterdir()) == [
        "Packages",
        "RPM-GPG-KEY-flannelnode",
        "flannelnode.repo",
        "repo.json",
        "repodata",
    ]
    # a fresh keyring holding only the exported key verifies the metadata signature
    verifier = tmp_path / "verifier"
    verifier.mkdir(mode=0o700)
    _run("gpg", "--batch", "--import", out / "RPM-GPG-KEY-flannelnode", env=_gpg_env(verifier))
    _run(
        "gpg",
        "--batch",
        "--verify",
        out / "repodata/repomd.xml.asc",
        out / "repodata/repomd.xml",
        env=_gpg_env(verifier),
    )
    subprocess.run(["gpgconf", "--homedir", verifier, "--kill", "all"], capture_output=True)
    db = tmp_path / "rpmdb"
    db.mkdir()
    _run("rpm", "--dbpath", db, "--import", out / "RPM-GPG-KEY-flannelnode")
    for path in published.rpms:
        checked = _run("rpm", "--dbpath", db, "-Kv", path).stdout
        assert f"Signature, key ID {fpr[-8:].lower()}: OK" in checked
    # build/rpm keeps the unsigned, reproducible packages
    for b in built:
        assert "Signature" not in _run("rpm", "-Kv", "--nosignature", b.path).stdout
        assert _qp(b.path, "%{RSAHEADER:pgpsig}") == "(none)"
    repo_file = (out / "flannelnode.repo").read_text()
    for line in (
        "baseurl=https://repo.example.com/flannel",
        "gpgcheck=1",
        "repo_gpgcheck=1",
        "gpgkey=https://repo.example.com/flannel/RPM-GPG-KEY-flannelnode",
    ):
        assert line in repo_file.splitlines()
    assert "PLACEHOLDER" not in repo_file


def test_repo_refuses_rpms_older_than_the_payload(project, built, signing_key, capsys):
    toml = project.root / "node.toml"
    toml.write_text(toml.read_text() + '\n[flanneld]\niface = ["eth1"]\n')
    assert project.run("payload").rc == 0
    with pytest.raises(rpm.RpmError, match=r"another payload than build/payload/amd64"):
        _publish(project, signing_key)
    capsys.readouterr()
    rpm.build(_cfg(project), project.build, Reporter(), release="1")
    assert "keeps version-release 0.27.4-1" in capsys.readouterr().err
    assert _publish(project, signing_key).signed


def test_repo_refuses_to_publish_what_rpmsign_did_not_sign(
    project, built, signing_key, monkeypatch
):
    # what Debian's rpmsign does with a broken gpg setup: nothing, and exit 0
    monkeypatch.setattr(repo, "_sign_rpms", lambda gpg, rpms: None)
    with pytest.raises(repo.SigningError, match="signature check failed"):
        _publish(project, signing_key)
    assert not (project.build / "repo").exists()
    assert not list(project.build.glob(".repo.*"))


def test_repo_key_errors(project, built, signing_key, tmp_path):
    with pytest.raises(repo.NoKeyError, match="needs a GPG key"):
        _publish(project, signing_key, gpg_key=None)
    with pytest.raises(repo.NoKeyError, match=r"no secret key 'nobody@flannelnode\.invalid'"):
        _publish(project, signing_key, gpg_key="nobody@flannelnode.invalid")
    # a key with a passphrase, and the wrong one given
    home = tmp_path / "gnupg-pass"
    home.mkdir(mode=0o700)
    _run(
        "gpg",
        "--batch",
        "--pinentry-mode",
        "loopback",
        "--passphrase",
        "right",
        "--quick-gen-key",
        "pass <pass@flannelnode.invalid>",
        "rsa2048",
        "sign",
        "never",
        env=_gpg_env(home),
    )
    wrong = tmp_path / "wrong"
    wrong.write_text("wrong\n")
    try:
        with pytest.raises(repo.SigningError, match=r"(?s)Bad passphrase.*passphrase"):
            _publish(project, (home, "pass@flannelnode.invalid"), passphrase_file=wrong)
    finally:
        subprocess.run(["gpgconf", "--homedir", home, "--kill", "all"], capture_output=True)
    assert not (project.build / "repo").exists()


def test_unsigned_repo_only_on_request_and_loudly(project, built, capsys):
    capsys.readouterr()
    published = repo.publish(
        _cfg(project),
        project.build,
        Reporter(quiet=True),
        gpg_key=None,
        gpg_home=None,
        unsigned=True,
    )
    assert not published.signed and published.key_file is None
    err = capsys.readouterr().err
    assert "UNSIGNED repository" in err  # even with a quiet reporter
    text = published.repo_file.read_text()
    assert "gpgcheck=0" in text and "UNSIGNED" in text and "PLACEHOLDER" in text
    assert not (published.path / "repodata" / "repomd.xml.asc").exists()


# -- what rpm packages and repo signs is re-verified: the stage against its manifest, fetch and
# release.lock; each RPM against rpm.json and the payload manifest


@tampers
def test_rpm_alarms_on_a_tampered_stage_and_packages_nothing(project, fetched, monkeypatch, tamper):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    assert project.run("payload").rc == 0
    named = tamper(stage_root(project.build))
    res = project.run("rpm")
    assert res.rc == 4, res.err
    assert named in res.err and "Traceback" not in res.err
    assert "`build.py payload` again" in res.err
    assert not (project.build / "rpm").exists()
    assert not list(project.build.glob(".rpm.*"))


def test_rpm_alarms_on_a_manifest_rewritten_to_match_a_changed_unit(project, fetched, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    assert project.run("payload").rc == 0
    flip_byte(stage_root(project.build, "arm64") / UNIT.lstrip("/"), offset=10)
    rewrite_manifest(project.build, "arm64")
    res = project.run("rpm")
    assert res.rc == 4, res.err
    assert UNIT in res.err and "the config renders" in res.err
    assert not (project.build / "rpm").exists()


def test_rpm_refuses_a_stage_of_another_config(project, built):
    toml = project.root / "node.toml"
    toml.write_text(toml.read_text() + '\n[flanneld]\niface = ["eth1"]\n')
    res = project.run("rpm")
    assert res.rc == 1, res.err
    assert "not staged from the current config" in res.err and "`build.py payload`" in res.err


def test_an_up_to_date_rpm_alarms_on_a_stage_tampered_since(project, built):
    before = snapshot(project.build / "rpm")
    flip_byte(stage_root(project.build) / FLANNELD.lstrip("/"))
    res = project.run("rpm")
    assert res.rc == 4, res.err
    assert FLANNELD in res.err
    assert snapshot(project.build / "rpm") == before


def test_rpm_keeps_no_package_of_a_stage_changed_while_rpmbuild_ran(project, fetched, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    assert project.run("payload").rc == 0
    rpmbuild = rpm._rpmbuild

    def tampering(spec, root, rpm_arch, work, epoch):
        if rpm_arch == "aarch64":
            flip_byte(root / FLANNELD.lstrip("/"))
        return rpmbuild(spec, root, rpm_arch, work, epoch)

    monkeypatch.setattr(rpm, "_rpmbuild", tampering)
    res = project.run("rpm")
    assert res.rc == 4, res.err
    assert "flannel-node-0.27.4-1.aarch64.rpm" in res.err and FLANNELD in res.err
    assert "changed while rpmbuild packaged it" in res.err
    assert not list((project.build / "rpm").glob("*.rpm"))
    assert not list(project.build.glob(".rpm.*"))


def _repo_cli(project, signing_key):
    home, fpr = signing_key
    return project.run(
        "repo",
        "--gpg-key",
        fpr,
        "--gpg-home",
        str(home),
        "--baseurl",
        f"file://{project.build / 'repo'}",
    )


@pytest.fixture
def signed(monkeypatch) -> list[Path]:
    """Every RPM rpmsign is asked to sign."""
    calls: list[Path] = []
    sign = repo._sign_rpms

    def recording(gpg, rpms):
        calls.extend(rpms)
        sign(gpg, rpms)

    monkeypatch.setattr(repo, "_sign_rpms", recording)
    return calls


@tampers
def test_repo_alarms_on_a_tampered_stage_and_signs_nothing(
    project, built, signing_key, signed, tamper
):
    rpms = snapshot(project.build / "rpm")
    named = tamper(stage_root(project.build))
    res = _repo_cli(project, signing_key)
    assert res.rc == 4, res.err
    assert named in res.err and "Traceback" not in res.err
    assert signed == []
    assert not (project.build / "repo").exists()
    assert not list(project.build.glob(".repo.*"))
    assert snapshot(project.build / "rpm") == rpms


def test_repo_keeps_the_published_repo_when_the_stage_was_tampered(
    project, built, signing_key, signed
):
    assert _repo_cli(project, signing_key).rc == 0
    published = snapshot(project.build / "repo")
    signed.clear()
    flip_byte(stage_root(project.build, "arm64") / FLANNELD.lstrip("/"))
    res = _repo_cli(project, signing_key)
    assert res.rc == 4, res.err
    assert FLANNELD in res.err and "arm64" in res.err
    assert signed == []
    assert snapshot(project.build / "repo") == published


def test_repo_alarms_on_an_rpm_changed_since_rpm_made_it(project, built, signing_key, signed):
    flip_byte(built[0].path, offset=-100)
    res = _repo_cli(project, signing_key)
    assert res.rc == 4, res.err
    assert built[0].path.name in res.err
    assert built[0].sha256 in res.err and sha(built[0].path.read_bytes()) in res.err
    assert "`build.py rpm`" in res.err
    assert signed == [] and not (project.build / "repo").exists()


def test_repo_alarms_on_an_rpm_of_another_payload_that_rpm_json_vouches_for(
    project, built, signing_key, signed
):
    """rpm.json and the RPM replaced together: the package's own file list is checked."""
    old = {b.arch: b.path.read_bytes() for b in built}
    toml = project.root / "node.toml"
    toml.write_text(toml.read_text() + '\n[flanneld]\niface = ["eth1"]\n')
    assert project.run("payload").rc == 0
    rebuilt = _build(project)
    record_path = project.build / "rpm" / "rpm.json"
    record = json.loads(record_path.read_text())
    for b in rebuilt:
        b.path.write_bytes(old[b.arch])
        record[b.arch]["sha256"] = sha(old[b.arch])
    record_path.write_text(json.dumps(record, indent=2) + "\n")
    res = _repo_cli(project, signing_key)
    assert res.rc == 4, res.err
    assert "/opt/kubernetes/cfg/flanneld" in res.err and rebuilt[0].path.name in res.err
    assert signed == [] and not (project.build / "repo").exists()


# -- dnf (yum v4) against the signed repository, into an installroot


class Node:
    """An installroot that dnf installs into, with our .repo file and the stub repo."""

    def __init__(self, root: Path, reposd: Path, stub_repo: Path) -> None:
        self.root, self.reposd = root, reposd
        reposd.mkdir()
        (reposd / "stub.repo").write_text(
            f"[stub]\nname=test stub\nbaseurl=file://{stub_repo}\ngpgcheck=0\nrepo_gpgcheck=0\n"
        )

    def use(self, repo_file: Path) -> None:
        shutil.copy(repo_file, self.reposd / "flannelnode.repo")

    def dnf(
        self, *args: str, check: bool = True, refresh: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """refresh=False: metadata dnf cached before is used while it is fresh (metadata_expire),
        as on a node between two `dnf makecache` runs."""
        proc = self._dnf(*args, check=check, refresh=refresh)
        # a scriptlet that fails is only a warning to dnf (the transaction goes on, exit 0):
        # "Non-fatal POSTIN scriptlet failure in rpm package ...", rpm's "%post(...) scriptlet
        # failed, exit status 1". Ours must never fail, so any such line fails the test.
        said = proc.stdout + proc.stderr
        assert "scriptlet fail" not in said and "Error in " not in said, said
        return proc

    def _dnf(self, *args: str, check: bool, refresh: bool) -> subprocess.CompletedProcess[str]:
        return _run(
            "dnf",
            "-y",
            f"--installroot={self.root}",
            f"--setopt=reposdir={self.reposd}",
            "--releasever=1",
            *(["--refresh"] if refresh else []),
            "--setopt=install_weak_deps=False",
            "--setopt=clean_requirements_on_remove=False",
            *args,
            check=check,
        )

    def rpm_q(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # Debian's rpm keeps its database in ~/.rpmdb
        return _run("rpm", "--root", self.root, "--dbpath", "/root/.rpmdb", *args, check=check)

    def path(self, node_path: str) -> Path:
        return self.root / node_path.lstrip("/")

    def calls(self) -> list[str]:
        log = self.path("/var/log/stub-calls")
        calls = log.read_text().splitlines() if log.exists() else []
        log.unlink(missing_ok=True)
        return calls


@pytest.fixture
def node(tmp_path, stub_repo) -> Iterator[Node]:
    yield Node(tmp_path / "root", tmp_path / "repos.d", stub_repo)
    # librepo checks repomd.xml.asc with a keyring per repo and leaves a gpg-agent on each
    for pubring in (tmp_path / "root" / "var/cache/dnf").glob("*/pubring"):
        subprocess.run(["gpgconf", "--homedir", pubring, "--kill", "all"], capture_output=True)


def test_dnf_installs_upgrades_and_removes_from_the_signed_repo(project, built, signing_key, node):
    published = _publish(project, signing_key)
    node.use(published.repo_file)
    node.dnf("install", "flannel-node")
    assert node.rpm_q("-q", "flannel-node").stdout.strip() == "flannel-node-0.27.4-1.x86_64"
    sig = node.rpm_q("-q", "--qf", "%{RSAHEADER:pgpsig}", "flannel-node").stdout
    assert f"Key ID {signing_key[1][-16:].lower()}" in sig
    flanneld = node.path("/opt/kubernetes/bin/flanneld")
    assert (
        flanneld.read_bytes()
        == (project.build / "payload/amd64/root/opt/kubernetes/bin/flanneld").read_bytes()
    )
    assert stat.S_IMODE(flanneld.stat().st_mode) == 0o755
    assert stat.S_IMODE(node.path("/opt/kubernetes/cfg/flanneld").stat().st_mode) == 0o644
    # the seeder's marker directory, there from the package itself on any systemd
    assert stat.S_IMODE(node.path("/var/lib/flannelnode").stat().st_mode) == 0o755
    owner = node.rpm_q("-qf", "/var/lib/flannelnode").stdout.strip()
    assert owner == "flannel-node-0.27.4-1.x86_64"
    assert node.calls() == [  # %post ran, through busybox sh
        "systemctl --no-reload preset flanneld.service",
        "systemctl daemon-reload",
        "systemd-tmpfiles --create flannel.conf",
        "systemctl restart systemd-modules-load.service",  # br_netfilter now, not at next boot
        "systemd-sysctl 90-flannel.conf",
    ]

    # the operator edits the config; release 2 changes the packaged config too
    cfg = node.path("/opt/kubernetes/cfg/flanneld")
    edited = cfg.read_text() + "# edited on the node\n"
    cfg.write_text(edited)
    toml = project.root / "node.toml"
    toml.write_text(toml.read_text() + '\n[flanneld]\niface = ["eth1"]\n')
    assert project.run("payload").rc == 0
    _build(project, release="2")
    _publish(project, signing_key)
    node.dnf("upgrade", "flannel-node")
    assert node.rpm_q("-q", "flannel-node").stdout.strip() == "flannel-node-0.27.4-2.x86_64"
    assert cfg.read_text() == edited  # %config(noreplace): the node's edit survives
    assert "--iface=eth1" in node.path("/opt/kubernetes/cfg/flanneld.rpmnew").read_text()
    assert not node.path("/opt/kubernetes/cfg/net-conf.json.rpmnew").exists()  # unchanged
    calls = node.calls()
    assert (
        "systemctl --no-reload preset flanneld.service" not in calls
    )  # an upgrade, not an install
    # never waits for flanneld (it may wait for etcd), and docker is not bound to it
    assert "systemctl --no-block try-restart flanneld.service" in calls

    node.dnf("remove", "flannel-node")
    assert node.rpm_q("-q", "flannel-node", check=False).returncode == 1
    assert not flanneld.exists()
    assert not node.path("/usr/lib/systemd/system/flanneld.service").exists()
    assert not node.path("/usr/share/flannelnode").exists()
    assert node.path("/opt/kubernetes/cfg/flanneld.rpmsave").read_text() == edited
    assert "systemctl --no-reload disable --now flanneld.service" in node.calls()
    assert node.rpm_q("-q", "flannelnode-test-stub").returncode == 0


def _resign_metadata(repo_dir: Path, signing_key) -> None:
    home, fpr = signing_key
    _run("createrepo_c", "--quiet", "--general-compress-type", "gz", repo_dir)
    _run(
        "gpg",
        "--batch",
        "--yes",
        "--local-user",
        fpr,
        "--armor",
        "--detach-sign",
        "--output",
        repo_dir / "repodata/repomd.xml.asc",
        repo_dir / "repodata/repomd.xml",
        env=_gpg_env(home),
    )


def _copy_repo(project, tmp_path: Path, name: str) -> Path:
    copy = tmp_path / name
    shutil.copytree(project.build / "repo", copy)
    text = (copy / "flannelnode.repo").read_text()
    (copy / "flannelnode.repo").write_text(text.replace(str(project.build / "repo"), str(copy)))
    return copy


def test_dnf_refuses_unsigned_tampered_packages_and_metadata(
    project, built, signing_key, node, tmp_path
):
    _publish(project, signing_key)
    x86 = "Packages/flannel-node-0.27.4-1.x86_64.rpm"

    # an unsigned package, in metadata signed with the right key
    unsigned = _copy_repo(project, tmp_path, "unsigned")
    shutil.copy(project.build / "rpm" / Path(x86).name, unsigned / x86)
    _resign_metadata(unsigned, signing_key)
    node.use(unsigned / "flannelnode.repo")
    refused = node.dnf("install", "flannel-node", check=False)
    assert refused.returncode != 0
    assert "is not signed" in refused.stdout + refused.stderr

    # a signed package with one byte changed in its payload, again in re-signed metadata
    tampered = _copy_repo(project, tmp_path, "tampered")
    body = bytearray((tampered / x86).read_bytes())
    body[-100] ^= 0xFF
    (tampered / x86).write_bytes(bytes(body))
    _resign_metadata(tampered, signing_key)
    node.use(tampered / "flannelnode.repo")
    refused = node.dnf("install", "flannel-node", check=False)
    assert refused.returncode != 0
    out = refused.stdout + refused.stderr
    assert "GPG check FAILED" in out, out

    # metadata changed after signing: repo_gpgcheck refuses the repository
    forged = _copy_repo(project, tmp_path, "forged")
    repomd = forged / "repodata/repomd.xml"
    repomd.write_text(repomd.read_text().replace("<revision>", "<revision>1"))
    node.use(forged / "flannelnode.repo")
    refused = node.dnf("install", "flannel-node", check=False)
    assert refused.returncode != 0
    assert node.rpm_q("-q", "flannel-node", check=False).returncode != 0


# -- rpm -Kv's verdicts, on a small package signed twice (header, and header+payload)

TINY_SPEC = """\
Name: tiny
Version: 1
Release: 1
Summary: a package to sign
License: Apache-2.0
BuildArch: noarch
%description
tiny
%install
mkdir -p %{buildroot}/opt/tiny
head -c 65536 /dev/urandom > %{buildroot}/opt/tiny/data
%files
/opt/tiny/data
"""


def _tiny_rpm(tmp_path: Path) -> Path:
    spec = tmp_path / "tiny.spec"
    spec.write_text(TINY_SPEC)
    _run("rpmbuild", "-bb", "--define", f"_topdir {tmp_path / 'top'}", spec)
    return next((tmp_path / "top" / "RPMS" / "noarch").glob("tiny-1-1.noarch.rpm"))


def _sign_v3(rpm_file: Path, home: Path, fpr: str) -> None:
    _run(
        "rpmsign",
        "--addsign",
        "--rpmv3",  # a header signature and a legacy header+payload one
        "--define",
        "__gpg /usr/bin/gpg",
        "--define",
        f"_gpg_name {fpr}",
        "--define",
        f"_gpg_path {home}",
        rpm_file,
    )


def test_one_good_and_one_bad_signature_is_refused(signing_key, tmp_path):
    home, fpr = signing_key
    public = tmp_path / "key.asc"
    public.write_text(_run("gpg", "--armor", "--export", fpr, env=_gpg_env(home)).stdout)
    good = _tiny_rpm(tmp_path)
    _sign_v3(good, home, fpr)
    (tmp_path / "nokeys").mkdir()
    listed = _run(  # no key imported: both show, as NOKEY
        "rpm", "--dbpath", tmp_path / "nokeys", "-Kv", "--nodigest", good, check=False
    ).stdout
    assert len(re.findall(r"Signature, key ID \w+: NOKEY", listed)) == 2, listed
    (tmp_path / "w1").mkdir()
    repo.check_signatures([good], public, tmp_path / "w1")  # both OK: accepted

    # the payload changed after signing: the header signature still verifies, the
    # header+payload one does not (nor does the payload digest)
    bad = tmp_path / "bad.rpm"
    body = bytearray(good.read_bytes())
    body[-100] ^= 0xFF
    bad.write_bytes(bytes(body))
    (tmp_path / "w2").mkdir()
    with pytest.raises(repo.SigningError) as exc:
        repo.check_signatures([good, bad], public, tmp_path / "w2")
    text = str(exc.value)
    assert text.startswith("bad.rpm: signature check failed")
    assert re.search(r"Header V4 RSA/SHA\d+ Signature, key ID \w+: OK", text), text
    assert re.search(r"\n\s*V4 RSA/SHA\d+ Signature, key ID \w+: BAD", text), text
