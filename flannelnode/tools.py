"""Host tools the steps call, each with the Debian package that provides it."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from .errors import FlannelnodeError

PACKAGES = {
    "docker": "docker.io",
    "dockerd": "docker.io",
    "packer": "packer",
    "debootstrap": "debootstrap",
    "qemu-system-x86_64": "qemu-system-x86",
    "qemu-img": "qemu-utils",
    "mkisofs": "genisoimage",
    "cloud-localds": "cloud-image-utils",
    "mkfs.ext4": "e2fsprogs",
    "sfdisk": "fdisk",
    "ssh-keygen": "openssh-client",
    "rpm": "rpm",
    "rpmbuild": "rpm",
    "rpmsign": "rpm",
    "createrepo_c": "createrepo-c",
    "gpg": "gnupg",
}

DOCKER_UP = Path(__file__).resolve().parent.parent / "images" / "docker-up.sh"


class ToolError(FlannelnodeError):
    pass


def require(*names: str) -> None:
    missing = [n for n in names if shutil.which(n) is None]
    if missing:
        packages = " ".join(dict.fromkeys(PACKAGES.get(n, n) for n in missing))
        raise ToolError(
            f"{', '.join(missing)} not found: run `apt-get install -y {packages}` (or `make deps`)"
        )


def require_docker_engine(timeout: float = 20) -> None:
    """The docker CLI and a running engine; the message says how to start one."""
    require("docker")
    try:
        res = subprocess.run(
            ["docker", "info", "--format", "{{.ServerVersion}}"],
            capture_output=True,
            text=True,
            timeout=timeout,
        )
    except subprocess.TimeoutExpired:
        res = None
    if res is None or res.returncode != 0 or not res.stdout.strip():
        raise ToolError(
            f"no Docker engine answers: start one with `{DOCKER_UP}` (make does this), "
            "or `apt-get install -y docker.io` if dockerd is missing"
        )
