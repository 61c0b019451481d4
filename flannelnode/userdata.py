"""userdata: cloud-init #cloud-config that brings a node up on flannel at its first boot.

It delivers the etcd TLS material (the only way keys reach a node: never through an image or an
RPM), the flanneld config files from the payload, and the seeder's options. With those in place
flannel-seed-etcd.service seeds the network config into etcd (exactly once across the fleet, see
scripts/flannel-seed-etcd) before flanneld starts, and docker follows flanneld. The result holds a
private key: written 0600. The TLS files are checked first (tlscheck) as the node will use them.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from . import atomic, tlscheck, units
from .config import Config
from .errors import ConfigError, FlannelnodeError
from .payload import net_conf
from .tools import require
from .units import NodeFile, seed_env_path

DEFAULT_SEED_DEADLINE = 300
# EC2 refuses user-data over 16 KB (raw, before base64); other clouds allow more
EC2_USER_DATA_LIMIT = 16384


def ec2_size_warning(path: Path) -> str | None:
    """A warning when the file is over EC2's user-data limit, else None."""
    size = path.stat().st_size
    if size <= EC2_USER_DATA_LIMIT:
        return None
    return (
        f"{path}: {size} bytes, over EC2's {EC2_USER_DATA_LIMIT}-byte user-data limit: an "
        "instance launch with it fails on EC2 (fine for NoCloud/OpenStack); shorten the CA bundle"
    )


@dataclass(frozen=True)
class TlsFiles:
    """Paths on the build host; their content is copied into the user-data."""

    ca: Path
    cert: Path
    key: Path


def _pem(path: Path, flag: str, marker: str) -> str:
    try:
        text = path.read_text(encoding="ascii")
    except FileNotFoundError:
        raise ConfigError(f"{flag} {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{flag} {path}: cannot read it as PEM text: {exc}") from None
    if marker not in text:
        raise ConfigError(f"{flag} {path}: no '{marker}' block; is this the right file?")
    return text if text.endswith("\n") else text + "\n"


def seed_env(config: Config, deadline: int) -> str:
    """Options for flannel-seed-etcd.service (units/), which runs the seeder before flanneld."""
    prefix, etcd = config.install.prefix, config.etcd
    options = [
        f"--endpoints={','.join(etcd.endpoints)}",
        f"--cacert={etcd.ca_file}",
        f"--cert={etcd.cert_file}",
        f"--key={etcd.key_file}",
        f"--prefix={etcd.prefix}",
        f"--config-file={prefix}/cfg/net-conf.json",
        f"--flannel-version={config.flannel.version}",
        f"--deadline={deadline}",
    ]
    return (
        "# flannel-seed-etcd options for flannel-seed-etcd.service (first boot). From user-data.\n"
        f'SEED_OPTIONS="{" ".join(options)}"\n'
    )


# Units started at boot by the image; on a base that did not enable them this starts them now.
# Seeding is not here: runcmd runs after multi-user.target, long after flanneld needed it.
FIRST_BOOT = """\
systemctl daemon-reload
systemctl enable --now flanneld.service
systemctl enable --now docker.service
"""


def config_files(config: Config) -> list[NodeFile]:
    """What user-data writes over the payload's copies: flanneld's options (they name this
    cluster's etcd) and the network config with its backend secrets, which no payload holds."""
    options = f"{config.install.prefix}/cfg/flanneld"
    return [
        *(f for f in units.render(config) if f.path == options),
        net_conf(config, public=False),
    ]


def _stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


def render(
    config: Config,
    tls: TlsFiles,
    seed_deadline: int = DEFAULT_SEED_DEADLINE,
    *,
    warn: Callable[[str], None] = _stderr,
    check_tls: bool = True,
) -> str:
    """check_tls=False only for a test node that is broken on purpose (verify's wrong CA)."""
    etcd = config.etcd
    ca = tlscheck.PemFile(
        "--etcd-ca", tls.ca, _pem(tls.ca, "--etcd-ca", "-----BEGIN CERTIFICATE-----")
    )
    cert = tlscheck.PemFile(
        "--etcd-cert", tls.cert, _pem(tls.cert, "--etcd-cert", "-----BEGIN CERTIFICATE-----")
    )
    key = tlscheck.PemFile("--etcd-key", tls.key, _pem(tls.key, "--etcd-key", "PRIVATE KEY-----"))
    if check_tls:
        for line in tlscheck.check(ca, cert, key):
            warn(line)
    secrets = [(etcd.ca_file, ca.text), (etcd.cert_file, cert.text), (etcd.key_file, key.text)]
    configs = config_files(config)
    configs.append(NodeFile(seed_env_path(config), 0o644, seed_env(config, seed_deadline).encode()))
    files: list[dict[str, Any]] = [
        {"path": path, "owner": "root:root", "permissions": "0600", "content": text}
        for path, text in secrets
    ]
    files += [
        {
            "path": f.path,
            "owner": "root:root",
            "permissions": f"{f.mode:04o}",
            "content": f.content.decode(),
        }
        for f in configs
    ]
    doc = {
        "write_files": files,
        "runcmd": [["/bin/sh", "-ec", FIRST_BOOT]],
    }
    header = (
        "#cloud-config\n"
        f"# flannelnode: flannel {config.flannel.version} first boot. Holds the etcd client key: "
        "keep it secret.\n"
    )
    return header + yaml.dump(doc, Dumper=_Dumper, sort_keys=False, width=100)


class _Dumper(yaml.SafeDumper):
    """Multi-line strings (PEM, scripts) as literal blocks, as a person would write them."""


def _str(dumper: yaml.SafeDumper, value: str) -> yaml.Node:
    style = "|" if "\n" in value else None
    return dumper.represent_scalar("tag:yaml.org,2002:str", value, style=style)


_Dumper.add_representer(str, _str)


def write(text: str, out: Path) -> Path:
    return atomic.write_text(out, text, mode=0o600)  # it holds a private key


def seed_iso(
    user_data: Path, out: Path, instance_id: str, network_config: Path | None = None
) -> Path:
    """A NoCloud `cidata` ISO (user-data + meta-data, and network-config when given: cloud-init's
    v1/v2 network config, e.g. a static address) for qemu/KVM boots, via cloud-localds."""
    require("cloud-localds")
    tool = "cloud-localds"
    with tempfile.TemporaryDirectory() as tmp:
        meta = Path(tmp) / "meta-data"
        meta.write_text(f"instance-id: {instance_id}\nlocal-hostname: {instance_id}\n")
        part = Path(tmp) / "seed.iso"
        proc = subprocess.run(
            [
                tool,
                "--disk-format=raw",
                *([f"--network-config={network_config}"] if network_config else []),
                str(part),
                str(user_data),
                str(meta),
            ],
            capture_output=True,
            text=True,
            check=False,
        )
        if proc.returncode != 0:
            raise FlannelnodeError(f"cloud-localds failed: {proc.stderr.strip()}")
        os.chmod(part, 0o600)
        out.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(part, out)
    return out
