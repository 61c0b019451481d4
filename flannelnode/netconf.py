"""flannel's network config (net-conf.json, `[network]` in node.toml), by flannel's own rules.

The rules are flannel's, read from its source (flannel-io/flannel):
- pkg/subnet/config.go: ParseConfig (EnableIPv4 defaults to true, no Backend means udp) and
  CheckNetworkConfig (Network required, SubnetLen bounds and defaults, SubnetMin/SubnetMax inside
  the Network and aligned, the same for IPv6).
- pkg/ip/ipnet.go, pkg/ip/ip6net.go: how Network and SubnetMin/Max strings are parsed.
- pkg/backend/manager.go: backend types are looked up lower-cased; unknown ones stop flanneld.
- pkg/backend/<type>/*.go: each backend's options (a Go struct filled with encoding/json).
flannel decodes with Go's encoding/json, which matches keys case-insensitively ("network" fills
Network), ignores unknown keys, and refuses a value of the wrong JSON type. We do the same, and warn
where flannel is silent.

Beyond flannel's own checks, we warn about what breaks nodes later: a missing Backend (udp, not
vxlan), the flannel Network covering etcd or other configured ranges, secrets in the config.
"""

from __future__ import annotations

import base64
import binascii
import copy
import difflib
import ipaddress
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urlsplit

from .config import Config
from .errors import ConfigError

Level = Literal["error", "warning", "info"]
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


@dataclass(frozen=True)
class Finding:
    level: Level
    field: str  # path in the net-conf, e.g. "SubnetLen" or "Backend.VNI"
    message: str  # starts with the field, names the value, says what to do

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"


# --- top level: pkg/subnet/config.go, type Config ---------------------------------------------

TOP_KEYS = (
    "EnableIPv4",
    "EnableIPv6",
    "Network",
    "IPv6Network",
    "Networks",
    "IPv6Networks",
    "SubnetMin",
    "SubnetMax",
    "IPv6SubnetMin",
    "IPv6SubnetMax",
    "SubnetLen",
    "IPv6SubnetLen",
    "Backend",
)


@dataclass(frozen=True)
class _Family:
    """One address family of CheckNetworkConfig; IPv4 and IPv6 follow the same rules."""

    enable: str
    network: str
    subnet_len: str
    subnet_min: str
    subnet_max: str
    version: Literal[4, 6]
    max_len: int  # SubnetLen above this is refused (30: 4 addresses per node)
    smallest: int  # a network prefix above this is refused when SubnetLen is unset (28)
    default_len: int  # unset SubnetLen: this when prefix <= default_len - 2, else prefix + 2
    example: str

    @property
    def bits(self) -> int:
        return 32 if self.version == 4 else 128

    def addr(self, value: int) -> IPAddress:
        return ipaddress.IPv4Address(value) if self.version == 4 else ipaddress.IPv6Address(value)


IPV4 = _Family(
    "EnableIPv4", "Network", "SubnetLen", "SubnetMin", "SubnetMax", 4, 30, 28, 24, "10.244.0.0/16"
)
IPV6 = _Family(
    "EnableIPv6",
    "IPv6Network",
    "IPv6SubnetLen",
    "IPv6SubnetMin",
    "IPv6SubnetMax",
    6,
    126,
    124,
    64,
    "fd00:10:244::/56",
)


# --- backends: pkg/backend/*/ (flannel v0.20+) ---------------------------------------------------

Check = Callable[[Any], str | None]  # returns what is wrong with a value, or None


def _port(value: int) -> str | None:
    return None if 0 <= value <= 65535 else "is not a port number (0-65535)"


def _wg_key(value: str) -> str | None:
    # pkg/backend/wireguard/device.go setupKeys: wgtypes.ParseKey, base64 of exactly 32 bytes
    try:
        if len(base64.b64decode(value, validate=True)) == 32:
            return None
    except (binascii.Error, ValueError):
        pass
    return "is not a WireGuard key (base64 of 32 bytes, as printed by `wg genpsk`)"


def _ipsec_psk(value: str) -> str | None:
    # pkg/backend/ipsec/ipsec.go: minPasswordLength = 96
    n = len(value)
    return None if n >= 96 else f"has {n} characters; flannel's ipsec backend needs at least 96"


