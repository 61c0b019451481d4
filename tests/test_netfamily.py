"""CheckNetworkConfig per address family (flannelnode.netfamily), through netconf.lint.

The oracle is flannel's pkg/subnet/config.go (v0.27.4): CheckNetworkConfig's bounds, defaults
(SubnetLen 24 up to a /22, else prefix + 2; /64 up to a /62 for IPv6; the smallest networks /28
and /124), SubnetMin = Network + one subnet, SubnetMax = the next network - one subnet.
"""

from __future__ import annotations

from typing import Any

import pytest

from flannelnode import netconf

VXLAN = {"Type": "vxlan"}


def lint(**config: Any) -> list[netconf.Finding]:
    return netconf.lint({"Backend": VXLAN, **config})


def said(findings: list[netconf.Finding], field: str, level: str = "error") -> list[str]:
    return [f.message for f in findings if f.field == field and f.level == level]


V6 = {"EnableIPv6": True}


@pytest.mark.parametrize(
    ("config", "field", "network", "subnets"),
    [
        # the defaults: SubnetLen 24 up to a /22, else prefix + 2
        ({"Network": "10.1.0.0/22"}, "Network", "10.1.0.0/22", "3 node subnets of /24"),
        ({"Network": "10.1.0.0/23"}, "Network", "10.1.0.0/23", "3 node subnets of /25"),
        ({"Network": "10.1.0.0/28"}, "Network", "10.1.0.0/28", "3 node subnets of /30"),
        ({"Network": "0.0.0.0/8"}, "Network", "0.0.0.0/8", "65535 node subnets of /24"),
        ({**V6, "Network": "10.1.0.0/16", "IPv6Network": "fd00::/62"}, "IPv6Network",
         "fd00::/62", "3 node subnets of /64"),
        ({**V6, "Network": "10.1.0.0/16", "IPv6Network": "fd00::/63"}, "IPv6Network",
         "fd00::/63", "3 node subnets of /65"),
        ({**V6, "Network": "10.1.0.0/16", "IPv6Network": "fd00::/124"}, "IPv6Network",
         "fd00::/124", "3 node subnets of /126"),
        # explicit ranges: one subnet, two, an odd count
        ({"Network": "10.1.0.0/16", "SubnetMin": "10.1.5.0", "SubnetMax": "10.1.5.0"}, "Network",
         "10.1.0.0/16", "1 node subnets of /24"),
        ({"Network": "10.1.0.0/16", "SubnetMin": "10.1.1.0", "SubnetMax": "10.1.2.0"}, "Network",
         "10.1.0.0/16", "2 node subnets of /24"),
        ({"Network": "10.1.0.0/16", "SubnetMin": "10.1.2.0", "SubnetMax": "10.1.4.0"}, "Network",
         "10.1.0.0/16", "3 node subnets of /24"),
    ],
)  # fmt: skip
def test_room_for_node_subnets(config, field, network, subnets) -> None:
    findings = lint(**config)
    assert [str(f) for f in findings if f.level != "info"] == []
    (info,) = said(findings, field, "info")
    assert info.startswith(f"{field}: {network} gives room for {subnets}, "), info


@pytest.mark.parametrize(
    ("config", "field", "text"),
    [
        ({"Network": "10.1.0.0/29"}, "Network", "at least a /28"),
        ({**V6, "Network": "10.1.0.0/16", "IPv6Network": "fd00::/125"}, "IPv6Network",
         "at least a /124"),
    ],
)  # fmt: skip
def test_the_smallest_networks(config, field, text) -> None:
    (error,) = said(lint(**config), field)
    assert "is too small" in error and text in error


@pytest.mark.parametrize(
    ("network", "subnet_len", "text"),
    [
        ("10.1.0.0/16", 18, None),  # prefix + 2: four subnets
        ("10.1.0.0/18", 19, "19 is smaller than 20 (Network prefix /18 + 2)"),
        ("10.1.0.0/18", 20, None),
        ("10.1.0.0/28", 31, "Use 30 (the default for /28), or remove it"),
        ("10.1.0.0/22", 21, "Use 24 (the default for /22), or remove it"),
        ("10.1.0.0/26", 27, "Use 28 (the default for /26), or remove it"),
        ("10.1.0.0/29", 30, "No SubnetLen works for a /29"),
        ("10.1.0.0/30", 30, "No SubnetLen works for a /30"),
    ],
)
def test_subnet_len_bounds_and_the_advice(network: str, subnet_len: int, text: str | None) -> None:
    errors = said(lint(Network=network, SubnetLen=subnet_len), "SubnetLen")
    if text is None:
        assert errors == []
    else:
        (error,) = errors
        assert text in error, error


