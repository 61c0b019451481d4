"""Containers on two nodes talking through flannel's datapath, for verify/test_datapath.py.

A "pod" is a nested busybox container in a node's own dockerd, on docker0 (so on the node's
flannel lease). Its traffic is sent and received by verify/probe.py, run with the node's python3
inside the pod's network namespace (`nsenter -n`): the pod's address, routes and MTU, and a
program that reports what it saw. The kernel entries flannel makes (routes, neighbours, FDB) are
read with iproute2's JSON output.
"""

from __future__ import annotations

import ipaddress
import json
import shlex
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .checks import lease_values, nested_image, node_ip
from .containers import run

PROBE = "/usr/local/share/flannelnode-verify/probe.py"
PROBE_SOURCE = Path(__file__).resolve().parent / "probe.py"
POD = "flannelnode-verify-pod"
POD_PORT = 7777  # the probe server in each pod
NODE_PORT = 7778  # the probe server in each node's own namespace (outside the flannel network)
SETTLE = 30.0  # flanneld's view of a lease change -> the kernel entries / a working path


@dataclass
class Pod:
    node: Any  # verify.lab.Node
    ip: str
    pid: int

    def probe(self, *args: object, timeout: int = 20) -> tuple[int, str]:
        """probe.py in this pod's network namespace: (exit code, output)."""
        words = " ".join(shlex.quote(str(a)) for a in args)
        return run(self.node.container, f"nsenter -t {self.pid} -n python3 -I {PROBE} {words}",
                   timeout)  # fmt: skip


def node_namespace(node: Any) -> Pod:
    """The node's own network namespace (its PID 1's), to probe from the node itself."""
    return Pod(node, node_ip(node), 1)


def start_pod(node: Any, machine: Any) -> Pod:
    """A fresh pod on the node, its probe server listening; and one in the node's namespace."""
    image = nested_image(machine)
    machine.run(f"docker rm -f {POD}")
    machine.check_output(f"timeout 60 docker run -d --name {POD} {image} /bin/busybox sleep 86400")
    out = machine.check_output(
        f"docker inspect -f '{{{{.State.Pid}}}} {{{{.NetworkSettings.IPAddress}}}}' {POD}"
    )
    pid, ip = out.split()
    pod = Pod(node, ip, int(pid))
    serve = f"nsenter -t {pid} -n python3 -I {PROBE} serve {POD_PORT}"
    node.container.exec_run(["sh", "-c", serve], detach=True)
    node.container.exec_run(["sh", "-c", f"python3 -I {PROBE} serve {NODE_PORT}"], detach=True)
    return pod


def eventually(probe: Callable[[], tuple[bool, Any]], timeout: float = SETTLE) -> tuple[bool, Any]:
    """probe() until it says True, at most `timeout` seconds: (ok, what it saw last)."""
    stop_at = time.monotonic() + timeout
    while True:
        ok, seen = probe()
        if ok or time.monotonic() >= stop_at:
            return ok, seen
        time.sleep(0.5)


def connects(src: Pod, host: str, port: int = POD_PORT) -> tuple[bool, str]:
    """A TCP connection from the pod; the server's answer names the address it saw."""
    rc, out = src.probe("connect", host, port)
    return rc == 0, out.strip()


def pings(src: Pod, host: str, size: int = 84) -> tuple[bool, str]:
    rc, out = src.probe("ping", host, size)
    return rc == 0, out.strip()


def crosses(src: Pod, dst: Pod) -> tuple[bool, str]:
    """ICMP and TCP from src's pod to dst's pod."""
    ping_ok, ping_out = pings(src, dst.ip)
    tcp_ok, tcp_out = connects(src, dst.ip)
    return ping_ok and tcp_ok, f"ping: {ping_out}; tcp: {tcp_out}"


def backend(lab: Any) -> dict[str, Any]:
    """The Backend section of the lab's network config (flannel's default: udp)."""
    return lab.config.network.get("Backend") or {"Type": "udp"}


def lease_of(lab: Any, node: Any) -> tuple[ipaddress.IPv4Network, dict[str, Any]]:
    """The node's lease in etcd: (network, value)."""
    ip = node_ip(node)
    for net, value in lease_values(lab).items():
        if value.get("PublicIP") == ip:
            return ipaddress.ip_network(net), value
    raise AssertionError(f"{node.name} ({ip}) holds no lease")


EXEC_TRIES = 3


def ip_json(node: Any, command: str) -> Any:
    """iproute2's -j output. It always prints JSON (`[]` when nothing matches), so an empty
    output is `docker exec` losing it (seen on a loaded host): asked again, a bounded few times."""
    for _ in range(EXEC_TRIES):
        rc, out = run(node.container, command, 20)
        assert rc == 0, f"{node.name}: `{command}` exited {rc}: {out}"
        if out.strip():
            return json.loads(out)
    raise AssertionError(f"{node.name}: `{command}` printed nothing, {EXEC_TRIES} times (exit 0)")


def default_dev(node: Any) -> str:
    [route] = ip_json(node, "ip -j -4 route show default")
    return str(route["dev"])


def entries(
    node: Any, kind: str, dev: str, net: ipaddress.IPv4Network, public_ip: str
) -> dict[str, Any]:
    """What the node's kernel holds for the lease (net, public_ip), reduced to what flannel sets:
    the route (both backends), and for vxlan the neighbour and FDB entries on dev."""
    routes = ip_json(node, f"ip -j -4 route show exact {net}")
    out: dict[str, Any] = {"route": [_route(r) for r in routes]}
    if kind == "vxlan":
        gateway = str(net.network_address)
        neigh = ip_json(node, f"ip -j -4 neigh show dev {dev} to {gateway}")
        out["neigh"] = [{"lladdr": n.get("lladdr"), "state": n.get("state")} for n in neigh]
        fdb = ip_json(node, f"bridge -j fdb show dev {dev}")
        out["fdb"] = sorted(
            (f.get("mac"), tuple(f.get("flags", [])), f.get("state"))
            for f in fdb
            if f.get("dst") == public_ip
        )
    return out


def _route(r: dict[str, Any]) -> dict[str, Any]:
    return {
        "gateway": r.get("gateway"),
        "dev": r.get("dev"),
        "onlink": "onlink" in r.get("flags", []),
    }


def expected_entries(
    kind: str, net: ipaddress.IPv4Network, value: dict[str, Any], dev: str
) -> dict[str, Any]:
    """flannel's entries for a remote lease: host-gw a route via its PublicIP on the external
    interface; vxlan a route via <net address> onlink on flannel.<VNI>, that address's
    neighbour entry with the VtepMAC, and an FDB entry VtepMAC -> PublicIP."""
    if kind == "host-gw":
        return {"route": [{"gateway": value["PublicIP"], "dev": dev, "onlink": False}]}
    mac = value["BackendData"]["VtepMAC"]
    return {
        "route": [{"gateway": str(net.network_address), "dev": dev, "onlink": True}],
        "neigh": [{"lladdr": mac, "state": ["PERMANENT"]}],
        "fdb": [(mac, ("self",), "permanent")],
    }


def flannel_dev(lab: Any, node: Any) -> str:
    """Where flannel's routes to other leases go: flannel.<VNI> (vxlan), else the external
    interface (the default route's)."""
    config = backend(lab)
    if config.get("Type") == "vxlan":
        return f"flannel.{config.get('VNI') or 1}"
    return default_dev(node)
