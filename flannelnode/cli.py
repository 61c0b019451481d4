"""The command line: parse, load the config, call one step, turn expected errors into exit codes."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path

from . import urls
from .errors import (
    ConfigError,
    FlannelnodeError,
    describe_os_error,
    os_error_exit_code,
)
from .progress import Reporter

EPILOG = """\
exit codes: 0 ok; 1 a step failed (network, tool, cache miss with --offline); 2 bad input
(config, flags, files); 3 etcd holds a different network config; 4 supply-chain alarm (hash
mismatch, pin conflict, unsafe archive, wrong-arch binary, a staged payload or RPM changed since
its step made it); 130 interrupted.
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


def _tls_flags(p: argparse.ArgumentParser, required: bool = True) -> None:
    """etcd client TLS files on the build host (config.etcd names their paths on the node)."""
    p.add_argument("--etcd-ca", type=Path, required=required, metavar="PEM", help="CA certificate")
    p.add_argument("--etcd-cert", type=Path, required=required, metavar="PEM", help="client cert")
    p.add_argument("--etcd-key", type=Path, required=required, metavar="PEM", help="client key")


def _userdata_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("-o", "--output", type=Path, help="default: <build-dir>/userdata/user-data")
    p.add_argument(
        "--seed-deadline", type=int, help="seconds the node waits for etcd (default: 300)"
    )


def _rpm_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--release", help="RPM Release (default: rpm.release in the config)")


def _repo_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--gpg-key",
        metavar="KEY",
        help="key id, fingerprint, user id or secret key file (FLANNELNODE_GPG_KEY)",
    )
    p.add_argument("--gpg-home", type=Path, metavar="DIR", help="GnuPG home (default: $GNUPGHOME)")
    p.add_argument(
        "--gpg-passphrase-file", type=Path, metavar="FILE", help="file holding the passphrase"
    )
    p.add_argument("--baseurl", metavar="URL", help="where build/repo/ is served (repo.baseurl)")
    p.add_argument(
        "--unsigned", action="store_true", help="publish WITHOUT signatures (printed loudly)"
    )


