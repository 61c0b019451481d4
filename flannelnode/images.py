"""images: node images built by Packer from the payload, one template per target (images/*.pkr.hcl).

Incremental: a target's inputs (its template, provision.sh, the variant's var file, the payload
digest, the base image id or qcow2 sha256, the output name) hash to a digest recorded with the
artifact in build/images/<target>.json. Same digest and the artifact still there: no Packer at all.

Nothing half-made is left: Packer removes its container or VM on failure, the docker image is only
committed and tagged at the very end, and the qcow2 is written in a scratch directory and moved
into place once Packer succeeded.

The payload is re-verified before the base image and before Packer: a stage that payload finds
changed is an alarm (exit 4), and the tarball Packer uploads is a copy hashed against the manifest.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from . import base, diskimage, integrity, packer
from .cache import sha256_file
from .config import Config
from .errors import ConfigError, FlannelnodeError
from .payload import Staged, stage
from .progress import Reporter
from .tools import require, require_docker_engine

IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"
PROVISION = IMAGES_DIR / "provision.sh"
TARGETS = ("docker", "qemu", "amazon-ebs")
DEFAULT_TARGETS = ("docker", "qemu")  # what `images` builds when no --target names any
QEMU_TOOLS = ("qemu-system-x86_64", "qemu-img", "mkisofs", "ssh-keygen")
VARIANTS = ("debian-bookworm", "rocky-9")
EL_VARIANTS = ("rocky-9",)  # bases that install flannel-node from our RPM with dnf
REPOSITORY = "flannelnode/node"
UPLOAD_PAYLOAD = "flannelnode-payload.tar"
TIMEOUTS = {"docker": 1800.0, "qemu": 3600.0, "amazon-ebs": 5400.0}
_MACHINE_ARCH = {"x86_64": "amd64", "aarch64": "arm64"}


class ImagesError(FlannelnodeError):
    pass


@dataclass(frozen=True)
class Built:
    target: str
    arch: str
    inputs: str  # the input digest
    rebuilt: bool
    seconds: float
    image: str | None = None  # docker tag, AMI id
    image_id: str | None = None  # docker image id
    path: str | None = None  # qcow2
    sha256: str | None = None
    method: str | None = None  # "packer", or "assembled" (diskimage.py)

    def to_dict(self) -> dict:
        return {k: v for k, v in asdict(self).items() if v is not None}


def template(target: str) -> Path:
    return IMAGES_DIR / f"{target}.pkr.hcl"


def var_files(target: str, variant: str) -> list[Path]:
    """The variant's var file for a target; the Debian default is the templates' own defaults."""
    if variant not in VARIANTS:
        raise ConfigError(f"unknown image base {variant!r}; known: {', '.join(VARIANTS)}")
    path = IMAGES_DIR / "variants" / variant / f"{target}.pkrvars.hcl"
    return [path] if path.exists() else []


def host_arch() -> str:
    return _MACHINE_ARCH.get(platform.machine(), platform.machine())


def record_path(build_dir: Path, target: str) -> Path:
    return build_dir / "images" / f"{target}.json"


def aws_credentials() -> str | None:
    """Where the AWS SDK finds credentials (env, shared-credentials-file, iam-role...), or None."""
    from . import awscreds

    return awscreds.find()


def unavailable(target: str) -> str | None:
    """Why this host cannot build a target, in one line with what to do; None when it can."""
    if target == "amazon-ebs":
        from .awscreds import WHERE

        if aws_credentials() is None:
            return (
                f"no AWS credentials (looked where the AWS SDK looks: {WHERE}); configure some "
                "(e.g. AWS_PROFILE) or leave amazon-ebs out of --target/IMAGES"
            )
    if target == "qemu":
        try:
            require(*QEMU_TOOLS)
        except FlannelnodeError as exc:
            return str(exc)
    return None


def runnable(targets: Sequence[str] | None, reporter: Reporter) -> list[str]:
    """The targets to build. A target named explicitly (targets given) that cannot be built here
    is an error (exit 1); only the default list (targets None) may skip one, with an alarm."""
    chosen = list(DEFAULT_TARGETS if targets is None else targets)
    reasons = {t: why for t in chosen if (why := unavailable(t)) is not None}
    if targets is not None and reasons:
        raise ImagesError(
            "; ".join(f"images {t}: cannot be built here: {why}" for t, why in reasons.items())
        )
    for t, why in reasons.items():
        reporter.alarm(f"images {t}: SKIPPED (not named with --target): {why}")
    left = [t for t in chosen if t not in reasons]
    if not left:
        raise ImagesError("images: every default target was skipped (see above); nothing built")
    return left


def el_rpms(build_dir: Path, variant: str, arch: str | None = None) -> list[Path]:
    """The RPM `build.py rpm` made for the image's arch, for EL bases; [] for the others."""
    if variant not in EL_VARIANTS:
        return []
    from .rpm import RECORD, rpm_dir

    arch = arch or host_arch()
    record = _load(rpm_dir(build_dir) / RECORD).get(arch) or {}
    path = rpm_dir(build_dir) / str(record.get("file", ""))
    if not record.get("file") or not path.is_file():
        raise ImagesError(
            f"--base {variant} installs flannel-node from its RPM, and {rpm_dir(build_dir)} has "
            f"none for {arch}: run `build.py rpm` first (make images does)"
        )
    if sha256_file(path) != record.get("sha256"):
        raise integrity.IntegrityError(
            f"{path}: not the RPM that `build.py rpm` recorded in {RECORD}; Packer was not "
            "started. Run `build.py rpm` again."
        )
    return [path]


