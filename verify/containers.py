"""Docker plumbing for the verify harness: the node run profile, files in, commands in, waits.

Everything the harness creates carries the label LABEL=<run id>, so `python -m verify --cleanup`
can remove what a killed run left behind. Every wait is bounded.
"""

from __future__ import annotations

import io
import tarfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import docker
import docker.errors
from docker.models.containers import Container

from flannelnode.errors import FlannelnodeError

LABEL = "org.flannelnode.verify"
T = TypeVar("T")


class VerifyError(FlannelnodeError):
    """The harness could not set up what it checks (not a failed check)."""


def client(timeout: int = 120) -> docker.DockerClient:
    try:
        c = docker.from_env(timeout=timeout)
        c.ping()
    except docker.errors.DockerException as exc:
        raise VerifyError(
            f"no docker engine answers ({exc}); start one (sh images/docker-up.sh) and retry"
        ) from None
    return c


@dataclass(frozen=True)
class Profile:
    """How node containers run: systemd as PID 1 with its own dockerd inside.

    The default is a capability set that works everywhere: `--privileged` fails on hosts whose
    bounding set lacks CAP_SYS_RESOURCE (Firecracker VMs, some CI runners); `privileged=True`
    is for hosts where it works."""

    privileged: bool = False

    def kwargs(self) -> dict[str, Any]:
        common: dict[str, Any] = {
            "tmpfs": {"/run": "", "/run/lock": "", "/tmp": ""},
            "stop_signal": "SIGRTMIN+3",  # systemd's "halt"; `docker import` images cannot set it
        }
        if self.privileged:
            return {**common, "privileged": True}
        return {
            **common,
            "cap_add": ["ALL"],
            "cap_drop": ["SYS_RESOURCE"],
            "security_opt": ["seccomp=unconfined", "apparmor=unconfined"],
            "device_cgroup_rules": ["a *:* rwm"],
        }


def put_files(container: Container, files: dict[str, tuple[bytes, int]]) -> None:
    """Write {absolute path: (content, mode)} into a (possibly not started) container, parent
    directories included (docker cp refuses a missing parent)."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        dirs: set[str] = set()
        for path in sorted(files):
            parts = path.strip("/").split("/")
            for depth in range(1, len(parts)):
                name = "/".join(parts[:depth])
                if name not in dirs:
                    dirs.add(name)
                    info = tarfile.TarInfo(name)
                    info.type, info.mode = tarfile.DIRTYPE, 0o755
                    tar.addfile(info)
            content, mode = files[path]
            info = tarfile.TarInfo("/".join(parts))
            info.size, info.mode, info.mtime = len(content), mode, int(time.time())
            tar.addfile(info, io.BytesIO(content))
    if not container.put_archive("/", buf.getvalue()):
        raise VerifyError(f"could not copy files into {container.name}")


def run(container: Container, command: str, timeout: int = 60) -> tuple[int, str]:
    """`sh -c command` inside; (exit code, stdout+stderr). A hung command counts as failed."""
    result = container.exec_run(["timeout", str(timeout), "sh", "-c", command], demux=False)
    return result.exit_code, (result.output or b"").decode(errors="replace")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float, every: float = 0.2) -> T:
    """probe() until it returns something truthy; VerifyError naming `what` after timeout."""
    stop_at = time.monotonic() + timeout
    last: Any = None
    while True:
        try:
            value = probe()
        except docker.errors.NotFound as exc:
            raise VerifyError(f"gave up waiting for {what}: {exc}") from None
        except (docker.errors.APIError, OSError) as exc:
            value, last = None, exc
        if value:
            return value
        if time.monotonic() >= stop_at:
            detail = f" (last error: {last})" if last else ""
            raise VerifyError(f"timed out after {timeout:g}s waiting for {what}{detail}")
        time.sleep(every)


def remove_all(c: docker.DockerClient, run_id: str | None = None) -> list[str]:
    """Remove containers, then networks and volumes labelled by the harness (one run or all)."""
    selector = f"{LABEL}={run_id}" if run_id else LABEL
    removed = []
    for container in c.containers.list(all=True, filters={"label": selector}):
        try:
            container.remove(force=True, v=True)
            removed.append(f"container {container.name}")
        except docker.errors.NotFound:
            pass
    for network in c.networks.list(filters={"label": selector}):
        try:
            network.remove()
            removed.append(f"network {network.name}")
        except docker.errors.NotFound:
            pass
    for volume in c.volumes.list(filters={"label": selector}):
        try:
            volume.remove(force=True)
            removed.append(f"volume {volume.name}")
        except docker.errors.NotFound:
            pass
    return removed
