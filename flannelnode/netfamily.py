"""pkg/subnet/config.go: the Config fields, decoded, then CheckNetworkConfig per address family.

Every field is decoded whatever its family: ParseConfig runs json.Unmarshal on all of them before
it looks at EnableIPv4/EnableIPv6, so a value it cannot decode is an error even in a disabled
family. CheckNetworkConfig then checks only the enabled families; a disabled family's values that
decode fine are ignored, which we say.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from typing import Literal

from .gojson import GoError, GoTypeError, Member, Slot
from .netfields import Cidr, IPAddress, IPNetwork
from .netlint import CRASHES, REFUSED, Linter, kept, quoted


@dataclass(frozen=True)
class Family:
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

    @property
    def keys(self) -> tuple[str, str, str, str]:
        return (self.network, self.subnet_len, self.subnet_min, self.subnet_max)

    def addr(self, value: int) -> IPAddress:
        return ipaddress.IPv4Address(value) if self.version == 4 else ipaddress.IPv6Address(value)


IPV4 = Family(
    "EnableIPv4", "Network", "SubnetLen", "SubnetMin", "SubnetMax", 4, 30, 28, 24, "10.244.0.0/16"
)
IPV6 = Family(
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
FAMILIES = (IPV4, IPV6)

# what each field takes, for "must be X, not Y"
WANTS = {
    "EnableIPv4": "true or false",
    "EnableIPv6": "true or false",
    "EnableNFTables": "true or false",
    "Network": f'a string in CIDR form like "{IPV4.example}"',
    "IPv6Network": f'a string in CIDR form like "{IPV6.example}"',
    "Networks": f'a list of CIDR strings like ["{IPV4.example}"]',
    "IPv6Networks": f'a list of CIDR strings like ["{IPV6.example}"]',
    "SubnetLen": "a whole number of bits like 24",
    "IPv6SubnetLen": "a whole number of bits like 64",
    "SubnetMin": 'an address string like "10.244.1.0"',
    "SubnetMax": 'an address string like "10.244.255.0"',
    "IPv6SubnetMin": 'an address string like "fd00:10:244:1::"',
    "IPv6SubnetMax": 'an address string like "fd00:10:244:ff::"',
}


def decode_errors(lint: Linter, slots: dict[str, Slot]) -> None:
    for name, slot in slots.items():
        for member, exc in slot.errors:
            decode_error(lint, name, member, exc)


def decode_error(lint: Linter, name: str, member: Member, exc: GoError) -> None:
    """A value flannel cannot decode: an error, whether its family is enabled or not."""
    path, value = member.key, member.value
    go = exc.in_field("Config", name) if isinstance(exc, GoTypeError) else exc.text
    want = WANTS.get(name, "")
    if exc.panic:
        shown = lint.show(value) if value.kind == "string" else "an item"
        lint.error(
            path,
            f"{shown} is IPv6: {CRASHES} (panic: {exc.text}). {name} takes IPv4 only, and "
            f"flannel decodes it even when {IPV4.enable} is false: put IPv6 in "
            f"{IPV6.network} (with {lint.kv(IPV6.enable, 'true')}), and give {name} an IPv4 "
            "value or remove it",
            member,
        )
    elif value.kind != "string" or isinstance(exc, GoTypeError):
        lint.error(path, f"must be {want}, not {lint.describe(value)}: {REFUSED} ({go})", member)
    elif "\\" in value.raw:
        lint.error(
            path,
            f"{value.raw} holds a backslash escape, which flannel's parser takes literally "
            f"({REFUSED}: {go}); write {want} without escapes",
            member,
        )
    elif name in ("Network", "IPv6Network"):
        example = (IPV4 if name == "Network" else IPV6).example
        lint.error(
            path,
            f'{lint.show(value)} is not a CIDR ({REFUSED}: {go}); write it like "{example}"',
            member,
        )
    else:
        lint.error(
            path,
            f"{lint.show(value)} is not an IP address (no /prefix here; {REFUSED}: {go}); "
            f"write {want}",
            member,
        )


def enabled(slots: dict[str, Slot], fam: Family) -> bool:
    """EnableIPv4 defaults to true (ParseConfig), EnableIPv6 to false; null keeps the default."""
    slot = slots.get(fam.enable)
    if slot is None or slot.state != "set" or slot.failed:
        return fam.version == 4
    return bool(slot.value)


def ignored(lint: Linter, slots: dict[str, Slot], fam: Family) -> None:
    """A disabled family's settings: decoded (their errors are reported), then unused."""
    switch = kept(slots.get(fam.enable))
    state = lint.show(switch.value) if switch else "not set"
    for key in fam.keys:
        slot = slots.get(key)
        if slot is not None and slot.kept is not None and not slot.failed:
            lint.warn(
                slot.kept.key,
                f"{lint.show(slot.kept.value)} is ignored because {fam.enable} is {state}; set "
                f"{lint.kv(fam.enable, 'true')} or remove it",
                slot.kept,
            )


