"""flannel's Go types and structs (flannelnode.netfields), through the public checks.

Every expectation here comes from outside the module: Go's net package (net/ip.go ParseCIDR,
ParseIP; net/parse.go dtoi), encoding/base64, flannel's source (flannel-io/flannel, cited per
table) and the Linux/RFC limits, never from netfields' own tables.
"""

from __future__ import annotations

import base64
import json
from typing import Any

import pytest

from flannelnode import netconf

VXLAN = {"Type": "vxlan"}
KEY32 = base64.b64encode(bytes(range(32))).decode()  # a WireGuard key: base64 of 32 bytes


def net(**extra: Any) -> dict[str, Any]:
    return {"Network": "10.1.0.0/16", "Backend": VXLAN, **extra}


def messages(config: dict[str, Any], field: str, level: str = "error", **kwargs: Any) -> list[str]:
    return [
        f.message for f in netconf.lint(config, **kwargs) if f.field == field and f.level == level
    ]


# -- net.ParseCIDR (Go's net/ip.go): the address, "/", then dtoi's decimal digits (net/parse.go:
# ASCII '0'-'9' only, any number of leading zeros), at most the address's bit length

LONG_ZEROS = "0" * 5000  # Go's dtoi reads any number of leading zeros

CIDRS = {
    "plain": ("10.0.0.0/16", True),
    "a leading zero": ("10.0.0.0/016", True),
    "eight leading zeros": ("10.0.0.0/0000000016", True),
    "thousands of leading zeros": (f"10.0.0.0/{LONG_ZEROS}16", True),
    "the address's bit length": ("10.0.0.0/32", True),
    "past the bit length": ("10.0.0.0/33", False),
    "a prefix of thousands of digits": ("10.0.0.0/" + "9" * 5000, False),
    "a three-digit prefix": ("10.0.0.0/100", False),
    "no prefix after the slash": ("10.0.0.0/", False),
    "no slash": ("10.0.0.0", False),
    "a letter": ("10.0.0.0/x", False),
    "a digit then a letter": ("10.0.0.0/1x", False),
    "a sign": ("10.0.0.0/+8", False),
    "a space": ("10.0.0.0/ 8", False),
    "non-ASCII digits": ("10.0.0.0/\u0661\u0666", False),  # Arabic-Indic 16: not '0'-'9'
    "a bad address": ("10.0.0/16", False),
    "no address": ("bogus/16", False),
}


@pytest.mark.parametrize(("text", "parses"), CIDRS.values(), ids=CIDRS.keys())
def test_network_is_parsed_like_go_parse_cidr(text: str, parses: bool) -> None:
    # as JSON text: a [network] table's rendering escapes non-ASCII, which flannel takes literally
    findings = netconf.lint_json(json.dumps(net(Network=text), ensure_ascii=False))
    errors = [f.message for f in findings if f.field == "Network" and f.level == "error"]
    assert any("is not a CIDR" in m for m in errors) is not parses, errors


@pytest.mark.parametrize(
    ("text", "parses"),
    [
        ("fd00::/128", True),
        ("fd00::/0000128", True),
        ("fd00::/129", False),
        ("fe80::1%eth0/64", False),  # ParseCIDR refuses a zone
    ],
)
def test_ipv6_network_is_parsed_like_go_parse_cidr(text: str, parses: bool) -> None:
    errors = messages(net(EnableIPv6=True, IPv6Network=text), "IPv6Network")
    assert any("is not a CIDR" in m for m in errors) is not parses, errors


def test_an_address_with_a_zone_is_not_an_ip_address() -> None:
    # net.ParseIP does not take a zone (Python's ipaddress does)
    config = net(EnableIPv6=True, IPv6Network="fe80::/64", IPv6SubnetMin="fe80::1%eth0")
    assert any("is not an IP address" in m for m in messages(config, "IPv6SubnetMin"))


@pytest.mark.parametrize(
    ("field", "text", "network"),
    [
        ("Network", "10.0.0.0/5", "8.0.0.0/5"),  # 10 = 0b00001010: /5 keeps 0b00001000
        ("Network", "10.1.2.3/16", "10.1.0.0/16"),
        ("IPv6Network", "fd00::1/64", "fd00::/64"),
    ],
)
def test_host_bits_are_masked_off_and_said(field: str, text: str, network: str) -> None:
    config = net(**{"EnableIPv6": True, "IPv6Network": "fd00::/48", field: text})
    warnings = messages(config, field, "warning")
    assert warnings == [
        f'{field}: "{text}" has host bits set; flannel uses {network}. Write "{network}"'
    ]
    assert messages(config, field) == []


