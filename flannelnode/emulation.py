"""emulation: can this host run another arch's binaries (binfmt_misc + qemu-user-static)?

Foreign-arch bases and images are built by running that arch's programs (dpkg in a debootstrap
chroot, provision.sh in a container); the kernel hands them to qemu-<arch> through a binfmt_misc
entry that images/binfmt.sh registers with the F flag, so chroots and containers need no qemu
of their own.
"""

from __future__ import annotations

import platform
from pathlib import Path

from .errors import FlannelnodeError

BINFMT_DIR = Path("/proc/sys/fs/binfmt_misc")
SCRIPT = Path(__file__).resolve().parent.parent / "images" / "binfmt.sh"
# flannel's arch name -> qemu's (the binfmt entry is qemu-<that>)
QEMU_ARCH = {"amd64": "x86_64", "arm64": "aarch64"}
_MACHINE_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class EmulationError(FlannelnodeError):
    pass


def host_arch() -> str:
    return _MACHINE_ARCH.get(platform.machine(), platform.machine())


def problem(arch: str, binfmt_dir: Path | None = None) -> str | None:
    """Why arch's binaries cannot run here, in one line with what to do; None when they can."""
    binfmt_dir = binfmt_dir or BINFMT_DIR
    if arch == host_arch():
        return None
    qemu = QEMU_ARCH.get(arch)
    if qemu is None:
        return f"no emulation set-up for {arch} (known: {', '.join(QEMU_ARCH)})"
    entry = binfmt_dir / f"qemu-{qemu}"
    try:
        text = entry.read_text()
    except OSError:
        return (
            f"{arch} binaries cannot run on this {host_arch()} host: no binfmt_misc entry {entry}; "
            f"run `make binfmt` (as root: {SCRIPT} {qemu})"
        )
    lines = text.splitlines()
    flags = next((ln.split(":", 1)[1].strip() for ln in lines if ln.startswith("flags:")), "")
    if "enabled" not in lines or "F" not in flags:
        return (
            f"{entry} is disabled or lacks the F (fix-binary) flag, so containers cannot run "
            f"{arch} binaries; run `make binfmt` (as root: {SCRIPT} {qemu}), which replaces it"
        )
    return None


def require(arch: str) -> None:
    why = problem(arch)
    if why is not None:
        raise EmulationError(why)
