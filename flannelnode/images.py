"""images: node images built by Packer from the payload, from one template (images/node.pkr.hcl)
with one source per target; what a target is lives in the registry, targets.py.

Per arch: each target is built for the arches of flannel.arches that it and the variant are made
for (targets.py: docker for every arch with a base, amd64 and arm64, a foreign one under
qemu-user, see emulation.py; qemu and amazon-ebs for amd64; a pulled base for the host's arch).
The docker images of one flannel version are also written as one OCI image layout with a
multi-arch index (ociindex.py), build/images/node-<version>.oci.tar.

Incremental: a target's inputs (the template, provision.sh, the variant's var file, the payload
digest, the base image id or qcow2 sha256, the output name, the operator's Packer variables) hash
to a digest recorded with the artifact in build/images/<target>-<arch>.json. Same digest and the
artifact still there: no Packer at all.

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
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from . import base, diskimage, emulation, integrity, ociindex, packer, targets, validation
from .cache import sha256_file
from .config import Config
from .errors import ConfigError, FlannelnodeError
from .payload import Staged, stage
from .progress import Reporter
from .targets import Job, Target, Variant
from .tools import require

IMAGES_DIR = targets.IMAGES_DIR
TEMPLATE = targets.TEMPLATE
PROVISION = IMAGES_DIR / "provision.sh"
VALIDATE = IMAGES_DIR / "validate.sh"  # the last provisioner of the template (path.root)
REPOSITORY = "flannelnode/node"
UPLOAD_PAYLOAD = "flannelnode-payload.tar"


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


def var_files(target: str, variant: str) -> list[Path]:
    """The variant's var file for a target (none where the build starts from our own base)."""
    return targets.variant(variant).var_files(targets.get(target))


def host_arch() -> str:
    return emulation.host_arch()


def record_path(build_dir: Path, target: str, arch: str) -> Path:
    return build_dir / "images" / f"{target}-{arch}.json"


def unavailable(target: str, arch: str | None = None) -> str | None:
    """Why this host cannot build a target (for arch), in one line with what to do; None when
    it can (targets.Target.unavailable)."""
    return targets.get(target).unavailable(arch)


def runnable(
    named: Sequence[str] | None, reporter: Reporter, arches: Sequence[str] | None = None
) -> list[tuple[str, str]]:
    """The (target, arch) pairs to build, arch by arch; a target is built for the arches of
    its registry entry among `arches` (the others are logged). A target named explicitly (named
    given) that cannot be built here, for one of its arches or for none of `arches`, is an error
    (exit 1); only the default list (named None) may skip one, with an alarm."""
    chosen = list(targets.default_targets() if named is None else named)
    arches = list(arches or [host_arch()])
    made_for = {t: targets.get(t).arches() for t in chosen}
    reasons = {t: why for t in chosen if (why := unavailable(t)) is not None}
    for t in chosen:
        made = [a for a in arches if a in made_for[t]]
        if not made:
            reasons[t] = (
                f"it is made for {', '.join(made_for[t])} only, and the arches asked for "
                f"are {', '.join(arches)}; add {made_for[t][0]} to --arch/ARCH or leave "
                f"{t} out of --target/IMAGES"
            )
        elif len(made) < len(arches) and t not in reasons:
            others = ", ".join(a for a in arches if a not in made)
            reporter.log(f"images {t}: built for {', '.join(made)}, not {others} (not made for it)")
    pairs = [(t, a) for a in arches for t in chosen if t not in reasons and a in made_for[t]]
    per_arch = {(t, a): why for t, a in pairs if (why := unavailable(t, a)) is not None}
    if named is not None and (reasons or per_arch):
        raise ImagesError(
            "; ".join(
                [f"images {t}: cannot be built here: {why}" for t, why in reasons.items()]
                + [f"images {t} {a}: cannot be built here: {why}"
                   for (t, a), why in per_arch.items()]
            )
        )  # fmt: skip
    for t, why in reasons.items():
        reporter.alarm(f"images {t}: SKIPPED (not named with --target): {why}")
    for (t, a), why in per_arch.items():
        reporter.alarm(f"images {t} {a}: SKIPPED (not named with --target): {why}")
    left = [pair for pair in pairs if pair not in per_arch]
    if not left:
        raise ImagesError("images: every default target was skipped (see above); nothing built")
    return left


def el_rpms(build_dir: Path, variant: str, arch: str | None = None) -> list[Path]:
    """The RPM `build.py rpm` made for the image's arch, for EL bases; [] for the others."""
    if not targets.variant(variant).el:
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


def _upload_dir(work: Path, staged: Staged, rpms: Sequence[Path]) -> Path:
    """What Packer copies into the image: the payload tarball and, for EL bases, our RPMs."""
    up = work / "upload"
    (up / "rpms").mkdir(parents=True)
    # the template points provision.sh at this fixed name, whatever payload.py calls its file.
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
    # what images/validate.sh checks at the end of the build (the template passes it, base64)
    manifest = json.loads(staged.manifest.read_text())
    (up / validation.LIST).write_text(validation.check_list(manifest))
    return up


