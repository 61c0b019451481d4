"""Honest targets: a target named with --target that cannot be built is an error (exit 1, one
line, even with -q); only the default list skips one, with an alarm. Packer is a shim that records
its arguments and fails, so nothing is built; the base image step is stopped the same way."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from flannelnode import base, images

from .conftest import packer_shim

pytestmark = pytest.mark.usefixtures("no_aws")


@pytest.fixture
def packer_calls(project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    calls = packer_shim(project.root, monkeypatch)

    def no_base(*args, **kwargs):
        raise images.ImagesError("the test stops images at the base image")

    monkeypatch.setattr(base, "build", no_base)
    yield calls


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
    monkeypatch.setattr(
        images, "unavailable", lambda t: "qemu-img not found (test)" if t == "qemu" else None
    )
    monkeypatch.setattr(images, "require_docker_engine", lambda: None)
    res = project.run("images", "-q")
    assert "*** images qemu: SKIPPED" in res.err and "qemu-img not found (test)" in res.err
    # docker went on (to the stopped base image step)
    assert "the test stops images at the base image" in res.err


def test_the_same_target_named_is_an_error(
    project, fetched, packer_calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        images, "unavailable", lambda t: "qemu-img not found (test)" if t == "qemu" else None
    )
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