def _images_flags(p: argparse.ArgumentParser) -> None:
    from . import targets

    p.add_argument(
        "--target",
        help=f"comma-separated: {','.join(targets.TARGETS)} (IMAGES; images.targets); a target "
        "named here that cannot be built is an error. Default: "
        f"{','.join(targets.default_targets())}, skipping (loudly) one this host cannot build",
    )
    p.add_argument(
        "--base",
        dest="variant",
        choices=list(targets.VARIANTS),
        help="the base the images start from (BASE; images.base; default "
        f"{targets.DEFAULT_VARIANT})",
    )
    p.add_argument(
        "--accelerator",
        choices=["tcg", "kvm"],
        help="qemu accelerator (FLANNELNODE_QEMU_ACCEL; images.accelerator; default tcg)",
    )
    p.add_argument(
        "--packer-var",
        action="append",
        default=[],
        metavar="TARGET.VAR=VALUE",
        help="a Packer variable of one target, e.g. amazon-ebs.region=eu-central-1 (PACKER_VARS; "
        "[images.packer.TARGET]; `build.py targets` lists them); repeatable",
    )
    p.add_argument("--force", action="store_true", help="run Packer even when inputs are unchanged")


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
        help="check a network config against flannel's own rules",
        description="Check the network config flannel will read from etcd, decoded as flanneld "
        "decodes it and checked by flannel's own rules (CheckNetworkConfig, backend options), "
        "and against the ranges of the cluster. Without FILE: [network] of the config. Errors "
        "exit 2; warnings exit 0, or 2 with --strict.",
    )
    p.add_argument(
        "file",
        nargs="?",
        metavar="FILE",
        help="a net-conf.json or a node.toml (told apart by content), - for stdin; a "
        "net-conf.json is checked in the context of --config (flannel version, arches, etcd, "
        "[flanneld], [cluster])",
    )
    p.add_argument("--strict", action="store_true", help="warnings fail too (exit 2)")
    p.add_argument("--version", dest="flannel_version", metavar="TAG", help="flannel release")
    p.add_argument("--arch", help="comma-separated arches the nodes run")
    p.set_defaults(run=_lint)

    p = steps.add_parser("payload", parents=[common], help="stage the node file tree per arch")
    p.set_defaults(run=_payload)

    p = steps.add_parser("rpm", parents=[common], help="build one RPM per arch from the payload")
    _rpm_flags(p)
    p.set_defaults(run=_rpm)

    p = steps.add_parser(
        "repo", parents=[common], help="sign the RPMs and publish a signed yum repository"
    )
    _repo_flags(p)
    p.set_defaults(run=_repo)

    from . import targets

    kinds = ",".join(targets.base_kinds())
    p = steps.add_parser(
        "base",
        parents=[common],
        help="build the Debian bookworm base: docker image and qcow2 (debootstrap; root)",
    )
    p.add_argument(
        "--target",
        help=f"{kinds} (default: all; the qcow2 for amd64 only, so naming qemu with another "
        "arch is an error; other targets are ignored)",
    )
    p.add_argument(
        "--arch",
        default="amd64",
        help="comma-separated: amd64,arm64 (make ARCH=); a foreign arch runs under qemu-user "
        "(make binfmt). Default: amd64",
    )
    p.add_argument("--force", action="store_true", help="rebuild even when the recipe is unchanged")
    p.set_defaults(run=_base)

    p = steps.add_parser(
        "targets",
        help="list the image targets, their Packer variables, and the bases (variants)",
        description="The registry of node image targets (flannelnode/targets.py): the Packer "
        "source that builds each, its arches, whether `images` builds it by default, what it "
        "needs, and the variables [images.packer.TARGET] and --packer-var may set.",
    )
    p.add_argument("--names", action="store_true", help="the target names only, comma-separated")
    p.add_argument("--bases", action="store_true", help="the base names only, |-separated")
    p.set_defaults(run=_list_targets)

    p = steps.add_parser("images", parents=[common], help="build node images with Packer")
    _images_flags(p)
    p.set_defaults(run=_images)

    p = steps.add_parser(
        "manifest",
        parents=[common],
        help="write build/manifest.json, the CycloneDX SBOM and the SLSA provenance statements",
        description="Gather every step's records into build/manifest.json, build/sbom.cdx.json "
        "(CycloneDX 1.6) and build/provenance/<artifact>.intoto.json (in-toto Statement v1, "
        "SLSA provenance v1) for each RPM, qcow2 and node image.",
    )
    p.set_defaults(run=_manifest)

    p = steps.add_parser(
        "seed",
        parents=[common],
        help="write the network config into etcd once (what nodes do at first boot)",
        description="Put [network] at <etcd.prefix>/config if absent, over TLS, through the etcd "
        "API the configured flannel reads (v2 up to v0.17, v3 from v0.18). The same value "
        "already there is success; a different one exits 3 with a diff unless --force.",
    )
    _tls_flags(p)
    p.add_argument("--endpoints", help="comma-separated etcd URLs (default: etcd.endpoints)")
    p.add_argument("--api", choices=["v2", "v3"], help="override the API chosen from the version")
    p.add_argument("--force", action="store_true", help="replace a different existing value")
    p.add_argument("--deadline", type=float, default=60.0, help="seconds in all (default 60)")
    p.set_defaults(run=_seed)

    p = steps.add_parser(
        "userdata",
        parents=[common],
        help="render cloud-init user-data: TLS files, flanneld config, first-boot seeding",
    )
    _tls_flags(p)
    _userdata_flags(p)
    p.set_defaults(run=_userdata)

    p = steps.add_parser(
        "all",
        parents=[common],
        help="the whole flow in one go (make images): fetch to manifest",
        description="fetch, payload, rpm, repo, images, userdata, manifest; each step does "
        "nothing when its inputs are unchanged. The repo needs a signing key (or --unsigned) "
        "and the user-data the etcd TLS files: without them those steps are skipped, loudly.",
    )
    _source_flags(p)
    p.add_argument("--offline", action="store_true", help="use only the cache and --local")
    _rpm_flags(p)
    _repo_flags(p)
    _images_flags(p)
    _tls_flags(p, required=False)
    _userdata_flags(p)
    p.set_defaults(run=_all)

    p = steps.add_parser(
        "seed-iso", parents=[common], help="a NoCloud cidata ISO from the rendered user-data"
    )
    p.add_argument("--user-data", type=Path, help="default: <build-dir>/userdata/user-data")
    p.add_argument("-o", "--output", type=Path, help="default: <build-dir>/userdata/seed.iso")
    p.add_argument("--instance-id", default="flannelnode-node", help="NoCloud instance-id")
    p.add_argument(
        "--network-config",
        type=Path,
        help="cloud-init network config (v1 or v2 YAML) for the node, e.g. a static address; "
        "default: DHCP on the first interface",
    )
    p.set_defaults(run=_seed_iso)

    p = steps.add_parser("config", parents=[common], help="print the validated config as JSON")
    p.set_defaults(run=_show_config)
    return top


