"""fetch and lock against a local GitHub-like release server (127.0.0.1 only)."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import stat
import sys
import tarfile
import threading
import time

import pytest

from flannelnode import lock
from flannelnode.errors import IntegrityError

from .assets import elf, gzip_bomb, release_tarball, sha, tarball
from .procs import BuildPy

V = "v0.27.4"


@pytest.fixture
def release(server, project):
    """Two arches of bare binaries served and pinned; the project points at the server."""
    bodies = {arch: elf(arch) for arch in ("amd64", "arm64")}
    for arch, body in bodies.items():
        server.add(V, f"flanneld-{arch}", body)
    project.pin({V: {f"flanneld-{a}": sha(b) for a, b in bodies.items()}})
    project.config(mirror=server.url, retries=2)
    return bodies


def test_fetch_binaries_for_two_arches(server, project, release):
    res = project.run("fetch")
    assert res.rc == 0, res.err
    for arch, body in release.items():
        out = project.build / "fetch" / V / arch
        flanneld = out / "flanneld"
        assert flanneld.read_bytes() == body
        assert stat.S_IMODE(flanneld.stat().st_mode) == 0o755
        record = json.loads((out / "release.json").read_text())
        assert record["sha256"] == sha(body)
        assert record["source"].endswith(f"/{V}/flanneld-{arch}")
    # GitHub's shape: a 302 from the release path to the object store, both requested
    paths = [p for p, _ in server.requests]
    assert f"/flannel-io/flannel/releases/download/{V}/flanneld-amd64" in paths
    assert f"/objects/{V}/flanneld-amd64" in paths


def test_fetch_tarball(server, project):
    body = release_tarball("amd64")
    server.add(V, f"flannel-{V}-linux-amd64.tar.gz", body)
    project.pin({V: {f"flannel-{V}-linux-amd64.tar.gz": sha(body)}})
    project.config('[flannel]\nasset = "tarball"\narches = ["amd64"]\n', mirror=server.url)
    res = project.run("fetch")
    assert res.rc == 0, res.err
    out = project.build / "fetch" / V / "amd64"
    record = json.loads((out / "release.json").read_text())
    assert record["flanneld_sha256"] == sha((out / "flanneld").read_bytes())
    assert sorted(p.name for p in out.iterdir()) == [
        "README.md",
        "flanneld",
        "mk-docker-opts.sh",
        "release.json",
    ]


def test_verified_cache_hit_needs_no_server(server, project, release):
    assert project.run("fetch").rc == 0
    before = len(server.requests)
    server.stop()
    for p in project.built():
        p.unlink()  # force the unpack to come from the cache, not the up-to-date check
    res = project.run("fetch")
    assert res.rc == 0, res.err
    assert len(server.requests) == before
    assert (project.build / "fetch" / V / "arm64" / "flanneld").read_bytes() == release["arm64"]


@pytest.mark.parametrize("kind", ["binary", "tarball"])
def test_an_already_fetched_flanneld_is_hashed_again(server, project, kind):
    # build/fetch/<tag>/<arch>/flanneld changed since fetch wrote it (same size, same mtime, one
    # byte): the next fetch must notice and put the verified bytes back from the cache
    bodies = {a: elf(a) for a in ("amd64", "arm64")}
    names = {
        a: f"flanneld-{a}" if kind == "binary" else f"flannel-{V}-linux-{a}.tar.gz" for a in bodies
    }
    for a, b in bodies.items():
        server.add(
            V, names[a], b if kind == "binary" else tarball([("flanneld", b, tarfile.REGTYPE)])
        )
    project.pin({V: {names[a]: sha(server.assets[(V, names[a])]) for a in bodies}})
    project.config(f'[flannel]\nasset = "{kind}"\n', mirror=server.url)
    assert project.run("fetch").rc == 0
    requests = len(server.requests)
    out = project.build / "fetch" / V / "amd64" / "flanneld"
    st = out.stat()
    tampered = bytearray(out.read_bytes())
    tampered[-1] ^= 0xFF
    out.write_bytes(bytes(tampered))
    os.utime(out, ns=(st.st_atime_ns, st.st_mtime_ns))
    res = project.run("fetch")
    assert res.rc == 0, res.err
    assert out.read_bytes() == bodies["amd64"]
    assert f"{names['amd64']}: up to date" not in res.err
    assert f"{names['arm64']}: up to date" in res.err
    assert len(server.requests) == requests  # from the cache


def test_corrupted_cache_entry_is_fetched_again(server, project, release):
    assert project.run("fetch", "--arch", "amd64").rc == 0
    entry = project.cache / "sha256" / sha(release["amd64"])
    entry.write_bytes(b"bit rot")
    (project.build / "fetch" / V / "amd64" / "release.json").unlink()
    assert project.run("fetch", "--arch", "amd64").rc == 0
    assert server.hits("flanneld-amd64") == 4  # 302 + object, twice
    assert entry.read_bytes() == release["amd64"]


def test_tampered_asset_fails_and_leaves_nothing(server, project, release):
    server.add(V, "flanneld-arm64", elf("arm64"))  # not the pinned bytes
    res = project.run("fetch", "--arch", "arm64")
    assert res.rc == 4
    assert "sha256 mismatch" in res.err
    assert sha(release["arm64"]) in res.err
    assert sha(server.assets[(V, "flanneld-arm64")]) in res.err
    assert f"{server.url}/flannel-io/flannel/releases/download/{V}/flanneld-arm64" in res.err
    assert project.cached() == [] and project.built() == []
    assert list((project.cache / "partial").iterdir()) == []
    assert "Traceback" not in res.err


@pytest.mark.parametrize("tampered", ["amd64", "arm64"])
def test_two_arches_failing_differently_exit_with_the_gravest(server, project, tampered):
    # one arch's asset is tampered with (integrity, exit 4), the other's is missing (404, a
    # failure, exit 1): both are reported, and the exit code is the alarm's, in either order
    missing = "arm64" if tampered == "amd64" else "amd64"
    pinned = {a: elf(a) for a in ("amd64", "arm64")}
    server.add(V, f"flanneld-{tampered}", elf(tampered))  # not the pinned bytes
    project.pin({V: {f"flanneld-{a}": sha(b) for a, b in pinned.items()}})
    project.config(mirror=server.url, retries=0)
    res = project.run("fetch")
    assert res.rc == 4, res.err
    assert f"sha256 mismatch for flanneld-{tampered}" in res.err
    assert "404" in res.err and f"flanneld-{missing}" in res.err
    assert project.built() == []
    _nothing_kept(project)


def test_truncated_body_is_retried_then_fails_cleanly(server, project, release):
    server.faults["flanneld-amd64"] = ["cut"] * 3  # every attempt (retries = 2) is cut short
    res = project.run("fetch", "--arch", "amd64")
    assert res.rc == 1
    assert "gave up after 3 attempts" in res.err
    assert "flanneld-amd64" in res.err
    assert project.cached() == [] and project.built() == []


def test_http_404_is_not_retried(server, project, release):
    server.faults["flanneld-amd64"] = ["404"]
    res = project.run("fetch", "--arch", "amd64")
    assert res.rc == 1
    assert "HTTP 404" in res.err
    assert server.hits("flanneld-amd64") == 2  # the redirect and one object request
    assert project.built() == []


def test_http_500_then_success(server, project, release):
    server.faults["flanneld-amd64"] = ["500"]
    res = project.run("fetch", "--arch", "amd64")
    assert res.rc == 0, res.err
    assert "HTTP 500" in res.err  # the retry is reported
    assert (project.build / "fetch" / V / "amd64" / "flanneld").read_bytes() == release["amd64"]


def test_connection_cut_mid_body_resumes_with_range(server, project, release):
    body = elf("amd64", size=4 << 20)  # several read chunks, so the cut leaves a partial file
    server.add(V, "flanneld-amd64", body)
    project.pin({V: {"flanneld-amd64": sha(body)}})
    server.faults["flanneld-amd64"] = ["cut"]
    res = project.run("fetch", "--arch", "amd64")
    assert res.rc == 0, res.err
    assert _ranges(server) == [f"bytes={len(body) // 2}-"]  # every byte received was kept
    assert re.search(r"flanneld-amd64: 3\.\d of 4\.0 MiB", res.err)  # plain lines off a terminal
    assert (project.build / "fetch" / V / "amd64" / "flanneld").read_bytes() == body


def _ranges(server) -> list[str]:
    return [r for p, r in server.requests if p.startswith("/objects/") and r]


@pytest.mark.parametrize("cut", [1000, 256 * 1024 - 1, 300_001, 2 * 256 * 1024 + 7])
def test_resume_starts_at_the_exact_byte_received(server, project, release, cut):
    # a cut inside the first read chunk, or after a whole chunk plus a few bytes: nothing dropped
    body = elf("amd64", size=1 << 20)
    server.add(V, "flanneld-amd64", body)
    project.pin({V: {"flanneld-amd64": sha(body)}})
    server.faults["flanneld-amd64"] = [f"cut@{cut}"]
    res = project.run("fetch", "--arch", "amd64")
    assert res.rc == 0, res.err
    assert _ranges(server) == [f"bytes={cut}-"]
    assert server.sent["flanneld-amd64"] == len(body)  # not one byte served twice
    assert (project.build / "fetch" / V / "amd64" / "flanneld").read_bytes() == body


def test_server_ignoring_range_restarts_cleanly(server, project, release):
    # the cut leaves 32 KiB in the partial file, so the retry really asks for a range; the
    # server answers 200 with the whole body, which must replace the partial, not extend it
    server.faults["flanneld-amd64"] = ["cut", "ignore-range"]
    res = project.run("fetch", "--arch", "amd64")
    assert res.rc == 0, res.err
    assert _ranges(server) == [f"bytes={len(release['amd64']) // 2}-"]
    assert server.downloads("flanneld-amd64") == 2
    assert (project.build / "fetch" / V / "amd64" / "flanneld").read_bytes() == release["amd64"]
    assert list((project.cache / "partial").iterdir()) == []


HOSTILE = {
    "dotdot": [("../flanneld", elf("amd64"), tarfile.REGTYPE)],
    "absolute": [("/usr/bin/flanneld", elf("amd64"), tarfile.REGTYPE)],
    "symlink": [
        ("flanneld", b"/etc/passwd", tarfile.SYMTYPE),
        ("README.md", b"x", tarfile.REGTYPE),
    ],
    # links to a member inside the archive: tarfile would follow them to an ELF and extract it
    "symlink-inside": [
        ("README.md", elf("amd64"), tarfile.REGTYPE),
        ("flanneld", b"README.md", tarfile.SYMTYPE),
    ],
    "hardlink-inside": [
        ("README.md", elf("amd64"), tarfile.REGTYPE),
        ("flanneld", b"README.md", tarfile.LNKTYPE),
    ],
    "device": [("flanneld", b"", tarfile.CHRTYPE)],
    "unexpected": [("flanneld", elf("amd64"), tarfile.REGTYPE), ("evil.sh", b"x", tarfile.REGTYPE)],
    "no-flanneld": [("README.md", b"x", tarfile.REGTYPE)],
    "twice": [("flanneld", elf("amd64"), tarfile.REGTYPE)] * 2,
}


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_tarball_is_refused(server, project, case):
    body = tarball(HOSTILE[case])
    name = f"flannel-{V}-linux-amd64.tar.gz"
    server.add(V, name, body)
    project.pin({V: {name: sha(body)}})  # even a pinned archive is checked member by member
    project.config('[flannel]\nasset = "tarball"\narches = ["amd64"]\n', mirror=server.url)
    res = project.run("fetch")
    assert res.rc == 4
    assert "refusing member" in res.err or "holds no flanneld" in res.err
    if case.startswith(("symlink", "hardlink", "device")):
        assert "refusing member 'flanneld': not a regular file" in res.err, res.err
    assert project.built() == []
    assert not (tmp := project.root / "etc").exists(), tmp
    _nothing_kept(project)  # refused bytes never enter the cache, pinned or not


def _nothing_kept(project) -> None:
    assert project.cached() == []
    partial = project.cache / "partial"
    assert not partial.exists() or list(partial.iterdir()) == []


@pytest.mark.parametrize("case", ["symlink", "unexpected"])
def test_lock_keeps_nothing_of_a_refused_archive(server, project, case):
    body = tarball(HOSTILE[case])
    server.add(V, f"flannel-{V}-linux-amd64.tar.gz", body)
    project.pin({})
    project.config('[flannel]\nasset = "tarball"\narches = ["amd64"]\n', mirror=server.url)
    res = project.run("lock", "--version", V)
    assert res.rc == 4, res.err
    assert lock.read(project.lock) == {}
    _nothing_kept(project)


def test_a_refused_cache_entry_is_dropped(server, project):
    body = tarball(HOSTILE["symlink"])
    name = f"flannel-{V}-linux-amd64.tar.gz"
    project.pin({V: {name: sha(body)}})
    project.config('[flannel]\nasset = "tarball"\narches = ["amd64"]\n', mirror=server.url)
    (project.cache / "sha256").mkdir(parents=True)
    (project.cache / "sha256" / sha(body)).write_bytes(body)  # put there by an older flannelnode
    res = project.run("fetch")
    assert res.rc == 4 and "refusing member" in res.err
    assert project.cached() == [] and project.built() == []


@pytest.mark.parametrize(
    "kind",
    [tarfile.REGTYPE, tarfile.XHDTYPE, tarfile.GNUTYPE_LONGNAME],
    ids=["member", "pax", "longname"],
)
def test_gzip_bomb_is_refused_without_inflating_it(tmp_path, kind):
    # 10 GB of zeros declared in a member (or in a pax / GNU long-name header, which tarfile
    # would read into memory in one go): refused at the header, in well under a second of CPU
    from flannelnode.extract import unpack

    bomb = tmp_path / "bomb.tar.gz"
    bomb.write_bytes(gzip_bomb(kind=kind))
    (tmp_path / "out").mkdir()
    cpu = time.process_time()
    with pytest.raises(IntegrityError, match="refusing"):
        unpack(bomb, "tarball", "amd64", tmp_path / "out", "bomb")
    assert time.process_time() - cpu < 1.0
    assert list((tmp_path / "out").iterdir()) == []


def test_a_member_may_declare_up_to_256_mib_and_no_more(tmp_path):
    # the documented limit (README: "a member that declares more than 256 MiB is refused"),
    # written here, not read from flannelnode.extract
    from flannelnode.extract import unpack

    limit = 256 * 1024 * 1024
    over = tmp_path / "over.tar.gz"
    over.write_bytes(gzip_bomb(declared=limit + 1))
    (tmp_path / "a").mkdir()
    cpu = time.process_time()
    with pytest.raises(IntegrityError, match=f"refusing member 'flanneld': {limit + 1} bytes"):
        unpack(over, "tarball", "amd64", tmp_path / "a", "over")
    assert time.process_time() - cpu < 1.0  # refused at the header, nothing inflated
    assert list((tmp_path / "a").iterdir()) == []

    at = tmp_path / "at.tar.gz"
    at.write_bytes(gzip_bomb(declared=limit))
    (tmp_path / "b").mkdir()
    with pytest.raises(IntegrityError, match="flanneld is not an ELF"):  # zeros: past the tar
        unpack(at, "tarball", "amd64", tmp_path / "b", "at")  # checks, refused by the ELF one
    assert (tmp_path / "b" / "flanneld").stat().st_size == limit


def test_lock_refuses_a_gzip_bomb_and_keeps_none_of_it(server, project):
    server.add(V, f"flannel-{V}-linux-amd64.tar.gz", gzip_bomb())
    project.pin({})
    project.config('[flannel]\nasset = "tarball"\narches = ["amd64"]\n', mirror=server.url)
    res = project.run("lock", "--version", V)
    assert res.rc == 4 and "too big" in res.err, res.err
    assert lock.read(project.lock) == {}
    _nothing_kept(project)


def test_wrong_arch_elf_is_refused(server, project):
    body = elf("amd64")
    server.add(V, "flanneld-arm64", body)
    project.pin({V: {"flanneld-arm64": sha(body)}})
    project.config('[flannel]\narches = ["arm64"]\n', mirror=server.url)
    res = project.run("fetch")
    assert res.rc == 4
    assert "built for amd64" in res.err and "not arm64" in res.err
    assert project.built() == []
    _nothing_kept(project)


@pytest.mark.parametrize("arch", ["amd64", "arm64", "arm", "ppc64le", "s390x", "riscv64"])
def test_elf_header_accepted_for_each_arch(tmp_path, arch):
    from flannelnode.extract import unpack

    asset = tmp_path / "asset"
    asset.write_bytes(elf(arch))
    (tmp_path / "out").mkdir()
    unpack(asset, "binary", arch, tmp_path / "out", "test")
    other = "s390x" if arch != "s390x" else "amd64"
    with pytest.raises(IntegrityError, match=f"built for {arch} .*, not {other};"):
        unpack(asset, "binary", other, tmp_path / "out", "t")


def test_lock_pins_a_new_release_trust_on_first_use(server, project):
    bodies = {a: elf(a) for a in ("amd64", "arm64")}
    for a, b in bodies.items():
        server.add("v0.28.0", f"flanneld-{a}", b)
    project.pin({V: {"flanneld-amd64": "0" * 64}})
    project.config(mirror=server.url)
    res = project.run("lock", "--version", "v0.28.0")
    assert res.rc == 0, res.err
    assert "TRUST ON FIRST USE" in res.err
    pins = lock.read(project.lock)
    assert pins["v0.28.0"] == {f"flanneld-{a}": sha(b) for a, b in bodies.items()}
    assert pins[V] == {"flanneld-amd64": "0" * 64}
    again = project.run("lock", "--version", "v0.28.0")
    assert again.rc == 0 and "TRUST ON FIRST USE" not in again.err and "already" in again.out
    # the pinned release now fetches from the cache the lock filled
    server.stop()
    assert project.run("fetch", "--version", "v0.28.0").rc == 0


def test_trust_on_first_use_warning_shows_even_with_quiet(server, project):
    server.add("v0.28.0", "flanneld-amd64", elf("amd64"))
    project.pin({})
    project.config('[flannel]\narches = ["amd64"]\n', mirror=server.url)
    res = project.run("lock", "-q", "--version", "v0.28.0")
    assert res.rc == 0, res.err
    assert "TRUST ON FIRST USE" in res.err and "v0.28.0/flanneld-amd64" in res.err
    assert "downloading" not in res.err  # -q still hides the chatter


def test_lock_refuses_to_replace_a_pin(server, project):
    server.add(V, "flanneld-amd64", elf("amd64"))
    project.pin({V: {"flanneld-amd64": "a" * 64}})
    project.config('[flannel]\narches = ["amd64"]\n', mirror=server.url)
    before = project.lock.read_bytes()
    res = project.run("lock", "--version", V)
    assert res.rc == 4
    assert "SUPPLY-CHAIN ALARM" in res.err and "a" * 64 in res.err
    assert project.lock.read_bytes() == before
    _nothing_kept(project)  # the changed bytes are neither cached nor left in partial/


def test_lock_refuses_a_wrong_arch_binary(server, project):
    server.add(V, "flanneld-arm64", elf("amd64"))
    project.pin({})
    project.config('[flannel]\narches = ["arm64"]\n', mirror=server.url)
    res = project.run("lock", "--version", V)
    assert res.rc == 4 and "not arm64" in res.err
    assert lock.read(project.lock) == {}
    _nothing_kept(project)


def test_offline_uses_only_the_cache(server, project, release):
    res = project.run("fetch", "--offline")
    assert res.rc == 1
    assert "--offline" in res.err and "not in the cache" in res.err
    assert server.requests == []
    assert project.run("fetch").rc == 0
    server.stop()
    for p in project.built():
        p.unlink()
    assert project.run("fetch", "--offline").rc == 0


def test_local_directory_source_needs_no_network(server, project, release, tmp_path):
    carried = tmp_path / "carried" / V
    carried.mkdir(parents=True)
    for arch, body in release.items():
        (carried / f"flanneld-{arch}").write_bytes(body)
    res = project.run("fetch", "--local", str(carried.parent))
    assert res.rc == 0, res.err
    assert server.requests == []
    (carried / "flanneld-amd64").write_bytes(elf("amd64"))  # swapped on the USB stick
    for p in project.cached() + project.built():
        p.unlink()
    res = project.run("fetch", "--local", str(carried.parent))
    assert res.rc == 4 and str(carried / "flanneld-amd64") in res.err


def test_standard_proxy_variables_are_honoured(server, project, release, monkeypatch):
    # a host that does not exist: only the proxy (our server on 127.0.0.1) can answer for it
    project.config('[flannel]\narches = ["amd64"]\n', github="http://github.invalid")
    monkeypatch.setenv("HTTP_PROXY", server.url)
    monkeypatch.setenv("NO_PROXY", "")
    res = project.run("fetch")
    assert res.rc == 0, res.err
    assert server.proxied[0].startswith("http://github.invalid/flannel-io/flannel/")


def test_unreachable_github_names_the_mirror_and_local_options(project, release):
    project.pin({V: {"flanneld-amd64": "b" * 64}})
    project.config('[flannel]\narches = ["amd64"]\n', github="http://127.0.0.1:9", retries=0)
    res = project.run("fetch")
    assert res.rc == 1
    assert "--mirror" in res.err and "--local" in res.err and "FLANNEL_MIRROR" in res.err


def test_unpinned_version_is_refused_before_any_download(server, project, release):
    res = project.run("fetch", "--version", "v0.28.0")
    assert res.rc == 2
    assert "no pin for flanneld-amd64" in res.err and "build.py lock --version v0.28.0" in res.err
    assert server.requests == []


# -- Ctrl-C: one SIGINT ends a download, a retry wait or a stall within a second, exit 130


def _spawn(project, *args: str, backoff: str = "0.01") -> BuildPy:
    return BuildPy(
        project.root / "node.toml", project.build, *args, env={"FLANNELNODE_BACKOFF": backoff}
    )


def _interrupted(proc: BuildPy) -> None:
    seconds = proc.interrupt()
    assert proc.proc.returncode == 130, proc.err
    assert seconds < 1.0, f"{seconds:.2f} s from SIGINT to exit"
    assert "interrupted" in proc.err and "Traceback" not in proc.err, proc.err


def test_ctrl_c_ends_a_slow_download_and_the_next_run_resumes(server, project, release):
    body = elf("amd64", size=4 << 20)
    server.add(V, "flanneld-amd64", body)
    project.pin({V: {"flanneld-amd64": sha(body)}})
    server.pace["flanneld-amd64"] = 30.0  # the body trickles in over half a minute
    proc = _spawn(project, "fetch", "--arch", "amd64")
    partial = project.cache / "partial"
    proc.wait_until(lambda: any(p.stat().st_size for p in partial.glob("*.part")))
    _interrupted(proc)
    assert project.cached() == [] and project.built() == []
    del server.pace["flanneld-amd64"]
    res = project.run("fetch", "--arch", "amd64")
    assert res.rc == 0, res.err
    [resumed] = _ranges(server)
    assert int(resumed.removeprefix("bytes=").rstrip("-")) > 0
    assert (project.build / "fetch" / V / "amd64" / "flanneld").read_bytes() == body


def test_ctrl_c_ends_a_retry_wait(server, project, release):
    server.faults["flanneld-amd64"] = ["503"]
    proc = _spawn(project, "fetch", "--arch", "amd64", backoff="60")  # waits 15 to 30 s
    proc.wait_until(lambda: "retrying" in proc.err)
    _interrupted(proc)


def test_ctrl_c_ends_a_stalled_download(server, project, release):
    project.config(mirror=server.url, retries=2, timeout=60)
    server.faults["flanneld-amd64"] = ["stall"]
    proc = _spawn(project, "fetch", "--arch", "amd64")
    proc.wait_until(lambda: server.sent["flanneld-amd64"] > 0)
    time.sleep(0.3)  # the client is now blocked reading a body that does not come
    _interrupted(proc)


# -- one cache shared by concurrent runs

SIX = ["amd64", "arm64", "arm", "ppc64le", "s390x", "riscv64"]


def test_concurrent_fetches_share_one_cache_and_download_each_asset_once(server, project):
    bodies = {a: elf(a, size=2 << 20) for a in SIX}
    for arch, body in bodies.items():
        server.add(V, f"flanneld-{arch}", body)
        server.pace[f"flanneld-{arch}"] = 1.5  # slow enough that all the runs overlap
    project.pin({V: {f"flanneld-{a}": sha(b) for a, b in bodies.items()}})
    project.config(mirror=server.url)
    # the same assets and different ones: every run wants all six, or a mix of three
    wanted = [SIX if i % 2 == 0 else SIX[i % 4 :: 2] for i in range(8)]
    seen_bad: list[str] = []
    running = threading.Event()
    running.set()

    def watch() -> None:  # no file in sha256/ may ever differ from its name, even mid-run
        objects = project.cache / "sha256"
        while running.is_set():
            for entry in objects.glob("*") if objects.exists() else []:
                try:
                    if sha(entry.read_bytes()) != entry.name:
                        seen_bad.append(entry.name)
                except FileNotFoundError:
                    pass
            time.sleep(0.05)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    procs = [
        BuildPy(
            project.root / "node.toml", project.root / f"build{i}", "fetch", "--arch", ",".join(a)
        )
        for i, a in enumerate(wanted)
    ]
    try:
        rcs = [p.wait() for p in procs]
    finally:
        running.clear()
        watcher.join(5)
    assert rcs == [0] * 8, "\n".join(p.err for p in procs)
    assert "Traceback" not in "".join(p.err for p in procs)
    assert seen_bad == []
    for arch, body in bodies.items():
        assert server.downloads(f"flanneld-{arch}") == 1, server.requests
        assert server.sent[f"flanneld-{arch}"] == len(body)
    for i, arches in enumerate(wanted):
        for arch in arches:
            out = project.root / f"build{i}" / "fetch" / V / arch / "flanneld"
            assert out.read_bytes() == bodies[arch]
    assert sorted(p.name for p in project.cached()) == sorted(sha(b) for b in bodies.values())
    assert list((project.cache / "partial").glob("*.part")) == []


def test_cache_lock_wait_is_bounded_by_the_holders_progress_and_by_ctrl_c(tmp_path):
    from flannelnode import filelock
    from flannelnode.errors import FetchError, Interrupted

    path, stop = tmp_path / "locks" / "x.lock", threading.Event()
    marker = [0]

    def wait(idle: float, max_wait: float = 60):
        return filelock.exclusive(
            path, stop=stop, progress=lambda: marker[0], idle_limit=idle, max_wait=max_wait
        )

    with wait(1):  # the holder
        start = time.monotonic()
        with pytest.raises(FetchError, match="made no progress"), wait(0.3):
            pass
        assert time.monotonic() - start < 1

        def advance() -> None:  # a holder that gets on with it keeps its waiters waiting
            for _ in range(30):
                time.sleep(0.05)
                marker[0] += 1

        mover = threading.Thread(target=advance)
        mover.start()
        start = time.monotonic()
        with pytest.raises(FetchError, match="held it for 1 s"), wait(0.2, max_wait=1):
            pass
        assert time.monotonic() - start > 0.5
        mover.join()
        threading.Timer(0.2, stop.set).start()
        with pytest.raises(Interrupted), wait(60):
            pass
    stop.clear()
    with wait(0.1):  # released by the holder: taken at once
        pass


# -- FLANNEL_TARBALL selects the tarball kind


def test_flannel_tarball_selects_the_tarball_asset(server, project, tmp_path, monkeypatch):
    body = release_tarball("amd64")
    tarball_name = f"flannel-{V}-linux-amd64.tar.gz"
    carried = tmp_path / "usb" / tarball_name
    carried.parent.mkdir()
    carried.write_bytes(body)
    binary = elf("amd64")
    server.add(V, "flanneld-amd64", binary)  # the binary kind is served: it must not be used
    project.pin({V: {tarball_name: sha(body), "flanneld-amd64": sha(binary)}})
    project.config('[flannel]\narches = ["amd64"]\n', mirror=server.url)  # asset: the default
    monkeypatch.setenv("FLANNEL_TARBALL", str(carried))
    res = project.run("fetch")
    assert res.rc == 0, res.err
    assert server.requests == []
    record = json.loads((project.build / "fetch" / V / "amd64" / "release.json").read_text())
    assert record["asset"] == tarball_name and record["source"] == str(carried)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_flannel_tarball_with_the_binary_kind_is_an_error(project, tmp_path, monkeypatch, how):
    carried = tmp_path / f"flannel-{V}-linux-amd64.tar.gz"
    carried.write_bytes(release_tarball("amd64"))
    project.pin({})
    project.config('[flannel]\narches = ["amd64"]\n')
    monkeypatch.setenv("FLANNEL_TARBALL", str(carried))
    if how == "env":
        monkeypatch.setenv("FLANNEL_ASSET", "binary")
    res = project.run("fetch", *(["--asset", "binary"] if how == "flag" else []))
    assert res.rc == 2
    assert "FLANNEL_TARBALL" in res.err and "binary" in res.err, res.err


def test_flannel_tarball_and_flannel_local_disagreeing_is_an_error(project, tmp_path, monkeypatch):
    project.pin({})
    project.config('[flannel]\narches = ["amd64"]\n')
    monkeypatch.setenv("FLANNEL_TARBALL", str(project.lock))
    monkeypatch.setenv("FLANNEL_LOCAL", str(project.root))
    res = project.run("fetch")
    assert res.rc == 2 and "FLANNEL_TARBALL" in res.err and "FLANNEL_LOCAL" in res.err, res.err


# -- local assets: by name, or by hash under any name


def test_a_local_file_is_accepted_by_its_hash_under_any_name(server, project, release, tmp_path):
    carried = tmp_path / "usb" / "flanneld"  # saved under another name than upstream's
    carried.parent.mkdir()
    carried.write_bytes(release["amd64"])
    res = project.run("fetch", "--arch", "amd64", "--local", str(carried))
    assert res.rc == 0, res.err
    assert server.requests == []
    record = json.loads((project.build / "fetch" / V / "amd64" / "release.json").read_text())
    assert record["source"] == str(carried)


def test_a_local_directory_entry_is_accepted_by_its_hash(server, project, release, tmp_path):
    usb = tmp_path / "usb"
    (usb / V).mkdir(parents=True)
    (usb / "flanneld-amd64 (1)").write_bytes(release["amd64"])
    (usb / V / "flanneld.arm64").write_bytes(release["arm64"])
    (usb / "notes.txt").write_text("not flannel")
    res = project.run("fetch", "--local", str(usb))
    assert res.rc == 0, res.err
    assert server.requests == []


def test_a_local_file_that_is_no_asset_of_the_build_is_an_error(server, project, release, tmp_path):
    other = tmp_path / "flanneld"
    other.write_bytes(elf("amd64"))  # pinned nowhere, and not named like an asset
    res = project.run("fetch", "--local", str(other))
    assert res.rc == 2, res.err
    assert str(other) in res.err and "flanneld-amd64" in res.err
    assert server.requests == []


def test_a_local_file_changing_while_it_is_copied_is_refused(
    server, project, release, tmp_path, monkeypatch
):
    # The file is found by its hash, then copied: the copy is what gets used, so the copy is
    # what must hash to the pin. Here the user's file is rewritten while it is read (torn: its
    # last byte differs) and put back afterwards; hashing the user's file again would pass.
    from flannelnode import sources

    carried = tmp_path / "usb" / "flanneld"  # another name: found by hash, not by name
    carried.parent.mkdir()
    good = release["amd64"]
    carried.write_bytes(good)
    real_copy = sources.copy

    def torn_copy(src, dest):
        src.write_bytes(good[:-1] + bytes([good[-1] ^ 1]))
        try:
            return real_copy(src, dest)
        finally:
            src.write_bytes(good)

    monkeypatch.setattr(sources, "copy", torn_copy)
    res = project.run("fetch", "--arch", "amd64", "--local", str(carried))
    assert res.rc == 4, res.err
    assert f"{carried}: sha256 mismatch for flanneld-amd64" in res.err
    assert project.cached() == [] and project.built() == []
    assert list((project.cache / "partial").iterdir()) == []
    assert carried.read_bytes() == good


def test_a_local_directory_with_folders_and_odd_entries_is_searched_not_crashed_on(
    server, project, release, tmp_path
):
    usb = tmp_path / "usb"
    # folders beside the assets, at both levels, some named like an asset: not the asset
    (usb / V / "flanneld-arm64").mkdir(parents=True)
    (usb / "flanneld-amd64").mkdir()
    os.mkfifo(usb / "a-fifo")  # hashing it would block: never opened
    (usb / "dangling").symlink_to(usb / "gone")
    (usb / "flanneld (2)").write_bytes(release["amd64"])
    (usb / V / "arm64 copy").write_bytes(release["arm64"])
    res = project.run("fetch", "--local", str(usb))
    assert res.rc == 0, res.err
    assert "error" not in res.err
    assert server.requests == []
    for arch, name in (("amd64", "flanneld (2)"), ("arm64", f"{V}/arm64 copy")):
        record = json.loads((project.build / "fetch" / V / arch / "release.json").read_text())
        assert record["source"] == str(usb / name)
        assert (project.build / "fetch" / V / arch / "flanneld").read_bytes() == release[arch]


# -- network errors: a name that does not resolve fails at once; errors name the host and reason


def test_a_host_name_that_does_not_resolve_fails_at_once(project, release, monkeypatch):
    real, asked = socket.getaddrinfo, []

    def getaddrinfo(host, *args, **kwargs):  # no DNS query leaves the machine
        if str(host).endswith(".invalid"):
            asked.append(host)
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    project.config('[flannel]\narches = ["amd64"]\n', mirror="http://mirror.invalid", retries=5)
    start = time.monotonic()
    res = project.run("fetch")
    assert res.rc == 1
    assert asked == ["mirror.invalid"]  # asked once, not six times
    assert time.monotonic() - start < 1
    assert "cannot resolve mirror.invalid" in res.err and "Name or service not known" in res.err


def test_a_refused_connection_names_the_host_and_the_reason(project, release):
    long_path = "/" + "mirror-path/" * 30  # the URL alone is longer than 200 characters
    project.config(
        '[flannel]\narches = ["amd64"]\n', mirror=f"http://127.0.0.1:1{long_path}", retries=0
    )
    res = project.run("fetch")
    assert res.rc == 1
    assert "127.0.0.1:1" in res.err and "Connection refused" in res.err, res.err
    assert "Traceback" not in res.err


def test_a_refused_proxy_is_named_as_the_proxy(project, release, monkeypatch):
    project.config('[flannel]\narches = ["amd64"]\n', github="http://github.invalid", retries=0)
    monkeypatch.setenv("HTTP_PROXY", "http://127.0.0.1:1")
    monkeypatch.setenv("NO_PROXY", "")
    res = project.run("fetch")
    assert res.rc == 1
    assert "proxy 127.0.0.1:1" in res.err and "Connection refused" in res.err, res.err


# -- log lines off a terminal: one whole line each, named after its asset


def test_every_download_line_names_its_asset(server, project):
    bodies = {a: elf(a, size=1 << 20) for a in ("amd64", "arm64")}
    for arch, body in bodies.items():
        server.add(V, f"flanneld-{arch}", body)
        server.faults[f"flanneld-{arch}"] = ["500", "cut"]
    project.pin({V: {f"flanneld-{a}": sha(b) for a, b in bodies.items()}})
    project.config(mirror=server.url, retries=3)
    res = project.run("fetch")
    assert res.rc == 0, res.err
    lines = res.err.splitlines()
    assert len(lines) > 8
    for line in lines:
        assert line.startswith(("flanneld-amd64: ", "flanneld-arm64: ")), line


def test_log_lines_from_threads_never_run_together(capsys):
    from flannelnode.progress import Reporter

    old = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # switch threads as often as possible
    try:
        reporter = Reporter()
        threads = [
            threading.Thread(
                target=lambda n=n: [reporter.log(f"thread-{n} {i}") for i in range(500)]
            )
            for n in range(4)
        ]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        sys.setswitchinterval(old)
    lines = capsys.readouterr().err.splitlines()
    assert len(lines) == 2000
    assert all(re.fullmatch(r"thread-\d \d+", line) for line in lines)


# -- where cached bytes came from


def test_a_cache_hit_keeps_the_source_url_without_credentials(server, project, release):
    host = server.url.split("://", 1)[1]
    project.config(mirror=f"http://ci:hunter2-secret@{host}")
    assert project.run("fetch").rc == 0
    out = project.build / "fetch" / V / "amd64"
    first = json.loads((out / "release.json").read_text())
    assert first["source"].startswith("http://***@127.0.0.1:") and not first["from_cache"]
    shutil.rmtree(project.build)
    server.stop()
    res = project.run("fetch")
    assert res.rc == 0, res.err
    again = json.loads((out / "release.json").read_text())
    assert again["source"] == first["source"] and again["from_cache"]
    for path in project.cache.rglob("*"):
        assert not path.is_file() or b"hunter2-secret" not in path.read_bytes(), path