def _wg_mode(value: str) -> str | None:
    # pkg/backend/wireguard/wireguard.go: Mode separate|auto|ipv4|ipv6, compared case-sensitively
    modes = ("separate", "auto", "ipv4", "ipv6")
    return None if value in modes else f"is not one of {', '.join(modes)}"


def _not_negative(value: int) -> str | None:
    return None if value >= 0 else "is negative"


@dataclass(frozen=True)
class _Option:
    kind: Literal["bool", "int", "str"]
    check: Check | None = None
    default: Any = None  # flannel's default, shown in the effective config
    secret: bool = False
    note: str | None = None  # an info finding whenever the option is set


_WINDOWS_ONLY = "used by flanneld on Windows only; Linux nodes ignore it"

BACKENDS: dict[str, dict[str, _Option]] = {
    # pkg/backend/vxlan/vxlan.go (Linux); MacPrefix and Name: vxlan_windows.go
    "vxlan": {
        "VNI": _Option("int", default=1),
        "Port": _Option("int", _port),
        "MTU": _Option("int"),
        "GBP": _Option("bool", default=False),
        "Learning": _Option("bool", default=False),
        "DirectRouting": _Option("bool", default=False),
        "MacPrefix": _Option("str", note=_WINDOWS_ONLY),
        "Name": _Option("str", note=_WINDOWS_ONLY),
    },
    "host-gw": {},  # pkg/backend/hostgw/hostgw.go reads no options
    "udp": {"Port": _Option("int", _port, default=8285)},  # pkg/backend/udp/udp_amd64.go
    "ipip": {"DirectRouting": _Option("bool", default=False)},  # pkg/backend/ipip/ipip.go
    # pkg/backend/wireguard/wireguard.go
    "wireguard": {
        "ListenPort": _Option("int", _port, default=51820),
        "ListenPortV6": _Option("int", _port, default=51821),
        "PSK": _Option("str", _wg_key, secret=True),
        "PersistentKeepaliveInterval": _Option("int", _not_negative, default=0),
        "Mode": _Option("str", _wg_mode, default="separate"),
    },
    # pkg/backend/ipsec/ipsec.go
    "ipsec": {
        "UDPEncap": _Option("bool", default=False),
        "ESPProposal": _Option("str", default="aes128gcm16-sha256-prfsha256-ecp256"),
        "PSK": _Option("str", _ipsec_psk, secret=True),
    },
    # pkg/backend/extension/extension.go
    "extension": {
        "PreStartupCommand": _Option("str"),
        "PostStartupCommand": _Option("str"),
        "SubnetAddCommand": _Option("str"),
        "SubnetRemoveCommand": _Option("str"),
    },
    "alloc": {},  # pkg/backend/alloc/alloc.go
    # pkg/backend/tencentvpc/tencentvpc.go
    "tencent-vpc": {
        "AccessKeyID": _Option("str"),
        "AccessKeySecret": _Option("str", secret=True),
    },
}
# Deleted from flannel in v0.20.0 (flannel-io/flannel#1625); older releases still have them.
REMOVED_BACKENDS = ("aws-vpc", "gce", "ali-vpc")
REMOVED_IN = (0, 20, 0)
# Backends that read EnableIPv6 (vxlan.go, hostgw.go, wireguard.go; extension per configuration.md)
IPV6_BACKENDS = ("vxlan", "host-gw", "wireguard", "extension")
VXLAN_MAX_VNI = (1 << 24) - 1  # the VNI is 24 bits on the wire and in the kernel
MAX_IFNAME = 15  # Linux IFNAMSIZ is 16 with the trailing NUL


def lint(
    network: Any,
    *,
    etcd_endpoints: Iterable[str] = (),
    other_ranges: Mapping[str, str] | None = None,
    arches: Iterable[str] = (),
    flannel_version: tuple[int, int, int] | None = None,
) -> list[Finding]:
    """Every finding about `network`, flannel's net-conf as a dict (Config.network).

    other_ranges names further CIDRs the flannel Network must not cover, e.g.
    {"Kubernetes service CIDR": "10.0.0.0/24"}. arches and flannel_version, when given, enable the
    checks that depend on them (udp exists on amd64 only; aws-vpc/gce/ali-vpc before v0.20.0).
    """
    return _run(network, etcd_endpoints, other_ranges, arches, flannel_version).findings


