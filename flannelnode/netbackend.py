"""The Backend: parseBackendType (pkg/subnet/config.go), GetBackend (pkg/backend/manager.go) and
each backend's options as its own struct decodes them (pkg/backend/<type>/*.go)."""

from __future__ import annotations

import difflib
import ipaddress
from typing import Any

from . import gojson
from .gojson import GoTypeError, Slot
from .netfields import (
    BACKENDS,
    IPV4_LEASE_BACKENDS,
    IPV6_BACKENDS,
    MAX_IFNAME,
    REMOVED_BACKENDS,
    REMOVED_IN,
    TYPE_FIELD,
    VXLAN_MAX_VNI,
)
from .netlint import REFUSED, VXLAN, Linter, kept, version_text

_KIND_WORDS = {"bool": "true or false", "int": "an integer", "str": "a string",
               "duration": "an integer"}  # fmt: skip


def check_backend(lint: Linter, slot: Slot | None, *, ipv4: bool, ipv6: bool) -> None:
    if slot is None:
        # parseBackendType: no Backend means udp
        lint.warn(
            "Backend",
            "missing, so flannel uses udp (not vxlan): slow, and on every arch but amd64 "
            f"flanneld refuses to start. Add {lint.kv('Backend', lint.obj('Type', VXLAN))}",
        )
        _options(lint, "udp", {}, ipv4=ipv4, ipv6=ipv6, prefix="Backend.")
        _notes(lint, "udp", None, "Backend", ipv4=ipv4, ipv6=ipv6, implicit=True)
        return
    at = slot.kept
    assert at is not None  # json.RawMessage takes every value, null included
    raw = at.value
    if raw.kind == "null":
        lint.error(
            at.key,
            'null: flannel reads its type as "" and flanneld stops with "unknown backend type" '
            f"(exit 1). Write {lint.obj('Type', VXLAN)}, or leave {at.key} out for udp",
            at,
        )
        return
    if raw.kind != "object":
        lint.error(
            at.key,
            f"must be {lint.a_table()} like {lint.obj('Type', VXLAN)}, not {lint.describe(raw)}: "
            f"{REFUSED} (error decoding Backend property of config: json: cannot unmarshal "
            f"{gojson.json_type(raw)} into Go value of type struct {{ Type string }})",
            at,
        )
        return
    prefix = f"{at.key}."
    types, _ = gojson.decode_struct(raw, TYPE_FIELD)
    btype = _backend_type(lint, types.get("Type"), prefix)
    spec = BACKENDS.get(btype or "", {})
    options, unknown = gojson.decode_struct(raw, {n: o.go_type for n, o in spec.items()})
    unknown = [m for m in unknown if gojson.fold(m.key) != "TYPE"]
    secrets = frozenset(name for name, opt in spec.items() if opt.secret)
    # options of an unknown or removed backend: flannel never reads them, nor do we
    checked = btype is not None and btype not in REMOVED_BACKENDS
    lint.keys(types | (options if checked else {}), unknown if checked else [],
              ["Type", *spec], prefix, secrets)  # fmt: skip
    if btype in REMOVED_BACKENDS:
        lint.effective["Backend"] = {"Type": btype}
    elif btype is not None:
        _options(lint, btype, options, ipv4=ipv4, ipv6=ipv6, prefix=prefix)
        _notes(lint, btype, kept(types.get("Type")), prefix + "Type", ipv4=ipv4, ipv6=ipv6)