def unused_networks(lint: Linter, slots: dict[str, Slot]) -> None:
    for key in ("Networks", "IPv6Networks"):
        slot = slots.get(key)
        if slot is not None and slot.kept is not None and not slot.failed:
            # ParseConfig resets both after decoding: only the kube subnet manager fills them
            lint.warn(
                slot.kept.key,
                "flannel decodes it, then ignores it with etcd (pkg/subnet/config.go "
                "ParseConfig resets it); use Network / IPv6Network",
                slot.kept,
            )


def check_family(lint: Linter, slots: dict[str, Slot], fam: Family) -> IPNetwork | None:
    """CheckNetworkConfig for an enabled family; fills lint.effective. Returns its Network."""
    if any(slots[k].failed for k in fam.keys if k in slots):
        return None  # flannel refused the config already
    got = {k: slots[k] for k in fam.keys if k in slots and slots[k].kept is not None}
    net_slot = got.get(fam.network)
    net = _network(lint, net_slot, fam)
    if net is None or net_slot is None:
        return None
    prefix = net.prefixlen
    default_len = max(fam.default_len, prefix + 2)
    len_at = kept(got.get(fam.subnet_len))
    sublen = got[fam.subnet_len].value if len_at else 0
    if sublen:
        assert len_at is not None
        fix = _subnet_len_fix(fam, prefix, default_len)
        if sublen > fam.max_len:
            lint.error(
                len_at.key,
                f"{sublen} is larger than {fam.max_len}; flannel needs at least 4 addresses per "
                f'node subnet ("SubnetLen must be less than /{fam.max_len + 1}"). {fix}',
                len_at,
            )
            return net
        if sublen < prefix + 2:
            lint.error(
                len_at.key,
                f"{sublen} is smaller than {prefix + 2} ({fam.network} prefix /{prefix} + 2); "
                f"flannel needs room for at least four node subnets in {net}. {fix}",
                len_at,
            )
            return net
    elif prefix > fam.smallest:
        at = net_slot.kept
        assert at is not None
        lint.error(
            at.key,
            f"{quoted(net)} is too small: flannel needs at least a /{fam.smallest} to split into "
            f"four node subnets. Use a larger {fam.network}, e.g. {fam.example}",
            at,
        )
        return net
    else:
        sublen = default_len

    size = 1 << (fam.bits - sublen)
    # Unset (or zero) SubnetMin skips the first subnet: it would clash with the network address
    first = int(net.network_address) + size
    last = int(net.broadcast_address) + 1 - size
    lo = _bound(lint, got.get(fam.subnet_min), fam, net, sublen, first)
    hi = _bound(lint, got.get(fam.subnet_max), fam, net, sublen, last)
    if lo is None or hi is None:
        return net
    if lo > hi:
        _empty_range(lint, got, fam, lo, hi, first)
        return net
    min_at = kept(got.get(fam.subnet_min))
    if min_at and lo == int(net.network_address):
        lint.warn(
            min_at.key,
            f"{lint.show(min_at.value)} is the network address of {net}; a node given this "
            f"subnet clashes with it, which is why flannel's default skips it. Use "
            f"{fam.addr(first)}",
            min_at,
        )
    count = (hi - lo) // size + 1
    lint.info(
        fam.network,
        f"{net} gives room for {count} node subnets of /{sublen}, "
        f"{fam.addr(lo)}/{sublen} to {fam.addr(hi)}/{sublen}",
        net_slot.kept,
    )
    lint.effective.update(
        {
            fam.network: str(net),
            fam.subnet_len: sublen,
            fam.subnet_min: str(fam.addr(lo)),
            fam.subnet_max: str(fam.addr(hi)),
        }
    )
    return net


def _subnet_len_fix(fam: Family, prefix: int, default_len: int) -> str:
    """What to write instead of a refused SubnetLen: a value flannel accepts, if there is one."""
    if prefix + 2 > fam.max_len:
        return (
            f"No {fam.subnet_len} works for a /{prefix}: flannel needs at least a "
            f"/{fam.smallest} {fam.network}. Use a larger {fam.network}, e.g. {fam.example}"
        )
    # prefix + 2 <= max_len here, so the default is a value flannel takes
    return f"Use {default_len} (the default for /{prefix}), or remove it"


