"""Honest targets: a target named with --target that cannot be built is an error (exit 1, one
line, even with -q); only the default list skips one, with an alarm. Packer is a shim that records
its arguments and fails, so nothing is built; the base image step is stopped the same way."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flannelnode import base, emulation, images
from flannelnode.progress import Reporter

from .conftest import packer_shim

pytestmark = pytest.mark.usefixtures("no_aws")


@pytest.fixture
def packer_calls(project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    calls = packer_shim(project.root, monkeypatch)

    def no_base(*args, **kwargs):
        raise images.ImagesError("the test stops images at the base image")

    monkeypatch.setattr(base, "build", no_base)
    yield calls


def _no_qemu_img(target: str, arch: str | None = None) -> str | None:
    return "qemu-img not found (test)" if target == "qemu" and arch is None else None


@pytest.mark.parametrize("quiet", [[], ["-q"]], ids=["verbose", "quiet"])
def test_a_named_target_without_credentials_is_an_error(
    project, fetched, packer_calls, quiet
) -> None:
    res = project.run("images", *quiet, "--target", "amazon-ebs")
    assert res.rc == 1, res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert "amazon-ebs" in lines[0] and "no AWS credentials" in lines[0]
    assert "Traceback" not in res.err
    assert not packer_calls.exists()
    assert not (project.build / "images").exists()


def test_a_named_target_in_a_list_fails_the_whole_step(project, fetched, packer_calls) -> None:
    res = project.run("images", "--target", "docker,amazon-ebs")
    assert res.rc == 1, res.err
    assert "images amazon-ebs: cannot be built here" in res.err
    assert not packer_calls.exists()  # nothing built when part of the request cannot be


def test_with_credentials_the_named_target_reaches_packer(
    project, fetched, packer_calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    res = project.run("images", "--target", "amazon-ebs")
    assert res.rc == 1  # the shim fails the build
    assert "amazon-ebs.pkr.hcl" in packer_calls.read_text()


def test_the_default_list_skips_loudly(
    project, fetched, packer_calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "unavailable", _no_qemu_img)
    monkeypatch.setattr(images, "require_docker_engine", lambda: None)
    res = project.run("images", "-q")
    assert "*** images qemu: SKIPPED" in res.err and "qemu-img not found (test)" in res.err
    # docker went on (to the stopped base image step)
    assert "the test stops images at the base image" in res.err


def test_the_same_target_named_is_an_error(
    project, fetched, packer_calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "unavailable", _no_qemu_img)
    res = project.run("images", "-q", "--target", "qemu")
    assert res.rc == 1
    assert res.err.strip().splitlines() == [
        "error: images qemu: cannot be built here: qemu-img not found (test)"
    ]


def test_an_empty_target_list_is_bad_input(project, fetched, packer_calls) -> None:
    res = project.run("images", "--target", ",")
    assert res.rc == 2 and "--target" in res.err


def test_an_el_base_gets_the_built_rpm(project, fetched, monkeypatch: pytest.MonkeyPatch) -> None:
    """`images --base rocky-9` hands Packer the RPM `rpm` built for the image's arch."""
    shim = project.root / "packer-shim"
    shim.mkdir()
    seen = project.root / "uploaded"
    (shim / "packer").write_text(
        '#!/bin/sh\nfor a in "$@"; do case $a in -var=upload_dir=*)\n'
        f'  ls "${{a#-var=upload_dir=}}/rpms" >>{seen};; esac; done\nexit 1\n'
    )
    (shim / "packer").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    monkeypatch.setattr(images, "require_docker_engine", lambda: None)
    res = project.run("images", "--target", "docker", "--base", "rocky-9")
    assert res.rc == 1 and "build.py rpm" in res.err and "Traceback" not in res.err
    assert not seen.exists()  # no RPM yet: Packer not started
    assert project.run("payload").rc == 0 and project.run("rpm").rc == 0
    project.run("images", "--target", "docker", "--base", "rocky-9")
    assert seen.read_text().split() == ["flannel-node-0.27.4-1.x86_64.rpm"]
    # the Debian base gets none: it unpacks the payload tarball
    assert images.el_rpms(project.build, "debian-bookworm") == []


# -- arches: docker for amd64 and arm64, qemu and amazon-ebs for amd64 only


def test_each_target_is_built_for_its_arches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "unavailable", lambda target, arch=None: None)
    reporter = Reporter(quiet=True)
    pairs = images.runnable(None, reporter, ["amd64", "arm64"])
    assert pairs == [("docker", "amd64"), ("qemu", "amd64"), ("docker", "arm64")]
    named = images.runnable(["qemu", "docker"], reporter, ["amd64", "arm64"])
    assert named == [("qemu", "amd64"), ("docker", "amd64"), ("docker", "arm64")]


def test_a_named_target_made_for_none_of_the_arches_is_an_error(
    project, fetched, packer_calls
) -> None:
    project.config('[flannel]\narches = ["arm64"]\n', mirror="http://127.0.0.1:9")
    res = project.run("images", "-q", "--target", "qemu")
    assert res.rc == 1, res.err
    [line] = res.err.strip().splitlines()
    assert line.startswith("error: images qemu: cannot be built here: it is made for amd64 only")
    assert "arm64" in line and "Traceback" not in res.err
    assert not packer_calls.exists()


def test_arm64_without_emulation_is_an_error_when_named(
    project, fetched, packer_calls, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No binfmt_misc entry for qemu-aarch64: docker arm64 cannot run provision.sh."""
    monkeypatch.setattr(emulation, "BINFMT_DIR", tmp_path / "binfmt_misc")
    monkeypatch.setattr(images, "require_docker_engine", lambda: None)
    res = project.run("images", "-q", "--target", "docker")
    assert res.rc == 1, res.err
    [line] = res.err.strip().splitlines()
    assert "images docker arm64: cannot be built here" in line and "make binfmt" in line
    assert not packer_calls.exists()
    # the default list goes on with amd64, loudly
    res = project.run("images", "-q")
    assert "*** images docker arm64: SKIPPED" in res.err
    assert "the test stops images at the base image" in res.err


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        (None, "no binfmt_misc entry"),
        ("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: OP\n", "F"),
        ("disabled\ninterpreter /x\nflags: OCF\n", "disabled"),
        ("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\n", None),
    ],
    ids=["missing", "no-F-flag", "disabled", "ok"],
)
def test_emulation_reads_the_binfmt_entry(tmp_path: Path, entry: str | None, why) -> None:
    if entry is not None:
        (tmp_path / "qemu-aarch64").write_text(entry)
    found = emulation.problem("arm64", tmp_path)
    assert (found is None) == (why is None), found
    if why is not None:
        assert why in found and "make binfmt" in found
    assert emulation.problem(emulation.host_arch(), tmp_path) is None


def test_this_host_runs_arm64_binaries() -> None:
    """make deps registered qemu-aarch64 with the F flag (images/binfmt.sh); the image tests
    need it, so a host without it fails here first, by name."""
    assert emulation.problem("arm64") is None