@pytest.mark.parametrize("text", ["FD00:10:244::/56", "fd00:10:244:0::/56", "fd00:10:244::0/56"])
def test_another_spelling_of_the_network_address_has_no_host_bits(text: str) -> None:
    # RFC 4291 2.2: hex digits in either case, leading zeros and "::" optional
    config = net(EnableIPv6=True, IPv6Network=text)
    assert [f for f in netconf.lint(config) if f.level != "info"] == []


@pytest.mark.parametrize(
    ("text", "reading"),
    [
        ("::ffff:10.1.2.3/120", "10.1.2.0 with a prefix of /120"),
        ("::ffff:10.1.2.3/128", "10.1.2.3 with a prefix of /128"),
        ("::ffff:10.0.0.0/104", "10.0.0.0 with a prefix of /104"),
    ],
)
def test_an_ipv4_range_in_ipv6_form_is_refused_as_flannel_reads_it(text: str, reading: str):
    # ParseCIDR masks the address (10.1.2.3 -> 10.1.2.0 under /120); pkg/ip/ipnet.go FromIPNet
    # keeps the mask's length in IPv6 bits
    errors = messages(net(Network=text), "Network")
    assert len(errors) == 1
    assert f"flannel reads it as {reading}, counted in IPv6 bits" in errors[0]


# -- pkg/subnet/config.go, type Config, in the releases around each change (read from the tags)

RELEASES = {
    # key: (value, [(release, read?)], the span the warning names)
    "EnableIPv6": (
        True,
        [((0, 14, 1), False), ((0, 15, 0), True), ((0, 28, 9), True), (None, True)],
        "v0.15.0 on",
    ),
    "IPv6SubnetLen": (
        64,
        [((0, 14, 1), False), ((0, 15, 0), True), (None, True)],
        "v0.15.0 on",
    ),
    "Networks": (
        ["10.2.0.0/16"],
        [
            ((0, 19, 2), False),
            ((0, 20, 0), True),
            ((0, 24, 4), True),
            ((0, 25, 0), False),
            ((0, 28, 9), False),
            (None, False),
        ],
        "v0.20.0 to before v0.25.0",
    ),
    "EnableNFTables": (
        False,
        [((0, 24, 4), False), ((0, 25, 0), True), ((0, 28, 9), True), (None, True)],
        "v0.25.0 on",
    ),
}


@pytest.mark.parametrize(
    ("key", "value", "release", "read", "span"),
    [
        (key, value, release, read, span)
        for key, (value, releases, span) in RELEASES.items()
        for release, read in releases
    ],
)
def test_config_keys_exist_in_the_releases_that_have_them(key, value, release, read, span):
    warnings = [
        m
        for m in messages(net(**{key: value}), key, "warning", flannel_version=release)
        if "does not read it" in m
    ]
    if read:
        assert warnings == []
    else:
        (warning,) = warnings
        assert f"(flannel reads {key} from {span})" in warning


# -- backend options: pkg/backend/<type>/*.go


def backend_errors(backend: dict[str, Any], field: str, **config: Any) -> list[str]:
    return messages(net(Backend=backend, **config), field)


@pytest.mark.parametrize(
    ("port", "ok"), [(-1, False), (0, True), (4789, True), (65535, True), (65536, False)]
)
@pytest.mark.parametrize(("btype", "key"), [("wireguard", "ListenPort"), ("udp", "Port")])
def test_ports_are_16_bits(btype: str, key: str, port: int, ok: bool) -> None:
    # a UDP port is 16 bits (RFC 768); 0 lets the kernel choose
    errors = backend_errors({"Type": btype, key: port}, f"Backend.{key}")
    assert errors == ([] if ok else [f"Backend.{key}: {port} is not a port number (0-65535)"])


WG_KEYS = {
    "32 bytes": (KEY32, True),
    "31 bytes": (base64.b64encode(bytes(31)).decode(), False),
    "33 bytes": (base64.b64encode(bytes(33)).decode(), False),
    "a character outside base64": (KEY32[:10] + "!" + KEY32[10:], False),
    "no padding": (KEY32.rstrip("="), False),
    "a newline inside": (KEY32[:22] + "\n" + KEY32[22:], True),  # Go's base64 skips \r and \n
    "a CRLF at the end": (KEY32 + "\r\n", True),
    "empty: no PSK": ("", True),  # device.go setupKeys: `if psk != ""`
}


