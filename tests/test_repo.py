"""repo is incremental and stable: a run with nothing new signs nothing and leaves build/repo
byte-identical, so nodes that cached its metadata still install; a new build adds its packages
beside the last `repo.keep` releases, so nodes can downgrade; repomd.xml is reproducible from
SOURCE_DATE_EPOCH. dnf installs over HTTP from 127.0.0.1, into an installroot (test_rpm's Node).
"""

from __future__ import annotations

import functools
import http.server
import json
import os
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from flannelnode import repo, repostate
from flannelnode.progress import Reporter

from .assets import sha
from .tamper import flip_byte, snapshot
from .test_rpm import (  # noqa: F401 (fixtures; see pyproject.toml for F811)
    EPOCH,
    Node,
    _build,
    _cfg,
    _publish,
    _repo_cli,
    _run,
    _tools,
    built,
    node,
    signed,
    signing_key,
    stub_repo,
)

X86 = "flannel-node-0.27.4-{}.x86_64.rpm"
SIGNING_TOOLS = {"rpmsign", "createrepo_c", "gpg", "gpg2"}


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture
def served(project) -> Iterator[str]:
    """build/repo over HTTP on 127.0.0.1, as a node sees it (the directory may be replaced)."""
    handler = functools.partial(_QuietHandler, directory=str(project.build / "repo"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def tool_calls(monkeypatch) -> list[str]:
    """The name of every program run through subprocess.run, in order."""
    calls: list[str] = []
    real = subprocess.run

    def recording(cmd, *args, **kwargs):
        calls.append(os.path.basename(str(cmd[0])))
        return real(cmd, *args, **kwargs)

    monkeypatch.setattr(subprocess, "run", recording)
    return calls


@pytest.fixture
def other_key(tmp_path_factory) -> Iterator[tuple[Path, str]]:
    home = tmp_path_factory.mktemp("gnupg-other")
    home.chmod(0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    _run("gpg", "--batch", "--passphrase", "", "--quick-gen-key", "other <o@flannelnode.invalid>",
         "rsa2048", "sign", "never", env=env)  # fmt: skip
    listing = _run("gpg", "--with-colons", "--list-secret-keys", env=env).stdout
    yield home, next(line.split(":")[9] for line in listing.splitlines() if line.startswith("fpr:"))
    subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)


def _keep(project, n: int) -> None:
    toml = project.root / "node.toml"
    toml.write_text(toml.read_text() + f"\n[repo]\nkeep = {n}\n")


def _packages(project) -> list[str]:
    return sorted(p.name for p in (project.build / "repo" / "Packages").iterdir())


def test_a_run_with_nothing_new_changes_nothing_and_cached_metadata_still_installs(
    project, built, signing_key, node, served, signed, tool_calls
):
    published = _publish(project, signing_key, baseurl=served)
    node.use(published.repo_file)
    node.dnf("makecache")  # the node caches the metadata (metadata_expire=6h)
    before = snapshot(project.build / "repo")
    signed.clear()
    tool_calls.clear()
    # OpenPGP signature times have one-second resolution: a package signed again within the
    # same second could get the same bytes, and hide a re-signing from dnf
    time.sleep(1.1)

    again = _publish(project, signing_key, baseurl=served)
    used = [c for c in tool_calls if c in SIGNING_TOOLS]

    installed = node.dnf("install", "flannel-node", refresh=False, check=False)
    assert installed.returncode == 0, installed.stdout + installed.stderr
    assert node.rpm_q("-q", "flannel-node").stdout.strip() == "flannel-node-0.27.4-1.x86_64"
    assert snapshot(project.build / "repo") == before  # byte-identical, same modes
    assert signed == [] and used == []  # no rpmsign, createrepo_c or gpg at all
    assert not again.changed and again.rpms == published.rpms

    # through the command line too, and with another baseurl only the .repo file changes
    assert _repo_cli(project, signing_key).rc == 0
    after = snapshot(project.build / "repo")
    assert {k for k in after if after[k] != before[k]} == {"flannelnode.repo"}
    assert signed == []


def test_a_new_release_goes_beside_the_last_ones_and_nodes_can_downgrade(
    project, built, signing_key, node, served, signed
):
    _keep(project, 2)
    first = _publish(project, signing_key, baseurl=served)
    one = (project.build / "repo" / "Packages" / X86.format(1)).read_bytes()
    signed.clear()

    _build(project, release="2")
    second = _publish(project, signing_key, baseurl=served)
    node.use(first.repo_file)
    node.dnf("install", "flannel-node")
    assert node.rpm_q("-q", "flannel-node").stdout.strip() == "flannel-node-0.27.4-2.x86_64"
    node.dnf("downgrade", "flannel-node")
    assert node.rpm_q("-q", "flannel-node").stdout.strip() == "flannel-node-0.27.4-1.x86_64"
    assert [p.name for p in signed] == [X86.format(2), X86.format(2).replace("x86_64", "aarch64")]
    assert (project.build / "repo" / "Packages" / X86.format(1)).read_bytes() == one  # untouched
    assert second.releases == ("0.27.4-1", "0.27.4-2")

    # keep = 2: release 3 pushes release 1 out
    _build(project, release="3")
    third = _publish(project, signing_key, baseurl=served)
    assert third.releases == ("0.27.4-2", "0.27.4-3")
    assert _packages(project) == sorted(
        X86.format(r).replace("x86_64", a) for r in (2, 3) for a in ("x86_64", "aarch64")
    )
    node.dnf("upgrade", "flannel-node")
    assert node.rpm_q("-q", "flannel-node").stdout.strip() == "flannel-node-0.27.4-3.x86_64"
    record = json.loads((project.build / "repo" / "repo.json").read_text())
    assert [r["nvr"] for r in record["releases"]] == ["0.27.4-2", "0.27.4-3"]


def test_repomd_is_reproducible_from_source_date_epoch(project, built, signing_key, signed):
    _publish(project, signing_key)
    repodata = project.build / "repo" / "repodata"
    before = {p.name: p.read_bytes() for p in repodata.iterdir() if p.name != "repomd.xml.asc"}
    assert f"<revision>{EPOCH}</revision>" in before["repomd.xml"].decode()
    mtimes = {p.name: p.stat().st_mtime for p in (project.build / "repo/Packages").iterdir()}
    assert set(mtimes.values()) == {int(EPOCH)}
    signed.clear()

    # the metadata made again (lost, here), at another wall-clock time: the same bytes
    for p in repodata.iterdir():
        p.unlink()
    repodata.rmdir()
    again = _publish(project, signing_key)
    after = {p.name: p.read_bytes() for p in repodata.iterdir() if p.name != "repomd.xml.asc"}
    assert after == before
    assert again.changed and signed == []  # no package signed again

    # a copy that lost the mtimes (cp without -p): they are put back, nothing else changes
    package = project.build / "repo/Packages" / X86.format(1)
    os.utime(package)
    assert not _publish(project, signing_key).changed
    assert package.stat().st_mtime == int(EPOCH)


def test_a_rebuild_at_another_epoch_keeps_the_published_package(
    project, built, signing_key, signed, monkeypatch
):
    _publish(project, signing_key)
    before = snapshot(project.build / "repo")
    signed.clear()
    monkeypatch.setenv("SOURCE_DATE_EPOCH", str(int(EPOCH) + 3600))  # a new commit
    rebuilt = _build(project)
    assert all(b.rebuilt for b in rebuilt)
    again = _publish(project, signing_key)
    assert snapshot(project.build / "repo") == before
    assert not again.changed and signed == []


def test_the_same_release_with_other_contents_is_refused(project, built, signing_key, signed):
    assert _repo_cli(project, signing_key).rc == 0
    before = snapshot(project.build / "repo")
    signed.clear()
    toml = project.root / "node.toml"
    toml.write_text(toml.read_text() + '\n[flanneld]\niface = ["eth1"]\n')
    assert project.run("payload").rc == 0
    _build(project)  # still release 1
    res = _repo_cli(project, signing_key)
    assert res.rc == 2, res.err
    assert X86.format(1) in res.err and "Raise the release" in res.err
    assert "Traceback" not in res.err
    assert signed == [] and snapshot(project.build / "repo") == before
    _build(project, release="2")
    assert _repo_cli(project, signing_key).rc == 0
    assert signed  # release 2 is signed and added


def test_a_changed_published_package_is_an_alarm(project, built, signing_key, signed):
    assert _repo_cli(project, signing_key).rc == 0
    published = project.build / "repo" / "Packages" / X86.format(1)
    before = published.read_bytes()

    # same size and mtime: a run that changes the repository re-hashes what it keeps
    flip_byte(published, offset=-100)
    _build(project, release="2")
    signed.clear()
    res = _repo_cli(project, signing_key)
    assert res.rc == 4, res.err
    assert str(published) in res.err and sha(before) in res.err  # what repo.json recorded
    assert "Traceback" not in res.err
    assert signed == [] and not list(project.build.glob(".repo.*"))
    assert not (project.build / "repo" / "Packages" / X86.format(2)).exists()

    # another size: a run with nothing to add notices it too
    _build(project, release="1")
    with published.open("ab") as f:
        f.write(b"\0")
    res = _repo_cli(project, signing_key)
    assert res.rc == 4, res.err
    assert str(published) in res.err


def test_another_signing_key_starts_the_repository_over(project, built, signing_key, other_key):
    _publish(project, signing_key)
    _build(project, release="2")
    assert _publish(project, signing_key).releases == ("0.27.4-1", "0.27.4-2")
    moved = _publish(project, other_key)
    assert _packages(project) == [X86.format(2).replace("x86_64", "aarch64"), X86.format(2)]
    assert moved.fingerprint == other_key[1] and moved.releases == ("0.27.4-2",)
    record = repostate.load(project.build / "repo")
    assert record is not None and record.signer == other_key[1]


def test_keep_must_be_a_positive_count(project, built):
    _keep(project, 0)
    res = project.run("repo", "--unsigned")
    assert res.rc == 2
    assert "repo.keep" in res.err and "Traceback" not in res.err


def test_an_unsigned_repository_is_incremental_too(project, built, tool_calls):
    def publish() -> repo.Repo:
        return repo.publish(
            _cfg(project),
            project.build,
            Reporter(quiet=True),
            gpg_key=None,
            gpg_home=None,
            unsigned=True,
        )

    publish()
    before = snapshot(project.build / "repo")
    tool_calls.clear()
    again = publish()
    assert "createrepo_c" not in tool_calls
    assert snapshot(project.build / "repo") == before
    assert not again.changed


def test_the_same_key_named_another_way_signs_nothing(project, built, signing_key, signed):
    _publish(project, signing_key)
    before = snapshot(project.build / "repo/Packages")
    signed.clear()
    again = _publish(project, signing_key, gpg_key="test@flannelnode.invalid")  # its user id
    assert signed == [] and not again.changed
    assert snapshot(project.build / "repo/Packages") == before
    record = json.loads((project.build / "repo/repo.json").read_text())
    assert record["key_request"].startswith("test@flannelnode.invalid in ")


def test_a_repository_without_its_record_is_published_anew(project, built, signing_key, signed):
    _publish(project, signing_key)
    (project.build / "repo/repo.json").unlink()  # as an older flannelnode left it
    signed.clear()
    again = _publish(project, signing_key)
    assert again.changed and len(signed) == 2 and again.releases == ("0.27.4-1",)


def test_a_malformed_record_is_an_alarm(project, built, signing_key, signed):
    assert _repo_cli(project, signing_key).rc == 0
    (project.build / "repo/repo.json").write_text('{"format": 1}\n')
    signed.clear()
    res = _repo_cli(project, signing_key)
    assert res.rc == 4 and "repo.json" in res.err and "Traceback" not in res.err
    assert signed == []