def inputs(job: Job, payload_digest: str, rpms: Sequence[Path] = ()) -> dict[str, str]:
    """What a target's image is made of; its digest decides whether Packer runs."""
    t = job.target
    parts = {
        "target": t.name,
        "variant": job.variant.name,
        "template": sha256_file(TEMPLATE),
        "source": t.source,
        "provision": sha256_file(PROVISION),
        "validate": sha256_file(VALIDATE),
        "payload": payload_digest,
        "tag": job.tag,
        "repository": job.repository,
    }
    for f in job.variant.var_files(t):
        parts[f"vars {f.name}"] = sha256_file(f)
    if job.base is not None:
        parts["base"] = t.base_input(job.base)
    parts |= {f"rpm {r.name}": sha256_file(r) for r in rpms}
    parts |= {f"packer {k}": v for k, v in sorted(job.settings.items())}
    return parts


def packer_vars(job: Job, work: Path, upload: Path) -> dict[str, str]:
    """The operator's settings, then what the build sets (config refuses overlaps)."""
    common = {"upload_dir": str(upload), "provision_script": str(PROVISION)}
    return {**job.settings, **common, **job.target.packer_vars(job, work)}


def image_arches(config: Config, variant: Variant, reporter: Reporter) -> list[str]:
    """The arches of flannel.arches that node images on this variant are built for; the
    others, loudly (or, for a pulled base, in the log), not."""
    made = variant.arches()
    arches = [a for a in config.flannel.arches if a in made]
    if not arches:
        raise ConfigError(
            f"node images on {variant.name} are built for {', '.join(made)}, and "
            f"flannel.arches ({', '.join(config.flannel.arches)}) lists none of them"
        )
    others = [a for a in config.flannel.arches if a not in made]
    if others and variant.ours:
        reporter.alarm(
            f"images: no node image for {', '.join(others)} (images are built for "
            f"{', '.join(made)}; the RPMs cover every arch)"
        )
    elif others:
        reporter.log(f"images --base {variant.name}: built for {', '.join(made)} only")
    return arches


def build(
    config: Config,
    build_dir: Path,
    reporter: Reporter,
    names: Sequence[str] | None = None,
    *,
    variant: str | None = None,
    base_dir: Path | None = None,
    rpms: Sequence[Path] = (),
    accelerator: str | None = None,
    repository: str = REPOSITORY,
    force: bool = False,
    on_line: Callable[[str], None] | None = None,
) -> list[Built]:
    """Build each target for each of its arches in flannel.arches; returns what the manifest
    records. The docker images of all arches are then also written as one OCI layout.

    names None: images.targets of the config, and if that is unset the registry's default list,
    whose targets this host cannot build are skipped loudly. variant None: images.base."""
    if names is None:
        names = config.images.targets
    for name in names or ():
        targets.get(name)
    the_variant = targets.variant(variant or config.images.base)
    for name in names or targets.default_targets():
        the_variant.var_files(targets.get(name))
    arches = image_arches(config, the_variant, reporter)
    require("packer")
    chosen = runnable(names, reporter, arches)
    for name in dict.fromkeys(t for t, _ in chosen):
        targets.get(name).require()

    staged = {s.arch: s for s in stage(config, build_dir, reporter) if s.arch in arches}
    bases = {
        arch: base.build(base_dir or build_dir / "base", reporter, kinds, arch=arch,
                         mirror=config.images.debian_mirror)
        for arch in dict.fromkeys(a for _, a in chosen)
        if the_variant.ours
        and (kinds := [k for t, a in chosen if a == arch and (k := targets.get(t).base)])
    }  # fmt: skip
    accel = accelerator or config.images.accelerator
    log = on_line or (lambda line: reporter.log(f"  {line}"))
    built = []
    for name, arch in chosen:
        target = targets.get(name)
        job = Job(
            target=target,
            variant=the_variant,
            arch=arch,
            version=config.flannel.version,
            repository=repository,
            base=bases.get(arch) if target.base else None,
            accelerator=accel,
            settings=config.images.packer.get(name, {}),
        )
        built.append(_build_target(job, staged[arch], build_dir, reporter, rpms, force, log))
    docker = [
        ociindex.Platform(b.arch, b.image, b.image_id)
        for b in built
        if b.target == "docker" and b.image and b.image_id
    ]
    if docker:
        ociindex.update(build_dir, config.flannel.version, docker, reporter)
    return built


