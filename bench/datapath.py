"""Benchmark: two nodes booted -> the first pod-to-pod TCP connection across them (issue 15).

For each backend (vxlan and host-gw, the config's network otherwise) and each of RUNS runs, two
fresh nodes boot together from IMAGE against one lab etcd; once both run docker on flannel (the
later of the two docker.service activations, from systemd's own clock), a pod starts on each
(both at once) and pod A connects to pod B's probe server over TCP until it answers (1 s per
try, at most SETTLE s). Printed: per run the seconds from both booted to that first connection
(and to both pods running), then the median per backend. Nothing is asserted.

Usage: python bench/datapath.py [IMAGE] [CONFIG] [RUNS]   (IMAGE: build/images/docker-amd64.json's)
"""

from __future__ import annotations

import dataclasses
import json
import statistics
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import testinfra

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flannelnode import config as config_mod
from verify.lab import Lab
from verify.pods import POD_PORT, SETTLE, start_pod

BACKENDS = ({"Type": "vxlan"}, {"Type": "host-gw"})


def one_run(lab: Lab, tag: str) -> tuple[float, float] | str:
    """(both booted -> pods running, both booted -> first connection) or why not."""
    nodes = [lab.add_node(f"{tag}a"), lab.add_node(f"{tag}b")]
    try:
        lab.start(nodes)
        if any(n.error for n in nodes):
            return "; ".join(f"{n.name}: {n.error}" for n in nodes if n.error)
        booted = max(n.started_at + n.boots[-1] for n in nodes)  # host-wide monotonic clock
        with ThreadPoolExecutor(2) as pool:  # both pods at once, as two schedulers would
            a, b = pool.map(
                lambda n: start_pod(n, testinfra.get_host(f"docker://{n.container.name}")), nodes
            )
        pods = time.monotonic() - booted
        stop_at = time.monotonic() + SETTLE
        while time.monotonic() < stop_at:
            rc, _ = a.probe("connect", b.ip, POD_PORT, "--timeout", 1)
            if rc == 0:
                return pods, time.monotonic() - booted
        return f"no connection within {SETTLE:g} s of both pods running"
    finally:
        for node in nodes:
            node.container.remove(force=True, v=True)


def main() -> int:
    args = sys.argv[1:]
    record = Path("build/images/docker-amd64.json")
    image = args[0] if args else json.loads(record.read_text())["image"]
    cfg = config_mod.load(Path(args[1]) if len(args) > 1 else None)
    runs = int(args[2]) if len(args) > 2 else 3
    for backend in BACKENDS:
        network: dict[str, Any] = {**cfg.network, "Backend": backend}
        times = []
        with Lab(image, dataclasses.replace(cfg, network=network), log=lambda m: None) as lab:
            for i in range(runs):
                result = one_run(lab, f"bench{i}")
                if isinstance(result, str):
                    print(f"{backend['Type']} run {i + 1}: {result}", file=sys.stderr)
                    return 1
                pods, connected = result
                times.append(connected)
                name = backend["Type"]
                print(f"{name} run {i + 1}: pods running {pods:.2f} s, first connection "
                      f"{connected:.2f} s after both nodes booted", flush=True)  # fmt: skip
        print(f"{backend['Type']}: both nodes booted -> first cross-node pod TCP connection: "
              f"median {statistics.median(times):.2f} s over {runs} runs "
              f"(min {min(times):.2f}, max {max(times):.2f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
