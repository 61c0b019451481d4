"""flannel's network config as Go types: the structs flanneld decodes net-conf.json into.

- pkg/subnet/config.go, type Config: its fields differ by release (FIELDS_BY_VERSION).
- pkg/ip/ipnet.go, ip6net.go: Network, SubnetMin and the IPv6 ones are types with their own
  UnmarshalJSON, on Go's net.ParseCIDR / net.ParseIP. IP4Net and IP4 panic on an IPv6 address
  ("Address is not an IPv4 address"): flanneld crashes while decoding the config.
- pkg/backend/<type>/*.go: each backend's options, a struct of its own, decoded when the backend
  starts (BACKENDS).
Also what counts as a secret in a Backend (without_secrets), kept out of published artifacts.
"""

from __future__ import annotations

import base64
import binascii
import copy
import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from . import gojson
from .gojson import BOOL, DURATION, INT, RAW, STRING, UINT, GoError, GoType

IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
Version = tuple[int, int, int]

# --- Go's net package --------------------------------------------------------------------------


def parse_ip(text: str) -> IPAddress | None:
    """net.ParseIP: dotted-quad IPv4 (no leading zeros) or IPv6, no zone; None if invalid.

    ipaddress refuses what ParseIP refuses (empty, non-ASCII digits, leading zeros) but a zone."""
    if "%" in text:
        return None
    try:
        return ipaddress.ip_address(text)
    except ValueError:
        return None


def parse_cidr(text: str) -> tuple[IPAddress, int] | None:
    """net.ParseCIDR: (address, prefix length), the prefix in decimal digits up to the address's
    bits (128 for ::ffff:a.b.c.d), leading zeros allowed (Go's dtoi); None if invalid."""
    addr, _, bits = text.partition("/")
    ip = parse_ip(addr)
    if ip is None or not (bits.isascii() and bits.isdigit()):
        return None
    digits = bits.lstrip("0") or "0"
    # more digits than the largest prefix has can only be larger (and int() of thousands fails)
    if len(digits) > len(str(ip.max_prefixlen)):
        return None
    prefix = int(digits)
    return (ip, prefix) if prefix <= ip.max_prefixlen else None


# --- flannel's pkg/ip types --------------------------------------------------------------------


@dataclass(frozen=True)
class Cidr:
    """A decoded Network / IPv6Network: what flannel holds, and how it was written."""

    written: str
    network: IPNetwork  # host bits masked, as flannel keeps it
    # flannel keeps an odd reading: "::ffff:10.0.0.0/104" in Network is 10.0.0.0 with prefix 104
    odd: str | None = None

    @property
    def host_bits(self) -> bool:
        # compared as addresses: "FD00::/48" and "fd00:0::/48" have none
        return self.network.network_address != parse_ip(self.written.partition("/")[0])


def _cidr_error(text: str) -> GoError:
    return GoError(f"invalid CIDR address: {text}")


def _ip4net(text: str) -> Cidr:
    parsed = parse_cidr(text)
    if parsed is None:
        raise _cidr_error(text)
    ip, prefix = parsed
    if isinstance(ip, ipaddress.IPv4Address):
        return Cidr(text, ipaddress.ip_network((ip, prefix), strict=False))
    # FromIPNet: FromIP(masked address) panics unless it is ::ffff:a.b.c.d; the prefix stays /N
    masked = ipaddress.ip_network((ip, prefix), strict=False).network_address
    if masked.ipv4_mapped is None:
        raise GoError("Address is not an IPv4 address", panic=True)
    odd = f"{masked.ipv4_mapped} with a prefix of /{prefix}, counted in IPv6 bits"
    return Cidr(text, ipaddress.IPv4Network((masked.ipv4_mapped, 32)), odd)


def _ip6net(text: str) -> Cidr:
    parsed = parse_cidr(text)
    if parsed is None:
        raise _cidr_error(text)
    ip, prefix = parsed
    # FromIP6Net takes any address (To16); an IPv4 one becomes ::ffff:a.b.c.d with its /prefix
    return Cidr(text, ipaddress.ip_network((ip, prefix), strict=False))


def _ip4(text: str) -> IPAddress:
    ip = parse_ip(text)
    if ip is None:
        raise GoError("Invalid IP address format")
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is None:
            raise GoError("Address is not an IPv4 address", panic=True)
        return ip.ipv4_mapped
    return ip


def _ip6(text: str) -> IPAddress:
    ip = parse_ip(text)
    if ip is None:
        raise GoError("Invalid IP address format")
    return ip  # an IPv4 address is accepted, as ::ffff:a.b.c.d


IP4NET = gojson.unmarshaler("ip.IP4Net", _ip4net)
IP6NET = gojson.unmarshaler("ip.IP6Net", _ip6net)
IP4 = gojson.unmarshaler("ip.IP4", _ip4)
IP6_POINTER = gojson.unmarshaler("*ip.IP6", _ip6, pointer=True)


# --- pkg/subnet/config.go, type Config, by release ---------------------------------------------

