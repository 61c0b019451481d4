"""Across nodes: a container on node1 reaches a container on node2 through flannel's datapath.

The guide's last step, for the backend in the lab's config (vxlan or host-gw): each node holds
flannel's entries for the other's lease (and follows leases as they come and go); pods reach each
other both ways, ICMP and TCP, and see each other's own addresses (docker runs with
--ip-masq=false, flanneld with --ip-masq: no masquerade inside the flannel network), while
traffic leaving the flannel network is masqueraded; a DF packet of exactly the overlay MTU
crosses and one byte more does not; `systemctl restart flanneld` keeps the path and the other
node's entries; and with docker's FORWARD policy DROP, flannel's forward rules are what lets
traffic in (the control: without them, it does not cross).
"""

from __future__ import annotations

import ipaddress
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import testinfra

from .checks import SUBNET_ENV, env_file, lease_values, node_ip, units
from .containers import wait_for
from .plugin import lab_of
from .pods import (
    NODE_PORT,
    Pod,
    backend,
    connects,
    crosses,
    default_dev,
    entries,
    eventually,
    expected_entries,
    flannel_dev,
    ip_json,
    lease_of,
    node_namespace,
    pings,
    start_pod,
)

KNOWN = ("vxlan", "host-gw")
FLANNELD_TIMEOUT = 60
VXLAN_PORT = 8472  # the kernel's default, which flannel keeps unless Backend.Port is set
GHOST_HOST = 200  # in the nodes' /24: above docker's dynamic addresses, below etcd-late's
GHOST_MAC = "0e:00:00:00:fe:01"


@dataclass
class Pair:
    lab: Any
    a: Pod  # on node1
    b: Pod  # on node2

    def both_ways(self) -> list[tuple[Pod, Pod]]:
        return [(self.a, self.b), (self.b, self.a)]


def _machine(node: Any) -> Any:
    return testinfra.get_host(f"docker://{node.container.name}")


@pytest.fixture(scope="module")
def pair(request: pytest.FixtureRequest) -> Iterator[Pair]:
    lab = lab_of(request.config)
    nodes = [lab.nodes["node1"], lab.nodes["node2"]]
    for node in nodes:
        assert node.error is None, f"{node.name} did not boot: {node.error}"
    a, b = (start_pod(node, _machine(node)) for node in nodes)
    yield Pair(lab, a, b)


def _kind(lab: Any) -> str:
    kind = str(backend(lab).get("Type", "")).lower()
    assert kind in KNOWN, f"verify knows flannel's kernel entries for {KNOWN}, not for {kind}"
    return kind


def _entries_for(pair: Pair, here: Pod, there: Pod) -> tuple[dict[str, Any], dict[str, Any]]:
    """(what `here`'s node holds for `there`'s lease, what flannel would have put there)."""
    kind = _kind(pair.lab)
    net, value = lease_of(pair.lab, there.node)
    dev = flannel_dev(pair.lab, here.node)
    got = entries(here.node, kind, dev, net, value["PublicIP"])
    return got, expected_entries(kind, net, value, dev)


def test_each_node_holds_flannels_entries_for_the_other(pair: Pair) -> None:
    for here, there in pair.both_ways():

        def matches(h: Pod = here, t: Pod = there) -> tuple[bool, Any]:
            got, want = _entries_for(pair, h, t)
            return got == want, (got, want)

        ok, (got, want) = eventually(matches)
        assert ok, f"{here.node.name} for {there.node.name}'s lease: {got}, expected {want}"


def test_overlay_device_and_mtu(pair: Pair) -> None:
    """vxlan: flannel.<VNI> with the lease's VtepMAC, its VNI, UDP 8472, no learning, on the
    external interface and address, the lease's network address /32, MTU = link MTU - 50 =
    FLANNEL_MTU. host-gw: no device of its own, FLANNEL_MTU = link MTU."""
    kind = _kind(pair.lab)
    for pod in (pair.a, pair.b):
        node = pod.node
        mtu = int(env_file(_machine(node), SUBNET_ENV)["FLANNEL_MTU"])
        ext = default_dev(node)
        link_mtu = ip_json(node, f"ip -j link show dev {ext}")[0]["mtu"]
        if kind == "host-gw":
            assert mtu == link_mtu, f"{node.name}: FLANNEL_MTU {mtu}, {ext} MTU {link_mtu}"
            continue
        net, value = lease_of(pair.lab, node)
        config = backend(pair.lab)
        dev = flannel_dev(pair.lab, node)
        [info] = ip_json(node, f"ip -d -j link show dev {dev}")
        data = info["linkinfo"]["info_data"]
        assert info["linkinfo"]["info_kind"] == "vxlan", info
        assert data["id"] == value["BackendData"]["VNI"] == (config.get("VNI") or 1), data
        assert data["port"] == (config.get("Port") or VXLAN_PORT), data
        assert data.get("learning") is False, data
        assert (data["local"], data["link"]) == (node_ip(node), ext), data
        assert info["address"] == value["BackendData"]["VtepMAC"], (info["address"], value)
        assert info["mtu"] == link_mtu - 50 == mtu, f"{dev} {info['mtu']}, FLANNEL_MTU {mtu}"
        assert "UP" in info["flags"], info["flags"]
        [addrs] = ip_json(node, f"ip -j -4 addr show dev {dev}")
        got = [f"{a['local']}/{a['prefixlen']}" for a in addrs["addr_info"]]
        assert got == [f"{net.network_address}/32"], got


