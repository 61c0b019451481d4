"""Seeder benchmark (issue 4): N seeders hit a 3-member TLS etcd cluster at the same instant.

Each seeder is its own process, as on a booting fleet: its own interpreter, TLS handshakes and
connection to etcd, no shared GIL. Threads in one process would measure Python's GIL and share
a process the nodes do not share. Interpreter start-up (0.15 s of CPU each, 2 cores here) would
smear the herd over seconds, so every process first imports the seeder, reports ready on a
shared pipe, and blocks on a second pipe; one write releases them all together. Latency is what
each seeder measures itself (--stats: seed() entry to outcome); requests are its own count.

Checks: every seeder exits 0, exactly one reports "written", and etcd (read back with the etcd3
gRPC client) holds the key at version 1 with create_revision == mod_revision.
Run: .venv/bin/python bench/seed.py [--seeders 200] [--api v3|v2]
"""

from __future__ import annotations

import argparse
import json
import os
import select
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.etcd_cluster import EtcdCluster  # noqa: E402

SCRIPT = REPO / "scripts" / "flannel-seed-etcd"
NETWORK = {"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}
RUN_LIMIT = 180.0  # seconds for the whole herd, start-up included

# imports the seeder, says ready, waits for the starting gun, then runs its main()
BOOT = """
import os, sys, time
from importlib.machinery import SourceFileLoader
from importlib.util import module_from_spec, spec_from_loader
loader = SourceFileLoader("flannel_seed_etcd", sys.argv[1])
seeder = module_from_spec(spec_from_loader(loader.name, loader))
loader.exec_module(seeder)
ready, go = int(os.environ["BENCH_READY_FD"]), int(os.environ["BENCH_GO_FD"])
os.write(ready, b"r")
os.read(go, 1)
code = seeder.main(sys.argv[2:])
print('{"done": %r}' % time.time())
sys.exit(code)
"""


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def read_back(cluster: EtcdCluster, key: str, api: str) -> str:
    if api == "v2":
        return "(v2: see the seeders' outcomes)"
    client = cluster.oracle()
    try:
        value, meta = client.get(key)
    finally:
        client.close()
    assert value is not None and json.loads(value) == NETWORK, value
    assert meta.version == 1 and meta.create_revision == meta.mod_revision, meta
    return f"version {meta.version}, create_revision {meta.create_revision} == mod_revision"


def herd(cluster: EtcdCluster, count: int, api: str, python: str, workdir: Path) -> list[dict]:
    c = cluster.certs
    args = [
        "--endpoints", ",".join(cluster.endpoints), "--cacert", str(c.ca), "--cert", str(c.cert),
        "--key", str(c.key), "--config-json", json.dumps(NETWORK), "--api", api,
        "--deadline", "60", "--stats", "-q",
    ]  # fmt: skip
    ready_r, ready_w = os.pipe()
    go_r, go_w = os.pipe()
    env = {**os.environ, "BENCH_READY_FD": str(ready_w), "BENCH_GO_FD": str(go_r)}
    processes: list[subprocess.Popen[bytes]] = []
    stop_at = time.monotonic() + RUN_LIMIT
    try:
        for i in range(count):
            with (workdir / f"{i}.out").open("wb") as out, (workdir / f"{i}.err").open("wb") as err:
                processes.append(
                    subprocess.Popen(
                        [python, "-c", BOOT, str(SCRIPT), *args],
                        stdout=out,
                        stderr=err,
                        env=env,
                        pass_fds=(ready_w, go_r),
                    )
                )
        os.close(ready_w)
        started = time.monotonic()
        ready = 0
        while ready < count:  # one byte from each process
            if time.monotonic() > stop_at or any(p.poll() is not None for p in processes):
                raise SystemExit(f"only {ready} of {count} seeders got ready (see {workdir})")
            if select.select([ready_r], [], [], 0.5)[0]:
                ready += len(os.read(ready_r, count))
        print(f"{count} seeders ready in {time.monotonic() - started:.1f} s; go")
        released, go_at = time.monotonic(), time.time()
        os.write(go_w, b"g" * count)
        for p in processes:
            p.wait(timeout=max(1.0, stop_at - time.monotonic()))
        print(f"herd done {time.monotonic() - released:.2f} s after the go")
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()
        for fd in (ready_r, go_r, go_w):
            os.close(fd)
    failures = [
        (p.returncode, (workdir / f"{i}.err").read_text().strip())
        for i, p in enumerate(processes)
        if p.returncode != 0
    ]
    if failures:
        raise SystemExit(f"{len(failures)} of {count} seeders failed, e.g. {failures[:3]}")
    outcomes = []
    for i in range(count):
        stats, done = (json.loads(line) for line in (workdir / f"{i}.out").read_text().splitlines())
        outcomes.append({**stats, "since_go": done["done"] - go_at})
    return outcomes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeders", type=int, default=200)
    parser.add_argument("--api", choices=("v3", "v2"), default="v3")
    parser.add_argument("--python", default=sys.executable, help="interpreter for the seeders")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="bench-seed-") as tmp:
        workdir = Path(tmp)
        with EtcdCluster(workdir / "etcd") as cluster:
            outcomes = herd(cluster, args.seeders, args.api, args.python, workdir)
            actions = [o["action"] for o in outcomes]
            written = actions.count("written")
            check = read_back(cluster, outcomes[0]["key"], args.api)
    requests = [o["requests"] for o in outcomes]
    print(f"seeders: {len(outcomes)} all exit 0; written: {written}; "
          f"unchanged: {actions.count('unchanged')}; etcd: {check}")  # fmt: skip
    for label, values in (
        ("in seed() (TLS setup, requests, read-back)", [o["seconds"] for o in outcomes]),
        ("from the go to done (includes waiting for a core)", [o["since_go"] for o in outcomes]),
    ):
        ms = [v * 1000 for v in values]
        print(f"latency {label}: p50 {percentile(ms, 0.5):.0f} ms  "
              f"p99 {percentile(ms, 0.99):.0f} ms  max {max(ms):.0f} ms")  # fmt: skip
    print(f"etcd requests per seeder: mean {statistics.mean(requests):.2f}  "
          f"min {min(requests)}  max {max(requests)}  total {sum(requests)}")  # fmt: skip
    if written != 1:
        raise SystemExit(f"expected exactly one write, got {written}")


if __name__ == "__main__":
    main()