def _backend_type(lint: Linter, slot: Slot | None, prefix: str) -> str | None:
    """The type flanneld runs, or None after an error."""
    if slot is not None and slot.failed:
        member, exc = slot.errors[0]
        go = exc.in_field("", "Type") if isinstance(exc, GoTypeError) else exc.text
        lint.error(
            prefix + member.key,
            f'must be a string like "vxlan", not {lint.describe(member.value)}: {REFUSED} '
            f"(error decoding Backend property of config: {go})",
            member,
        )
        return None
    if slot is None or slot.kept is None:
        lint.error(
            prefix + "Type",
            f'missing; flanneld stops with "unknown backend type". Add {lint.kv("Type", VXLAN)}',
            slot.members[-1] if slot else None,
        )
        return None
    at, btype = slot.kept, slot.value
    path = prefix + at.key
    old = lint.ctx.flannel_version is not None and lint.ctx.flannel_version < REMOVED_IN
    known = list(BACKENDS) + (list(REMOVED_BACKENDS) if old else [])
    # GetBackend: strings.ToLower(backendType)
    if btype.lower() in known and btype != btype.lower():
        lint.warn(path, f'"{btype}": flannel lower-cases it, but write "{btype.lower()}"', at)
    btype = btype.lower()
    if btype in REMOVED_BACKENDS and not old:
        lint.error(
            path,
            f'"{btype}" was removed in flannel {version_text(REMOVED_IN)}; flanneld stops with '
            '"unknown backend type". Use "vxlan" or "host-gw" (or flannel older than '
            f"{version_text(REMOVED_IN)})",
            at,
        )
        return None
    if btype not in known:
        hint = difflib.get_close_matches(btype, known, n=1, cutoff=0.5)
        did = "".join(f' Did you mean "{h}"?' for h in hint)
        lint.error(
            path,
            f'"{btype}" is not a flannel backend; flanneld stops with "unknown backend type".'
            f"{did} Known: {', '.join(BACKENDS)}",
            at,
        )
        return None
    if btype in REMOVED_BACKENDS:
        lint.warn(
            path,
            f'"{btype}" is experimental and gone from flannel {version_text(REMOVED_IN)} on; plan '
            "a move to vxlan or host-gw",
            at,
        )
    return btype


def _options(
    lint: Linter, btype: str, options: dict[str, Slot], *, ipv4: bool, ipv6: bool, prefix: str
) -> None:
    spec = BACKENDS[btype]
    effective: dict[str, Any] = {"Type": btype}
    effective |= {name: opt.default for name, opt in spec.items() if opt.default is not None}
    for name, slot in options.items():
        opt = spec[name]
        for member, exc in slot.errors:
            # json.Unmarshal into the backend's struct fails in RegisterNetwork: flanneld exits
            lint.error(
                prefix + member.key,
                f"must be {_KIND_WORDS[opt.kind]}, not "
                f"{lint.describe(member.value, secret=opt.secret)}: flanneld exits at start "
                f"(its {btype} backend cannot decode its options: {exc.text})",
                member,
            )
        at = slot.kept
        if slot.failed or at is None:
            continue
        path = prefix + at.key
        problem = opt.check(slot.value) if opt.check else None
        if problem:
            # never echo a secret: these messages end up in terminals and CI logs
            lint.error(path, f"{'the value' if opt.secret else lint.show(at.value)} {problem}", at)
            continue
        if opt.secret:
            lint.warn(
                path,
                "is a secret: flannelnode keeps it out of the payload, RPMs, repo and images "
                "(their net-conf.json holds a placeholder) and delivers it only in the "
                "cloud-init user-data (0600); flannel stores it in etcd (<prefix>/config), "
                "readable by anyone who can read etcd",
                at,
            )
        if opt.note:
            lint.info(path, opt.note, at)
        effective[name] = slot.value
    if btype == "vxlan":
        _vxlan(lint, effective, options, ipv4=ipv4, ipv6=ipv6, prefix=prefix)
    if btype == "ipsec" and "PSK" not in effective:
        lint.error(
            prefix + "PSK",
            "missing; flannel's ipsec backend needs a pre-shared key of at least 96 characters "
            '("config error, password is too short")',
        )
    lint.effective["Backend"] = effective


