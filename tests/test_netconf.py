"""flannel's network config rules (flannelnode.netconf): a table of good and bad configs."""

from __future__ import annotations

import dataclasses
import datetime
from typing import Any

import pytest

from flannelnode import netconf
from flannelnode.config import Config, load
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
    # flannel's maxima (pkg/subnet/config.go: "SubnetLen must be less than /31", IPv6 /127)
    "SubnetLen 30": net(SubnetLen=30),
    "IPv6SubnetLen 126": net(EnableIPv6=True, IPv6Network="fd00::/48", IPv6SubnetLen=126),
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
        "error",
        "backend",
        'flannel would take the last, backend = a table with Type "host-gw"',
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
        "has 95 bytes",
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


# -- issue 13, item 2: every field is decoded as flannel decodes it, enabled family or not

V6_ONLY = {"EnableIPv4": False, "EnableIPv6": True, "IPv6Network": "fd00:10:244::/56"}

REFUSED_WHATEVER_THE_FAMILY = {
    "Network bogus, IPv4 off": (
        {**V6_ONLY, "Network": "bogus", "Backend": VXLAN},
        {},
        "Network",
        '"bogus" is not a CIDR (flanneld refuses the whole config and retries every second, '
        "forever: invalid CIDR address: bogus)",
    ),
    "Network IPv6, IPv4 off": (
        {**V6_ONLY, "Network": "fd00::/48", "Backend": VXLAN},
        {},
        "Network",
        "flanneld crashes decoding it",
    ),
    "IPv6Network /129, IPv6 off": (
        net(IPv6Network="fd00::/129"),
        {},
        "IPv6Network",
        "invalid CIDR address: fd00::/129",
    ),
    "IPv6SubnetMin garbage, IPv6 off": (
        net(IPv6SubnetMin="garbage"),
        {},
        "IPv6SubnetMin",
        '"garbage" is not an IP address',
    ),
    "SubnetLen a string": (
        net(SubnetLen="24"),
        {},
        "SubnetLen",
        'must be a whole number of bits like 24, not a string "24": flanneld refuses the whole '
        "config and retries every second, forever (json: cannot unmarshal string into Go struct "
        "field Config.SubnetLen of type uint)",
    ),
    "SubnetLen a string, IPv4 off": (
        {**V6_ONLY, "SubnetLen": "24", "Backend": VXLAN},
        {},
        "SubnetLen",
        "cannot unmarshal string",
    ),
    "SubnetMax IPv6, IPv4 off": (
        {**V6_ONLY, "SubnetMax": "fd00::", "Backend": VXLAN},
        {},
        "SubnetMax",
        "panic: Address is not an IPv4 address",
    ),
    "EnableIPv6 a string": (net(EnableIPv6="yes"), {}, "EnableIPv6", "must be true or false"),
    "Networks bogus on v0.24": (
        net(Networks=["bogus"]),
        {"flannel_version": (0, 24, 4)},
        "Networks",
        "invalid CIDR address: bogus",
    ),
    "IPv6Networks a string on v0.20": (
        net(IPv6Networks="fd00::/48"),
        {"flannel_version": (0, 20, 0)},
        "IPv6Networks",
        "cannot unmarshal string into Go struct field Config.IPv6Networks of type []ip.IP6Net",
    ),
}


@pytest.mark.parametrize(
    ("config", "kwargs", "field", "text"),
    REFUSED_WHATEVER_THE_FAMILY.values(),
    ids=REFUSED_WHATEVER_THE_FAMILY.keys(),
)
def test_what_flannel_cannot_decode_is_an_error_in_either_family(config, kwargs, field, text):
    findings = netconf.lint(config, **kwargs)
    hits = [f for f in findings if f.level == "error" and f.field == field and text in f.message]
    assert hits, "\n".join(map(str, findings))
    with pytest.raises(ConfigError):
        netconf.check(config, **kwargs)


def test_a_disabled_familys_decodable_values_are_only_ignored():
    findings = netconf.lint(
        {**V6_ONLY, "Network": "10.0.0.0/30", "SubnetLen": 99, "Backend": VXLAN}
    )
    assert {(f.level, f.field) for f in findings if f.level != "info"} == {
        ("warning", "Network"),
        ("warning", "SubnetLen"),
    }