def check(
    network: Any,
    *,
    etcd_endpoints: Iterable[str] = (),
    other_ranges: Mapping[str, str] | None = None,
    arches: Iterable[str] = (),
    flannel_version: tuple[int, int, int] | None = None,
) -> list[Finding]:
    """Like lint, but raises ConfigError (exit 2) listing every error; returns the rest."""
    result = _run(network, etcd_endpoints, other_ranges, arches, flannel_version)
    _raise_errors(result.findings)
    return result.findings


def effective(
    network: Any,
    *,
    arches: Iterable[str] = (),
    flannel_version: tuple[int, int, int] | None = None,
) -> dict[str, Any]:
    """The config as flanneld will use it: canonical key names, defaults filled in.

    SubnetLen/SubnetMin/SubnetMax (and the IPv6 ones) as CheckNetworkConfig computes them,
    Backend.Type "udp" when Backend is missing, and the backend's option defaults from its source.
    Raises ConfigError when the config has errors.
    """
    result = _run(network, (), None, arches, flannel_version)
    _raise_errors(result.findings)
    return result.effective


def _run(
    network: Any,
    etcd_endpoints: Iterable[str],
    other_ranges: Mapping[str, str] | None,
    arches: Iterable[str],
    flannel_version: tuple[int, int, int] | None,
) -> _Lint:
    result = _Lint(flannel_version, tuple(arches))
    result.run(network, list(etcd_endpoints), dict(other_ranges or {}))
    return result


def _raise_errors(findings: list[Finding]) -> None:
    errors = [f for f in findings if f.level == "error"]
    if errors:
        noun = "error" if len(errors) == 1 else "errors"
        lines = [f"flannel network config ([network] in node.toml): {len(errors)} {noun}:"]
        lines += [f"  {f.message}" for f in errors]
        raise ConfigError("\n".join(lines))


# --- the checker -------------------------------------------------------------------------------


