"""rpm: one binary RPM per arch, packaging the staged payload tree as it is.

build/rpm/
  flannel-node-<version>-<release>.<rpmarch>.rpm   unsigned; `repo` signs copies of them
  rpm.json                                          per arch: what each RPM was built from

The spec is rendered from rpm/flannel-node.spec.j2 with the manifest's paths and modes; its
%install copies build/payload/<arch>/root. rpmbuild runs with `--target <rpmarch>` on any host: the
package holds a prebuilt binary, so nothing is compiled or stripped. An arch whose payload digest,
rendered spec and SOURCE_DATE_EPOCH are unchanged is not rebuilt.

Every run, up to date or not, first re-verifies each arch's stage against its manifest, the fetch
record and release.lock (integrity.py), and a package is kept only if its file list is the
manifest's: a stage changed in build/ is an alarm (exit 4), never packaged.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

import jinja2

from . import integrity, payload
from .arch import ARCHES
from .cache import sha256_file
from .config import Config
from .errors import FlannelnodeError, IntegrityError
from .payload import MANIFEST, payload_dir
from .progress import Reporter
from .tools import require
from .units import LICENSE_DIR, RUN_DIR, STATE_DIR

REPO_ROOT = Path(__file__).resolve().parent.parent
RPM_DIR = REPO_ROOT / "rpm"
SPEC_TEMPLATE = "flannel-node.spec.j2"
NAME = "flannel-node"
RECORD = "rpm.json"

# Directories another package owns (filesystem, systemd): never ours, even when a file is below.
SYSTEM_DIRS = frozenset(
    {
        "/",
        "/etc",
        "/opt",
        "/usr",
        "/usr/bin",
        "/usr/sbin",
        "/usr/lib",
        "/usr/lib64",
        "/usr/libexec",
        "/usr/share",
        "/usr/share/licenses",
        "/usr/local",
        "/usr/local/bin",
        "/usr/local/sbin",
        "/usr/local/lib",
        "/usr/local/share",
        "/usr/lib/systemd",
        "/usr/lib/systemd/system",
        "/usr/lib/systemd/system-generators",
        "/usr/lib/tmpfiles.d",
        "/usr/lib/modules-load.d",
        "/usr/lib/sysctl.d",
        "/var",
        "/var/lib",
    }
)
# rpm %files globs [ ] * ? and expands % and { }: a node path must need none of that.
_PLAIN_PATH = re.compile(r"/[A-Za-z0-9._/+@:,=-]*")
_RELEASE = re.compile(r"[A-Za-z0-9._+~^]+")


class RpmError(FlannelnodeError):
    pass


@dataclass(frozen=True)
class Built:
    arch: str
    rpm_arch: str
    path: Path
    sha256: str
    rebuilt: bool


def rpm_dir(build_dir: Path) -> Path:
    return build_dir / "rpm"


def run(cmd: list[str], what: str, env: dict[str, str] | None = None) -> str:
    """Run a tool; on failure raise RpmError with its output (the output is the diagnosis)."""
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode != 0:
        detail = (proc.stderr.strip() or proc.stdout.strip())[-3000:]
        raise RpmError(f"{what} failed (exit {proc.returncode}):\n{detail}")
    return proc.stdout


def rpm_version(flannel_version: str) -> str:
    return flannel_version.removeprefix("v")


def _owned_dirs(paths: list[str]) -> list[str]:
    dirs = set()
    for path in paths:
        for parent in PurePosixPath(path).parents:
            if str(parent) not in SYSTEM_DIRS:
                dirs.add(str(parent))
    return sorted(dirs)


def _changelog_date(epoch: str | None) -> str:
    return time.strftime("%a %b %d %Y", time.gmtime(int(epoch) if epoch else time.time()))


def _names_in(files: list[dict[str, Any]], directory: str) -> list[str]:
    return [
        PurePosixPath(f["path"]).name
        for f in files
        if str(PurePosixPath(f["path"]).parent) == directory
    ]


def spec_context(manifest: dict[str, Any], release: str) -> dict[str, Any]:
    """Everything the spec says, derived from the payload manifest (but the changelog date)."""
    prefix = manifest["prefix"]
    config_files = {f"{prefix}/cfg/flanneld", f"{prefix}/cfg/net-conf.json"}
    files = []
    for entry in manifest["files"]:
        path = entry["path"]
        if not _PLAIN_PATH.fullmatch(path):
            raise RpmError(f"{path!r}: rpm cannot package this path as it is (glob or macro chars)")
        files.append(
            {
                "path": path,
                "mode": entry["mode"],
                "config": path in config_files,
                "license": path.startswith(f"{LICENSE_DIR}/"),
            }
        )
    return {
        "name": NAME,
        "version": rpm_version(manifest["flannel_version"]),
        "release": release,
        "flannel_version": manifest["flannel_version"],
        "prefix": prefix,
        "run_dir": RUN_DIR,
        "state_dir": STATE_DIR,  # the seeder's marker directory: ours, %dir, empty
        # by basename: systemd-tmpfiles and systemd-sysctl find them, and honour an override of
        # the same name in /etc
        "tmpfiles": _names_in(files, "/usr/lib/tmpfiles.d"),
        "sysctl": _names_in(files, "/usr/lib/sysctl.d"),
        "modules_load": bool(_names_in(files, "/usr/lib/modules-load.d")),
        "dirs": _owned_dirs([f["path"] for f in files]),
        "files": files,
    }


def render_spec(context: dict[str, Any], epoch: str | None) -> str:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(RPM_DIR)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )
    return env.get_template(SPEC_TEMPLATE).render(**context, changelog_date=_changelog_date(epoch))


def _key(context: dict[str, Any], digest: str, epoch: str | None) -> dict[str, Any]:
    template = (RPM_DIR / SPEC_TEMPLATE).read_bytes()
    spec = hashlib.sha256(template + json.dumps(context, sort_keys=True).encode()).hexdigest()
    return {"input_digest": digest, "spec_sha256": spec, "source_date_epoch": epoch}


def _rpmbuild(spec: str, root: Path, rpm_arch: str, work: Path, epoch: str | None) -> Path:
    top = work / rpm_arch
    out = top / "out"
    out.mkdir(parents=True)
    (top / "flannel-node.spec").write_text(spec)
    env = {k: v for k, v in os.environ.items() if k != "SOURCE_DATE_EPOCH"}
    if epoch:
        env["SOURCE_DATE_EPOCH"] = epoch
    env.update(LC_ALL="C", TZ="UTC")
    run(
        [
            "rpmbuild",
            "-bb",
            "--quiet",
            "--target",
            rpm_arch,
            "--define",
            f"_topdir {top}",
            "--define",
            f"_rpmdir {out}",
            "--define",
            "_rpmfilename %{NAME}-%{VERSION}-%{RELEASE}.%{ARCH}.rpm",
            "--define",
            f"payload_root {root.resolve()}",
            "--define",
            f"_tmppath {top}",
            str(top / "flannel-node.spec"),
        ],
        f"rpmbuild --target {rpm_arch}",
        env,
    )
    built = list(out.glob("*.rpm"))
    if len(built) != 1:
        raise RpmError(f"rpmbuild --target {rpm_arch} made {len(built)} packages, expected 1")
    return built[0]


def _manifest(config: Config, build_dir: Path, arch: str) -> dict[str, Any]:
    staged = payload_dir(build_dir, arch)
    try:
        manifest = json.loads((staged / MANIFEST).read_text())
    except FileNotFoundError:
        raise RpmError(
            f"{staged / MANIFEST} is missing: run `build.py payload` (or `make payload`) first"
        ) from None
    except (OSError, ValueError):
        manifest = None
    if not isinstance(manifest, dict) or "flannel_version" not in manifest:
        raise IntegrityError(
            f"{staged / MANIFEST}: not the manifest `build.py payload` wrote; nothing was "
            f"packaged. Find out what changed it, then remove {staged} and run `build.py payload` "
            "again."
        )
    if manifest["flannel_version"] != config.flannel.version:
        raise RpmError(
            f"{staged} holds flannel {manifest['flannel_version']}, the config says "
            f"{config.flannel.version}: run `build.py payload` first"
        )
    return manifest


def _check_built(rpm: Path, build_dir: Path, arch: str, manifest: dict[str, Any]) -> None:
    """What rpmbuild copied is the stage verified before it ran: nothing changed it meanwhile."""
    stage = payload_dir(build_dir, arch)
    integrity.check_rpm_files(
        rpm,
        manifest,
        stage / MANIFEST,
        f"{stage} changed while rpmbuild packaged it; the package was not kept. Find out what "
        f"changed it, then remove {stage} and run `build.py payload` and `build.py rpm` again.",
    )


def _read_record(path: Path) -> dict[str, Any]:
    try:
        record = json.loads(path.read_text())
        return record if isinstance(record, dict) else {}
    except (OSError, ValueError):
        return {}


def build(
    config: Config, build_dir: Path, reporter: Reporter, *, release: str = "1"
) -> list[Built]:
    require("rpmbuild")
    if not _RELEASE.fullmatch(release):
        raise RpmError(f"release {release!r}: use letters, digits and . _ + ~ ^ (no '-')")
    epoch = os.environ.get("SOURCE_DATE_EPOCH") or None
    if epoch is not None and not epoch.isdigit():
        raise RpmError(f"SOURCE_DATE_EPOCH={epoch!r} is not a number of seconds")
    out = rpm_dir(build_dir)
    record = _read_record(out / RECORD)
    new_record: dict[str, Any] = {}
    todo: list[tuple[str, str, dict[str, Any], Path]] = []
    done: list[Built] = []

    manifests = {arch: _manifest(config, build_dir, arch) for arch in config.flannel.arches}
    payload.verify_all(config, build_dir, manifests)
    for arch, manifest in manifests.items():
        context = spec_context(manifest, release)
        key = _key(context, manifest["input_digest"], epoch)
        rpm_arch = ARCHES[arch].rpm
        old = record.get(arch, {})
        old_path = out / old.get("file", "-")
        if old.get("key") == key and old_path.is_file() and sha256_file(old_path) == old["sha256"]:
            reporter.log(f"rpm {arch}: up to date ({old['file']})")
            new_record[arch] = old
            done.append(Built(arch, rpm_arch, old_path, old["sha256"], False))
            continue
        nvr = f"{context['version']}-{release}"
        if old.get("nvr") == nvr and old.get("key", {}).get("input_digest") != key["input_digest"]:
            reporter.log(
                f"rpm {arch}: WARNING: the payload changed but the package keeps version-release "
                f"{nvr}; nodes that have {nvr} will not upgrade. Raise the release."
            )
        spec = render_spec(context, epoch)
        todo.append((arch, spec, key, payload_dir(build_dir, arch) / "root"))

    if todo:
        out.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=".rpm.", dir=build_dir)).resolve()
        try:
            with ThreadPoolExecutor(max_workers=min(len(todo), os.cpu_count() or 1)) as pool:
                futures = [
                    pool.submit(_rpmbuild, spec, root, ARCHES[arch].rpm, work, epoch)
                    for arch, spec, _, root in todo
                ]
                made = [f.result() for f in futures]
            for (arch, _, _, _), path in zip(todo, made, strict=True):
                _check_built(path, build_dir, arch, manifests[arch])
            for (arch, _, key, _), path in zip(todo, made, strict=True):
                digest = sha256_file(path)
                os.replace(path, out / path.name)
                new_record[arch] = {
                    "file": path.name,
                    "sha256": digest,
                    "nvr": f"{rpm_version(config.flannel.version)}-{release}",
                    "key": key,
                }
                done.append(Built(arch, ARCHES[arch].rpm, out / path.name, digest, True))
                reporter.log(f"rpm {arch}: built {out / path.name}")
        finally:
            shutil.rmtree(work, ignore_errors=True)

    if todo or set(record) != set(new_record):
        tmp = out / f".{RECORD}.tmp"
        tmp.write_text(json.dumps(new_record, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, out / RECORD)
    keep = {entry["file"] for entry in new_record.values()}
    for stale in out.glob("*.rpm"):
        if stale.name not in keep:
            stale.unlink()
    order = {arch: i for i, arch in enumerate(config.flannel.arches)}
    return sorted(done, key=lambda b: order[b.arch])