def _build_target(
    job: Job,
    staged: Staged,
    build_dir: Path,
    reporter: Reporter,
    rpms: Sequence[Path],
    force: bool,
    on_line: Callable[[str], None],
) -> Built:
    t, arch = job.target, job.arch
    name = t.name
    parts = inputs(job, staged.digest, rpms)
    # our own base: the qcow2 is assembled from its VM tree, no VM boots (diskimage.py)
    vm = job.base if name == "qemu" and job.variant.name in diskimage.VARIANTS else None
    if vm is not None:
        assert vm.vm_image_id and vm.root_uuid
        parts |= diskimage.inputs(vm.vm_image_id, vm.root_uuid)
    digest = _digest(parts)
    path = record_path(build_dir, name, arch)
    legacy = build_dir / "images" / f"{name}.json"  # before records were per arch
    record = _load(path)
    if not record and _load(legacy).get("arch") == arch:
        record = _load(legacy)
    if not force and record.get("inputs") == digest and t.still_there(record):
        reporter.log(f"images {name} {arch}: up to date")
        if not path.exists():
            _save(path, {**record, "target": name})
            legacy.unlink(missing_ok=True)
        return _built(name, arch, digest, False, record)

    foreign = arch != host_arch()
    how = (
        "assembling from the base's VM tree (no VM boot)"
        if vm is not None
        else f"packer ({TEMPLATE.name}, -only={t.source})"
    )
    reporter.log(
        f"images {name} {arch}: building with {how}"
        + (" under qemu-user emulation: several times slower" if foreign else "")
    )
    started = time.monotonic()
    (build_dir / "images").mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=build_dir / "images"))
    try:
        upload = _upload_dir(work, staged, rpms)
        checked = validation.Collector(on_line)
        if vm is not None:
            assert vm.vm_image_id and vm.root_uuid
            out = build_dir / "images" / "qemu" / f"flannelnode-node-{job.tag}.qcow2"
            artifact = diskimage.build(
                vm.vm_image_id, vm.root_uuid, upload, PROVISION, out, work,
                build_dir / "images" / "qemu.log", on_line,
                check=lambda tree: _validate_tree(tree, upload, arch, checked),
            )  # fmt: skip
            artifact |= _validated(f"{name} {arch}", checked)
        else:
            artifact = _with_packer(job, work, upload, build_dir, checked)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    seconds = round(time.monotonic() - started, 1)
    record = {
        "target": name,
        "inputs": digest,
        "parts": parts,
        "arch": arch,
        "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "seconds": seconds,
        **artifact,
    }
    t.drop_previous(_load(path) or _load(legacy), record)
    _save(path, record)
    legacy.unlink(missing_ok=True)
    reporter.log(f"images {name} {arch}: done in {seconds:.0f}s")
    return _built(name, arch, digest, True, record)


def _with_packer(
    job: Job, work: Path, upload: Path, build_dir: Path, checked: validation.Collector
) -> dict:
    t, name, arch = job.target, job.target.name, job.arch
    env = {"PACKER_CACHE_DIR": str(build_dir / "images" / ".packer_cache")}
    try:
        artifacts = packer.build(
            TEMPLATE,
            packer_vars(job, work, upload),
            var_files=job.variant.var_files(t),
            only=[t.source],
            on_line=checked.feed,
            timeout=t.timeout_for(arch),
            env=env,
        )
    except packer.PackerError as exc:
        if checked.failed:  # validate.sh failed the build: say which checks, not Packer's tail
            raise validation.ValidationError(
                f"images {name} {arch}: {checked.failure()}; no image was kept"
            ) from None
        serial = work / "serial.log"
        if not serial.exists():
            raise
        kept = build_dir / "images" / f"{name}-{arch}-serial.log"  # a diagnostic
        shutil.copyfile(serial, kept)
        tail = serial.read_text(errors="replace").splitlines()[-15:]
        raise packer.PackerError(
            f"{exc}\n--- guest serial console, last lines (all in {kept}) ---\n" + "\n".join(tail)
        ) from None
    validated = _validated(f"{name} {arch}", checked)  # before the qcow2 leaves work/
    return {**t.finish(job, _of_source(t, artifacts), build_dir), "method": "packer", **validated}


def _validate_tree(tree: Path, upload: Path, arch: str, checked: validation.Collector) -> None:
    """The assembled disk's tree gets the checks Packer's last provisioner runs in an image."""
    proc = subprocess.run(
        ["sh", str(VALIDATE), "--root", str(tree), "--checks", str(upload / validation.LIST),
         "--arch", arch],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    for line in (proc.stdout + proc.stderr).splitlines():
        checked.feed(line)
    if proc.returncode != 0:
        detail = checked.failure() if checked.failed else proc.stderr.strip()
        raise validation.ValidationError(f"images qemu {arch}: {detail}; no image was kept")


def _validated(name: str, checked: validation.Collector) -> dict:
    """The record's `validation`: what images/validate.sh checked inside the image, all passed."""
    try:
        return {"validation": checked.result()}
    except validation.ValidationError as exc:
        raise validation.ValidationError(f"images {name}: {exc}") from None


def _of_source(t: Target, artifacts: Sequence[packer.Artifact]) -> list[packer.Artifact]:
    """Packer 1.6.6 builds nothing, and succeeds, for an -only= name the template lacks."""
    mine = [a for a in artifacts if a.source == t.source]
    if not mine:
        raise ImagesError(
            f"packer build -only={t.source} {TEMPLATE} built nothing: the template has no "
            f"source {t.source} (flannelnode/targets.py names it for {t.name})"
        )
    return mine


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
