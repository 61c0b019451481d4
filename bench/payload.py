"""Payload benchmark (issue 3): `build.py payload` for six arches from a warm cache.

Target: under 2 s for the whole command. Each flanneld is a 40 MiB test body with the right ELF
header. Prints the median of several runs of a full restage and of the no-op re-run.
"""

from __future__ import annotations

import hashlib
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
from tests.assets import elf  # noqa: E402

ARCHES = ["amd64", "arm64", "arm", "ppc64le", "s390x", "riscv64"]
RUNS = 5


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="flannelnode-bench-"))
    try:
        carried = work / "carried"
        carried.mkdir()
        pins = {}
        for arch in ARCHES:
            body = elf(arch, size=40 * 1024 * 1024)
            (carried / f"flanneld-{arch}").write_bytes(body)
            pins[f"flanneld-{arch}"] = hashlib.sha256(body).hexdigest()
        lock.write(work / "release.lock", {"v0.27.4": pins})
        (work / "node.toml").write_text(
            f"[flannel]\narches = {ARCHES!r}\n".replace("'", '"')
            + '[fetch]\nlock = "release.lock"\ncache_dir = "cache"\n'
            + '[network]\nNetwork = "172.17.0.0/16"\nBackend = {Type = "vxlan"}\n'
        )
        base = [
            sys.executable,
            str(REPO / "build.py"),
            "-q",
            "--config",
            str(work / "node.toml"),
            "--build-dir",
            str(work / "build"),
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLANNEL")}
        subprocess.run(
            [*base, "fetch", "--local", str(carried)],
            check=True,
            env=env,
            stdout=subprocess.DEVNULL,
        )
        full, noop = [], []
        for _ in range(RUNS):
            shutil.rmtree(work / "build" / "payload", ignore_errors=True)
            start = time.perf_counter()
            subprocess.run([*base, "payload"], check=True, env=env, stdout=subprocess.DEVNULL)
            full.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run([*base, "payload"], check=True, env=env, stdout=subprocess.DEVNULL)
            noop.append(time.perf_counter() - start)
        print(
            f"payload, 6 arches x 40 MiB, warm cache (median of {RUNS}): "
            f"{statistics.median(full):.2f} s (target < 2 s)"
        )
        print(f"payload no-op re-run (median of {RUNS}): {statistics.median(noop):.2f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
