"""VM benchmark (issue 10): qemu start -> docker running on flannel's subnet, in a real VM.

Builds (or reuses, when its inputs are unchanged) a qcow2 whose flanneld is the test stand-in,
in build/bench-vm/ of this checkout on the shared base (build/base/, `make base`); then, against
one TLS etcd on this host's 127.0.0.1, boots it BOOTS times, each a first boot (a fresh overlay
and instance-id, etcd's flannel keys wiped), and prints every duration and the median. Accelerator:
FLANNELNODE_QEMU_ACCEL (default TCG). Aim: median <= 90 s under TCG.

With --build [RUNS] it boots nothing and times the qcow2 build itself from the cached base
(forced, RUNS times each, default 1): assembled from the base's VM tree (diskimage.py, what
`images` does for our own base) and with Packer booting the base qcow2 (what it does for other
bases), and prints each run and the medians (issue 16; aim: assembled <= 90 s under TCG).
Run: .venv/bin/python bench/vm.py [BOOTS] | --build [RUNS]
"""

from __future__ import annotations

import dataclasses
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flannelnode import config as config_mod  # noqa: E402
from flannelnode import diskimage, images, lock, userdata  # noqa: E402
from flannelnode.cache import sha256_file  # noqa: E402
from flannelnode.progress import Reporter  # noqa: E402
from tests import standin, vm  # noqa: E402
from tests.etcd_cluster import EtcdCluster  # noqa: E402

# a version no real release has (>= v0.26: the stand-in behaves as the current release line)
VERSION = "v0.27.999"
WORK = REPO / "build" / "bench-vm"
DOCKER_TIMEOUT = 300
TIMELINE = ("cloud-init-local", "cloud-init", "flannel-seed-etcd", "flanneld", "containerd",
            "docker")  # fmt: skip


def standin_config(work: Path) -> Path:
    """A node.toml whose release is the stand-in, pinned in its own lock, served from a dir."""
    release = work / "rel" / VERSION
    release.mkdir(parents=True, exist_ok=True)
    asset = release / "flanneld-amd64"
    fresh = work / "flanneld-amd64.new"
    standin.build(fresh, version=VERSION)
    if not asset.exists() or sha256_file(asset) != sha256_file(fresh):
        fresh.replace(asset)
        (work / "release.lock").unlink(missing_ok=True)
    fresh.unlink(missing_ok=True)
    lock.write(work / "release.lock", {VERSION: {"flanneld-amd64": sha256_file(asset)}})
    config = work / "node.toml"
    config.write_text(
        f'[flannel]\nversion = "{VERSION}"\narches = ["amd64"]\n'
        '[fetch]\nlock = "release.lock"\ncache_dir = "cache"\nlocal = "rel"\n'
    )
    return config


def qcow2(cfg: config_mod.Config, work: Path) -> Path:
    from flannelnode import fetch

    reporter = Reporter(quiet=True)
    fetch.fetch(cfg, work / "build", reporter)
    started = time.monotonic()
    [built] = images.build(
        cfg, work / "build", reporter, ("qemu",), base_dir=REPO / "build" / "base"
    )
    if built.rebuilt:
        print(f"qcow2 built in {time.monotonic() - started:.0f} s", flush=True)
    else:
        print("qcow2 reused (inputs unchanged)", flush=True)
    assert built.path
    return Path(built.path)