# where the images overrides come from, for messages (make variables pass these flags)
LABELS = {
    "images.targets": "--target (make IMAGES=)",
    "images.base": "--base (make BASE=)",
    "images.accelerator": "--accelerator",
    "images.packer": "--packer-var (make PACKER_VARS=)",
}


def _overrides(args: argparse.Namespace) -> dict[str, object]:
    overrides: dict[str, object] = {
        "flannel.version": getattr(args, "flannel_version", None),
        "flannel.asset": getattr(args, "asset", None),
        "fetch.mirror": getattr(args, "mirror", None),
        "fetch.local": getattr(args, "local", None),
        "repo.baseurl": getattr(args, "baseurl", None),
        "images.base": getattr(args, "variant", None),
        "images.accelerator": getattr(args, "accelerator", None),
    }
    endpoints = getattr(args, "endpoints", None)
    if endpoints:
        overrides["etcd.endpoints"] = [e.strip() for e in endpoints.split(",") if e.strip()]
    arch = getattr(args, "arch", None)
    if arch:
        overrides["flannel.arches"] = [a.strip() for a in arch.split(",") if a.strip()]
    if args.step in ("images", "all") and args.target is not None:
        named = _targets(args.target)
        if not named:
            raise ConfigError("--target names no target; give e.g. --target docker,qemu")
        overrides["images.targets"] = named
    for given in getattr(args, "packer_var", None) or ():
        key, eq, value = given.partition("=")
        target, dot, variable = key.strip().partition(".")
        if not (eq and dot and target and variable):
            raise ConfigError(
                f"--packer-var {given!r}: give TARGET.VARIABLE=VALUE, e.g. "
                'amazon-ebs.region=eu-central-1 (make PACKER_VARS="amazon-ebs.region=... '
                'qemu.disk_size=8G")'
            )
        overrides[f"images.packer.{target}.{variable.strip()}"] = value
    return overrides


def _load(args: argparse.Namespace, reporter: Reporter | None = None):
    """The config; without --config and ./node.toml, the built-in defaults, said once loudly."""
    from . import config

    cfg = config.load(args.config, overrides=_overrides(args), labels=LABELS)
    if cfg.source == config.BUILTIN and not getattr(args, "told_builtin", False):
        args.told_builtin = True
        (reporter or Reporter()).alarm(
            f"no {config.DEFAULT_CONFIG} in {Path.cwd()} and no --config: using flannelnode's "
            f"built-in defaults (flannel {cfg.flannel.version} for "
            f"{', '.join(cfg.flannel.arches)}; etcd {', '.join(cfg.etcd.endpoints)}; network "
            f"{json.dumps(cfg.network)}). Pass --config FILE, or run where your node.toml is"
        )
    return cfg


def _fetch(args: argparse.Namespace, reporter: Reporter) -> int:
    from .fetch import fetch

    for item in fetch(_load(args, reporter), args.build_dir, reporter, offline=args.offline):
        print(f"{item.flanneld}  {item.flanneld_sha256}  ({item.asset})")
    return 0


def _lock(args: argparse.Namespace, reporter: Reporter) -> int:
    from .fetch import pin

    if not args.flannel_version:
        raise ConfigError("lock needs --version TAG (the release to pin, e.g. v0.27.4)")
    cfg = _load(args, reporter)
    for name, digest, new in pin(cfg, reporter):
        print(f"{'pinned ' if new else 'already'} {cfg.flannel.version}/{name}  {digest}")
    return 0