def test_networks_exist_only_in_the_releases_that_read_them():
    config = net(Networks=["10.2.0.0/16"])
    old = netconf.lint(config, flannel_version=(0, 22, 0))
    assert [f.message for f in old if f.field == "Networks"] == [
        "Networks: flannel decodes it, then ignores it with etcd (pkg/subnet/config.go "
        "ParseConfig resets it); use Network / IPv6Network"
    ]
    new = netconf.lint(net(Networks=["bogus"]), flannel_version=(0, 27, 4))
    (finding,) = [f for f in new if f.field == "Networks"]
    assert finding.level == "warning"
    assert "flannel v0.27.4 does not read it (flannel reads Networks from v0.20.0 to before " in (
        finding.message
    )
    assert loud(netconf.lint(net(EnableNFTables=True), flannel_version=(0, 27, 4))) == []
    assert "EnableNFTables" in str(
        netconf.lint(net(EnableNFTables=True), flannel_version=(0, 24, 0))
    )


# -- issue 13, item 3: IPv6 only with a backend that leases an IPv4 address: flanneld panics


@pytest.mark.parametrize("backend", [None, "udp", "ipip", "alloc"])
def test_ipv6_only_with_an_ipv4_lease_backend_panics_without_an_ipv4_public_ip(backend):
    config = dict(V6_ONLY) | ({"Backend": {"Type": backend}} if backend else {})
    findings = netconf.lint(config, arches=["amd64"])
    panics = [f for f in findings if f.level == "error" and "flanneld panics at start" in f.message]
    assert panics, "\n".join(map(str, findings))
    assert "[flanneld] public_ip" in panics[0].message and '"vxlan"' in panics[0].message
    v6_public = netconf.lint(config, arches=["amd64"], public_ip="fd00::5")
    assert "public_ip is fd00::5, not IPv4" in str([str(f) for f in v6_public])
    v4_public = netconf.lint(config, arches=["amd64"], public_ip="192.0.2.7")
    assert not [f for f in v4_public if "panics" in f.message]
    assert [f for f in v4_public if "does not carry IPv6" in f.message]


def test_ipv6_only_vxlan_needs_no_public_ipv4():
    assert loud(netconf.lint({**V6_ONLY, "Backend": VXLAN})) == []


def test_lint_config_passes_the_public_ip(tmp_path):
    (tmp_path / "node.toml").write_text(
        '[flannel]\narches = ["amd64"]\n[flanneld]\npublic_ip = "192.0.2.7"\n'
        '[network]\nEnableIPv4 = false\nEnableIPv6 = true\nIPv6Network = "fd00::/48"\n'
        'Backend = {Type = "ipip"}\n'
    )
    with_iface = load(tmp_path / "node.toml", env={}, overrides={"flanneld.iface": ["eth1"]})
    assert not [f for f in netconf.lint_config(with_iface) if f.level == "error"]
    no_ip = load(tmp_path / "node.toml", env={}, overrides={"flanneld.public_ip": ""})
    assert [f for f in netconf.lint_config(no_ip) if "panics" in f.message]
    # without --iface, flanneld looks an IPv4 --public-ip up among IPv6 addresses, and exits
    (error,) = [
        f for f in netconf.lint_config(load(tmp_path / "node.toml", env={})) if f.level == "error"
    ]
    assert error.field == "EnableIPv4" and "Set [flanneld] iface" in error.message
    assert "error looking up v6 interface" in error.message


# -- issue 13, item 4: one rendering; two spellings of one key are an error in TOML


def test_two_spellings_of_one_key_in_toml_are_an_error_naming_what_flannel_takes():
    findings = netconf.lint(net(Backend={"type": "foo", "Type": "vxlan"}))
    (error,) = [f for f in findings if f.level == "error"]
    assert error.field == "Backend.Type"
    assert "type and Type are one key to flannel" in error.message
    assert 'flannel would take the last, Type = "vxlan"' in error.message
    other_order = netconf.lint(net(Backend={"Type": "vxlan", "type": "foo"}))
    assert 'would take the last, type = "foo"' in str([str(f) for f in other_order])


def test_secrets_given_twice_are_not_shown():
    findings = netconf.lint(net(Backend={"Type": "wireguard", "PSK": WG_PSK, "psk": WG_PSK}))
    text = "\n".join(map(str, findings))
    assert "PSK and psk are one key to flannel" in text and WG_PSK not in text


def test_the_rendering_keeps_what_flannel_takes():
    """Sorted by the name flannel matches (Go's fold), stably: the later spelling stays later."""
    text = netconf.render({"Network": "10.1.0.0/16", "backend": {"Type": "x", "type": "vxlan"}})
    assert text == (
        '{\n  "backend": {\n    "Type": "x",\n    "type": "vxlan"\n  },\n'
        '  "Network": "10.1.0.0/16"\n}\n'
    )
    assert netconf.render({"SubnetLen": 24.0}) == '{\n  "SubnetLen": 24.0\n}\n'
    with pytest.raises(ConfigError, match="TOML date"):
        netconf.render({"Network": datetime.date(2024, 1, 1)})