def _digest(parts: dict[str, str]) -> str:
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _load(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def _save(path: Path, record: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=2) + "\n")
    os.replace(tmp, path)


def _docker_image_id(ref: str) -> str:
    res = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return res.stdout.strip() if res.returncode == 0 else ""


def _still_there(target: str, record: dict) -> bool:
    if target == "docker":
        return (
            bool(record.get("image_id")) and _docker_image_id(record["image"]) == record["image_id"]
        )
    if target == "qemu":
        path = Path(record.get("path", ""))
        return path.is_file() and path.stat().st_size == record.get("size")
    return bool(record.get("image"))  # an AMI lives in AWS; trust the record


def _upload_dir(work: Path, staged: Staged, rpms: Sequence[Path]) -> Path:
    """What Packer copies into the image: the payload tarball and, for EL bases, our RPMs."""
    up = work / "upload"
    (up / "rpms").mkdir(parents=True)
    # the templates point provision.sh at this fixed name, whatever payload.py calls its file.
    # A copy, hashed as it is made: the stage was verified before the base image was built, which
    # can take minutes, and Packer uploads exactly these bytes.
    integrity.copy_verified(
        staged.tarball,
        up / UPLOAD_PAYLOAD,
        staged.tarball_sha256,
        vouched_by=f"{staged.manifest} records",
        fix="the payload tarball changed after `payload` made it; Packer was not started. Find "
        f"out what changed it, then remove {staged.tarball.parent} and run `build.py payload` "
        "again.",
    )
    for rpm in rpms:
        shutil.copyfile(rpm, up / "rpms" / rpm.name)
    return up


def _seed(work: Path) -> tuple[Path, Path]:
    """A per-build ssh key and the NoCloud seed that lets it in as root; both die with work/."""
    key = work / "ssh" / "id_ed25519"
    key.parent.mkdir(mode=0o700)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "flannelnode-build", "-f", str(key)],
        check=True,
        timeout=60,
    )
    seed = work / "seed"
    seed.mkdir()
    public = key.with_suffix(".pub").read_text().strip()
    # users: [] creates no default user; disable_root: false lets the build key in as root.
    (seed / "user-data").write_text(
        "#cloud-config\nusers: []\ndisable_root: false\nssh_pwauth: false\n"
        f"ssh_authorized_keys:\n  - {public}\n"
    )
    (seed / "meta-data").write_text(
        f"instance-id: flannelnode-build-{os.getpid()}\nlocal-hostname: flannelnode-build\n"
    )
    return key, seed


class _Target:
    """Inputs, Packer variables and artifact handling of one target."""

    def __init__(
        self, name: str, config: Config, staged: Staged, variant: str, repository: str
    ) -> None:
        self.name, self.config, self.staged, self.variant = name, config, staged, variant
        self.version = config.flannel.version
        self.tag = f"{self.version}-{staged.arch}"
        self.repository = repository

    def inputs(self, base_image: base.Base | None) -> dict[str, str]:
        parts = {
            "target": self.name,
            "variant": self.variant,
            "template": sha256_file(template(self.name)),
            "provision": sha256_file(PROVISION),
            "payload": self.staged.digest,
            "tag": self.tag,
            "repository": self.repository,
        }
        for f in var_files(self.name, self.variant):
            parts[f"vars {f.name}"] = sha256_file(f)
        if base_image is not None and self.name == "docker":
            parts["base"] = base_image.image_id
        if base_image is not None and self.name == "qemu":
            parts["base"] = f"sha256:{base_image.qcow2_sha256}"
        return parts


