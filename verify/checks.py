"""Small helpers the checks share: reading node files and etcd the same way every time."""

from __future__ import annotations

import ipaddress
import json
import shlex
from typing import Any

SUBNET_ENV = "/run/flannel/subnet.env"
DOCKER_ENV = "/run/flannel/docker"
DOCKER_KEY = "DOCKER_NETWORK_OPTIONS"


def env_file(machine: Any, path: str) -> dict[str, str]:
    """KEY=VALUE lines of a file on the node, one pair of quotes removed."""
    f = machine.file(path)
    assert f.exists, f"{path} does not exist on the node"
    out = {}
    for line in f.content_string.splitlines():
        if "=" in line and not line.lstrip().startswith("#"):
            key, value = line.split("=", 1)
            out[key.strip()] = value.strip().strip('"')
    return out


def lease_network(subnet_env: dict[str, str]) -> ipaddress.IPv4Network:
    """FLANNEL_SUBNET (the .1 address/len) -> the leased network."""
    return ipaddress.ip_interface(subnet_env["FLANNEL_SUBNET"]).network


def dockerd_args(machine: Any) -> list[str]:
    """The running dockerd's argv (from /proc), or [] when docker is not running."""
    pid = machine.check_output("systemctl show -p MainPID --value docker").strip()
    if pid in ("", "0"):
        return []
    raw = machine.check_output(f"tr '\\0' '\\n' < /proc/{shlex.quote(pid)}/cmdline")
    return raw.splitlines()


def leases(lab: Any) -> dict[str, dict[str, Any]]:
    """{lease network: kv record with the JSON value parsed} under <prefix>/subnets/."""
    prefix = lab.config.etcd.prefix
    out = {}
    for kv in lab.etcd.get_prefix(f"{prefix}/subnets/"):
        name = kv["key"].rsplit("/", 1)[-1]
        address, _, length = name.partition("-")
        out[f"{address}/{length}"] = {**kv, "value": json.loads(kv["value"])}
    return out


def node_ip(node: Any) -> str:
    node.container.reload()
    networks = node.container.attrs["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["IPAddress"]
