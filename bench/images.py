"""Images benchmark (issues 6 and 7), on a throwaway project whose release is the flanneld stand-in.

Prints: no-op `make images ARCH=amd64,arm64` (median of 5; target <= 1 s), the docker target
for amd64 from a cached base and cached release (median of 3 forced Packer builds; target < 60 s),
the arm64 docker target from a cached arm64 base (one forced Packer build under qemu-user), node
boot to docker running with flannel's options (bench/verify.py, median over several first boots;
aim < 10 s), and with --qemu the qcow2 from a cached base (one build, assembled from the base's
VM tree; aim <= 90 s under TCG; bench/vm.py --build compares it with the Packer build).
The first `make images` also builds the arm64 base if build/base has none (about 4 minutes).
Run: .venv/bin/python bench/images.py [--qemu]
"""

from __future__ import annotations

import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from flannelnode import lock  # noqa: E402
from flannelnode.cache import sha256_file  # noqa: E402
from tests import standin  # noqa: E402

# a version no real release has: the bench's image never replaces an operator's real one
VERSION = "v0.27.999"
ARCHES = ("amd64", "arm64")


def timed(argv: list[str], env: dict[str, str], runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, check=True, env=env, cwd=REPO, capture_output=True)
        times.append(time.perf_counter() - start)
    return times


def main() -> None:
    qemu = "--qemu" in sys.argv[1:]
    work = Path(tempfile.mkdtemp(prefix="flannelnode-bench-images-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLANNEL")}
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # as under make
    try:
        (work / "rel" / VERSION).mkdir(parents=True)
        pins = {}
        for arch in ARCHES:
            asset = work / "rel" / VERSION / f"flanneld-{arch}"
            pins[asset.name] = sha256_file(standin.build(asset, arch=arch, version=VERSION))
        lock.write(work / "release.lock", {VERSION: pins})
        config = work / "node.toml"
        config.write_text(
            f'[flannel]\nversion = "{VERSION}"\narches = {json.dumps(list(ARCHES))}\n'
            '[fetch]\nlock = "release.lock"\ncache_dir = "cache"\nlocal = "rel"\n'
        )
        make = [
            "make",
            "-s",
            "images",
            f"CONFIG={config}",
            f"BUILD={work / 'build'}",
            "IMAGES=docker",
        ]
        subprocess.run(make, check=True, env=env, cwd=REPO, capture_output=True)
        noop = timed(make, env, 5)
        print(
            f"no-op make images ARCH=amd64,arm64 (median of 5): {statistics.median(noop):.2f} s "
            "(target <= 1 s)"
        )
        force = [
            sys.executable,
            "build.py",
            "-q",
            "--config",
            str(config),
            "--build-dir",
            str(work / "build"),
            "images",
            "--target",
            "docker",
            "--force",
        ]
        docker = timed(force, {**env, "ARCH": "amd64"}, 3)
        print(
            f"docker target amd64 from cached base and release (median of 3): "
            f"{statistics.median(docker):.1f} s (target < 60 s)"
        )
        arm64 = timed(force, {**env, "ARCH": "arm64"}, 1)
        print(f"docker target arm64 from the cached arm64 base (qemu-user): {arm64[0]:.0f} s")
        image = f"flannelnode/node:{VERSION}-amd64"
        subprocess.run(
            [sys.executable, "bench/verify.py", image, str(config), "5"],
            check=True,
            env=env,
            cwd=REPO,
        )
        if qemu:
            qcow2 = timed([*force[:-3], "--target", "qemu", "--force"], env, 1)
            print(f"qcow2 from cached base (assembled, one build): {qcow2[0]:.0f} s (aim <= 90 s)")
    finally:
        shutil.rmtree(work, ignore_errors=True)
        subprocess.run(
            ["docker", "rmi", "-f", *(f"flannelnode/node:{VERSION}-{a}" for a in ARCHES)],
            capture_output=True,
            check=False,
        )


if __name__ == "__main__":
    main()