_ALWAYS: dict[str, GoType] = {
    "Network": IP4NET,
    "SubnetMin": IP4,
    "SubnetMax": IP4,
    "SubnetLen": UINT,
    "Backend": RAW,
}
_IPV6: dict[str, GoType] = {  # v0.15.0
    "EnableIPv4": BOOL,
    "EnableIPv6": BOOL,
    "IPv6Network": IP6NET,
    "IPv6SubnetMin": IP6_POINTER,
    "IPv6SubnetMax": IP6_POINTER,
    "IPv6SubnetLen": UINT,
}
_NETWORKS: dict[str, GoType] = {  # v0.20.0 to v0.24.x (MultiClusterCIDR; removed in v0.25.0)
    "Networks": gojson.slice_of(IP4NET),
    "IPv6Networks": gojson.slice_of(IP6NET),
}
_NFTABLES: dict[str, GoType] = {"EnableNFTables": BOOL}  # v0.25.0

# Keys some release reads and another does not: (key, first release, first release without)
KEY_HISTORY: dict[str, tuple[Version, Version | None]] = {
    **dict.fromkeys(_IPV6, ((0, 15, 0), None)),
    **dict.fromkeys(_NETWORKS, ((0, 20, 0), (0, 25, 0))),
    "EnableNFTables": ((0, 25, 0), None),
}


def reads(key: str, version: Version | None) -> bool:
    """Whether flannel `version` (None: the newest) reads the Config key (one of KEY_HISTORY)."""
    first, gone = KEY_HISTORY[key]
    if version is None:
        return gone is None
    return first <= version and (gone is None or version < gone)


def config_fields(version: Version | None) -> dict[str, GoType]:
    """Config's JSON fields in flannel `version` (None: the newest)."""
    fields = dict(_ALWAYS)
    for key, go_type in {**_IPV6, **_NETWORKS, **_NFTABLES}.items():
        if reads(key, version):
            fields[key] = go_type
    return fields


# --- backends: pkg/backend/*/ (flannel v0.20+) ---------------------------------------------------

Check = Callable[[Any], str | None]  # returns what is wrong with a value, or None


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "is not a port number (0-65535)"


def _wg_key(value: str) -> str | None:
    # pkg/backend/wireguard/device.go setupKeys: no PSK when empty, else wgtypes.ParseKey, Go's
    # base64.StdEncoding (which skips \r and \n) of exactly 32 bytes
    if value == "":
        return None
    try:
        text = value.replace("\r", "").replace("\n", "")
        if len(base64.b64decode(text, validate=True)) == 32:
            return None
    except (binascii.Error, ValueError):
        pass
    return "is not a WireGuard key (base64 of 32 bytes, as printed by `wg genpsk`)"


def _ipsec_psk(value: str) -> str | None:
    # pkg/backend/ipsec/ipsec.go: len(cfg.PSK) < minPasswordLength (96), Go's len: UTF-8 bytes
    n = len(value.encode("utf-8", "surrogatepass"))
    return None if n >= 96 else f"has {n} bytes; flannel's ipsec backend needs at least 96"


def _wg_mode(value: str) -> str | None:
    # pkg/backend/wireguard/wireguard.go: Mode separate|auto|ipv4|ipv6, compared case-sensitively
    modes = ("separate", "auto", "ipv4", "ipv6")
    return None if value in modes else f"is not one of {', '.join(modes)}"


def _not_negative(value: int) -> str | None:
    return None if value >= 0 else "is negative"


_GO_TYPES = {"bool": BOOL, "int": INT, "str": STRING, "duration": DURATION}


@dataclass(frozen=True)
class Option:
    kind: Literal["bool", "int", "str", "duration"]
    check: Check | None = None
    default: Any = None  # flannel's default, shown in the effective config
    secret: bool = False
    note: str | None = None  # an info finding whenever the option is set

    @property
    def go_type(self) -> GoType:
        return _GO_TYPES[self.kind]


_WINDOWS_ONLY = "used by flanneld on Windows only; Linux nodes ignore it"