def _empty_range(
    lint: Linter, got: dict[str, Slot], fam: Family, lo: int, hi: int, first: int
) -> None:
    """SubnetMin above SubnetMax: blame the one the user set, not a default. SubnetMax is set: its
    default, the last subnet, is above every SubnetMin in the Network."""
    min_at, max_at = kept(got.get(fam.subnet_min)), kept(got.get(fam.subnet_max))
    assert max_at is not None
    if min_at is None or not int(got[fam.subnet_min].value):  # 0.0.0.0 / :: is unset
        lint.error(
            max_at.key,
            f"{lint.show(max_at.value)} is below {fam.addr(first)}, the first subnet flannel "
            f"leases ({fam.subnet_min}'s default skips the network address): no subnet is left "
            f'to lease ("out of subnets"). Use {fam.addr(first)} or above',
            max_at,
        )
    else:
        lint.error(
            fam.subnet_min,
            f"{quoted(fam.addr(lo))} is above {fam.subnet_max} {quoted(fam.addr(hi))}: flannel "
            'would find no subnet to lease ("out of subnets"). Swap them',
            min_at,
        )


def _network(lint: Linter, slot: Slot | None, fam: Family) -> IPNetwork | None:
    if slot is None or slot.kept is None:
        if fam.version == 4:
            lint.error(
                fam.network,
                f'missing; flannel needs the IPv4 range all pods share, e.g. "{fam.example}". '
                f"For IPv6 only, set {lint.kv('EnableIPv4', 'false')}, "
                f"{lint.kv('EnableIPv6', 'true')} and IPv6Network",
            )
        else:
            lint.error(
                fam.network,
                "missing although EnableIPv6 is true; give the IPv6 range all pods share, e.g. "
                f'"{fam.example}"',
            )
        return None
    at = slot.kept
    shown = lint.show(at.value)
    cidr: Cidr = slot.value
    net = cidr.network
    if cidr.odd:
        lint.error(
            at.key,
            f"{shown} is an IPv4 range in IPv6 form: flannel reads it as {cidr.odd}, and refuses "
            f'that. Write it in IPv4 form, e.g. "{fam.example}"',
            at,
        )
        return None
    if net.version != fam.version:
        lint.error(
            at.key,
            f"{shown} is IPv4; put it in Network and give IPv6Network an IPv6 range like "
            f'"{fam.example}"',
            at,
        )
        return None
    if not net.prefixlen:
        # IP4Net.Empty(): flannel takes 0.0.0.0/0 for "not set" (a /0 masks every address to 0)
        lint.error(
            at.key,
            f"{shown} covers every address, which flannel treats as no network at all "
            f'("please define a correct {fam.network} parameter"). Use a private range like '
            f'"{fam.example}"',
            at,
        )
        return None
    if cidr.host_bits:
        lint.warn(at.key, f"{shown} has host bits set; flannel uses {net}. Write {quoted(net)}", at)
    return net


def _bound(
    lint: Linter, slot: Slot | None, fam: Family, net: IPNetwork, sublen: int, default: int
) -> int | None:
    """SubnetMin or SubnetMax as flannel uses it, or None after an error."""
    if slot is None or slot.kept is None:
        return default
    at = slot.kept
    shown = lint.show(at.value)
    addr: IPAddress = slot.value
    if addr.version != fam.version:
        lint.error(
            at.key,
            f"{shown} is IPv{addr.version}; it must be an IPv{fam.version} address inside "
            f"{fam.network} {net}",
            at,
        )
        return None
    if not int(addr):
        return default  # flannel: 0.0.0.0 / :: means unset
    if addr not in net:
        lint.error(
            at.key,
            f"{shown} is outside {fam.network} {net}; use an address in it (default "
            f"{fam.addr(default)})",
            at,
        )
        return None
    size = 1 << (fam.bits - sublen)
    if int(addr) % size:
        below = int(addr) - int(addr) % size
        inside = range(int(net.network_address), int(net.broadcast_address) + 1)
        use = [fam.addr(a) for a in (below, below + size) if a + size - 1 in inside]
        lint.error(
            at.key,
            f"{shown} is not on a /{sublen} boundary ({fam.subnet_len}); use "
            f"{' or '.join(map(str, use))}",
            at,
        )
        return None
    return int(addr)