def test_a_toml_date_inside_lists_is_named_by_its_place():
    network = {**net(), "Extra": [1, [datetime.date(2024, 1, 1)]]}
    (error,) = [f for f in netconf.lint(network) if f.level == "error"]
    assert (error.field, error.message) == (
        "Extra[1][0]",
        "Extra[1][0]: 2024-01-01 is a TOML date or time, which JSON (and so flannel) cannot "
        "express; quote it if you meant a string",
    )


# -- issue 13, item 5: advice that works, blame where it belongs


def test_a_network_too_small_for_any_subnet_len_gets_no_invalid_advice():
    findings = netconf.lint(net(Network="10.0.0.0/29", SubnetLen=31))
    (error,) = [f for f in findings if f.level == "error"]
    assert "Use 31" not in error.message
    assert "No SubnetLen works for a /29" in error.message and "10.244.0.0/16" in error.message
    (small,) = [
        f for f in netconf.lint(net(Network="10.0.0.0/27", SubnetLen=31)) if f.level == "error"
    ]
    assert "Use 29 (the default for /27)" in small.message


def test_subnet_max_below_the_default_subnet_min_blames_subnet_max():
    findings = netconf.lint(net(SubnetMax="10.1.0.0"))
    (error,) = [f for f in findings if f.level == "error"]
    assert error.field == "SubnetMax"
    assert "below 10.1.1.0, the first subnet flannel leases" in error.message
    assert "Use 10.1.1.0 or above" in error.message
    both = netconf.lint(net(SubnetMin="10.1.9.0", SubnetMax="10.1.2.0"))
    assert [f.field for f in both if f.level == "error"] == ["SubnetMin"]


# -- JSON as flannel reads it: null per field, the later key, positions


def lint_json(text: str, **kwargs: Any) -> list[netconf.Finding]:
    return netconf.lint_json(text, **kwargs)


def test_json_null_means_what_it_means_to_go():
    keep = lint_json('{"Network": "10.1.0.0/16", "EnableIPv4": null, "Backend": {"Type": "vxlan"}}')
    assert [f.field for f in keep if f.level != "info"] == ["EnableIPv4"]  # a no-op: IPv4 stays on
    assert "null changes nothing here: flannel keeps its default" in keep[0].message
    (network,) = [f for f in lint_json('{"Network": null}') if f.field == "Network"]
    assert network.level == "error" and "invalid CIDR address: null" in network.message
    backend = lint_json('{"Network": "10.1.0.0/16", "Backend": null}')
    assert [f.field for f in backend if f.level == "error"] == ["Backend"]
    assert "unknown backend type" in backend[-1].message or "unknown backend type" in str(backend)
    reset = '{"Network": "10.1.0.0/16", "EnableIPv6": true, "IPv6Network": "fd00::/48", '
    reset += '"IPv6SubnetMin": null, "Backend": {"Type": "vxlan"}}'
    assert loud(lint_json(reset)) == []


def test_json_duplicates_are_decoded_in_turn():
    text = '{\n "Network": "10.1.0.0/16",\n "network": "10.2.0.0/16",\n "SubnetLen": 24,\n'
    text += ' "subnetlen": null,\n "Backend": {"Type": "vxlan"}\n}'
    findings = lint_json(text)
    dup = [f for f in findings if f.field == "Network" and f.level == "warning"]
    assert dup and "given 2 times (Network at 2:2, network at 3:2)" in dup[0].message
    assert '3:2, "10.2.0.0/16"' in dup[0].message and (dup[0].line, dup[0].column) == (3, 2)
    info = [f for f in findings if f.level == "info" and f.field == "Network"]
    assert "10.2.0.0/16 gives room for 255 node subnets of /24" in info[0].message


def test_json_findings_carry_line_and_column():
    findings = lint_json('{\n  "Network": "10.1.0.0/16",\n  "SubnetLen": 31,\n  "Backend": {}\n}')
    where = {(f.field, f.line, f.column) for f in findings if f.level == "error"}
    assert where == {("SubnetLen", 3, 3), ("Backend.Type", None, None)}
    (syntax,) = lint_json('{"Network": "10.1.0.0/16",}')
    assert (syntax.level, syntax.line, syntax.column) == ("error", 1, 27)
    assert syntax.at("net-conf.json").startswith(
        "net-conf.json:1:27: error: not JSON as flannel reads it: invalid character '}' "
        "looking for beginning of object key string"
    )
    assert "JSON allows no comma before } or ]" in syntax.message


# -- [cluster]: the ranges flannel's Network must not overlap