def boot_once(disk: Path, cfg, etcd: EtcdCluster, tmp: Path, key: Path, public: str, i: int):
    tls = userdata.TlsFiles(etcd.certs.ca, etcd.certs.cert, etcd.certs.key)
    iso, _ = vm.seed_iso(vm.user_data(cfg, tls, public), tmp, f"bench{i}")
    ports = (etcd.members[0].client_port,)
    with vm.Vm(disk, tmp / f"boot{i}", iso, key, host_ports=ports) as machine:
        machine.wait_ssh(DOCKER_TIMEOUT)
        machine.wait_for(
            "docker.service active",
            lambda: machine.ssh("systemctl is-active docker", 30).stdout.strip() == "active",
            DOCKER_TIMEOUT - (time.monotonic() - machine.started_at),
        )
        args = machine.out(
            "tr '\\0' ' ' </proc/$(systemctl show -p MainPID --value docker)/cmdline"
        )
        if "--bip=" not in args:
            raise vm.VmError(f"docker runs without flannel's options: {args}")
        zero = machine.since_start(0.0)  # qemu start -> the guest kernel's clock zero
        timeline = [f"{'guest kernel starts':<26}{zero:6.1f} s"]
        for unit in TIMELINE:
            timeline.append(f"{unit + ' active':<26}{zero + machine.active_monotonic(unit):6.1f} s")
        return zero + machine.active_monotonic("docker"), "\n".join(timeline)


def build_times(cfg: config_mod.Config, work: Path, runs: int) -> None:
    from flannelnode import fetch

    reporter = Reporter(quiet=True)
    fetch.fetch(cfg, work / "build", reporter)
    base_dir = REPO / "build" / "base"
    images.build(cfg, work / "build", reporter, ("qemu",), base_dir=base_dir)  # base, payload
    accel = vm.accel_args()[1].split(",")[0]
    medians = {}
    for method, variants in (("assembled", diskimage.VARIANTS), ("packer", ())):
        times = []
        for i in range(runs):
            diskimage.VARIANTS, kept = variants, diskimage.VARIANTS  # () sends our base to Packer
            try:
                started = time.monotonic()
                [built] = images.build(
                    cfg, work / "build", reporter, ("qemu",), base_dir=base_dir, force=True
                )
                times.append(time.monotonic() - started)
            finally:
                diskimage.VARIANTS = kept
            assert built.method == method, built
            print(f"qcow2 {method} run {i + 1}: {times[-1]:.1f} s", flush=True)
        medians[method] = statistics.median(times)
    for method, median in medians.items():
        aim = " (aim <= 90 s under TCG)" if method == "assembled" else ""
        print(f"qcow2 from the cached base, {method} ({accel}): median {median:.1f} s over "
              f"{runs} run(s){aim}")  # fmt: skip


def main() -> int:
    if "--build" in sys.argv[1:]:
        args = [a for a in sys.argv[1:] if a != "--build"]
        WORK.mkdir(parents=True, exist_ok=True)
        cfg = config_mod.load(standin_config(WORK), env={})
        build_times(cfg, WORK, int(args[0]) if args else 1)
        return 0
    boots = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    WORK.mkdir(parents=True, exist_ok=True)
    cfg = config_mod.load(standin_config(WORK), env={})
    disk = qcow2(cfg, WORK)
    tmp = Path(tempfile.mkdtemp(prefix="flannelnode-bench-vm-"))
    times = []
    try:
        key, public = vm.ssh_keypair(tmp / "ssh")
        with EtcdCluster(tmp / "etcd", size=1, extra_ips=[vm.GUEST_HOST_IP]) as etcd:
            port = etcd.members[0].client_port
            etcd_cfg = dataclasses.replace(
                cfg.etcd, endpoints=[f"https://{vm.GUEST_HOST_IP}:{port}"]
            )
            node_cfg = dataclasses.replace(cfg, etcd=etcd_cfg)
            oracle = etcd.oracle()
            for i in range(boots):
                oracle.delete_prefix(cfg.etcd.prefix + "/")
                seconds, timeline = boot_once(disk, node_cfg, etcd, tmp, key, public, i)
                times.append(seconds)
                print(f"boot {i + 1}: {seconds:.1f} s", flush=True)
            print("the last boot, seconds after qemu started:\n" + timeline)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    accel = vm.accel_args()[1].split(",")[0]
    median = statistics.median(times)
    print(f"VM start -> docker on flannel ({accel}): median {median:.1f} s over {len(times)} "
          f"boots (min {min(times):.1f}, max {max(times):.1f}; aim <= 90 s)")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
