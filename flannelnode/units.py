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

import dataclasses
import ipaddress
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

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
GENERATOR_PATH = "/usr/lib/systemd/system-generators/flannelnode-docker-generator"

# Everything substituted into a unit or an EnvironmentFile: no whitespace (word splitting),
# no quotes, '$' or '\\' (systemd and shell expansion), no '%' (unit specifiers).
_SAFE = re.compile(r"[A-Za-z0-9._/:@,+=\[\]-]+")
_IFACE = re.compile(r"[A-Za-z0-9._:@-]{1,64}")


@dataclass(frozen=True)
class NodeFile:
    path: str  # absolute path on the node
    mode: int
    content: bytes


@dataclass(frozen=True)
class FlanneldOptions:
    """Interface options; the config model has no section for them yet (see from_mapping)."""

    iface: tuple[str, ...] = ()
    public_ip: str | None = None

    @classmethod
    def from_mapping(cls, raw: Mapping[str, Any] | None) -> FlanneldOptions:
        """Accepts {"iface": "eth0" | ["eth0", ...], "public_ip": "10.0.0.5"}; other keys fail."""
        if not raw:
            return cls()
        unknown = sorted(set(raw) - {"iface", "public_ip"})
        if unknown:
            raise ConfigError(
                f"flanneld: unknown key(s) {', '.join(unknown)} (known: iface, public_ip)"
            )
        iface = raw.get("iface") or ()
        if isinstance(iface, str):
            iface = (iface,)
        names = tuple(iface)
        for name in names:
            if not isinstance(name, str) or not _IFACE.fullmatch(name):
                raise ConfigError(
                    f"flanneld.iface: {name!r} is not an interface name or address "
                    "(letters, digits and . _ : @ - only)"
                )
        public_ip = raw.get("public_ip")
        if public_ip is not None:
            try:
                public_ip = str(ipaddress.ip_address(public_ip))
            except ValueError:
                raise ConfigError(
                    f"flanneld.public_ip: {public_ip!r} is not an IP address"
                ) from None
        return cls(iface=names, public_ip=public_ip)


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


def flannel_options(config: Any, flanneld: FlanneldOptions) -> list[str]:
    etcd = config.etcd
    options = [
        "--etcd-endpoints=" + ",".join(_safe("etcd.endpoints", e) for e in etcd.endpoints),
        f"--etcd-cafile={_safe('etcd.ca_file', etcd.ca_file)}",
        f"--etcd-certfile={_safe('etcd.cert_file', etcd.cert_file)}",
        f"--etcd-keyfile={_safe('etcd.key_file', etcd.key_file)}",
        f"--etcd-prefix={_safe('etcd.prefix', etcd.prefix)}",
    ]
    options += [f"--iface={name}" for name in flanneld.iface]
    if flanneld.public_ip:
        options.append(f"--public-ip={flanneld.public_ip}")
    return options


def _flanneld_section(config: Any, flanneld: Mapping[str, Any] | None) -> FlanneldOptions:
    if flanneld is None:
        # Picks up a future [flanneld] section of the model without a change here.
        section = getattr(config, "flanneld", None)
        if dataclasses.is_dataclass(section) and not isinstance(section, type):
            section = {k: v for k, v in dataclasses.asdict(section).items() if v is not None}
        elif hasattr(section, "model_dump"):
            section = section.model_dump(exclude_none=True)
        flanneld = section
    return FlanneldOptions.from_mapping(flanneld)


def render(
    config: Any,
    flanneld: Mapping[str, Any] | None = None,
    units_dir: Path = UNITS_DIR,
) -> list[NodeFile]:
    """Every templated node file for `config`, sorted by path. Raises ConfigError on unsafe values
    and jinja2.UndefinedError when a template uses a variable this function does not provide."""
    prefix = _safe("install.prefix", config.install.prefix)
    context = {
        "prefix": prefix,
        "flannel_options": flannel_options(config, _flanneld_section(config, flanneld)),
        "run_dir": RUN_DIR,
        "docker_env_file": DOCKER_ENV_FILE,
        "docker_env_key": DOCKER_ENV_KEY,
    }
    env = _environment(units_dir)
    targets: list[tuple[str, str, dict[str, Any]]] = [
        (f"{UNIT_DIR}/flanneld.service", "flanneld.service.j2", {}),
        (f"{prefix}/cfg/flanneld", "flanneld.cfg.j2", {}),
        ("/usr/lib/tmpfiles.d/flannel.conf", "tmpfiles-flannel.conf.j2", {}),
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


def scripts(config: Any, scripts_dir: Path = SCRIPTS_DIR) -> list[NodeFile]:
    """The node scripts, verbatim, at their node paths."""
    prefix = _safe("install.prefix", config.install.prefix)
    placed: Sequence[tuple[str, str]] = (
        ("mk-docker-opts.sh", f"{prefix}/bin/mk-docker-opts.sh"),
        ("flannelnode-docker-generator", GENERATOR_PATH),
    )
    return [NodeFile(path, 0o755, (scripts_dir / name).read_bytes()) for name, path in placed]
