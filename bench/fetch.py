"""Fetch benchmarks: a verified cache hit of a 40 MB asset, hashing throughput (issue 2), and
8 concurrent fetches of 6 arches x 40 MiB into one cold cache (issue 12).

Prints medians over several runs; targets: cache hit < 0.3 s for the whole command, hashing
>= 80% of coreutils sha256sum on the same file, and the concurrent fetches served exactly one
copy of each asset. Figures, not assertions: this machine is shared.
"""

from __future__ import annotations

import hashlib
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
from flannelnode.arch import ARCHES  # noqa: E402
from flannelnode.cache import sha256_file  # noqa: E402
from tests.assets import elf  # noqa: E402
from tests.release_server import ReleaseServer  # noqa: E402

RUNS = 7
VERSION = "v0.27.4"


def timed(cmd: list[str], env: dict[str, str] | None = None, before=None) -> float:
    times = []
    for _ in range(RUNS):
        if before:
            before()
        start = time.perf_counter()
        subprocess.run(cmd, check=True, env=env, stdout=subprocess.DEVNULL)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    work = Path(tempfile.mkdtemp(prefix="flannelnode-bench-"))
    try:
        body = elf("amd64", size=40 * 1024 * 1024)
        asset = work / "carried" / "flanneld-amd64"
        asset.parent.mkdir()
        asset.write_bytes(body)
        digest = hashlib.sha256(body).hexdigest()
        lock.write(work / "release.lock", {"v0.27.4": {"flanneld-amd64": digest}})
        (work / "node.toml").write_text(
            '[flannel]\narches = ["amd64"]\n[fetch]\nlock = "release.lock"\ncache_dir = "cache"\n'
        )
        cmd = [
            sys.executable,
            str(REPO / "build.py"),
            "-q",
            "--config",
            str(work / "node.toml"),
            "--build-dir",
            str(work / "build"),
            "fetch",
        ]
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLANNEL")}
        subprocess.run([*cmd, "--local", str(asset.parent)], check=True, env=env)

        def drop_build() -> None:
            shutil.rmtree(work / "build", ignore_errors=True)

        hit = timed([*cmd, "--offline"], env, before=drop_build)
        noop = timed([*cmd, "--offline"], env)
        print(
            f"cache hit, 40 MiB asset, whole command (median of {RUNS}): {hit:.3f} s "
            f"(target < 0.3 s)"
        )
        print(f"up to date, 40 MiB asset, whole command (median of {RUNS}):  {noop:.3f} s")

        big = work / "hash-me"
        with big.open("wb") as f:
            for _ in range(8):
                f.write(os.urandom(32 * 1024 * 1024))
        ours, theirs = [], []
        for _ in range(5):
            start = time.perf_counter()
            sha256_file(big)
            ours.append(time.perf_counter() - start)
            start = time.perf_counter()
            subprocess.run(["sha256sum", str(big)], check=True, stdout=subprocess.DEVNULL)
            theirs.append(time.perf_counter() - start)
        mib = big.stat().st_size / 2**20
        o, t = mib / statistics.median(ours), mib / statistics.median(theirs)
        print(
            f"sha256 throughput: flannelnode {o:.0f} MiB/s, sha256sum {t:.0f} MiB/s, "
            f"ratio {o / t:.2f} (target >= 0.80)"
        )
    finally:
        shutil.rmtree(work, ignore_errors=True)


def concurrent_cold(runs: int = 8, size: int = 40 << 20) -> None:
    """`runs` fetch processes at once, every one wanting all six arches, sharing one cold cache
    (each with its own build dir, as parallel CI jobs have), against a local release server."""
    arches = [a for a in ARCHES if a != "mips64le"]  # the six that v0.27.4 publishes
    work = Path(tempfile.mkdtemp(prefix="flannelnode-bench-"))
    server = ReleaseServer().start()
    try:
        bodies = {f"flanneld-{a}": elf(a, size=size) for a in arches}
        for name, body in bodies.items():
            server.add(VERSION, name, body)
        pins = {name: hashlib.sha256(body).hexdigest() for name, body in bodies.items()}
        lock.write(work / "release.lock", {VERSION: pins})
        (work / "node.toml").write_text(
            f"[flannel]\narches = {json.dumps(arches)}\n"
            f'[fetch]\nlock = "release.lock"\ncache_dir = "cache"\nmirror = "{server.url}"\n'
        )
        env = {k: v for k, v in os.environ.items() if not k.startswith("FLANNEL")}
        config = ["--config", str(work / "node.toml")]

        def cmd(n: int) -> list[str]:
            build = ["--build-dir", str(work / f"build{n}")]
            return [sys.executable, str(REPO / "build.py"), "-q", *config, *build, "fetch"]

        start = time.perf_counter()
        procs = [subprocess.Popen(cmd(n), env=env, stdout=subprocess.DEVNULL) for n in range(runs)]
        codes = [p.wait() for p in procs]
        wall = time.perf_counter() - start
        served = sum(server.sent.values())
        once = sum(len(b) for b in bodies.values())
        downloads = {name: server.downloads(name) for name in bodies}
        ok = codes == [0] * runs and served == once and set(downloads.values()) == {1}
        print(
            f"{runs} concurrent fetches, {len(arches)} arches x {size >> 20} MiB, one cold cache: "
            f"wall {wall:.2f} s; served {served / 2**20:.0f} MiB for one copy of "
            f"{once / 2**20:.0f} MiB, downloads per asset {sorted(set(downloads.values()))}, "
            f"exit codes {sorted(set(codes))}: {'OK' if ok else 'FAILED'}"
        )
        shutil.rmtree(work / "cache")
        server.sent.clear()
        start = time.perf_counter()
        subprocess.run(cmd(runs), env=env, check=True, stdout=subprocess.DEVNULL)
        one = time.perf_counter() - start
        print(f"for comparison, 1 fetch of the same into a cold cache: {one:.2f} s")
    finally:
        server.stop()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
    concurrent_cold()
