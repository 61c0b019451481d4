"""repo benchmark (issue 12): a no-op `repo` (nothing new to sign) against the 0.3 s target.

Prints medians of RUNS runs, figures and not assertions: the no-op in-process (repo.publish) and
as a whole `build.py repo` process (interpreter start and imports included), then what adding a
release costs (sign 1 release, createrepo_c --update, repomd.xml.asc) for comparison.
Usage: bench/repo.py [--arches amd64,arm64] [--like FILE] [--runs N]
  default: the default config's two arches, each flanneld the size of a real one (40 MB of
  dockerd's bytes behind its ELF header), as in bench/rpm.py.
"""

from __future__ import annotations

import argparse
import contextlib
import io
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

from bench.rpm import _key, _setup  # noqa: E402
from flannelnode import config, repo, rpm  # noqa: E402
from flannelnode.progress import Reporter  # noqa: E402


def _median(values: list[float]) -> str:
    return f"{statistics.median(values):.3f} s (min {min(values):.3f}, max {max(values):.3f})"


def main() -> None:
    parser = argparse.ArgumentParser()
    docker = shutil.which("dockerd") or shutil.which("docker")
    parser.add_argument("--like", type=Path, default=Path(docker) if docker else None)
    parser.add_argument("--arches", default="amd64,arm64", help="comma-separated")
    parser.add_argument("--runs", type=int, default=7)
    args = parser.parse_args()
    arches = args.arches.split(",")
    work = Path(tempfile.mkdtemp(prefix="flannelnode-bench-repo-"))
    home = work / "gnupg"
    os.environ["SOURCE_DATE_EPOCH"] = "1700000000"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            _setup(work, arches, args.like)
        fpr = _key(home)
        cfg = config.load(work / "node.toml")
        build, quiet = work / "build", Reporter(quiet=True)
        rpm.build(cfg, build, quiet)

        def publish() -> repo.Repo:
            return repo.publish(cfg, build, quiet, gpg_key=fpr, gpg_home=home, unsigned=False)

        start = time.perf_counter()
        publish()
        first = time.perf_counter() - start

        inproc = []
        for _ in range(args.runs):
            start = time.perf_counter()
            assert not publish().changed
            inproc.append(time.perf_counter() - start)

        cli = [sys.executable, str(REPO / "build.py"), "-q", "--config", str(work / "node.toml"),
               "--build-dir", str(build), "repo", "--gpg-key", fpr,
               "--gpg-home", str(home)]  # fmt: skip
        process = []
        for _ in range(args.runs):
            start = time.perf_counter()
            subprocess.run(cli, check=True, capture_output=True)
            process.append(time.perf_counter() - start)

        added = []
        for release in range(2, 2 + min(args.runs, 3)):
            rpm.build(cfg, build, quiet, release=str(release))
            start = time.perf_counter()
            publish()
            added.append(time.perf_counter() - start)

        size = (build / f"payload/{arches[0]}/root/opt/kubernetes/bin/flanneld").stat().st_size
        mib = size / 2**20
        print(f"{len(arches)} arches, flanneld {mib:.1f} MiB each; medians of {args.runs}:")
        print(f"  repo, first publish (sign, createrepo_c, sign repomd): {first:.2f} s")
        print(f"  repo, nothing new, in-process:   {_median(inproc)}  (target <= 0.3 s)")
        print(f"  repo, nothing new, `build.py repo` process: {_median(process)}")
        print(f"  repo, a new release beside the last ones: {_median(added)}")
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