def test_the_advice_for_an_ipv6_subnet_len() -> None:
    config = {**V6, "Network": "10.1.0.0/16", "IPv6Network": "fd00::/126", "IPv6SubnetLen": 126}
    (error,) = said(lint(**config), "IPv6SubnetLen")
    assert "No IPv6SubnetLen works for a /126" in error


@pytest.mark.parametrize(
    ("config", "field", "text"),
    [
        ({"EnableIPv6": True, "Network": "10.1.0.0/16"}, "IPv6Network",
         "missing although EnableIPv6 is true"),
        ({}, "Network", "missing; flannel needs the IPv4 range all pods share"),
    ],
)  # fmt: skip
def test_a_missing_network_is_said_for_its_family(config, field, text) -> None:
    (error,) = said(lint(**config), field)
    assert error.startswith(f"{field}: {text}")


@pytest.mark.parametrize(
    ("field", "value", "example"),
    [("Network", "bogus", "10.244.0.0/16"), ("IPv6Network", "bogus", "fd00:10:244::/56")],
)
def test_a_bad_cidr_gets_its_familys_example(field: str, value: str, example: str) -> None:
    (error,) = said(lint(**{"Network": "10.1.0.0/16", field: value}), field)
    assert error.endswith(f'write it like "{example}"')


def test_a_boolean_where_a_cidr_goes() -> None:
    (error,) = said(lint(Network=True), "Network")
    assert error.startswith('Network: must be a string in CIDR form like "10.244.0.0/16", not a '
                            "boolean true: ")  # fmt: skip


def test_an_ipv6_item_in_networks_crashes_flanneld() -> None:
    # v0.20 to v0.24 decode Networks ([]ip.IP4Net): FromIPNet panics on an IPv6 address
    config = {"Backend": VXLAN, "Network": "10.1.0.0/16", "Networks": ["fd00::/48"]}
    (error,) = said(netconf.lint(config, flannel_version=(0, 22, 0)), "Networks")
    assert error.startswith("Networks: an item is IPv6: flanneld crashes")
    (error,) = said(lint(Network="fd00::/48"), "Network")
    assert error.startswith('Network: "fd00::/48" is IPv6: flanneld crashes')


def test_an_ipv4_address_where_an_ipv6_one_goes() -> None:
    config = {**V6, "Network": "10.1.0.0/16", "IPv6Network": "fd00::/48",
              "IPv6SubnetMin": "10.1.0.0"}  # fmt: skip
    (error,) = said(lint(**config), "IPv6SubnetMin")
    assert "is IPv4; it must be an IPv6 address inside IPv6Network fd00::/48" in error


@pytest.mark.parametrize(
    ("value", "use"),
    [
        ("10.1.255.5", "use 10.1.255.0"),  # the last subnet: nothing above it in the Network
        ("10.1.0.5", "use 10.1.0.0 or 10.1.1.0"),  # the first subnet is inside too
        ("10.1.201.5", "use 10.1.201.0 or 10.1.202.0"),
    ],
)
def test_a_misaligned_bound_gets_the_aligned_neighbours_inside(value: str, use: str) -> None:
    (error,) = said(lint(Network="10.1.0.0/16", SubnetMax=value), "SubnetMax")
    assert error.endswith(f"is not on a /24 boundary (SubnetLen); {use}")


def test_a_zero_subnet_min_is_unset_so_subnet_max_is_blamed() -> None:
    # 0.0.0.0 means unset (flannel: SubnetMin == ip.IP4(0)): the default, 10.1.1.0, is above it
    findings = lint(Network="10.1.0.0/16", SubnetMin="0.0.0.0", SubnetMax="10.1.0.0")
    (error,) = said(findings, "SubnetMax")
    assert "is below 10.1.1.0, the first subnet flannel leases" in error
    assert said(findings, "SubnetMin") == []


@pytest.mark.parametrize(
    ("config", "field", "flannel_says"),
    [
        ({"Network": "10.1.0.0/16", "SubnetLen": 31}, "SubnetLen",
         "SubnetLen must be less than /31"),
        ({**V6, "Network": "10.1.0.0/16", "IPv6Network": "fd00::/48", "IPv6SubnetLen": 127},
         "IPv6SubnetLen", "SubnetLen must be less than /127"),
    ],
)  # fmt: skip
def test_a_subnet_len_too_large_quotes_flannel(config, field, flannel_says) -> None:
    (error,) = said(lint(**config), field)
    assert f'("{flannel_says}")' in error
