"""targets: the registry of node image targets and of the bases (variants) they start from.

One Target per kind of node image: the Packer source that builds it in images/node.pkr.hcl, the
arches it is made for, whether `images` builds it by default, what this host needs to build it,
the Packer variables the build sets (and an operator may not) and those an operator may set
([images.packer.<target>] in node.toml), and how its input digest, finished artifact and "still
there" check are made. One Variant per base OS. images.py, the CLI's choices and help, `make help`
(through `build.py targets`), config validation and the tests all read this registry;
docs/extending.md says how to add a target, a variant or an arch.

Imports stay light (config.py validates [images] against this module on every run): the heavy
modules are imported inside the hooks that need them.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ConfigError, FlannelnodeError

if TYPE_CHECKING:
    from .base import Base
    from .packer import Artifact

IMAGES_DIR = Path(__file__).resolve().parent.parent / "images"
TEMPLATE = IMAGES_DIR / "node.pkr.hcl"
VARIANTS_DIR = IMAGES_DIR / "variants"
# set by images.py for every target, whatever the target (variable -> what sets it)
COMMON_BUILD_VARS = {
    "upload_dir": "the build (the payload tarball and RPMs it uploads)",
    "provision_script": "the build (images/provision.sh)",
}


class TargetError(FlannelnodeError):
    pass


def _host_arch() -> str:
    from .emulation import host_arch

    return host_arch()


@dataclass(frozen=True)
class Variant:
    """A base OS the images start from; its per-target settings are Packer var files in
    images/variants/<name>/<target>.pkrvars.hcl."""

    name: str
    summary: str
    el: bool = False  # installs flannel-node from our RPM with dnf (else the payload tarball)
    ours: bool = False  # the docker and qcow2 bases are ours (build.py base), else pulled

    def arches(self) -> tuple[str, ...]:
        """Ours: every arch `build.py base` builds; pulled: this host's (and its RPM's) only."""
        if self.ours:
            from .base import ARCHES

            return ARCHES
        return (_host_arch(),)

    def var_file(self, target: Target) -> Path:
        return VARIANTS_DIR / self.name / f"{target.name}.pkrvars.hcl"

    def needs_var_file(self, target: Target) -> bool:
        """Whatever does not start from one of our bases learns its base from the var file."""
        return not (self.ours and target.base is not None)

    def var_files(self, target: Target) -> list[Path]:
        path = self.var_file(target)
        if path.exists():
            return [path]
        if self.needs_var_file(target):
            raise ConfigError(
                f"{path} is missing: {target.name} on {self.name} takes its base (and login user) "
                "from that var file; see docs/extending.md"
            )
        return []


@dataclass(frozen=True)
class Job:
    """One target built for one arch: what its hooks need to know."""

    target: Target
    variant: Variant
    arch: str
    version: str  # flannel's
    repository: str  # the node image repository (docker)
    base: Base | None  # our base for this arch, when the variant is ours and the target uses one
    accelerator: str  # qemu: tcg or kvm
    settings: Mapping[str, str]  # the operator's Packer variables for this target

    @property
    def tag(self) -> str:
        return f"{self.version}-{self.arch}"


@dataclass(frozen=True)
class Target:
    name: str
    source: str  # its source in images/node.pkr.hcl as `packer build -only=` takes it: type.name
    summary: str
    needs: str  # what the host needs, for `build.py targets`
    default: bool  # in the list `images` builds when no target is named
    timeout: float  # seconds for one Packer build on the host's own arch
    base: str | None = None  # which of our bases it starts from on our variants: docker, qemu
    tools: tuple[str, ...] = ()
    # template variables an operator may set in [images.packer.<name>]
    settable: tuple[str, ...] = ()
    # of those, the ones the build sets from our base when the variant is ours
    base_vars: tuple[str, ...] = ()
    # template variables the build sets itself -> what sets them (refused in [images.packer])
    build_vars: Mapping[str, str] = field(default_factory=dict)

    def arches(self) -> tuple[str, ...]:
        return (_host_arch(),)

    def timeout_for(self, arch: str) -> float:
        """A foreign arch runs its programs under qemu-user: several times slower."""
        return self.timeout if arch == _host_arch() else 3 * self.timeout

    def unavailable(self, arch: str | None = None) -> str | None:
        """Why this host cannot build the target (for arch), in one line with what to do; None
        when it can. Arches it is not made for at all are arches()' business, not this."""
        if arch is not None:
            return None
        from .tools import require

        try:
            require(*self.tools)
        except FlannelnodeError as exc:
            return str(exc)
        return None

    def require(self) -> None:
        """Right before building: what must answer now (tools, an engine)."""
        from .tools import require

        require(*self.tools)

    def base_input(self, base: Base) -> str:
        """What of our base goes into the input digest."""
        raise NotImplementedError

    def packer_vars(self, job: Job, work: Path) -> dict[str, str]:
        """The variables the build sets (every key in build_vars or base_vars); work/ is a
        scratch directory that lives as long as the Packer run."""
        return {}

    def finish(self, job: Job, artifacts: Sequence[Artifact], build_dir: Path) -> dict:
        """Packer succeeded: move the artifact in place; returns what the record keeps."""
        return {"image": ",".join(a.id for a in artifacts)}

    def still_there(self, record: dict) -> bool:
        return bool(record.get("image"))

    def drop_previous(self, old: dict, new: dict) -> None:
        """The artifact a rebuild replaced."""


