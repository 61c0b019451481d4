"""RPM and repo benchmarks (issue 5): all six arches' RPMs plus the signed repository.

Prints medians of RUNS runs; target: RPMs for six arches plus the signed repo in < 10 s. Each run
starts from a staged payload with no build/rpm or build/repo. Figures, not assertions.
Usage: bench/rpm.py [--arches amd64,arm64] [--like FILE]
  default: 64 KiB test bodies (ELF header and random bytes);
  --like /usr/bin/docker: each arch's ELF header on that Go binary's bytes, a realistic flanneld
  (flannel v0.27 release binaries are 30-50 MB and compress like any Go binary).
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

from flannelnode import cli, config, lock, repo, rpm  # noqa: E402
from flannelnode.progress import Reporter  # noqa: E402
from tests.assets import elf, sha  # noqa: E402

RUNS = 3
ARCHES = ["amd64", "arm64", "arm", "ppc64le", "s390x", "riscv64"]


FLANNELD_SIZE = 40 << 20  # flannel v0.2x amd64 binaries are 35-45 MB


def _setup(work: Path, arches: list[str], like: Path | None) -> None:
    carried = work / "carried"
    carried.mkdir()
    pins = {}
    for arch in arches:
        body = elf(arch)
        if like is not None:
            body = body[:20] + like.read_bytes()[20:FLANNELD_SIZE]  # flanneld's size
        (carried / f"flanneld-{arch}").write_bytes(body)
        pins[f"flanneld-{arch}"] = sha(body)
    lock.write(work / "release.lock", {"v0.27.4": pins})
    (work / "node.toml").write_text(
        f"[flannel]\narches = {arches!r}\n".replace("'", '"')
        + '[fetch]\nlock = "release.lock"\ncache_dir = "cache"\n'
    )
    common = ["-q", "--config", str(work / "node.toml"), "--build-dir", str(work / "build")]
    for step in (["fetch", "--offline", "--local", str(carried)], ["payload"]):
        if cli.main([*common, *step]) != 0:
            raise SystemExit(f"setup failed at {step[0]}")


def _key(home: Path) -> str:
    home.mkdir(mode=0o700)
    env = dict(os.environ, GNUPGHOME=str(home))
    subprocess.run(
        ["gpg", "--batch", "--passphrase", "", "--quick-gen-key", "bench <bench@invalid>",
         "rsa3072", "sign", "never"],
        check=True, capture_output=True, env=env,
    )  # fmt: skip
    out = subprocess.run(
        ["gpg", "--with-colons", "--list-secret-keys"], check=True, capture_output=True, env=env
    ).stdout.decode()
    return next(line.split(":")[9] for line in out.splitlines() if line.startswith("fpr:"))


def main() -> None:
    parser = argparse.ArgumentParser()
    docker = shutil.which("dockerd") or shutil.which("docker")
    parser.add_argument(
        "--like",
        type=Path,
        default=Path(docker) if docker else None,
        help="a Go binary whose bytes stand in for flanneld (default: dockerd, as big as flanneld)",
    )
    parser.add_argument("--arches", default=",".join(ARCHES), help="comma-separated")
    args = parser.parse_args()
    arches = args.arches.split(",")
    work = Path(tempfile.mkdtemp(prefix="flannelnode-bench-rpm-"))
    home = work / "gnupg"
    os.environ["SOURCE_DATE_EPOCH"] = "1700000000"
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            _setup(work, arches, args.like)
        fpr = _key(home)
        cfg = config.load(work / "node.toml")
        build, quiet = work / "build", Reporter(quiet=True)
        rpms, repos, totals = [], [], []
        for _ in range(RUNS):
            shutil.rmtree(build / "rpm", ignore_errors=True)
            shutil.rmtree(build / "repo", ignore_errors=True)
            start = time.perf_counter()
            rpm.build(cfg, build, quiet)
            mid = time.perf_counter()
            repo.publish(cfg, build, quiet, gpg_key=fpr, gpg_home=home, unsigned=False)
            end = time.perf_counter()
            rpms.append(mid - start)
            repos.append(end - mid)
            totals.append(end - start)
        start = time.perf_counter()
        rpm.build(cfg, build, quiet)
        noop = time.perf_counter() - start
        size = (build / f"payload/{arches[0]}/root/opt/kubernetes/bin/flanneld").stat().st_size
        body = f"{size / 2**20:.1f} MiB like {args.like}" if args.like else f"{size >> 10} KiB"
        print(f"{len(arches)} arches, flanneld {body} each, median of {RUNS}:")
        print(f"  rpm ({len(arches)} RPMs, rpmbuild --target): {statistics.median(rpms):.2f} s")
        print(
            f"  repo (sign, rpm -K, createrepo_c, repomd.xml.asc): {statistics.median(repos):.2f} s"
        )
        print(f"  total: {statistics.median(totals):.2f} s (target < 10 s)")
        print(f"  rpm again, up to date: {noop:.3f} s")
    finally:
        subprocess.run(["gpgconf", "--homedir", str(home), "--kill", "all"], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