def _unleased_subnet(lab: Any) -> ipaddress.IPv4Network:
    """The network's first subnet: flannel's default SubnetMin skips it, so no node holds it."""
    network = ipaddress.ip_network(lab.config.network["Network"])
    length = int(lab.config.network.get("SubnetLen") or 0)
    length = length or (24 if network.prefixlen <= 22 else network.prefixlen + 2)
    subnet = next(network.subnets(new_prefix=length))
    assert str(subnet) not in lease_values(lab), f"{subnet} is someone's lease"
    return subnet


def test_entries_follow_leases_as_they_come_and_go(pair: Pair) -> None:
    """A lease appears for a node that does not exist: both nodes add its entries; it goes:
    both remove them (flanneld watches etcd)."""
    lab, kind = pair.lab, _kind(pair.lab)
    net = _unleased_subnet(lab)
    [addr] = ip_json(pair.a.node, f"ip -j -4 addr show dev {default_dev(pair.a.node)}")
    info = addr["addr_info"][0]
    # an unused address on the nodes' own network (host-gw routes need an on-link gateway)
    ghost = ipaddress.ip_interface(f"{info['local']}/{info['prefixlen']}").network[GHOST_HOST]
    value: dict[str, Any] = {"PublicIP": str(ghost), "BackendType": kind}
    if kind == "vxlan":
        value["BackendData"] = {"VNI": backend(lab).get("VNI") or 1, "VtepMAC": GHOST_MAC}
    key = f"{lab.config.etcd.prefix}/subnets/{net.network_address}-{net.prefixlen}"
    gone = {"route": [], **({"neigh": [], "fdb": []} if kind == "vxlan" else {})}

    def holds(pod: Pod, want: dict[str, Any]) -> tuple[bool, Any]:
        got = entries(pod.node, kind, flannel_dev(lab, pod.node), net, str(ghost))
        return got == want, got

    lab.etcd.put(key, json.dumps(value))
    try:
        for pod in (pair.a, pair.b):
            want = expected_entries(kind, net, value, flannel_dev(lab, pod.node))
            ok, got = eventually(lambda p=pod, w=want: holds(p, w))
            assert ok, f"{pod.node.name} after the lease came: {got}, expected {want}"
    finally:
        lab.etcd.delete(key)
    for pod in (pair.a, pair.b):
        ok, got = eventually(lambda p=pod: holds(p, gone))
        assert ok, f"{pod.node.name} still holds entries after the lease went: {got}"


def test_pods_reach_each_other_icmp_and_tcp(pair: Pair) -> None:
    for src, dst in pair.both_ways():
        ok, seen = eventually(lambda s=src, d=dst: crosses(s, d))
        assert ok, f"{src.node.name} pod {src.ip} -> {dst.node.name} pod {dst.ip}: {seen}"


def test_receiver_sees_the_sending_pods_own_address(pair: Pair) -> None:
    """No masquerade between pods: docker's --ip-masq=false, flannel's RETURN rules."""
    for src, dst in pair.both_ways():
        ok, answer = eventually(lambda s=src, d=dst: connects(s, d.ip))
        assert ok, answer
        assert answer == f"peer {src.ip}", f"{dst.node.name} saw {answer}, not the pod {src.ip}"


def test_traffic_leaving_the_flannel_network_is_masqueraded(pair: Pair) -> None:
    """A pod to the other node's own address (outside the flannel network): that node sees the
    sending node's address (flanneld --ip-masq), not the pod's."""
    for src, dst in pair.both_ways():
        target = node_ip(dst.node)
        ok, answer = eventually(lambda s=src, t=target: connects(s, t, NODE_PORT))
        assert ok, answer
        assert answer == f"peer {node_ip(src.node)}", (
            f"{dst.node.name} saw {answer}: expected {src.node.name}'s address, not {src.ip}"
        )


