"""verify.run(): boot the image under test in a lab, run the checks, report, clean up."""

from __future__ import annotations

import json
import signal
import sys
from pathlib import Path
from typing import Any

import pytest

from flannelnode.config import Config
from flannelnode.payload import MANIFEST, payload_dir

from .containers import Profile, VerifyError
from .etcd import DEFAULT_TOOLS_BASE
from .lab import LATE_ETCD_DELAY, Lab
from .plugin import LabPlugin

HERE = Path(__file__).resolve().parent
# in this order: read-only checks first, then the ones that restart things, and last the late
# etcd, whose delay runs from the first boot on, overlapping everything before it
CHECKS = (
    "test_image.py",
    "test_node.py",
    "test_datapath.py",
    "test_wrong_ca.py",
    "test_restart.py",
    "test_late_etcd.py",
)
GOOD_NODES = ("node1", "node2")
BAD_NODE = "wrong-ca"
# late1 boots for the first time (its seeder waits for etcd); late2 was seeded before (its
# seed unit is skipped, flanneld itself waits for etcd), as every node after a power-on
LATE_NODES = (("late1", False), ("late2", True))
EXIT_SETUP = 1


def run(
    image: str,
    config: Config,
    build_dir: Path,
    *,
    arch: str = "amd64",
    privileged: bool = False,
    tools_base: str = DEFAULT_TOOLS_BASE,
    out_dir: Path | None = None,
    pytest_args: tuple[str, ...] = (),
    late_etcd_delay: float = LATE_ETCD_DELAY,
    checks: tuple[str, ...] = CHECKS,
    log: Any = print,
) -> int:
    """Verify `image` (a local image name or id) built from `config` and the payload in
    build_dir. Returns pytest's exit code (0: every check passed). Writes junit.xml,
    summary.txt and lab.json to out_dir (default <build_dir>/verify/<image tag>).
    late_etcd_delay: seconds between the late nodes' boot and the start of their etcd.
    checks: the check modules to run (in CHECKS' order); the wrong-CA and late nodes boot only
    for their own checks."""
    unknown = sorted(set(checks) - set(CHECKS))
    if unknown or not checks:
        raise VerifyError(f"unknown checks {unknown or checks}: choose from {', '.join(CHECKS)}")
    manifest = payload_dir(build_dir, arch) / MANIFEST
    if not manifest.exists():
        raise VerifyError(f"{manifest} is missing: run `build.py payload` for {arch} first")
    out = out_dir or build_dir / "verify" / image.replace("/", "_").replace(":", "_")
    out.mkdir(parents=True, exist_ok=True)
    previous = signal.signal(signal.SIGTERM, _interrupt)
    try:
        with Lab(
            image,
            config,
            profile=Profile(privileged),
            tools_base=tools_base,
            late_etcd_delay=late_etcd_delay,
            log=log,
        ) as lab:
            lab.manifest = manifest
            nodes = [lab.add_node(n) for n in GOOD_NODES]
            if "test_wrong_ca.py" in checks:
                nodes.append(lab.add_node(BAD_NODE, wrong_ca=True))
            if "test_late_etcd.py" in checks:
                nodes += [lab.add_node(n, late=True, seeded_before=s) for n, s in LATE_NODES]
            log(f"{lab.run_id}: booting {', '.join(n.name for n in nodes)} from {image}")
            lab.start(nodes)
            lab.describe(out / "lab.json")
            # the image checks run on testinfra's own `host`: a container of the image as built
            image_hosts = (
                [f"--hosts=docker://{lab.pristine()}", f"--payload-manifest={manifest}"]
                if "test_image.py" in checks
                else []
            )
            plugin = LabPlugin(lab)
            code = pytest.main(
                [
                    *(str(HERE / name) for name in CHECKS if name in checks),
                    f"--rootdir={HERE.parent}",
                    "-p",
                    "no:cacheprovider",
                    f"--junitxml={out / 'junit.xml'}",
                    "-o",
                    "junit_suite_name=flannelnode-verify",
                    "-q",
                    "-W",
                    "ignore::pytest.PytestAssertRewriteWarning",
                    *image_hosts,
                    *pytest_args,
                ],
                plugins=[plugin],
            )
            summary = plugin.summary()
            lab.describe(out / "lab.json")
            (out / "summary.txt").write_text(summary)
            log(summary + f"junit: {out / 'junit.xml'}\nsummary: {out / 'summary.txt'}")
            return int(code)
    finally:
        signal.signal(signal.SIGTERM, previous)


def _interrupt(signum: int, frame: Any) -> None:
    raise KeyboardInterrupt


def boots(out_dir: Path) -> list[float]:
    """Boot durations recorded in a run's lab.json (for benchmarks)."""
    data = json.loads((out_dir / "lab.json").read_text())
    return [b for n in data["nodes"].values() for b in n["boots"]]


if __name__ == "__main__":
    sys.exit("use: python -m verify")
