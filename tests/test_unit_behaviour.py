"""What systemd does with the rendered units, in a systemd container (the Debian base image):
docker starts only once flanneld has said READY, whether docker's drop-in is in place or not.

The golden files show a diff for review; these tests are the guard. flanneld and dockerd are a
small C program (tests/notify_stub.c) that behaves like each where it matters here: flanneld
takes two seconds to get a lease, writes /run/flannel/subnet.env, then sends READY=1 from its main
process as the real one does; dockerd records when it started and what /run/flannel/docker held.
"""

from __future__ import annotations

import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from flannelnode import base, config, units
from flannelnode.progress import Reporter

from .test_units import VENDOR_UNITS

REPO = Path(__file__).resolve().parent.parent
STUB_SOURCE = Path(__file__).resolve().parent / "notify_stub.c"
# the container options verify/ uses for node containers (verify/containers.py Profile)
RUN_OPTS = [
    "--tmpfs", "/run", "--tmpfs", "/run/lock", "--tmpfs", "/tmp",
    "--stop-signal", "SIGRTMIN+3", "--cap-add", "ALL", "--cap-drop", "SYS_RESOURCE",
    "--security-opt", "seccomp=unconfined", "--security-opt", "apparmor=unconfined",
    "--device-cgroup-rule", "a *:* rwm", "-v", "/sys/fs/cgroup:/sys/fs/cgroup:rw",
]  # fmt: skip


def _sh(*cmd: str, timeout: float = 120, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(cmd)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}")
    return proc


@pytest.fixture(scope="module")
def stub(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("stub") / "notify-stub"
    _sh(shutil.which("gcc") or "gcc", "-static", "-O2", "-o", str(out), str(STUB_SOURCE))
    return out


@pytest.fixture(scope="module")
def base_image() -> str:
    """The Debian base with systemd (built on first use, about 3 minutes, then cached)."""
    return base.build(REPO / "build" / "base", Reporter(quiet=True), ("docker",)).image_id


@pytest.fixture
def node(base_image: str, stub: Path, tmp_path: Path) -> Iterator[str]:
    """A container booted into systemd with flannelnode's files and the stubs installed."""
    cfg = config.load(REPO / "node.toml", env={}, overrides=None)
    root = tmp_path / "root"
    for f in units.render(cfg) + units.scripts(cfg):
        target = root / f.path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(f.content.encode() if isinstance(f.content, str) else f.content)
        target.chmod(f.mode)
    for path in (f"{cfg.install.prefix}/bin/flanneld", "/usr/sbin/dockerd"):
        (root / path.lstrip("/")).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(stub, root / path.lstrip("/"))
    vendor = root / units.UNIT_DIR.lstrip("/") / "docker.service"
    vendor.write_text(VENDOR_UNITS["docker.io"])
    name = f"flannelnode-units-{uuid.uuid4().hex[:8]}"
    _sh("docker", "create", "--name", name, *RUN_OPTS, base_image, "/lib/systemd/systemd")
    try:
        _sh("docker", "cp", f"{root}/.", f"{name}:/")
        _sh("docker", "start", name)
        deadline = time.monotonic() + 90
        while True:
            state = _sh("docker", "exec", name, "systemctl", "is-system-running", check=False)
            if state.stdout.strip() in ("running", "degraded"):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"systemd did not come up in {name}: {state.stdout}{state.stderr}")
            time.sleep(0.3)
        yield name
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, timeout=60)


def _exec(node: str, script: str, check: bool = True) -> str:
    return _sh("docker", "exec", node, "sh", "-c", script, timeout=90, check=check).stdout


def _times(node: str) -> tuple[float, float]:
    ready = float(_exec(node, "cat /run/stub/flanneld.ready"))
    started = float(_exec(node, "cat /run/stub/dockerd.started"))
    return ready, started


def test_docker_with_its_drop_in_starts_after_flanneld_is_ready(node: str) -> None:
    # what the generator installs at boot; starting docker alone pulls flanneld in (Wants=)
    _exec(
        node,
        f"mkdir -p /etc/systemd/system/docker.service.d && "
        f"cp {units.DOCKER_DROPIN_DIR}/docker.io.conf "
        "/etc/systemd/system/docker.service.d/flannel.conf && systemctl daemon-reload",
    )
    _exec(node, "timeout 60 systemctl start docker.service")
    assert _exec(node, "systemctl is-active flanneld.service docker.service").split() == [
        "active",
        "active",
    ]
    ready, started = _times(node)
    assert started >= ready, f"dockerd started {ready - started:.2f}s before flanneld was READY"
    # and it saw the options mk-docker-opts.sh wrote from flanneld's lease
    seen = _exec(node, "cat /run/stub/dockerd.saw")
    assert 'DOCKER_NETWORK_OPTIONS="--bip=10.1.15.1/24 --ip-masq=false --mtu=1450"' in seen, seen


def test_flanneld_orders_itself_before_docker_without_the_drop_in(node: str) -> None:
    # no drop-in (the generator removed, so docker.service is the vendor's alone): both started
    # in one transaction, flanneld's own Before=docker.service still holds docker back
    _exec(node, f"rm {units.GENERATOR_PATH} && systemctl daemon-reload")
    shown = _exec(node, "systemctl show -p DropInPaths docker.service")
    assert shown.strip() == "DropInPaths=", shown
    _exec(node, "timeout 60 systemctl start flanneld.service docker.service")
    ready, started = _times(node)
    assert started >= ready, f"dockerd started {ready - started:.2f}s before flanneld was READY"
