"""The command line: parse, load the config, call one step, turn expected errors into exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from .errors import EXIT_BAD_INPUT, FlannelnodeError
from .progress import Reporter

EPILOG = """\
exit codes: 0 ok; 1 a step failed (network, tool, cache miss with --offline); 2 bad input
(config, flags, files); 3 etcd holds a different network config; 4 supply-chain alarm (hash
mismatch, pin conflict, unsafe archive, wrong-arch binary); 130 interrupted.
"""


def _source_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--version", dest="flannel_version", metavar="TAG", help="flannel release tag")
    p.add_argument("--arch", help="comma-separated arches (amd64,arm64,arm,ppc64le,s390x,riscv64)")
    p.add_argument("--asset", choices=["binary", "tarball"], help="asset kind to use")
    p.add_argument("--mirror", metavar="URL", help="base URL with GitHub's layout (FLANNEL_MIRROR)")
    p.add_argument("--local", metavar="PATH", help="asset file or directory (FLANNEL_LOCAL)")


def _common_flags(p: argparse.ArgumentParser, defaults: bool) -> None:
    kw = {} if defaults else {"default": argparse.SUPPRESS}
    p.add_argument("--config", type=Path, help="config file (default: ./node.toml)", **kw)
    p.add_argument("--build-dir", type=Path, help="output directory (default: ./build)", **kw)
    p.add_argument("-q", "--quiet", action="store_true", help="print only errors", **kw)


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(
        prog="build.py",
        description="Build flannel node artifacts from pinned flannel release binaries.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _common_flags(top, defaults=True)
    # the same flags after the step name: `build.py fetch --config x.toml` works too
    common = argparse.ArgumentParser(add_help=False)
    _common_flags(common, defaults=False)
    steps = top.add_subparsers(dest="step", required=True, metavar="STEP")

    p = steps.add_parser(
        "fetch", parents=[common], help="download and verify flannel release assets"
    )
    _source_flags(p)
    p.add_argument("--offline", action="store_true", help="use only the cache and --local")
    p.set_defaults(run=_fetch)

    p = steps.add_parser(
        "lock",
        parents=[common],
        help="pin a flannel release in release.lock (trust on first use)",
        description="Download the assets of a release, check each is flanneld for its arch, and "
        "record their sha256 in the lock file. Refuses to change an existing pin.",
    )
    _source_flags(p)
    p.set_defaults(run=_lock)

    p = steps.add_parser(
        "lint",
        parents=[common],
        help="check [network] against flannel's own rules",
        description="Check the network config flannel will read from etcd by flannel's own "
        "rules (CheckNetworkConfig, backend options). Errors exit 2; warnings exit 0.",
    )
    p.set_defaults(run=_lint)

    p = steps.add_parser("payload", parents=[common], help="stage the node file tree per arch")
    p.set_defaults(run=_payload)

    p = steps.add_parser("config", parents=[common], help="print the validated config as JSON")
    p.set_defaults(run=_show_config)
    return top


def _load(args: argparse.Namespace):
    from . import config

    overrides = {
        "flannel.version": getattr(args, "flannel_version", None),
        "flannel.asset": getattr(args, "asset", None),
        "fetch.mirror": getattr(args, "mirror", None),
        "fetch.local": getattr(args, "local", None),
    }
    arch = getattr(args, "arch", None)
    if arch:
        overrides["flannel.arches"] = [a.strip() for a in arch.split(",") if a.strip()]
    return config.load(args.config, overrides=overrides)


def _fetch(args: argparse.Namespace, reporter: Reporter) -> int:
    from .fetch import fetch

    for item in fetch(_load(args), args.build_dir, reporter, offline=args.offline):
        print(f"{item.flanneld}  {item.flanneld_sha256}  ({item.asset})")
    return 0


def _lock(args: argparse.Namespace, reporter: Reporter) -> int:
    from .fetch import pin

    if not args.flannel_version:
        raise _usage("lock needs --version TAG (the release to pin, e.g. v0.27.4)")
    cfg = _load(args)
    for name, digest, new in pin(cfg, reporter):
        print(f"{'pinned ' if new else 'already'} {cfg.flannel.version}/{name}  {digest}")
    return 0


def _lint(args: argparse.Namespace, reporter: Reporter) -> int:
    from . import netconf

    findings = netconf.lint_config(_load(args))
    for finding in findings:
        if finding.level != "info" or not args.quiet:
            print(finding, file=sys.stderr if finding.level == "error" else sys.stdout)
    if any(f.level == "error" for f in findings):
        return EXIT_BAD_INPUT
    return 0


def _payload(args: argparse.Namespace, reporter: Reporter) -> int:
    from .payload import stage

    for staged in stage(_load(args), args.build_dir, reporter):
        print(f"{staged.root}  {staged.digest[:16]}")
    return 0


def _show_config(args: argparse.Namespace, reporter: Reporter) -> int:
    print(json.dumps(_load(args).to_dict(), indent=2))
    return 0


def _usage(msg: str) -> FlannelnodeError:
    err = FlannelnodeError(msg)
    err.exit_code = EXIT_BAD_INPUT
    return err


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.build_dir = args.build_dir or Path("build")
    run: Callable[[argparse.Namespace, Reporter], int] = args.run
    try:
        return run(args, Reporter(quiet=args.quiet))
    except FlannelnodeError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was left in place", file=sys.stderr)
        return 130
