"""The EL branch of images/provision.sh, as far as this host can run it.

There is no EL container image here (no registry) and Debian's base has no dnf, so the script runs
in the local Debian base container with an EL /etc/os-release and shell stubs for dnf, systemctl,
rpm and cloud-init that record their arguments: what is checked is what provision.sh would run
and in which order (the engine's repository before flannel-node, gpgcheck on, a repo with gpgcheck
off refused). The real RPM is installed with dnf into an installroot in tests/test_rpm.py.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

from flannelnode.tools import require_docker_engine

REPO = Path(__file__).resolve().parent.parent
IMAGE = "flannelnode/base-debian:bookworm"
RPM = "flannel-node-0.27.4-1.x86_64.rpm"
OS_RELEASE = 'NAME="Rocky Linux"\nID="rocky"\nID_LIKE="rhel centos fedora"\nPRETTY_NAME="Rocky 9"\n'
STUB = """#!/bin/sh
echo "$(basename "$0") $*" >>/work/calls
if [ "$(basename "$0")" = dnf ] && [ "$1" = config-manager ]; then
	printf '[docker-ce-stable]\\nbaseurl=https://example.invalid/\\ngpgcheck=1\\n' \
		>"/etc/yum.repos.d/${3##*/}"
fi
exit 0
"""


@pytest.fixture(scope="module")
def engine() -> None:
    require_docker_engine()
    res = subprocess.run(
        ["docker", "image", "inspect", IMAGE], capture_output=True, text=True, timeout=60
    )
    if res.returncode != 0:
        pytest.skip(f"{IMAGE} is not built here (make base)")


def _run(tmp_path: Path, **env: str) -> tuple[subprocess.CompletedProcess[str], list[str]]:
    work = tmp_path / "work"
    (work / "stubs").mkdir(parents=True)
    (work / "rpms").mkdir()
    (work / "rpms" / RPM).write_bytes(b"stand-in: dnf is a stub")
    (work / "os-release").write_text(OS_RELEASE)
    for name in ("dnf", "systemctl", "rpm", "cloud-init"):
        (work / "stubs" / name).write_text(STUB)
        (work / "stubs" / name).chmod(0o755)
    (work / "local.repo").write_text(env.pop("local_repo", ""))
    (work / "calls").write_text("")
    cmd = [
        "docker", "run", "--rm", "--pull=never", "--network=none",
        "-v", f"{work}:/work", "-v", f"{work}/os-release:/etc/os-release:ro",
        "-v", f"{REPO / 'images' / 'provision.sh'}:/provision.sh:ro",
        "-e", "PATH=/work/stubs:/usr/sbin:/usr/bin:/sbin:/bin",
        "-e", "FLANNELNODE_RPMS=/work/rpms",
        *[a for k, v in env.items() for a in ("-e", f"{k}={v}")],
        "--entrypoint", "/bin/sh", IMAGE, "/provision.sh",
    ]  # fmt: skip
    res = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    return res, (work / "calls").read_text().splitlines()


def test_engine_repo_comes_before_flannel_node_with_gpgcheck(engine, tmp_path: Path) -> None:
    res, calls = _run(tmp_path)
    assert res.returncode == 0, res.stdout + res.stderr
    add = "dnf config-manager --add-repo https://download.docker.com/linux/centos/docker-ce.repo"
    install = (
        f"dnf install -y -q --setopt=gpgcheck=1 /work/rpms/{RPM} "
        "docker-ce docker-ce-cli containerd.io"
    )
    assert add in calls and install in calls, calls
    assert calls.index("dnf install -y -q dnf-plugins-core") < calls.index(add)
    assert calls.index(add) < calls.index(install)
    assert "systemctl enable flanneld.service docker.service" in calls
    assert calls.index(install) < calls.index("systemctl enable flanneld.service docker.service")
    assert "installing flannel-node from /work/rpms" in res.stdout
    assert "unpacking" not in res.stdout  # the RPM, not the tarball


def test_a_local_engine_repo_for_air_gapped_sites(engine, tmp_path: Path) -> None:
    res, calls = _run(
        tmp_path,
        FLANNELNODE_ENGINE_REPO="/work/local.repo",
        local_repo="[engine]\nbaseurl=file:///mirror/docker\ngpgcheck=1\ngpgkey=file:///k\n",
    )
    assert res.returncode == 0, res.stdout + res.stderr
    assert not [c for c in calls if "config-manager" in c]
    assert any(c.startswith("dnf install -y -q --setopt=gpgcheck=1 /work/rpms/") for c in calls)
    assert "adding the local engine repository /work/local.repo" in res.stdout


def test_an_engine_repo_without_gpgcheck_is_refused(engine, tmp_path: Path) -> None:
    res, calls = _run(
        tmp_path,
        FLANNELNODE_ENGINE_REPO="/work/local.repo",
        local_repo="[engine]\nbaseurl=file:///mirror/docker\ngpgcheck=0\n",
    )
    assert res.returncode == 1
    assert "turns gpgcheck off" in res.stderr
    assert not [c for c in calls if c.startswith("dnf install")]