def docker_image_id(ref: str) -> str:
    import subprocess

    res = subprocess.run(
        ["docker", "image", "inspect", "--format", "{{.Id}}", ref],
        capture_output=True,
        text=True,
        timeout=60,
    )
    return res.stdout.strip() if res.returncode == 0 else ""


class Docker(Target):
    def arches(self) -> tuple[str, ...]:
        from .base import ARCHES

        return ARCHES  # every arch with a base; a foreign one runs under qemu-user

    def unavailable(self, arch: str | None = None) -> str | None:
        from .emulation import problem

        return None if arch is None else problem(arch)

    def require(self) -> None:
        from .tools import require_docker_engine

        require_docker_engine()

    def base_input(self, base: Base) -> str:
        return base.image_id

    def packer_vars(self, job: Job, work: Path) -> dict[str, str]:
        variables = {"repository": job.repository, "tag": job.tag}
        if job.base is not None:
            variables["base_image"] = job.base.image_id
        return variables

    def finish(self, job: Job, artifacts: Sequence[Artifact], build_dir: Path) -> dict:
        # after docker-tag, Packer reports the tagged image (builder id packer.post-processor.*)
        ids = {a.id for a in artifacts if a.builder_id.startswith(("packer.docker", "packer.post"))}
        image = f"{job.repository}:{job.tag}"
        image_id = docker_image_id(image)
        if not image_id or image_id not in ids:
            raise TargetError(
                f"packer reported {sorted(ids)} but {image} is {image_id or 'absent'}"
            )
        return {"image": image, "image_id": image_id}

    def still_there(self, record: dict) -> bool:
        return (
            bool(record.get("image_id")) and docker_image_id(record["image"]) == record["image_id"]
        )

    def drop_previous(self, old: dict, new: dict) -> None:
        if old.get("image_id") and old["image_id"] != new["image_id"]:  # now untagged
            import subprocess

            subprocess.run(["docker", "rmi", old["image_id"]], capture_output=True, timeout=120)


def _seed(work: Path) -> tuple[Path, Path]:
    """A per-build ssh key and the NoCloud seed that lets it in as root; both die with work/."""
    import subprocess

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


class Qemu(Target):
    def arches(self) -> tuple[str, ...]:
        from .base import QCOW2_ARCH

        return (QCOW2_ARCH,)  # the qcow2 recipe is x86 (GRUB i386-pc, BIOS boot)

    def base_input(self, base: Base) -> str:
        return f"sha256:{base.qcow2_sha256}"

    def packer_vars(self, job: Job, work: Path) -> dict[str, str]:
        key, seed = _seed(work)
        variables = {
            "ssh_private_key_file": str(key),
            "seed_dir": str(seed),
            "output_directory": str(work / "out"),
            "vm_name": f"flannelnode-node-{job.tag}.qcow2",
            "serial_log": str(work / "serial.log"),
            "accelerator": job.accelerator,
        }
        if job.base is not None:
            variables["base_url"] = str(job.base.qcow2)
            variables["base_checksum"] = f"sha256:{job.base.qcow2_sha256}"
        return variables

    def finish(self, job: Job, artifacts: Sequence[Artifact], build_dir: Path) -> dict:
        from .cache import sha256_file

        files = [Path(f) for a in artifacts for f in a.files if f.endswith(".qcow2")]
        if not files:
            raise TargetError("packer reported no qcow2")
        out = build_dir / "images" / "qemu" / files[0].name
        out.parent.mkdir(parents=True, exist_ok=True)
        digest = sha256_file(files[0])
        os.replace(files[0], out)
        return {"path": str(out), "sha256": digest, "size": out.stat().st_size}

    def still_there(self, record: dict) -> bool:
        path = Path(record.get("path", ""))
        return path.is_file() and path.stat().st_size == record.get("size")

    def drop_previous(self, old: dict, new: dict) -> None:
        if old.get("path") and old["path"] != new["path"]:  # a qcow2 of another name
            Path(old["path"]).unlink(missing_ok=True)


AMI_ARCH = {"amd64": "x86_64", "arm64": "arm64"}  # EC2's architecture names