def test_df_packet_of_the_overlay_mtu_crosses_one_byte_more_does_not(pair: Pair) -> None:
    mtu = int(env_file(_machine(pair.a.node), SUBNET_ENV)["FLANNEL_MTU"])
    ok, seen = eventually(lambda: pings(pair.a, pair.b.ip, mtu))
    assert ok, f"a DF packet of {mtu} bytes (the overlay MTU) did not cross: {seen}"
    ok, seen = pings(pair.a, pair.b.ip, mtu + 1)
    assert not ok, f"a DF packet of {mtu + 1} bytes crossed an overlay of MTU {mtu}: {seen}"
    # the same from the node itself, where the overlay's own device (or link) sets the limit
    node_a = node_namespace(pair.a.node)
    ok, seen = pings(node_a, pair.b.ip, mtu)
    assert ok, f"node1 -> pod on node2, {mtu} bytes with DF: {seen}"
    ok, seen = pings(node_a, pair.b.ip, mtu + 1)
    assert not ok, f"node1 -> pod on node2, {mtu + 1} bytes with DF crossed: {seen}"


def test_flanneld_restart_keeps_the_path_and_the_other_nodes_entries(pair: Pair) -> None:
    lab, machine = pair.lab, _machine(pair.a.node)
    lease_before = lease_of(lab, pair.a.node)
    entries_before = _entries_for(pair, pair.b, pair.a)[0]
    old_pid = units(machine, "flanneld")["flanneld"]["MainPID"]

    machine.check_output(f"timeout {FLANNELD_TIMEOUT} systemctl restart flanneld")
    wait_for(
        "flanneld active again on node1",
        lambda: (lambda u: u["ActiveState"] == "active" and u["MainPID"] not in ("0", old_pid))(
            units(machine, "flanneld")["flanneld"]
        ),
        FLANNELD_TIMEOUT,
        every=0.5,
    )
    assert lease_of(lab, pair.a.node) == lease_before, "node1's lease changed (subnet or VtepMAC)"
    for src, dst in pair.both_ways():
        ok, seen = eventually(lambda s=src, d=dst: crosses(s, d))
        assert ok, f"after the restart, {src.node.name} -> {dst.node.name}: {seen}"
    assert _entries_for(pair, pair.b, pair.a)[0] == entries_before


def _policy(node: Any) -> str:
    out = _machine(node).check_output("iptables -w -S FORWARD")
    return out.splitlines()[0].split()[-1]  # "-P FORWARD ACCEPT"


def _set_flanneld(nodes: list[Any], action: str) -> None:
    for node in nodes:
        _machine(node).check_output(f"timeout {FLANNELD_TIMEOUT} systemctl {action} flanneld")


def test_forward_policy_drop_needs_flannels_forward_rules(pair: Pair) -> None:
    """docker >= 1.13 sets FORWARD's policy to DROP: flannel's FLANNEL-FWD accepts the flannel
    network. Control: flanneld stopped and its forward rules removed, nothing crosses."""
    nodes = [pair.a.node, pair.b.node]
    before = {node.name: _policy(node) for node in nodes}
    try:
        for node in nodes:
            _machine(node).check_output("iptables -w -P FORWARD DROP")
        for src, dst in pair.both_ways():
            ok, seen = eventually(lambda s=src, d=dst: crosses(s, d))
            assert ok, f"FORWARD DROP, {src.node.name} -> {dst.node.name}: {seen}"

        _set_flanneld(nodes, "stop")  # or it puts its rules back within --iptables-resync
        for node in nodes:
            _machine(node).check_output(
                "iptables -w -D FORWARD -m comment --comment 'flanneld forward' -j FLANNEL-FWD"
                " && iptables -w -F FLANNEL-FWD && iptables -w -X FLANNEL-FWD"
            )
        for src, dst in pair.both_ways():
            ok, seen = connects(src, dst.ip)
            assert not ok, f"crossed without flannel's forward rules (control failed): {seen}"
    finally:
        _set_flanneld(nodes, "start")
    for src, dst in pair.both_ways():
        ok, seen = eventually(lambda s=src, d=dst: crosses(s, d))
        assert ok, f"flanneld started again, rules back: {src.node.name} -> {dst.node.name}: {seen}"
    for node in nodes:
        _machine(node).check_output(f"iptables -w -P FORWARD {before[node.name]}")