def _show(value: Any) -> str:
    """A value as the user wrote it in TOML/JSON: strings quoted, booleans lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return f'"{value}"'
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return repr(value)


def _kind_of(value: Any) -> str:
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int):
        return "an integer"
    if isinstance(value, float):
        return "a float"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, dict):
        return "a table"
    if isinstance(value, list):
        return "a list"
    return type(value).__name__


def _describe(value: Any, secret: bool = False) -> str:
    """ "a string \"x\"", "an integer 3", "a table": what was given, for "must be X, not Y"."""
    kind = _kind_of(value)
    if secret or isinstance(value, dict | list):
        return kind
    return f"{kind} {_show(value)}"


_SECRET_WORDS = ("psk", "secret", "password", "key")

# What the payload's net-conf.json (and so every RPM, the repo and every image) holds in place of a
# backend secret. The real value reaches a node only in the user-data; the node seeder refuses to
# seed this text (scripts/flannel-seed-etcd knows it too).
SECRET_PLACEHOLDER = "<secret: delivered only by the cloud-init user-data (build.py userdata)>"


def without_secrets(network: Mapping[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """(network with every backend secret replaced by SECRET_PLACEHOLDER, their key paths).

    Secrets are the options flannel's backends read as secrets (PSK, AccessKeySecret) and, to be
    safe, any unknown Backend key named like one; keys match case-insensitively, as flannel's.
    """
    public = copy.deepcopy(dict(network))
    hidden: list[str] = []
    for name in [k for k in public if str(k).lower() == "backend"]:
        backend = public[name]
        if not isinstance(backend, dict):
            continue
        btype = next(
            (v for k, v in backend.items() if str(k).lower() == "type" and isinstance(v, str)), ""
        )
        spec = BACKENDS.get(btype.lower(), {})
        known = {n.lower(): opt for n, opt in spec.items()}
        for key in backend:
            low = str(key).lower()
            opt = known.get(low)
            unknown_secret = opt is None and low != "type" and any(w in low for w in _SECRET_WORDS)
            if (opt is not None and opt.secret) or unknown_secret:
                backend[key] = SECRET_PLACEHOLDER
                hidden.append(f"{name}.{key}")
    return public, hidden


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


_KIND_WORDS = {"bool": "true or false", "int": "an integer", "str": "a string"}


def _has_kind(value: Any, kind: str) -> bool:
    if kind == "bool":
        return isinstance(value, bool)
    if kind == "int":
        return _is_int(value)
    return isinstance(value, str)


@dataclass
class _Lint:
    flannel_version: tuple[int, int, int] | None
    arches: tuple[str, ...]
    findings: list[Finding] = field(default_factory=list)
    effective: dict[str, Any] = field(default_factory=dict)

    def add(self, level: Level, path: str, text: str) -> None:
        self.findings.append(Finding(level, path, f"{path}: {text}"))

    def error(self, path: str, text: str) -> None:
        self.add("error", path, text)

    def warn(self, path: str, text: str) -> None:
        self.add("warning", path, text)

    def info(self, path: str, text: str) -> None:
        self.add("info", path, text)

    def run(self, network: Any, endpoints: list[str], others: dict[str, str]) -> None:
        if not isinstance(network, Mapping):
            self.error(
                "network",
                f'must be a table like {{Network = "{IPV4.example}", '
                f'Backend = {{Type = "vxlan"}}}}, not {_describe(network)}',
            )
            return
        cfg = self.canonical(network, TOP_KEYS, "")
        for key in ("Networks", "IPv6Networks"):
            if key in cfg:
                # ParseConfig resets both after decoding: only the kube subnet manager fills them
                self.warn(
                    key,
                    "flannel ignores it with etcd (pkg/subnet/config.go ParseConfig "
                    "resets it); use Network / IPv6Network",
                )
                del cfg[key]

        nets: list[IPNetwork] = []
        enabled = {}
        for fam in (IPV4, IPV6):
            enabled[fam.version] = self.family_enabled(cfg, fam)
            if fam.version == 4 or enabled[6]:
                self.effective[fam.enable] = enabled[fam.version]
            net = self.family(cfg, fam) if enabled[fam.version] else None
            if net is not None:
                nets.append(net)
        if not enabled[4] and not enabled[6]:
            self.error(
                "EnableIPv4",
                "is false and EnableIPv6 is not true: flannel would have "
                "no network at all. Remove EnableIPv4 = false, or set EnableIPv6 = true "
                "with an IPv6Network",
            )
        self.backend(cfg, ipv6=enabled[6], ipv4=enabled[4])
        self.overlaps(nets, endpoints, others)

    # Go's encoding/json: exact key first, else case-insensitive; unknown keys ignored, last wins
    def canonical(self, raw: Mapping[Any, Any], known: Iterable[str], prefix: str) -> dict:
        lookup = {k.lower(): k for k in known}
        out: dict[str, Any] = {}
        spelled: dict[str, str] = {}
        for key, value in raw.items():
            key = str(key)
            canon = key if key in lookup.values() else lookup.get(key.lower())
            path = prefix + key
            if canon is None:
                secret = any(word in key.lower() for word in _SECRET_WORDS)
                shown = "hidden" if secret else _show(value)
                hint = difflib.get_close_matches(key, list(lookup.values()), n=1, cutoff=0.6)
                did = f" Did you mean {hint[0]}?" if hint else ""
                self.warn(
                    path,
                    f"unknown key (value {shown}); flannel ignores it "
                    f"silently.{did} Known keys: {', '.join(lookup.values()) or 'none'}",
                )
                continue
            if canon in out:
                self.warn(
                    prefix + canon,
                    f"given twice, as {spelled[canon]} and as {key}; "
                    f"flannel uses the later one, {key}. Keep one",
                )
            elif key != canon:
                self.warn(
                    path,
                    f"flannel reads this as {canon} (Go's JSON decoder ignores "
                    f"case), but other tools do not: write it {canon}",
                )
            out[canon] = value
            spelled[canon] = key
        return out

    def family_enabled(self, cfg: dict, fam: _Family) -> bool:
        default = fam.version == 4  # ParseConfig: "Enable ipv4 by default"
        value = cfg.get(fam.enable, default)
        if not isinstance(value, bool):
            self.error(fam.enable, f"must be true or false, not {_describe(value)}")
            return default
        if not value:
            for key in (fam.network, fam.subnet_len, fam.subnet_min, fam.subnet_max):
                if key in cfg:
                    self.warn(
                        key,
                        f"{_show(cfg[key])} is ignored because {fam.enable} is "
                        f"{_show(value)}; set {fam.enable} = true or remove it",
                    )
        return value

    def family(self, cfg: dict, fam: _Family) -> IPNetwork | None:
        """CheckNetworkConfig (pkg/subnet/config.go) for one family; fills self.effective."""
        net = self.parse_network(cfg, fam)
        if net is None:
            return None
        prefix = net.prefixlen
        default_len = fam.default_len if prefix <= fam.default_len - 2 else prefix + 2
        sublen = cfg.get(fam.subnet_len, 0)
        if not _is_int(sublen) or sublen < 0:
            self.error(
                fam.subnet_len,
                f"must be a whole number of bits like {default_len}, not {_describe(sublen)}",
            )
            return net
        if sublen:
            if sublen > fam.max_len:
                self.error(
                    fam.subnet_len,
                    f"{sublen} is larger than {fam.max_len}; flannel needs "
                    f"at least 4 addresses per node subnet. Use {default_len} (the default "
                    f"for /{prefix})",
                )
                return net
            if sublen < prefix + 2:
                self.error(
                    fam.subnet_len,
                    f"{sublen} is smaller than {prefix + 2} ({fam.network} "
                    f"prefix /{prefix} + 2); flannel needs room for at least four node "
                    f"subnets in {net}. Use {default_len} (the default for /{prefix}), "
                    f"or a larger {fam.network}",
                )
                return net
        else:
            if prefix > fam.smallest:
                self.error(
                    fam.network,
                    f"{_show(str(net))} is too small: flannel needs at least "
                    f"a /{fam.smallest} to split into four node subnets. Use a larger "
                    f"{fam.network}, e.g. {fam.example}",
                )
                return net
            sublen = default_len

        size = 1 << (fam.bits - sublen)
        # Unset (or zero) SubnetMin skips the first subnet: it would clash with the network address
        first = int(net.network_address) + size
        last = int(net.broadcast_address) + 1 - size
        lo = self.parse_bound(cfg, fam, fam.subnet_min, net, sublen, first)
        hi = self.parse_bound(cfg, fam, fam.subnet_max, net, sublen, last)
        if lo is None or hi is None:
            return net
        if lo > hi:
            self.error(
                fam.subnet_min,
                f"{_show(str(fam.addr(lo)))} is above "
                f"{fam.subnet_max} {_show(str(fam.addr(hi)))}: flannel would "
                f'find no subnet to lease ("out of subnets"). Swap them',
            )
            return net
        if fam.subnet_min in cfg and lo == int(net.network_address):
            self.warn(
                fam.subnet_min,
                f"{_show(cfg[fam.subnet_min])} is the network address of "
                f"{net}; a node given this subnet clashes with it, which is why flannel's "
                f"default skips it. Use {fam.addr(first)}",
            )
        count = (hi - lo) // size + 1
        self.info(
            fam.network,
            f"{net} gives room for {count} node subnets of /{sublen}, "
            f"{fam.addr(lo)}/{sublen} to {fam.addr(hi)}/{sublen}",
        )
        self.effective.update(
            {
                fam.network: str(net),
                fam.subnet_len: sublen,
                fam.subnet_min: str(fam.addr(lo)),
                fam.subnet_max: str(fam.addr(hi)),
            }
        )
        return net

    def parse_network(self, cfg: dict, fam: _Family) -> IPNetwork | None:
        # pkg/ip/ipnet.go, ip6net.go UnmarshalJSON: Go net.ParseCIDR; the host bits are masked
        path = fam.network
        if path not in cfg:
            if fam.version == 4:
                self.error(
                    path,
                    f"missing; flannel needs the IPv4 range all pods share, e.g. "
                    f"{_show(fam.example)}. For IPv6 only, set EnableIPv4 = false, "
                    f"EnableIPv6 = true and IPv6Network",
                )
            else:
                self.error(
                    path,
                    f"missing although EnableIPv6 is true; give the IPv6 range all "
                    f"pods share, e.g. {_show(fam.example)}",
                )
            return None
        value = cfg[path]
        want = f'a string in CIDR form like "{fam.example}"'
        if not isinstance(value, str):
            self.error(path, f"must be {want}, not {_describe(value)}")
            return None
        addr, slash, bits = value.partition("/")
        try:
            if not slash or not bits.isdigit():
                raise ValueError
            net = ipaddress.ip_network(value, strict=False)
        except ValueError:
            self.error(path, f"{_show(value)} is not a CIDR; write it like {_show(fam.example)}")
            return None
        if net.version != fam.version:
            if fam.version == 4:
                self.error(
                    path,
                    f"{_show(value)} is IPv6 (flanneld would crash on it): put it in "
                    f"IPv6Network with EnableIPv6 = true, and set an IPv4 Network or "
                    f"EnableIPv4 = false",
                )
            else:
                self.error(
                    path,
                    f"{_show(value)} is IPv4; put it in Network and give IPv6Network "
                    f"an IPv6 range like {_show(fam.example)}",
                )
            return None
        if net.prefixlen == 0 and int(net.network_address) == 0:
            # IP4Net.Empty(): flannel takes 0.0.0.0/0 for "not set"
            self.error(
                path,
                f"{_show(value)} covers every address, which flannel treats as no "
                f"network at all. Use a private range like {_show(fam.example)}",
            )
            return None
        if str(net.network_address) != addr:
            self.warn(
                path,
                f"{_show(value)} has host bits set; flannel uses {net}. Write {_show(str(net))}",
            )
        return net

    def parse_bound(
        self, cfg: dict, fam: _Family, path: str, net: IPNetwork, sublen: int, default: int
    ) -> int | None:
        if path not in cfg:
            return default
        value = cfg[path]
        example = fam.addr(default)
        if not isinstance(value, str):
            self.error(
                path,
                f'must be an address string like "{example}", not {_describe(value)}',
            )
            return None
        try:
            addr: IPAddress = ipaddress.ip_address(value)
        except ValueError:
            self.error(
                path,
                f'{_show(value)} is not an IP address (no /prefix here); write it like "{example}"',
            )
            return None
        if fam.version == 4 and isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped:
            addr = addr.ipv4_mapped  # Go's To4() accepts ::ffff:a.b.c.d
        if addr.version != fam.version:
            self.error(
                path,
                f"{_show(value)} is IPv{addr.version}; {path} must be an "
                f"IPv{fam.version} address inside {fam.network} {net}",
            )
            return None
        if int(addr) == 0:
            return default  # flannel: 0.0.0.0 / :: means unset
        if addr not in net:
            self.error(
                path,
                f"{_show(value)} is outside {fam.network} {net}; use an address in "
                f"it (default {example})",
            )
            return None
        size = 1 << (fam.bits - sublen)
        if int(addr) % size:
            below = int(addr) - int(addr) % size
            use = [
                fam.addr(a)
                for a in (below, below + size)
                if a + size - 1 in range(int(net.network_address), int(net.broadcast_address) + 1)
            ]
            self.error(
                path,
                f"{_show(value)} is not on a /{sublen} boundary ({fam.subnet_len}); "
                f"use {' or '.join(map(str, use))}",
            )
            return None
        return int(addr)

    def backend(self, cfg: dict, *, ipv4: bool, ipv6: bool) -> None:
        if "Backend" not in cfg:
            # pkg/subnet/config.go parseBackendType: no Backend means udp
            self.warn(
                "Backend",
                "missing, so flannel uses udp (not vxlan): slow, and on every "
                'arch but amd64 flanneld refuses to start. Add Backend = {Type = "vxlan"}',
            )
            btype, options = "udp", {}
            self.backend_options(btype, options, ipv4=ipv4, ipv6=ipv6)
            self.backend_notes(btype, ipv6=ipv6, implicit=True)
            return
        else:
            raw = cfg["Backend"]
            if not isinstance(raw, Mapping):
                self.error(
                    "Backend",
                    f'must be a table like {{Type = "vxlan"}}, not {_describe(raw)}',
                )
                return
            types = [(k, v) for k, v in raw.items() if str(k).lower() == "type"]
            if not types:
                self.error(
                    "Backend.Type",
                    'missing; flanneld stops with "unknown backend type". Add Type = "vxlan"',
                )
                return
            spelled, btype = types[-1]
            path = f"Backend.{spelled}"
            if spelled != "Type":
                self.warn(
                    path,
                    "flannel reads this as Type (Go's JSON decoder ignores case), "
                    "but other tools do not: write it Type",
                )
            if not isinstance(btype, str):
                self.error(path, f'must be a string like "vxlan", not {_describe(btype)}')
                return
            known = list(BACKENDS) + (list(REMOVED_BACKENDS) if self.old_flannel() else [])
            # pkg/backend/manager.go GetBackend: strings.ToLower(backendType)
            if btype.lower() in known and btype != btype.lower():
                self.warn(
                    path,
                    f"{_show(btype)}: flannel lower-cases it, but write {_show(btype.lower())}",
                )
            btype = btype.lower()
            if btype in REMOVED_BACKENDS and not self.old_flannel():
                self.error(
                    path,
                    f"{_show(btype)} was removed in flannel v0.20.0; flanneld stops "
                    f'with "unknown backend type". Use "vxlan" or "host-gw" (or '
                    f"flannel older than v0.20.0)",
                )
                return
            if btype not in known:
                hint = difflib.get_close_matches(btype, known, n=1, cutoff=0.5)
                did = f" Did you mean {_show(hint[0])}?" if hint else ""
                self.error(
                    path,
                    f"{_show(btype)} is not a flannel backend; flanneld stops with "
                    f'"unknown backend type".{did} Known: {", ".join(BACKENDS)}',
                )
                return
            rest = {k: v for k, v in raw.items() if str(k).lower() != "type"}
            if btype in REMOVED_BACKENDS:
                self.warn(
                    path,
                    f"{_show(btype)} is experimental and gone from flannel v0.20.0 "
                    f"on; plan a move to vxlan or host-gw",
                )
                self.effective["Backend"] = {"Type": btype, **rest}
                return
            options = self.canonical(rest, BACKENDS[btype], "Backend.")
        self.backend_options(btype, options, ipv4=ipv4, ipv6=ipv6)
        self.backend_notes(btype, ipv6=ipv6)

    def old_flannel(self) -> bool:
        return self.flannel_version is not None and self.flannel_version < REMOVED_IN

    def backend_options(self, btype: str, options: dict, *, ipv4: bool, ipv6: bool) -> None:
        spec = BACKENDS[btype]
        effective: dict[str, Any] = {"Type": btype}
        for name, opt in spec.items():
            if opt.default is not None:
                effective[name] = opt.default
        for name, value in options.items():
            opt, path = spec[name], f"Backend.{name}"
            if not _has_kind(value, opt.kind):
                # Go's json.Unmarshal into the backend's struct fails and flanneld stops
                what = _describe(value, secret=opt.secret)
                self.error(path, f"must be {_KIND_WORDS[opt.kind]}, not {what}")
                continue
            problem = opt.check(value) if opt.check else None
            if problem:
                # never echo a secret: these messages end up in terminals and CI logs
                self.error(path, f"{'the value' if opt.secret else _show(value)} {problem}")
                continue
            if opt.secret:
                self.warn(
                    path,
                    "is a secret: flannelnode keeps it out of the payload, RPMs, repo and images "
                    "(their net-conf.json holds a placeholder) and delivers it only in the "
                    "cloud-init user-data (0600); flannel stores it in etcd (<prefix>/config), "
                    "readable by anyone who can read etcd",
                )
            if opt.note:
                self.info(path, opt.note)
            effective[name] = value
        if btype == "vxlan":
            self.vxlan(effective, ipv4=ipv4, ipv6=ipv6)
        if btype == "ipsec" and "PSK" not in options:
            self.error(
                "Backend.PSK",
                "missing; flannel's ipsec backend needs a pre-shared key of at least 96 characters",
            )
        self.effective["Backend"] = effective

    def vxlan(self, opts: dict, *, ipv4: bool, ipv6: bool) -> None:
        vni = opts.get("VNI", 1)
        if _is_int(vni):
            if not 0 <= vni <= VXLAN_MAX_VNI:
                self.error(
                    "Backend.VNI",
                    f"{vni} is out of range: a VXLAN VNI is 24 bits, "
                    f"0-{VXLAN_MAX_VNI}. Use 1 (flannel's default)",
                )
            else:
                # vxlan.go names the devices flannel.<VNI> and flannel-v6.<VNI>
                names = [f"flannel.{vni}"] if ipv4 else []
                names += [f"flannel-v6.{vni}"] if ipv6 else []
                too_long = [n for n in names if len(n) > MAX_IFNAME]
                if too_long:
                    self.error(
                        "Backend.VNI",
                        f"{vni} makes flannel name its device "
                        f"{too_long[0]}, longer than Linux's {MAX_IFNAME} characters, and "
                        f"creating it fails. Use a VNI of at most "
                        f"{'4' if ipv6 else '7'} digits",
                    )
        mtu = opts.get("MTU")
        if _is_int(mtu):
            # device.go: the vxlan device gets MTU - 50; Linux needs 68 (IPv4), 1280 (IPv6)
            need = 1280 if ipv6 else 68
            if mtu - 50 < need:
                self.error(
                    "Backend.MTU",
                    f"{mtu} leaves the vxlan device an MTU of {mtu - 50} "
                    f"(flannel subtracts 50 for VXLAN), below the {need} Linux needs. Set "
                    f"the MTU of the nodes' interface, e.g. 1500, or leave MTU out",
                )

    def backend_notes(self, btype: str, *, ipv6: bool, implicit: bool = False) -> None:
        if btype == "udp":
            if not implicit:  # the missing-Backend warning already says it
                # Documentation/backends.md: "UDP is suggested for debugging only"
                self.warn(
                    "Backend.Type",
                    "udp forwards every packet through flanneld in user space: "
                    'slow, meant for debugging only. Use "vxlan"',
                )
            other = [a for a in self.arches if a != "amd64"]
            if other:
                # pkg/backend/udp/udp.go, built for !amd64: New() always fails
                self.error(
                    "Backend.Type",
                    f"udp exists only in flanneld for amd64; on "
                    f'{", ".join(other)} flanneld stops with "UDP backend is not '
                    f'supported on this architecture". Use "vxlan"',
                )
        if btype == "host-gw":
            self.info(
                "Backend.Type",
                "host-gw routes pod subnets via the other nodes' addresses: "
                "every node must be on the same L2 segment (no router between nodes) and "
                'not behind NAT. Across subnets or clouds, use "vxlan"',
            )
        if ipv6 and btype not in IPV6_BACKENDS:
            self.warn(
                "Backend.Type",
                f"{btype} does not carry IPv6 (only "
                f"{', '.join(IPV6_BACKENDS)} do): IPv6Network gets no traffic",
            )

    def overlaps(self, nets: list[IPNetwork], endpoints: list[str], others: dict[str, str]) -> None:
        ranges: list[tuple[str, IPNetwork]] = []
        for name, cidr in others.items():
            try:
                ranges.append((name, ipaddress.ip_network(str(cidr), strict=False)))
            except ValueError:
                self.error(name, f'{_show(cidr)} is not a CIDR like "10.0.0.0/24"')
        for net in nets:
            path = "Network" if net.version == 4 else "IPv6Network"
            for url in endpoints:
                host = urlsplit(url).hostname or ""
                try:
                    addr = ipaddress.ip_address(host)
                except ValueError:
                    continue  # a host name: cannot know its address here
                if addr in net:
                    self.warn(
                        path,
                        f"{net} contains the etcd endpoint {addr} ({url}), but flannel "
                        f"treats all of {net} as pod addresses (routes, docker's bridge, "
                        f"ip-masq rules): once a node leases the subnet holding it, nodes "
                        f"lose etcd, and flannel with it. Pick a Network your hosts do not use",
                    )
            for name, other in ranges:
                if other.version == net.version and net.overlaps(other):
                    self.warn(
                        path,
                        f"{net} overlaps the {name} {other}: an address in both is "
                        f"ambiguous, and traffic for one reaches the other. Pick ranges that "
                        f"do not overlap",
                    )


def lint_config(config: Config) -> list[Finding]:
    """lint() with everything the config model knows: etcd endpoints, arches, flannel version."""
    return lint(
        config.network,
        etcd_endpoints=config.etcd.endpoints,
        arches=config.flannel.arches,
        flannel_version=config.flannel.version_tuple,
    )


def check_config(config: Config) -> list[Finding]:
    """lint_config(), raising ConfigError (exit 2) when any finding is an error."""
    findings = lint_config(config)
    _raise_errors(findings)
    return findings