@pytest.mark.parametrize(("psk", "ok"), WG_KEYS.values(), ids=WG_KEYS.keys())
def test_wireguard_psk_is_what_wgtypes_parse_key_takes(psk: str, ok: bool) -> None:
    errors = backend_errors({"Type": "wireguard", "PSK": psk}, "Backend.PSK")
    assert (errors == []) is ok, errors


IPSEC_PSKS = {
    "95 bytes": ("x" * 95, False),
    "96 bytes": ("x" * 96, True),
    "97 bytes": ("x" * 97, True),
    "48 two-byte characters": ("\u00e9" * 48, True),  # Go's len() counts UTF-8 bytes
    "95 bytes in 48 characters": ("\u00e9" * 47 + "x", False),
}


@pytest.mark.parametrize(("psk", "ok"), IPSEC_PSKS.values(), ids=IPSEC_PSKS.keys())
def test_ipsec_psk_needs_96_bytes(psk: str, ok: bool) -> None:
    # pkg/backend/ipsec/ipsec.go: minPasswordLength = 96, `len(cfg.PSK) < minPasswordLength`
    errors = backend_errors({"Type": "ipsec", "PSK": psk}, "Backend.PSK")
    size = len(psk.encode())
    short = f"Backend.PSK: the value has {size} bytes; flannel's ipsec backend needs at least 96"
    assert (short in errors) is not ok and (errors == []) is ok, errors


@pytest.mark.parametrize(("seconds", "ok"), [(-1, False), (0, True), (25, True)])
def test_wireguard_keepalive_is_off_or_an_interval(seconds: int, ok: bool) -> None:
    # wg(8): persistent-keepalive is off (0) or an interval in seconds; 25 is its suggestion
    backend = {"Type": "wireguard", "PersistentKeepaliveInterval": seconds}
    errors = backend_errors(backend, "Backend.PersistentKeepaliveInterval")
    assert (errors == []) is ok, errors


@pytest.mark.parametrize(
    ("backend", "effective"),
    [
        # pkg/backend/wireguard/wireguard.go RegisterNetwork: the cfg literal
        (
            {"Type": "wireguard"},
            {
                "Type": "wireguard",
                "ListenPort": 51820,
                "ListenPortV6": 51821,
                "PersistentKeepaliveInterval": 0,
                "Mode": "separate",
            },
        ),
        # pkg/backend/ipip/ipip.go: DirectRouting bool, zero value
        ({"Type": "ipip"}, {"Type": "ipip", "DirectRouting": False}),
        # pkg/backend/ipsec/ipsec.go: UDPEncap false, defaultESPProposal
        (
            {"Type": "ipsec", "PSK": "x" * 96},
            {
                "Type": "ipsec",
                "UDPEncap": False,
                "ESPProposal": "aes128gcm16-sha256-prfsha256-ecp256",
                "PSK": "x" * 96,
            },
        ),
        # pkg/backend/udp/udp_amd64.go: Port 8285
        ({"Type": "udp"}, {"Type": "udp", "Port": 8285}),
    ],
)
def test_backend_defaults_are_flannels(backend: dict[str, Any], effective: dict[str, Any]) -> None:
    assert netconf.effective(net(Backend=backend))["Backend"] == effective


@pytest.mark.parametrize(
    ("release", "level", "text"),
    [
        ((0, 19, 2), "warning", "experimental and gone from flannel v0.20.0 on"),
        ((0, 20, 0), "error", '"aws-vpc" was removed in flannel v0.20.0'),
        (None, "error", '"aws-vpc" was removed in flannel v0.20.0'),
    ],
)
def test_the_cloud_backends_were_removed_in_v0_20_0(release, level, text) -> None:
    # flannel-io/flannel#1625, first released in v0.20.0
    found = messages(
        net(Backend={"Type": "aws-vpc"}), "Backend.Type", level, flannel_version=release
    )
    assert len(found) == 1 and text in found[0], found


