"""Small helpers the checks share: reading node files and etcd the same way every time."""

from __future__ import annotations

import ipaddress
import json
import re
import shlex
from typing import Any

SUBNET_ENV = "/run/flannel/subnet.env"
DOCKER_ENV = "/run/flannel/docker"
DOCKER_KEY = "DOCKER_NETWORK_OPTIONS"
NESTED_IMAGE = "flannelnode-verify/busybox:1"
BUSYBOX = "/usr/local/share/flannelnode-verify/busybox"  # the lab puts it into every node
# how a TLS failure against etcd reads in flanneld's journal: Go's crypto/x509 wording, also
# when wrapped by the etcd client ("authentication handshake failed: x509: ...")
TLS_CA_ERROR = re.compile(r"x509: .*unknown authority")
# a whole PEM private key block (a name in code or docs is not one); an ed25519 key's body is
# one line
PEM_KEY = re.compile(
    rb"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----\r?\n(?:[A-Za-z0-9+/=:, -]*\r?\n){1,}?"
    rb"[A-Za-z0-9+/=\r\n]*-----END ([A-Z0-9]+ )*PRIVATE KEY-----"
)


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


def leases(lab: Any, etcd: Any = None) -> dict[str, dict[str, Any]]:
    """{lease network: kv record with the JSON value parsed} under <prefix>/subnets/ in the
    lab's etcd (or the one given)."""
    prefix = lab.config.etcd.prefix
    out = {}
    for kv in (etcd or lab.etcd).get_prefix(f"{prefix}/subnets/"):
        name = kv["key"].rsplit("/", 1)[-1]
        address, _, length = name.partition("-")
        out[f"{address}/{length}"] = {**kv, "value": json.loads(kv["value"])}
    return out


def lease_values(lab: Any, etcd: Any = None) -> dict[str, dict[str, Any]]:
    """{lease network: its value}: what a lease says, without the revisions (flanneld rewrites
    the lease it reuses, with a fresh TTL, at every start)."""
    return {net: kv["value"] for net, kv in leases(lab, etcd).items()}


def lease_owners(lab: Any) -> dict[str, tuple[str, str]]:
    """{lease network: (PublicIP, BackendType)}: who holds what. A node's reboot keeps these;
    its vxlan VtepMAC does not survive it (a new boot makes a new flannel.<VNI> with a random
    MAC, as flannel's etcd subnet manager stores none)."""
    return {
        net: (value.get("PublicIP"), value.get("BackendType"))
        for net, value in lease_values(lab).items()
    }


def node_ip(node: Any) -> str:
    node.container.reload()
    networks = node.container.attrs["NetworkSettings"]["Networks"]
    return next(iter(networks.values()))["IPAddress"]


def units(machine: Any, *names: str, props: str = "ActiveState,SubState,MainPID,NRestarts") -> dict:
    """{unit: {property: value}} from one `systemctl show`."""
    out = machine.check_output(f"systemctl show -p {props} {' '.join(names)}")
    result: dict[str, dict[str, str]] = {}
    blocks = out.strip().split("\n\n")
    for name, block in zip(names, blocks, strict=True):
        result[name] = dict(line.split("=", 1) for line in block.splitlines() if "=" in line)
    return result


def nested_image(machine: Any) -> str:
    """The busybox image for nested containers, imported into the node's docker once."""
    machine.check_output(
        f"set -e; if ! docker image inspect {NESTED_IMAGE} >/dev/null 2>&1; then "
        "root=$(mktemp -d); mkdir -p $root/bin; "
        f"cp {BUSYBOX} $root/bin/busybox; "
        "for a in sh ip cat sleep; do ln -s busybox $root/bin/$a; done; "
        f"tar -C $root -c . | docker import - {NESTED_IMAGE} >/dev/null; rm -rf $root; fi"
    )
    return NESTED_IMAGE
