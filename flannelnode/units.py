"""systemd units and config files for a node, rendered from units/ (jinja2) and the config model.

`render()` gives every templated node file with its absolute path and mode; `scripts()` gives the
node scripts from scripts/. The payload step stages both (plus flanneld) and nothing else writes
these paths.

docker flavours: one drop-in per flavour is shipped under DOCKER_DROPIN_DIR, and the systemd
generator scripts/flannelnode-docker-generator copies the one matching the installed docker.service
in at every boot and daemon-reload. So one payload serves docker-ce, Debian's docker.io and
Fedora's moby-engine, whichever is installed and in whatever order.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from .config import Config
from .errors import ConfigError

REPO_ROOT = Path(__file__).resolve().parent.parent
UNITS_DIR = REPO_ROOT / "units"
SCRIPTS_DIR = REPO_ROOT / "scripts"

UNIT_DIR = "/usr/lib/systemd/system"
RUN_DIR = "/run/flannel"
DOCKER_ENV_FILE = f"{RUN_DIR}/docker"
DOCKER_ENV_KEY = "DOCKER_NETWORK_OPTIONS"
DOCKER_DROPIN_DIR = "/usr/share/flannelnode/docker"
DOCKER_FLAVOURS = ("docker-ce", "docker.io", "moby-engine")
# the seeder's marker; its directory comes from tmpfiles.d (and the RPM owns it): not
# StateDirectory=, which needs systemd >= 235
STATE_DIR = "/var/lib/flannelnode"
SEED_MARKER = f"{STATE_DIR}/seeded"
GENERATOR_PATH = "/usr/lib/systemd/system-generators/flannelnode-docker-generator"
# flanneld is flannel's Apache-2.0 binary: its licence travels with it (the RPM flags it %license)
LICENSE_DIR = "/usr/share/licenses/flannel-node"
LICENSES_DIR = REPO_ROOT / "licenses"
# kernel prerequisites of flanneld (br_netfilter since v0.26) and docker, loaded and set by the
# node's own files at boot, never left to docker's side effects
MODULES_LOAD = "/usr/lib/modules-load.d/flannel.conf"
SYSCTL_CONF = "/usr/lib/sysctl.d/90-flannel.conf"

# Everything substituted into a unit or an EnvironmentFile: no whitespace (word splitting),
# no quotes, '$' or '\\' (systemd and shell expansion), no '%' (unit specifiers).
_SAFE = re.compile(r"[A-Za-z0-9._/:@,+=\[\]-]+")
_IFACE = re.compile(r"[A-Za-z0-9._:@-]{1,64}")


@dataclass(frozen=True)
class NodeFile:
    path: str  # absolute path on the node
    mode: int
    content: bytes


def _safe(field: str, value: str) -> str:
    if not _SAFE.fullmatch(value):
        raise ConfigError(
            f"{field}: {value!r} cannot go into a systemd unit or environment file "
            "(no spaces, quotes, '$', '%' or backslashes)"
        )
    return value


def _environment(units_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(units_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def flannel_options(config: Config) -> list[str]:
    etcd, flanneld = config.etcd, config.flanneld
    options = [
        "--etcd-endpoints=" + ",".join(_safe("etcd.endpoints", e) for e in etcd.endpoints),
        f"--etcd-cafile={_safe('etcd.ca_file', etcd.ca_file)}",
        f"--etcd-certfile={_safe('etcd.cert_file', etcd.cert_file)}",
        f"--etcd-keyfile={_safe('etcd.key_file', etcd.key_file)}",
        f"--etcd-prefix={_safe('etcd.prefix', etcd.prefix)}",
    ]
    options += [f"--iface={_safe('flanneld.iface', name)}" for name in flanneld.iface]
    if flanneld.public_ip:
        options.append(f"--public-ip={flanneld.public_ip}")
    return options


def seed_env_path(config: Config) -> str:
    """The seeder's options on a node; user-data writes it, flannel-seed-etcd.service reads it."""
    return f"{config.install.prefix}/cfg/flannel-seed"


def render(config: Config, units_dir: Path = UNITS_DIR) -> list[NodeFile]:
    """Every templated node file for `config`, sorted by path. Raises ConfigError on unsafe values
    and jinja2.UndefinedError when a template uses a variable this function does not provide."""
    prefix = _safe("install.prefix", config.install.prefix)
    context = {
        "prefix": prefix,
        "flannel_options": flannel_options(config),
        "run_dir": RUN_DIR,
        "docker_env_file": DOCKER_ENV_FILE,
        "docker_env_key": DOCKER_ENV_KEY,
        "seed_env": seed_env_path(config),
        "seed_marker": SEED_MARKER,
        "state_dir": STATE_DIR,
        "modules_load": MODULES_LOAD,
        "sysctl_name": Path(SYSCTL_CONF).name,
    }
    env = _environment(units_dir)
    targets: list[tuple[str, str, dict[str, Any]]] = [
        (f"{UNIT_DIR}/flanneld.service", "flanneld.service.j2", {}),
        (f"{UNIT_DIR}/flannel-seed-etcd.service", "flannel-seed-etcd.service.j2", {}),
        (f"{prefix}/cfg/flanneld", "flanneld.cfg.j2", {}),
        ("/usr/lib/tmpfiles.d/flannel.conf", "tmpfiles-flannel.conf.j2", {}),
        (MODULES_LOAD, "modules-load-flannel.conf.j2", {}),
        (SYSCTL_CONF, "sysctl-flannel.conf.j2", {}),
    ]
    targets += [
        (f"{DOCKER_DROPIN_DIR}/{flavour}.conf", f"docker/{flavour}.conf.j2", {"flavour": flavour})
        for flavour in DOCKER_FLAVOURS
    ]
    files = [
        NodeFile(path, 0o644, env.get_template(name).render(**context, **extra).encode())
        for path, name, extra in targets
    ]
    return sorted(files, key=lambda f: f.path)


def scripts(config: Config, scripts_dir: Path = SCRIPTS_DIR) -> list[NodeFile]:
    """The node scripts, verbatim, at their node paths."""
    prefix = _safe("install.prefix", config.install.prefix)
    placed: Sequence[tuple[str, str]] = (
        ("mk-docker-opts.sh", f"{prefix}/bin/mk-docker-opts.sh"),
        ("flannel-seed-etcd", f"{prefix}/bin/flannel-seed-etcd"),
        ("flannelnode-docker-generator", GENERATOR_PATH),
    )
    return [NodeFile(path, 0o755, (scripts_dir / name).read_bytes()) for name, path in placed]


def licenses() -> list[NodeFile]:
    """Licences of what we redistribute: flannel's, for flanneld (licenses/ in the repository)."""
    return [
        NodeFile(
            f"{LICENSE_DIR}/flannel-LICENSE", 0o644, (LICENSES_DIR / "flannel-LICENSE").read_bytes()
        )
    ]