def test_cluster_ranges_overlap_warnings_name_the_setting(tmp_path):
    (tmp_path / "other.toml").write_text(
        '[etcd]\nendpoints = ["https://127.0.0.1:2379"]\n'
        '[cluster]\nservice_cidrs = ["10.96.0.0/12", "fd00:96::/112"]\n'
        'node_networks = ["10.200.0.0/24"]\ndocker_bridge = "172.17.0.1/16"\n'
        '[network]\nNetwork = "10.0.0.0/8"\nEnableIPv6 = true\nIPv6Network = "fd00::/16"\n'
        'Backend = {Type = "vxlan"}\n'
    )
    cfg = load(tmp_path / "other.toml", env={})
    assert cfg.cluster.docker_bridge == "172.17.0.0/16"
    warnings = [f.message for f in netconf.lint_config(cfg) if f.level == "warning"]
    where = str(tmp_path / "other.toml")
    assert warnings == [
        f"Network: 10.0.0.0/8 overlaps the Kubernetes service CIDR 10.96.0.0/12 ([cluster] "
        f"service_cidrs in {where}): kube-proxy takes the traffic to those addresses for "
        "Services, so pods given one cannot be reached. Pick ranges that do not overlap",
        f"Network: 10.0.0.0/8 overlaps the node network 10.200.0.0/24 ([cluster] node_networks "
        f"in {where}): flannel routes all of its Network into the overlay, so nodes lose the "
        "hosts (etcd, the API server, each other) on that network. Pick ranges that do not "
        "overlap",
        f"IPv6Network: fd00::/16 overlaps the Kubernetes service CIDR fd00:96::/112 ([cluster] "
        f"service_cidrs in {where}): kube-proxy takes the traffic to those addresses for "
        "Services, so pods given one cannot be reached. Pick ranges that do not overlap",
    ]
    docker = load(tmp_path / "other.toml", env={}, overrides={"network.Network": "172.17.0.0/16"})
    assert "overlaps the docker bridge 172.17.0.0/16" in str(
        [str(f) for f in netconf.lint_config(docker)]
    )


@pytest.mark.parametrize("public_ip", [None, "fd00::5", "not an address"])
def test_without_an_ipv4_public_ip_no_iface_is_needed(public_ip):
    # only an IPv4 --public-ip is looked up among IPv6 addresses (and never found)
    findings = netconf.lint({**V6_ONLY, "Backend": VXLAN}, public_ip=public_ip, iface=())
    assert not [f for f in findings if f.field == "EnableIPv4"], "\n".join(map(str, findings))
    v4 = netconf.lint({**V6_ONLY, "Backend": VXLAN}, public_ip="192.0.2.7", iface=())
    assert [f.field for f in v4 if f.level == "error"] == ["EnableIPv4"]


def test_a_dual_stack_node_finds_an_ipv4_public_ip_without_iface():
    # flanneld looks an IPv4 --public-ip up among IPv6 addresses only when IPv4 is off
    dual = {**net(Network="10.244.0.0/16"), **V6_ONLY, "EnableIPv4": True, "Backend": VXLAN}
    findings = netconf.lint(dual, public_ip="192.0.2.7", iface=())
    assert [f.level for f in findings] == ["info", "info"], "\n".join(map(str, findings))


def test_an_etcd_endpoint_inside_the_network_is_found_after_a_host_name():
    endpoints = ["https://etcd-a.example:2379", "https://10.244.0.5:2379"]
    findings = netconf.lint(net(Network="10.244.0.0/16"), etcd_endpoints=endpoints)
    (warning,) = [f for f in findings if "contains the etcd endpoint" in f.message]
    assert "10.244.0.0/16 contains the etcd endpoint 10.244.0.5 (https://10.244.0.5:2379)" in (
        warning.message
    )


@pytest.mark.parametrize(
    ("network", "head"),
    [
        (net(SubnetLen=31), "flannel network config (node.toml): 1 error:\n"),
        (
            net(SubnetLen=31, Backend={"Type": "bogus"}),
            "flannel network config (node.toml): 2 errors:\n",
        ),
    ],
)
def test_the_error_count_is_in_the_first_line(network, head):
    with pytest.raises(ConfigError) as exc:
        netconf.check(network, source="node.toml")
    assert str(exc.value).startswith(head)


def test_a_key_with_a_dotless_i_is_not_enable_ipv4():
    # Go's foldName keeps U+0131 apart from I (caseOrbit): flanneld ignores the key, IPv4 stays on
    config = net(**{"Enable\u0131PV4": False})
    (warning,) = [f for f in netconf.lint(config) if f.level != "info"]
    assert warning.field == "Enable\u0131PV4" and "unknown key (value false)" in warning.message
    assert netconf.effective(config)["EnableIPv4"] is True