def _vxlan(
    lint: Linter, opts: dict, slots: dict[str, Slot], *, ipv4: bool, ipv6: bool, prefix: str
) -> None:
    vni, at = opts["VNI"], kept(slots.get("VNI"))
    if not 0 <= vni <= VXLAN_MAX_VNI:
        lint.error(
            prefix + "VNI",
            f"{vni} is out of range: a VXLAN VNI is 24 bits, 0-{VXLAN_MAX_VNI}. Use 1 (flannel's "
            "default)",
            at,
        )
    else:
        # vxlan.go names the devices flannel.<VNI> and flannel-v6.<VNI>
        names = [f"flannel.{vni}"] if ipv4 else []
        names += [f"flannel-v6.{vni}"] if ipv6 else []
        too_long = [n for n in names if len(n) > MAX_IFNAME]
        if too_long:
            lint.error(
                prefix + "VNI",
                f"{vni} makes flannel name its device {too_long[0]}, longer than Linux's "
                f"{MAX_IFNAME} characters, and creating it fails. Use a VNI of at most "
                f"{'4' if ipv6 else '7'} digits",
                at,
            )
    mtu = opts.get("MTU")
    if mtu is not None:
        # device.go: the vxlan device gets MTU - 50; Linux needs 68 (IPv4), 1280 (IPv6)
        need = 1280 if ipv6 else 68
        if mtu - 50 < need:
            lint.error(
                prefix + "MTU",
                f"{mtu} leaves the vxlan device an MTU of {mtu - 50} (flannel subtracts 50 for "
                f"VXLAN), below the {need} Linux needs. Set the MTU of the nodes' interface, "
                "e.g. 1500, or leave MTU out",
                kept(slots.get("MTU")),
            )


def _notes(
    lint: Linter,
    btype: str,
    at: gojson.Member | None,
    path: str,
    *,
    ipv4: bool,
    ipv6: bool,
    implicit: bool = False,
) -> None:
    if btype == "udp":
        if not implicit:  # the missing-Backend warning already says it
            # Documentation/backends.md: "UDP is suggested for debugging only"
            lint.warn(
                path,
                "udp forwards every packet through flanneld in user space: slow, meant for "
                'debugging only. Use "vxlan"',
                at,
            )
        other = [a for a in lint.ctx.arches if a != "amd64"]
        if other:
            # pkg/backend/udp/udp.go, built for !amd64: New() always fails
            lint.error(
                "Backend.Type",
                f"udp exists only in flanneld for amd64; on {', '.join(other)} flanneld stops "
                'with "UDP backend is not supported on this architecture". Use "vxlan"',
                at,
            )
    if btype == "host-gw":
        lint.info(
            path,
            "host-gw routes pod subnets via the other nodes' addresses: every node must be on "
            "the same L2 segment (no router between nodes) and not behind NAT. Across subnets "
            'or clouds, use "vxlan"',
            at,
        )
    if ipv6 and not ipv4 and btype in IPV4_LEASE_BACKENDS and not _public_ipv4(lint):
        # LookupExtIface leaves ExtAddr nil on an IPv6-only node unless --public-ip is given;
        # the backend's lease then calls ip.FromIP(nil): "Address is not an IPv4 address"
        given = lint.ctx.public_ip
        why = (
            f"[flanneld] public_ip is {given}, not IPv4"
            if given
            else ("and [flanneld] public_ip gives none")
        )
        lint.error(
            path,
            f"{btype}{' (what no Backend means)' if implicit else ''} with IPv6 only: flanneld "
            f'panics at start ("Address is not an IPv4 address"). The {btype} backend leases '
            f"with the node's public IPv4 address, which an IPv6-only node lacks ({why}). Use "
            '"vxlan" or "wireguard", which carry IPv6',
            at,
        )
    elif ipv6 and btype not in IPV6_BACKENDS:
        lint.warn(
            path,
            f"{btype} does not carry IPv6 (only {', '.join(IPV6_BACKENDS)} do): IPv6Network "
            "gets no traffic",
            at,
        )


def _public_ipv4(lint: Linter) -> bool:
    try:
        return ipaddress.ip_address(lint.ctx.public_ip or "").version == 4
    except ValueError:
        return False