def _packer_vars(
    target: str, t: _Target, work: Path, upload: Path, base_image: base.Base | None, accel: str
) -> dict[str, str]:
    common = {"upload_dir": str(upload), "provision_script": str(PROVISION)}
    if target == "docker":
        extra = {"repository": t.repository, "tag": t.tag}
        if base_image is not None:
            extra["base_image"] = base_image.image_id
        return {**common, **extra}
    if target == "qemu":
        key, seed = _seed(work)
        extra = {
            "ssh_private_key_file": str(key),
            "seed_dir": str(seed),
            "output_directory": str(work / "out"),
            "vm_name": f"flannelnode-node-{t.tag}.qcow2",
            "serial_log": str(work / "serial.log"),
            "accelerator": accel,
        }
        if base_image is not None:
            extra["base_url"] = str(base_image.qcow2)
            extra["base_checksum"] = f"sha256:{base_image.qcow2_sha256}"
        return {**common, **extra}
    return {**common, "flannel_version": t.version}


def _finish(target: str, t: _Target, artifacts: list[packer.Artifact], build_dir: Path) -> dict:
    if target == "docker":
        # after docker-tag, Packer reports the tagged image (builder id packer.post-processor.*)
        ids = {a.id for a in artifacts if a.builder_id.startswith(("packer.docker", "packer.post"))}
        image = f"{t.repository}:{t.tag}"
        image_id = _docker_image_id(image)
        if not image_id or image_id not in ids:
            raise ImagesError(
                f"packer reported {sorted(ids)} but {image} is {image_id or 'absent'}"
            )
        return {"image": image, "image_id": image_id}
    if target == "qemu":
        files = [Path(f) for a in artifacts for f in a.files if f.endswith(".qcow2")]
        if not files:
            raise ImagesError("packer reported no qcow2")
        out = build_dir / "images" / "qemu" / files[0].name
        out.parent.mkdir(parents=True, exist_ok=True)
        digest = sha256_file(files[0])
        os.replace(files[0], out)
        return {"path": str(out), "sha256": digest, "size": out.stat().st_size}
    return {"image": ",".join(a.id for a in artifacts)}