def _lint(args: argparse.Namespace, reporter: Reporter) -> int:
    from . import config, lint, netconf

    given = lint.read(args.file) if args.file else None
    if given is not None and given.kind == "toml":
        if args.config is not None and (
            given.path is None or given.path.resolve() != args.config.resolve()
        ):
            raise ConfigError(
                f"two node configs: --config {args.config} and {given.name}; give one"
            )
        base = given.path.resolve().parent if given.path else Path.cwd()
        cfg = config.loads(given.text, given.name, base, overrides=_overrides(args), labels=LABELS)
        given = None
    else:
        cfg = _load(args, reporter)
    weak = (
        f"no node config: checked with {config.BUILTIN}" if cfg.source == config.BUILTIN else None
    )
    if given is None:
        findings = netconf.lint_config(cfg)
        source = f"{cfg.source} [network]"
    else:
        findings = netconf.lint_config(cfg, network_json=given.text)
        source = given.name
        if not args.quiet:
            print(
                f"{source}: checked as flannel {cfg.flannel.version} reads it, with the arches, "
                f"etcd endpoints, [flanneld] and [cluster] of {cfg.source}"
            )
    return lint.report(findings, source, quiet=args.quiet, strict=args.strict, weak=weak)


def _payload(args: argparse.Namespace, reporter: Reporter) -> int:
    from .payload import stage

    for staged in stage(_load(args, reporter), args.build_dir, reporter):
        print(f"{staged.root}  {staged.digest[:16]}")
    return 0


def _rpm(args: argparse.Namespace, reporter: Reporter) -> int:
    from .rpm import build

    cfg = _load(args, reporter)
    for built in build(cfg, args.build_dir, reporter, release=args.release or cfg.rpm.release):
        print(f"{built.path}  {built.sha256}")
    return 0


def _repo(args: argparse.Namespace, reporter: Reporter) -> int:
    from .repo import publish

    cfg = _load(args, reporter)
    published = publish(
        cfg,
        args.build_dir,
        reporter,
        gpg_key=args.gpg_key or cfg.repo.gpg_key,
        gpg_home=args.gpg_home or cfg.repo.gpg_home,
        unsigned=args.unsigned,
        passphrase_file=args.gpg_passphrase_file or cfg.repo.passphrase_file,
        baseurl=cfg.repo.baseurl,
    )
    print(published.repo_file)
    return 0


def _targets(value: str) -> list[str]:
    return [t.strip() for t in value.split(",") if t.strip()]


def _base(args: argparse.Namespace, reporter: Reporter) -> int:
    from . import base, targets

    named = args.target is not None
    kinds = targets.base_kinds()
    wanted_kinds = [t for t in _targets(args.target or ",".join(kinds)) if t in kinds]
    arches = _targets(args.arch)
    if not arches:
        raise ConfigError("--arch names no arch; give e.g. --arch amd64,arm64")
    for arch in arches:
        base.check_arch(arch)
    if named and "qemu" in wanted_kinds and arches != [base.QCOW2_ARCH]:
        others = ", ".join(a for a in arches if a != base.QCOW2_ARCH)
        raise base.BaseError(
            f"base qemu: the qcow2 is built for {base.QCOW2_ARCH} only, not {others}; "
            "leave qemu out of --target for those arches"
        )
    mirror = _load(args, reporter).images.debian_mirror
    for arch in arches:
        wanted = wanted_kinds if arch == base.QCOW2_ARCH else ["docker"]
        built = base.build(
            args.build_dir / "base", reporter, wanted, arch=arch, force=args.force, mirror=mirror
        )
        print(f"{built.image}  {built.image_id}")
        if built.qcow2:
            print(f"{built.qcow2}  sha256:{built.qcow2_sha256}")
    return 0


def _list_targets(args: argparse.Namespace, reporter: Reporter) -> int:
    from . import targets

    if args.names:
        print(",".join(targets.TARGETS))
        return 0
    if args.bases:
        print("|".join(targets.VARIANTS))
        return 0
    for t in targets.TARGETS.values():
        default = "default" if t.default else "named only"
        print(f"{t.name}  (-only={t.source}; {', '.join(t.arches())}; {default})")
        print(f"    {t.summary}")
        print(f"    needs: {t.needs}")
        print(f"    [images.packer.{t.name}]: {', '.join(t.settable)}")
    print("bases (images.base, --base, BASE=):")
    for v in targets.VARIANTS.values():
        default = ", default" if v.name == targets.DEFAULT_VARIANT else ""
        print(f"  {v.name}  ({', '.join(v.arches())}{default}): {v.summary}")
    return 0


def _images(args: argparse.Namespace, reporter: Reporter) -> int:
    from . import images

    cfg = _load(args, reporter)
    for built in images.build(
        cfg,
        args.build_dir,
        reporter,
        cfg.images.targets,
        variant=cfg.images.base,
        rpms=images.el_rpms(args.build_dir, cfg.images.base),
        force=args.force,
    ):
        print(f"{built.target}  {built.image or built.path}  {built.image_id or built.sha256}")
    return 0