class AmazonEbs(Target):
    def arches(self) -> tuple[str, ...]:
        return ("amd64",)  # the AMI filters of the variants are x86 ones

    def unavailable(self, arch: str | None = None) -> str | None:
        if arch is not None:
            return None
        from .awscreds import WHERE, find

        if find() is None:
            return (
                f"no AWS credentials (looked where the AWS SDK looks: {WHERE}); configure some "
                "(e.g. AWS_PROFILE) or leave amazon-ebs out of --target/IMAGES"
            )
        return None

    def require(self) -> None:
        pass

    def packer_vars(self, job: Job, work: Path) -> dict[str, str]:
        return {"flannel_version": job.version, "ami_arch": AMI_ARCH[job.arch]}

    # an AMI lives in AWS; the record is trusted (the default still_there)


_SSH = ("ssh_username", "become", "engine_repo")

DOCKER = Docker(
    name="docker",
    source="docker.node",
    summary="container image flannelnode/node:<version>-<arch> (systemd, its own dockerd)",
    needs="a Docker engine; qemu-user (make binfmt) for a foreign arch",
    default=True,
    timeout=1800.0,
    base="docker",
    settable=("engine_repo", "base_image", "pull"),
    base_vars=("base_image",),
    build_vars={
        "repository": "the build: flannelnode/node",
        "tag": "the build: <flannel version>-<arch>",
    },
)
QEMU = Qemu(
    name="qemu",
    source="qemu.node",
    summary="qcow2 disk for KVM/OpenStack, build/images/qemu/flannelnode-node-<tag>.qcow2",
    needs="qemu-system-x86_64, qemu-img, mkisofs, ssh-keygen",
    default=True,
    timeout=3600.0,
    base="qemu",
    tools=("qemu-system-x86_64", "qemu-img", "mkisofs", "ssh-keygen"),
    settable=(*_SSH, "cpus", "memory", "disk_size", "timeout", "base_url", "base_checksum"),
    base_vars=("base_url", "base_checksum"),
    build_vars={
        "ssh_private_key_file": "the build (a key made per build)",
        "seed_dir": "the build (the NoCloud seed holding the build key)",
        "output_directory": "the build (a scratch directory)",
        "vm_name": "the build: flannelnode-node-<flannel version>-<arch>.qcow2",
        "serial_log": "the build (a scratch file, kept on failure)",
        "accelerator": "images.accelerator (FLANNELNODE_QEMU_ACCEL, --accelerator)",
    },
)
AMAZON_EBS = AmazonEbs(
    name="amazon-ebs",
    source="amazon-ebs.node",
    summary="AMI in your AWS account (encrypted root volume)",
    needs="AWS credentials, found as the AWS SDK finds them",
    default=False,
    timeout=5400.0,
    settable=(
        *_SSH,
        "region",
        "instance_type",
        "source_ami_name",
        "source_ami_owner",
        "ami_prefix",
    ),
    build_vars={
        "flannel_version": "the build (the configured flannel version)",
        "ami_arch": "the build (from the arch)",
    },
)

TARGETS: dict[str, Target] = {t.name: t for t in (DOCKER, QEMU, AMAZON_EBS)}

VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant("debian-bookworm", "Debian 12: our debootstrap bases (build.py base)", ours=True),
        Variant("rocky-9", "Rocky Linux 9: pulled bases; flannel-node RPM via dnf", el=True),
    )
}
DEFAULT_VARIANT = "debian-bookworm"


def default_targets() -> tuple[str, ...]:
    return tuple(t.name for t in TARGETS.values() if t.default)


def base_kinds() -> tuple[str, ...]:
    """Our bases (build.py base --target): the ones some target starts from."""
    return tuple(dict.fromkeys(t.base for t in TARGETS.values() if t.base))


def get(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise ConfigError(f"unknown image target {name!r}; known: {', '.join(TARGETS)}") from None


def variant(name: str) -> Variant:
    try:
        return VARIANTS[name]
    except KeyError:
        raise ConfigError(f"unknown image base {name!r}; known: {', '.join(VARIANTS)}") from None


def check_settings(name: str, settings: Mapping[str, object], variant_name: str) -> str | None:
    """Why [images.packer.<name>] may not hold these settings (None: it may). The first
    offending key is named as `<target>.<variable>` at the start of the message."""
    target = TARGETS.get(name)
    if target is None:
        return f"{name}: unknown image target; known: {', '.join(TARGETS)}"
    fixed = {**COMMON_BUILD_VARS, **target.build_vars}
    ours = VARIANTS[variant_name].ours if variant_name in VARIANTS else False
    for key in settings:
        if key in fixed:
            return f"{name}.{key}: set by {fixed[key]}; it cannot be overridden"
        if key in target.base_vars and ours:
            return (
                f"{name}.{key}: set by the build from flannelnode's own {target.base} base on "
                f"{variant_name}; for another base, use or add a variant (images.base, "
                "docs/extending.md)"
            )
        if key not in target.settable:
            takes = [k for k in target.settable if not (ours and k in target.base_vars)]
            return f"{name}.{key}: not a Packer variable of {name}; it takes: {', '.join(takes)}"
    return None