VNIS = {
    # (VNI, IPv6 too, the error's words or None): the VNI is 24 bits (RFC 7348 5); the device is
    # flannel.<VNI> / flannel-v6.<VNI> (vxlan.go), at most 15 characters (IFNAMSIZ 16, linux/if.h)
    "flannel.1234567 is 15": (1234567, False, None),
    "flannel.12345678 is 16": (12345678, False, "makes flannel name its device flannel.12345678"),
    "flannel-v6.1234 is 15": (1234, True, None),
    "flannel-v6.12345 is 16": (12345, True, "makes flannel name its device flannel-v6.12345"),
    "the largest VNI": (2**24 - 1, False, "makes flannel name its device flannel.16777215"),
    "past 24 bits": (2**24, False, "is out of range: a VXLAN VNI is 24 bits, 0-16777215"),
}


@pytest.mark.parametrize(("vni", "ipv6", "text"), VNIS.values(), ids=VNIS.keys())
def test_vxlan_vni_is_24_bits_and_names_a_linux_device(vni, ipv6, text) -> None:
    extra = {"EnableIPv6": True, "IPv6Network": "fd00::/48"} if ipv6 else {}
    errors = backend_errors({"Type": "vxlan", "VNI": vni}, "Backend.VNI", **extra)
    if text is None:
        assert errors == []
    else:
        assert len(errors) == 1 and text in errors[0], errors


# -- without_secrets: what the payload's net-conf.json holds


def hidden(network: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    public, paths = netconf.without_secrets(network)
    return public, paths


def test_a_second_spelling_of_backend_that_is_no_table_does_not_stop_the_search() -> None:
    # TOML keeps both keys; flannel (case-insensitive) decodes each in turn
    network = {
        "Network": "10.0.0.0/8",
        "BACKEND": "vxlan",
        "Backend": {"Type": "ipsec", "PSK": "x" * 96},
    }
    public, paths = hidden(network)
    assert paths == ["Backend.PSK"]
    assert public["Backend"]["PSK"] == netconf.SECRET_PLACEHOLDER


def test_the_backend_type_is_read_from_type_wherever_it_stands() -> None:
    # AccessKeyID is a known tencent-vpc option, not a secret, although named like one
    backend = {
        "VpcId": "vpc-1",
        "AccessKeyID": "id",
        "Type": "tencent-vpc",
        "AccessKeySecret": "s3cr3t",
    }
    public, paths = hidden({"Network": "10.0.0.0/8", "Backend": backend})
    assert paths == ["Backend.AccessKeySecret"]
    assert public["Backend"] == {**backend, "AccessKeySecret": netconf.SECRET_PLACEHOLDER}


def test_an_unknown_key_named_like_a_secret_is_hidden_wherever_it_sorts() -> None:
    backend = {"Type": "vxlan", "ApiPassword": "a", "WebhookSecret": "w", "VNI": 1}
    public, paths = hidden({"Network": "10.0.0.0/8", "Backend": backend})
    assert paths == ["Backend.ApiPassword", "Backend.WebhookSecret"]
    assert public["Backend"]["VNI"] == 1


def test_a_secret_named_key_outside_the_backend_is_hidden_too() -> None:
    """flannel ignores keys it does not know, so hiding one changes nothing it reads; left in
    clear it would ship in every RPM and image."""
    network = {
        "Network": "10.0.0.0/8",
        "Aux": {"PSK": "from-the-wrong-table", "note": "kept"},
        "ApiPassword": "hunter22",
        "Backend": {"Type": "vxlan", "Extra": [{"SecretKey": "abc123"}]},
    }
    public, paths = hidden(network)
    assert sorted(paths) == ["ApiPassword", "Aux.PSK", "Backend.Extra[0].SecretKey"]
    assert public == {
        "Network": "10.0.0.0/8",
        "Aux": {"PSK": netconf.SECRET_PLACEHOLDER, "note": "kept"},
        "ApiPassword": netconf.SECRET_PLACEHOLDER,
        "Backend": {"Type": "vxlan", "Extra": [{"SecretKey": netconf.SECRET_PLACEHOLDER}]},
    }
    assert network["Aux"]["PSK"] == "from-the-wrong-table"  # the config itself is untouched


def test_a_table_named_like_a_secret_outside_the_backend_is_hidden_whole() -> None:
    # on either side of "Backend" in flannel's key order: only the backend's own table is a backend
    network = {
        "Network": "10.0.0.0/8",
        "APIKey": {"id": "a1"},
        "SecretStore": {"path": "/vault/flannel"},
        "Backend": {"Type": "vxlan"},
    }
    public, paths = hidden(network)
    assert sorted(paths) == ["APIKey", "SecretStore"]
    assert public["APIKey"] == public["SecretStore"] == netconf.SECRET_PLACEHOLDER