BACKENDS: dict[str, dict[str, Option]] = {
    # pkg/backend/vxlan/vxlan.go (Linux); MacPrefix and Name: vxlan_windows.go
    "vxlan": {
        "VNI": Option("int", default=1),
        "Port": Option("int", _port),
        "MTU": Option("int"),
        "GBP": Option("bool", default=False),
        "Learning": Option("bool", default=False),
        "DirectRouting": Option("bool", default=False),
        "MacPrefix": Option("str", note=_WINDOWS_ONLY),
        "Name": Option("str", note=_WINDOWS_ONLY),
    },
    "host-gw": {},  # pkg/backend/hostgw/hostgw.go reads no options
    "udp": {"Port": Option("int", _port, default=8285)},  # pkg/backend/udp/udp_amd64.go
    "ipip": {"DirectRouting": Option("bool", default=False)},  # pkg/backend/ipip/ipip.go
    # pkg/backend/wireguard/wireguard.go
    "wireguard": {
        "ListenPort": Option("int", _port, default=51820),
        "ListenPortV6": Option("int", _port, default=51821),
        "MTU": Option("int"),
        "PSK": Option("str", _wg_key, secret=True),
        "PersistentKeepaliveInterval": Option("duration", _not_negative, default=0),
        "Mode": Option("str", _wg_mode, default="separate"),
    },
    # pkg/backend/ipsec/ipsec.go
    "ipsec": {
        "UDPEncap": Option("bool", default=False),
        "ESPProposal": Option("str", default="aes128gcm16-sha256-prfsha256-ecp256"),
        "PSK": Option("str", _ipsec_psk, secret=True),
    },
    # pkg/backend/extension/extension.go
    "extension": {
        "PreStartupCommand": Option("str"),
        "PostStartupCommand": Option("str"),
        "SubnetAddCommand": Option("str"),
        "SubnetRemoveCommand": Option("str"),
    },
    "alloc": {},  # pkg/backend/alloc/alloc.go
    # pkg/backend/tencentvpc/tencentvpc.go
    "tencent-vpc": {
        "AccessKeyID": Option("str"),
        "AccessKeySecret": Option("str", secret=True),
    },
}
# Deleted from flannel in v0.20.0 (flannel-io/flannel#1625); older releases still have them.
REMOVED_BACKENDS = ("aws-vpc", "gce", "ali-vpc")
REMOVED_IN: Version = (0, 20, 0)
# Backends that read EnableIPv6 (vxlan.go, hostgw.go, wireguard.go; extension per configuration.md)
IPV6_BACKENDS = ("vxlan", "host-gw", "wireguard", "extension")
# Backends whose lease needs an IPv4 public address: ip.FromIP(extIface.ExtAddr), which panics when
# flanneld has none (IPv6 only, and --public-ip not an IPv4 address): udp_amd64.go, ipip.go,
# alloc.go, ipsec.go, tencentvpc.go
IPV4_LEASE_BACKENDS = ("udp", "ipip", "alloc", "ipsec", "tencent-vpc")
VXLAN_MAX_VNI = (1 << 24) - 1  # the VNI is 24 bits on the wire and in the kernel
MAX_IFNAME = 15  # Linux IFNAMSIZ is 16 with the trailing NUL
TYPE_FIELD = {"Type": STRING}  # parseBackendType: struct { Type string }


# --- secrets -----------------------------------------------------------------------------------

SECRET_WORDS = ("psk", "secret", "password", "key")

# What the payload's net-conf.json (and so every RPM, the repo and every image) holds in place of a
# backend secret. The real value reaches a node only in the user-data; the node seeder refuses to
# seed this text (scripts/flannel-seed-etcd knows it too).
SECRET_PLACEHOLDER = "<secret: delivered only by the cloud-init user-data (build.py userdata)>"


def named_like_secret(key: str) -> bool:
    return any(word in key.lower() for word in SECRET_WORDS)


def without_secrets(network: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(network with every backend secret replaced by SECRET_PLACEHOLDER, their key paths).

    Secrets are the options flannel's backends read as secrets (PSK, AccessKeySecret) and, to be
    safe, any unknown Backend key named like one; keys match as flannel's do (gojson.fold). Any
    key named like a secret anywhere else is hidden too: flannel ignores keys it does not know,
    so the placeholder changes nothing it reads, and the value would otherwise ship in clear.
    """
    public = copy.deepcopy(dict(network))
    hidden: list[str] = []
    backends = [k for k in public if gojson.fold(str(k)) == "BACKEND"]
    for name in public:
        if name not in backends or not isinstance(public[name], dict):
            _hide_named_like_secrets(public, name, str(name), hidden)
    for name in backends:
        backend = public[name]
        if not isinstance(backend, dict):
            continue
        for key, value in backend.items():
            _hide_nested(value, f"{name}.{key}", hidden)
        btype = next(
            (v for k, v in backend.items() if gojson.fold(str(k)) == "TYPE" and isinstance(v, str)),
            "",
        )
        spec = BACKENDS.get(btype.lower(), {})
        known = {gojson.fold(n): opt for n, opt in spec.items()}
        for key in backend:
            folded = gojson.fold(str(key))
            opt = known.get(folded)
            unknown_secret = opt is None and named_like_secret(str(key))  # never Type's
            if (opt is not None and opt.secret) or unknown_secret:
                backend[key] = SECRET_PLACEHOLDER
                hidden.append(f"{name}.{key}")
    return public, hidden


def _hide_named_like_secrets(table: dict[str, Any], key: str, path: str, hidden: list[str]) -> None:
    if named_like_secret(str(key)):
        table[key] = SECRET_PLACEHOLDER
        hidden.append(path)
    else:
        _hide_nested(table[key], path, hidden)


def _hide_nested(value: Any, path: str, hidden: list[str]) -> None:
    if isinstance(value, dict):
        for key in value:
            _hide_named_like_secrets(value, key, f"{path}.{key}", hidden)
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _hide_nested(item, f"{path}[{i}]", hidden)
