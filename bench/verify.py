"""Benchmark: node container start -> docker running with flannel options (issue 7).

Boots BOOTS nodes one after another from IMAGE against one lab etcd (each a fresh container with
its own instance-id, so each is a first boot through cloud-init), then prints every duration and
the median. Usage: python bench/verify.py IMAGE [CONFIG] [BOOTS]
"""

from __future__ import annotations

import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from flannelnode import config as config_mod
from verify.lab import Lab


def main() -> int:
    if len(sys.argv) < 2:
        print(__doc__, file=sys.stderr)
        return 2
    image = sys.argv[1]
    cfg = config_mod.load(Path(sys.argv[2]) if len(sys.argv) > 2 else None)
    boots = int(sys.argv[3]) if len(sys.argv) > 3 else 5
    times = []
    with Lab(image, cfg, log=lambda m: None) as lab:
        for i in range(boots):
            node = lab.add_node(f"bench{i}")
            lab.start([node])
            if node.error:
                print(f"bench{i}: {node.error}", file=sys.stderr)
                return 1
            times += node.boots
            print(f"boot {i + 1}: {node.boots[0]:.2f} s", flush=True)
            if i == boots - 1:
                _, out = node.container.exec_run(["systemd-analyze", "blame", "--no-pager"])
                print("slowest units of the last boot:")
                print("\n".join(out.decode().splitlines()[:5]))
            node.container.remove(force=True, v=True)
    print(f"first boot to docker on flannel: median {statistics.median(times):.2f} s over "
          f"{len(times)} boots (min {min(times):.2f}, max {max(times):.2f})")  # fmt: skip
    return 0


if __name__ == "__main__":
    sys.exit(main())
