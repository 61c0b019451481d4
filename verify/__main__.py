"""python -m verify: the command line of the verify harness (make verify)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from flannelnode import config as config_mod
from flannelnode.errors import FlannelnodeError, describe_os_error, os_error_exit_code

from .containers import client, remove_all
from .etcd import DEFAULT_TOOLS_BASE
from .lab import LATE_ETCD_DELAY, LATE_ETCD_MAX_DELAY
from .runner import CHECKS, run


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m verify",
        description="Boot node containers from a built image against a real etcd and check "
        "them (testinfra, Docker-in-Docker). Exit 0 when every check passed.",
    )
    p.add_argument("--image", help="the node image under test (name or id)")
    p.add_argument("--config", type=Path, default=Path("node.toml"), help="default ./node.toml")
    p.add_argument("--build-dir", type=Path, default=Path("build"), help="default ./build")
    p.add_argument("--arch", default="amd64", help="payload arch of the image (default amd64)")
    p.add_argument(
        "--privileged",
        action="store_true",
        help="run nodes with --privileged (fails where CAP_SYS_RESOURCE is not available; the "
        "default is a capability set that works without it)",
    )
    p.add_argument(
        "--late-etcd-delay",
        type=float,
        default=LATE_ETCD_DELAY,
        metavar="SECONDS",
        help="the late-etcd check: two extra nodes boot against an etcd that starts only this "
        f"long after they booted, and must come up on flannel by themselves (default "
        f"{LATE_ETCD_DELAY:g}, at most {LATE_ETCD_MAX_DELAY:g})",
    )
    p.add_argument(
        "--checks",
        default=",".join(CHECKS),
        metavar="MODULES",
        help="comma-separated check modules to run (default: all of them, in this order: "
        f"{', '.join(CHECKS)}); the wrong-CA and late nodes boot only for their own checks",
    )
    p.add_argument(
        "--tools-base",
        default=DEFAULT_TOOLS_BASE,
        help=f"local Debian image for the etcd container (default {DEFAULT_TOOLS_BASE})",
    )
    p.add_argument("--out", type=Path, help="reports directory (default <build-dir>/verify/...)")
    p.add_argument("--cleanup", action="store_true", help="remove what killed runs left, exit")
    p.add_argument("pytest_args", nargs="*", help="passed to pytest after --, e.g. -- -k leases")
    return p


def _built_image(build_dir: Path, arch: str) -> str | None:
    """The docker-target image of arch that `build.py images` recorded last."""
    import json

    try:
        record = build_dir / "images" / f"docker-{arch}.json"
        return json.loads(record.read_text()).get("image")
    except (OSError, ValueError):
        return None


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        if args.cleanup:
            for line in remove_all(client()):
                print(f"removed {line}")
            return 0
        image = args.image or _built_image(args.build_dir, args.arch)
        if not image:
            parser().error(
                f"--image is required: no {args.build_dir}/images/docker-{args.arch}.json from "
                "`build.py images --target docker` names one"
            )
        cfg = config_mod.load(args.config)
        return run(
            image,
            cfg,
            args.build_dir,
            arch=args.arch,
            privileged=args.privileged,
            tools_base=args.tools_base,
            out_dir=args.out,
            pytest_args=tuple(args.pytest_args),
            late_etcd_delay=args.late_etcd_delay,
            checks=tuple(c.strip() for c in args.checks.split(",") if c.strip()),
        )
    except FlannelnodeError as exc:
        print(f"verify: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # --out, --config or --build-dir naming something unusable
        print(f"verify: {describe_os_error(exc)}", file=sys.stderr)
        return os_error_exit_code(exc)
    except KeyboardInterrupt:
        print("verify: interrupted; everything the run created was removed", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