def build(
    config: Config,
    build_dir: Path,
    reporter: Reporter,
    targets: Sequence[str] | None = None,
    *,
    variant: str = "debian-bookworm",
    base_dir: Path | None = None,
    rpms: Sequence[Path] = (),
    accelerator: str | None = None,
    repository: str = REPOSITORY,
    force: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> list[Built]:
    """Build each target for the host's arch; returns what the manifest records.

    targets None: the default list, whose targets this host cannot build are skipped loudly."""
    unknown = [t for t in targets or () if t not in TARGETS]
    if unknown:
        raise ConfigError(f"unknown image target {', '.join(unknown)}; known: {', '.join(TARGETS)}")
    for t in targets or DEFAULT_TARGETS:
        var_files(t, variant)  # validates the variant name
    arch = host_arch()
    if arch not in config.flannel.arches:
        raise ConfigError(
            f"images are built for this host's arch ({arch}), which flannel.arches does not list"
        )
    require("packer")
    chosen = runnable(targets, reporter)
    if "docker" in chosen:
        require_docker_engine()
    if "qemu" in chosen:
        require(*QEMU_TOOLS)

    staged = next(s for s in stage(config, build_dir, reporter) if s.arch == arch)
    local_base = variant == "debian-bookworm" and any(t in ("docker", "qemu") for t in chosen)
    base_image = (
        base.build(base_dir or build_dir / "base", reporter, chosen) if local_base else None
    )
    accel = accelerator or os.environ.get("FLANNELNODE_QEMU_ACCEL") or "tcg"
    log = on_line or (lambda line: reporter.log(f"  {line}"))
    return [
        _build_target(_Target(name, config, staged, variant, repository), base_image, build_dir,
                      reporter, rpms, accel, force, log)
        for name in chosen
    ]  # fmt: skip


def _build_target(
    t: _Target,
    base_image: base.Base | None,
    build_dir: Path,
    reporter: Reporter,
    rpms: Sequence[Path],
    accel: str,
    force: bool,
    on_line: Callable[[str], None],
) -> Built:
    name, staged, variant = t.name, t.staged, t.variant
    parts = t.inputs(base_image if name in ("docker", "qemu") else None)
    parts |= {f"rpm {r.name}": sha256_file(r) for r in rpms}
    # our own base: the qcow2 is assembled from its VM tree, no VM boots (diskimage.py)
    assembled = name == "qemu" and variant in diskimage.VARIANTS and base_image is not None
    if assembled:
        assert base_image and base_image.vm_image_id and base_image.root_uuid
        parts |= diskimage.inputs(base_image.vm_image_id, base_image.root_uuid)
    digest = _digest(parts)
    path = record_path(build_dir, name)
    record = _load(path)
    if not force and record.get("inputs") == digest and _still_there(name, record):
        reporter.log(f"images {name}: up to date")
        return _built(name, staged.arch, digest, False, record)

    how = "assembling from the base's VM tree" if assembled else f"packer ({template(name).name})"
    reporter.log(f"images {name}: building with {how}")
    started = time.monotonic()
    (build_dir / "images").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=build_dir / "images"))
    try:
        upload = _upload_dir(work, staged, rpms)
        if assembled:
            assert base_image and base_image.vm_image_id and base_image.root_uuid
            out = build_dir / "images" / "qemu" / f"flannelnode-node-{t.tag}.qcow2"
            artifact = diskimage.build(base_image.vm_image_id, base_image.root_uuid, upload,
                                       PROVISION, out, work, build_dir / "images" / "qemu.log",
                                       on_line)  # fmt: skip
        else:
            artifact = _with_packer(t, work, upload, base_image, build_dir, accel, on_line)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = round(time.monotonic() - started, 1)
    record = {
        "inputs": digest,
        "parts": parts,
        "arch": staged.arch,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": seconds,
        **artifact,
    }
    _drop_previous(name, _load(path), record)
    _save(path, record)
    reporter.log(f"images {name}: done in {seconds:.0f}s")
    return _built(name, staged.arch, digest, True, record)


def _with_packer(
    t: _Target,
    work: Path,
    upload: Path,
    base_image: base.Base | None,
    build_dir: Path,
    accel: str,
    on_line: Callable[[str], None],
) -> dict:
    name = t.name
    variables = _packer_vars(name, t, work, upload, base_image, accel)
    env = {"PACKER_CACHE_DIR": str(build_dir / "images" / ".packer_cache")}
    try:
        artifacts = packer.build(
            template(name),
            variables,
            var_files=var_files(name, t.variant),
            on_line=on_line,
            timeout=TIMEOUTS[name],
            env=env,
        )
    except packer.PackerError as exc:
        serial = work / "serial.log"
        if not serial.exists():
            raise
        kept = build_dir / "images" / f"{name}-serial.log"  # a diagnostic, not an artifact
        shutil.copyfile(serial, kept)
        tail = serial.read_text(errors="replace").splitlines()[-15:]
        raise packer.PackerError(
            f"{exc}\n--- guest serial console, last lines (all in {kept}) ---\n" + "\n".join(tail)
        ) from None
    return {**_finish(name, t, artifacts, build_dir), "method": "packer"}


def _drop_previous(name: str, old: dict, new: dict) -> None:
    """The artifact a rebuild replaced: an untagged docker image, a qcow2 of another name."""
    if name == "docker" and old.get("image_id") and old["image_id"] != new["image_id"]:
        subprocess.run(["docker", "rmi", old["image_id"]], capture_output=True, timeout=120)
    if name == "qemu" and old.get("path") and old["path"] != new["path"]:
        Path(old["path"]).unlink(missing_ok=True)


def _built(name: str, arch: str, digest: str, rebuilt: bool, record: dict) -> Built:
    return Built(
        target=name,
        arch=arch,
        inputs=digest,
        rebuilt=rebuilt,
        seconds=record.get("seconds", 0.0) if rebuilt else 0.0,
        image=record.get("image"),
        image_id=record.get("image_id"),
        path=record.get("path"),
        sha256=record.get("sha256"),
        method=record.get("method"),
    )