def _manifest(args: argparse.Namespace, reporter: Reporter) -> int:
    from . import manifest

    print(manifest.write(_load(args, reporter), args.build_dir))
    return 0


def _seed(args: argparse.Namespace, reporter: Reporter) -> int:
    from . import netconf, seed

    cfg = _load(args, reporter)
    netconf.check_config(cfg)
    return seed.run(
        cfg,
        endpoints=cfg.etcd.endpoints,
        cacert=args.etcd_ca,
        cert=args.etcd_cert,
        key=args.etcd_key,
        force=args.force,
        deadline=args.deadline,
        api=args.api,
        quiet=args.quiet,
    )


def _userdata(args: argparse.Namespace, reporter: Reporter) -> int:
    from . import netconf, userdata

    cfg = _load(args, reporter)
    netconf.check_config(cfg)
    tls = userdata.TlsFiles(args.etcd_ca, args.etcd_cert, args.etcd_key)
    out = args.output or args.build_dir / "userdata" / "user-data"
    deadline = args.seed_deadline
    if deadline is None:
        deadline = userdata.DEFAULT_SEED_DEADLINE
    userdata.write(userdata.render(cfg, tls, deadline, warn=reporter.log), out)
    too_big = userdata.ec2_size_warning(out)
    if too_big:
        reporter.log(f"warning: {too_big}")
    reporter.log(f"{out}: holds the etcd client key (mode 0600); hand it only to your nodes")
    print(out)
    return 0


def _seed_iso(args: argparse.Namespace, reporter: Reporter) -> int:
    from . import userdata

    source = args.user_data or args.build_dir / "userdata" / "user-data"
    if not source.is_file():
        raise ConfigError(f"{source}: no user-data; run `build.py userdata` first")
    out = args.output or args.build_dir / "userdata" / "seed.iso"
    network = args.network_config
    if network is not None and not network.is_file():
        raise ConfigError(f"--network-config {network}: no such file")
    print(userdata.seed_iso(source, out, args.instance_id, network))
    return 0


def _all(args: argparse.Namespace, reporter: Reporter) -> int:
    _fetch(args, reporter)
    _payload(args, reporter)
    _rpm(args, reporter)
    if args.gpg_key or args.unsigned or _load(args, reporter).repo.gpg_key:
        _repo(args, reporter)
    else:
        reporter.alarm(
            "repo: SKIPPED: no signing key (--gpg-key, FLANNELNODE_GPG_KEY, or --unsigned)"
        )
    _images(args, reporter)
    tls = (args.etcd_ca, args.etcd_cert, args.etcd_key)
    if all(tls):
        _userdata(args, reporter)
    elif any(tls):
        raise ConfigError("user-data needs all three of --etcd-ca, --etcd-cert and --etcd-key")
    else:
        reporter.alarm("userdata: SKIPPED: no etcd TLS files (--etcd-ca/--etcd-cert/--etcd-key)")
    return _manifest(args, reporter)


def _show_config(args: argparse.Namespace, reporter: Reporter) -> int:
    """The validated config, as shareable as the artifacts: no backend secret, no credential."""
    from . import netconf

    cfg = _load(args, reporter)
    shown = cfg.to_dict()
    shown["network"] = netconf.without_secrets(cfg.network)[0]
    print(urls.scrub(json.dumps(shown, indent=2, default=str)))  # TOML dates: lint refuses them
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    args.build_dir = args.build_dir or Path("build")
    run: Callable[[argparse.Namespace, Reporter], int] = args.run
    try:
        if args.build_dir.exists() and not args.build_dir.is_dir():
            raise ConfigError(f"--build-dir {args.build_dir}: exists and is not a directory")
        return run(args, Reporter(quiet=args.quiet))
    except FlannelnodeError as exc:
        print(f"error: {urls.scrub(str(exc))}", file=sys.stderr)
        return exc.exit_code
    except OSError as exc:  # a path the user named (or its directory) is missing, a file, locked
        print(f"error: {urls.scrub(describe_os_error(exc))}", file=sys.stderr)
        return os_error_exit_code(exc)
    except KeyboardInterrupt:
        print("interrupted; nothing half-written was left in place", file=sys.stderr)
        return 130
