"""flannel's network config rules (flannelnode.netconf): a table of good and bad configs."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from flannelnode import netconf
from flannelnode.config import Config
from flannelnode.errors import EXIT_BAD_INPUT, ConfigError

VXLAN = {"Type": "vxlan"}
WG_PSK = "kXwVGmbkS+8mVwKq2D3nUWo6bhtd1cuFTKhnu+hWCOY="  # base64 of 32 bytes


def net(**extra: Any) -> dict[str, Any]:
    return {"Network": "10.1.0.0/16", "Backend": VXLAN, **extra}


def loud(findings: list[netconf.Finding]) -> list[str]:
    return [str(f) for f in findings if f.level != "info"]


GOOD = {
    "classic": {"Network": "172.17.0.0/16", "Backend": VXLAN},
    "vxlan all options": net(
        Backend={
            "Type": "vxlan",
            "VNI": 4096,
            "Port": 4789,
            "GBP": False,
            "Learning": False,
            "DirectRouting": True,
            "MTU": 1500,
        }
    ),
    "explicit range": net(
        Network="10.0.0.0/8", SubnetLen=20, SubnetMin="10.10.0.0", SubnetMax="10.99.0.0"
    ),
    "zero SubnetMin means default": net(SubnetMin="0.0.0.0"),
    "ipv6 only": {
        "EnableIPv4": False,
        "EnableIPv6": True,
        "IPv6Network": "fd00:10:244::/56",
        "Backend": VXLAN,
    },
    "dual stack": net(EnableIPv6=True, IPv6Network="fd00::/48", IPv6SubnetLen=64),
    "wireguard": net(
        Backend={"Type": "wireguard", "ListenPort": 51820, "Mode": "auto"},
    ),
    "ipip": net(Backend={"Type": "ipip", "DirectRouting": True}),
    "host-gw": net(Backend={"Type": "host-gw"}),
    "alloc": net(Backend={"Type": "alloc"}),
    "smallest network": net(Network="10.0.0.0/28"),
}


@pytest.mark.parametrize("config", GOOD.values(), ids=GOOD.keys())
def test_good_configs_have_no_errors_or_warnings(config: dict[str, Any]) -> None:
    assert loud(netconf.lint(config)) == []
    assert netconf.check(config) == netconf.lint(config)


# (config, lint keyword arguments, level, field, expected substring of the message)
BAD = {
    "SubnetLen 31": (net(SubnetLen=31), {}, "error", "SubnetLen", "31 is larger than 30"),
    "SubnetLen 31 says the default": (net(SubnetLen=31), {}, "error", "SubnetLen", "Use 24"),
    "SubnetLen below prefix+2": (
        net(SubnetLen=17),
        {},
        "error",
        "SubnetLen",
        "17 is smaller than 18",
    ),
    "SubnetLen equal prefix": (net(SubnetLen=16), {}, "error", "SubnetLen", "four node subnets"),
    "SubnetLen float": (net(SubnetLen=24.0), {}, "error", "SubnetLen", "not a float 24.0"),
    "SubnetLen negative": (net(SubnetLen=-1), {}, "error", "SubnetLen", "whole number"),
    "missing Backend is udp": ({"Network": "10.1.0.0/16"}, {}, "warning", "Backend", "udp"),
    "missing Backend on arm64": (
        {"Network": "10.1.0.0/16"},
        {"arches": ["amd64", "arm64"]},
        "error",
        "Backend.Type",
        "on arm64 flanneld stops",
    ),
    "missing Network": ({"Backend": VXLAN}, {}, "error", "Network", "missing"),
    "Network not a string": (net(Network=10), {}, "error", "Network", "not an integer 10"),
    "Network a list": (net(Network=["10.1.0.0/16"]), {}, "error", "Network", "must be a string"),
    "Network not a CIDR": (net(Network="10.1.0.0"), {}, "error", "Network", "is not a CIDR"),
    "Network netmask form": (
        net(Network="10.1.0.0/255.255.0.0"),
        {},
        "error",
        "Network",
        "is not a CIDR",
    ),
    "Network IPv6": (net(Network="fd00::/48"), {}, "error", "Network", "is IPv6"),
    "Network everything": (net(Network="0.0.0.0/0"), {}, "error", "Network", "every address"),
    "Network host bits": (net(Network="10.1.2.3/16"), {}, "warning", "Network", "host bits"),
    "Network too small": (net(Network="10.0.0.0/29"), {}, "error", "Network", "too small"),
    "SubnetMin outside": (
        net(SubnetMin="10.2.0.0"),
        {},
        "error",
        "SubnetMin",
        '"10.2.0.0" is outside Network 10.1.0.0/16',
    ),
    "SubnetMax outside": (net(SubnetMax="10.0.255.0"), {}, "error", "SubnetMax", "outside"),
    "SubnetMax misaligned": (
        net(SubnetMax="10.1.200.5"),
        {},
        "error",
        "SubnetMax",
        '"10.1.200.5" is not on a /24 boundary (SubnetLen); use 10.1.200.0 or 10.1.201.0',
    ),
    "SubnetMin misaligned to SubnetLen": (
        net(SubnetLen=20, SubnetMin="10.1.8.0"),
        {},
        "error",
        "SubnetMin",
        "not on a /20 boundary",
    ),
    "SubnetMin is a CIDR": (net(SubnetMin="10.1.1.0/24"), {}, "error", "SubnetMin", "no /prefix"),
    "SubnetMin above SubnetMax": (
        net(SubnetMin="10.1.9.0", SubnetMax="10.1.2.0"),
        {},
        "error",
        "SubnetMin",
        "out of subnets",
    ),
    "SubnetMin network address": (
        net(SubnetMin="10.1.0.0"),
        {},
        "warning",
        "SubnetMin",
        "network address",
    ),
    "IPv4 and IPv6 off": (
        {"EnableIPv4": False, "Backend": VXLAN},
        {},
        "error",
        "EnableIPv4",
        "no network at all",
    ),
    "EnableIPv4 a string": (net(EnableIPv4="true"), {}, "error", "EnableIPv4", "true or false"),
    "IPv6Network without EnableIPv6": (
        net(IPv6Network="fd00::/48"),
        {},
        "warning",
        "IPv6Network",
        "EnableIPv6",
    ),
    "IPv6Network missing": (net(EnableIPv6=True), {}, "error", "IPv6Network", "missing"),
    "IPv6SubnetLen 127": (
        net(EnableIPv6=True, IPv6Network="fd00::/48", IPv6SubnetLen=127),
        {},
        "error",
        "IPv6SubnetLen",
        "127 is larger than 126",
    ),
    "IPv6Network IPv4": (
        net(EnableIPv6=True, IPv6Network="10.2.0.0/16"),
        {},
        "error",
        "IPv6Network",
        "is IPv4",
    ),
    "IPv6SubnetMin misaligned": (
        net(EnableIPv6=True, IPv6Network="fd00::/48", IPv6SubnetMin="fd00:0:0:1::1"),
        {},
        "error",
        "IPv6SubnetMin",
        "not on a /64 boundary",
    ),
    "IPv6 over udp": (
        net(EnableIPv6=True, IPv6Network="fd00::/48", Backend={"Type": "udp"}),
        {},
        "warning",
        "Backend.Type",
        "does not carry IPv6",
    ),
    "VNI too large": (
        net(Backend={"Type": "vxlan", "VNI": 16777216}),
        {},
        "error",
        "Backend.VNI",
        "16777216 is out of range",
    ),
    "VNI negative": (
        net(Backend={"Type": "vxlan", "VNI": -1}),
        {},
        "error",
        "Backend.VNI",
        "range",
    ),
    "VNI device name too long": (
        net(Backend={"Type": "vxlan", "VNI": 10000000}),
        {},
        "error",
        "Backend.VNI",
        "flannel.10000000",
    ),
    "VNI device name too long with IPv6": (
        net(EnableIPv6=True, IPv6Network="fd00::/48", Backend={"Type": "vxlan", "VNI": 10000}),
        {},
        "error",
        "Backend.VNI",
        "flannel-v6.10000",
    ),
    "VNI a string": (
        net(Backend={"Type": "vxlan", "VNI": "1"}),
        {},
        "error",
        "Backend.VNI",
        'must be an integer, not a string "1"',
    ),
    "GBP a string": (
        net(Backend={"Type": "vxlan", "GBP": "true"}),
        {},
        "error",
        "Backend.GBP",
        "must be true or false",
    ),
    "vxlan Port out of range": (
        net(Backend={"Type": "vxlan", "Port": 70000}),
        {},
        "error",
        "Backend.Port",
        "70000 is not a port number",
    ),
    "vxlan MTU too small": (
        net(Backend={"Type": "vxlan", "MTU": 100}),
        {},
        "error",
        "Backend.MTU",
        "100 leaves the vxlan device an MTU of 50",
    ),
    "unknown backend type": (
        net(Backend={"Type": "flannel"}),
        {},
        "error",
        "Backend.Type",
        '"flannel" is not a flannel backend',
    ),
    "backend type typo": (
        net(Backend={"Type": "hostgw"}),
        {},
        "error",
        "Backend.Type",
        'Did you mean "host-gw"?',
    ),
    "backend type upper case": (
        net(Backend={"Type": "VXLAN"}),
        {},
        "warning",
        "Backend.Type",
        'write "vxlan"',
    ),
    "removed backend": (
        net(Backend={"Type": "aws-vpc"}),
        {},
        "error",
        "Backend.Type",
        "removed in flannel v0.20.0",
    ),
    "removed backend on old flannel": (
        net(Backend={"Type": "gce"}),
        {"flannel_version": (0, 11, 0)},
        "warning",
        "Backend.Type",
        "experimental",
    ),
    "Backend a string": (net(Backend="vxlan"), {}, "error", "Backend", "must be a table"),
    "Backend without Type": (net(Backend={"VNI": 1}), {}, "error", "Backend.Type", "missing"),
    "unknown backend key": (
        net(Backend={"Type": "vxlan", "VIN": 2}),
        {},
        "warning",
        "Backend.VIN",
        "unknown key (value 2); flannel ignores it silently. Did you mean VNI?",
    ),
    "backend key in other case": (
        net(Backend={"Type": "vxlan", "vni": 2}),
        {},
        "warning",
        "Backend.vni",
        "reads this as VNI",
    ),
    "typo'd top-level key": (
        net(SubnetLength=24),
        {},
        "warning",
        "SubnetLength",
        "unknown key (value 24); flannel ignores it silently. Did you mean SubnetLen?",
    ),
    "top-level key in lower case": (
        {"Network": "10.1.0.0/16", "backend": VXLAN},
        {},
        "warning",
        "backend",
        "flannel reads this as Backend",
    ),
    "top-level key twice": (
        {"Network": "10.1.0.0/16", "Backend": VXLAN, "backend": {"Type": "host-gw"}},
        {},
        "warning",
        "Backend",
        "given twice",
    ),
    "Networks ignored": (net(Networks=["10.2.0.0/16"]), {}, "warning", "Networks", "ignores"),
    "etcd endpoint inside Network": (
        net(Network="192.168.0.0/16"),
        {"etcd_endpoints": ["https://192.168.31.61:2379", "https://etcd.example:2379"]},
        "warning",
        "Network",
        "contains the etcd endpoint 192.168.31.61 (https://192.168.31.61:2379)",
    ),
    "service CIDR overlap": (
        net(Network="10.0.0.0/8"),
        {"other_ranges": {"Kubernetes service CIDR": "10.0.0.0/24"}},
        "warning",
        "Network",
        "overlaps the Kubernetes service CIDR 10.0.0.0/24",
    ),
    "bad other range": (
        net(),
        {"other_ranges": {"service CIDR": "10.0.0/24"}},
        "error",
        "service CIDR",
        "is not a CIDR",
    ),
    "udp is for debugging": (
        net(Backend={"Type": "udp", "Port": 8285}),
        {},
        "warning",
        "Backend.Type",
        "debugging only",
    ),
    "host-gw needs L2": (net(Backend={"Type": "host-gw"}), {}, "info", "Backend.Type", "same L2"),
    "wireguard Mode case": (
        net(Backend={"Type": "wireguard", "Mode": "Auto"}),
        {},
        "error",
        "Backend.Mode",
        '"Auto" is not one of separate, auto, ipv4, ipv6',
    ),
    "wireguard PSK not a key": (
        net(Backend={"Type": "wireguard", "PSK": "secret"}),
        {},
        "error",
        "Backend.PSK",
        "is not a WireGuard key",
    ),
    "wireguard PSK is a secret": (
        net(Backend={"Type": "wireguard", "PSK": WG_PSK}),
        {},
        "warning",
        "Backend.PSK",
        "is a secret",
    ),
    "ipsec without PSK": (
        net(Backend={"Type": "ipsec"}),
        {},
        "error",
        "Backend.PSK",
        "at least 96 characters",
    ),
    "ipsec short PSK": (
        net(Backend={"Type": "ipsec", "PSK": "x" * 95}),
        {},
        "error",
        "Backend.PSK",
        "has 95 characters",
    ),
    "network not a table": ("172.17.0.0/16", {}, "error", "network", "must be a table"),
}


@pytest.mark.parametrize(
    ("config", "kwargs", "level", "field", "text"), BAD.values(), ids=BAD.keys()
)
def test_bad_configs(config: Any, kwargs: dict, level: str, field: str, text: str) -> None:
    findings = netconf.lint(config, **kwargs)
    hits = [f for f in findings if f.level == level and f.field == field and text in f.message]
    assert hits, "\n".join(map(str, findings))
    assert all(f.message.startswith(f"{f.field}: ") for f in findings)


@pytest.mark.parametrize(
    ("network", "subnet_len", "subnet_min", "subnet_max"),
    [
        ("10.1.0.0/16", 24, "10.1.1.0", "10.1.255.0"),
        ("10.1.0.0/22", 24, "10.1.1.0", "10.1.3.0"),
        ("10.1.0.0/23", 25, "10.1.0.128", "10.1.1.128"),
        ("10.1.0.0/24", 26, "10.1.0.64", "10.1.0.192"),
        ("10.1.0.0/28", 30, "10.1.0.4", "10.1.0.12"),
        ("10.0.0.0/8", 24, "10.0.1.0", "10.255.255.0"),
    ],
)
def test_defaults_like_check_network_config(
    network: str, subnet_len: int, subnet_min: str, subnet_max: str
) -> None:
    eff = netconf.effective({"Network": network, "Backend": VXLAN})
    assert (eff["SubnetLen"], eff["SubnetMin"], eff["SubnetMax"]) == (
        subnet_len,
        subnet_min,
        subnet_max,
    )


def test_effective_ipv6_only() -> None:
    eff = netconf.effective(GOOD["ipv6 only"])
    assert eff == {
        "EnableIPv4": False,
        "EnableIPv6": True,
        "IPv6Network": "fd00:10:244::/56",
        "IPv6SubnetLen": 64,
        "IPv6SubnetMin": "fd00:10:244:1::",
        "IPv6SubnetMax": "fd00:10:244:ff::",
        "Backend": {"Type": "vxlan", "VNI": 1, "GBP": False, "Learning": False,
                    "DirectRouting": False},
    }  # fmt: skip


def test_effective_ipv6_small_network_default() -> None:
    eff = netconf.effective(GOOD["dual stack"] | {"IPv6Network": "fd00::/64", "IPv6SubnetLen": 0})
    assert (eff["IPv6SubnetLen"], eff["IPv6SubnetMin"]) == (66, "fd00::4000:0:0:0")


def test_effective_without_backend_is_udp_and_keeps_explicit_values() -> None:
    eff = netconf.effective({"network": "10.1.0.0/16", "SubnetMax": "10.1.9.0"})
    assert eff["Network"] == "10.1.0.0/16"
    assert eff["SubnetMax"] == "10.1.9.0"
    assert eff["Backend"] == {"Type": "udp", "Port": 8285}


def test_check_raises_config_error_listing_every_error() -> None:
    bad = net(SubnetLen=31, Backend={"Type": "vxlan", "VNI": "7"}, SubnetLenght=24)
    with pytest.raises(ConfigError) as exc:
        netconf.check(bad)
    assert exc.value.exit_code == EXIT_BAD_INPUT == 2
    text = str(exc.value)
    assert "2 errors" in text
    assert "SubnetLen: 31 is larger than 30" in text
    assert 'Backend.VNI: must be an integer, not a string "7"' in text
    assert "SubnetLenght" not in text  # warnings are not errors
    with pytest.raises(ConfigError):
        netconf.effective(bad)


def test_check_returns_warnings_when_there_is_no_error() -> None:
    findings = netconf.check({"Network": "10.1.0.0/16"})
    assert [f.field for f in findings if f.level == "warning"] == ["Backend"]


def test_default_node_toml_network_is_clean() -> None:
    cfg = Config()
    findings = netconf.lint(
        cfg.network, etcd_endpoints=cfg.etcd.endpoints, arches=cfg.flannel.arches
    )
    assert loud(findings) == []


@pytest.mark.parametrize(
    "backend",
    [
        {"Type": "wireguard", "PSK": "hunter2-not-base64"},
        {"Type": "wireguard", "PSK": WG_PSK},
        {"Type": "ipsec", "PSK": "hunter2" * 10},
        {"Type": "tencent-vpc", "AccessKeySecret": 12345678},
        {"Type": "wireguard", "PresharedKey": "hunter2"},
        {"Type": "wireguard", "PSK": "hunter2", "psk": "hunter2"},
    ],
)
def test_secrets_are_never_echoed(backend: dict[str, Any]) -> None:
    findings = netconf.lint(net(Backend=backend))
    assert findings
    text = "\n".join(map(str, findings))
    assert "hunter2" not in text
    assert WG_PSK not in text
    assert "12345678" not in text


def test_finding_is_frozen() -> None:
    finding = netconf.lint({"Network": "10.1.0.0/16"})[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        finding.level = "info"  # type: ignore[misc]
    assert str(finding).startswith(f"{finding.level}: {finding.field}: ")


def test_lint_does_not_modify_its_input() -> None:
    config = {"network": "10.1.0.0/16", "Backend": {"type": "vxlan"}}
    snapshot = {"network": "10.1.0.0/16", "Backend": {"type": "vxlan"}}
    netconf.lint(config)
    netconf.effective(config)
    assert config == snapshot
