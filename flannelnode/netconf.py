"""flannel's network config (net-conf.json, `[network]` in node.toml), by flannel's own rules.

What is checked is the JSON flanneld reads: a net-conf.json as written, or a `[network]` table as
flannelnode renders it (render(): the one rendering that the payload, the user-data, both seeders
and lint use). It is decoded as flanneld decodes it (gojson: Go's encoding/json; netfields:
flannel's structs and IP types), every field, whether its address family is enabled or not: a
value flannel cannot decode makes it refuse the whole config and retry forever (etcd mode), or
crash. Then flannel's rules, read from its source (flannel-io/flannel):
- pkg/subnet/config.go: ParseConfig (EnableIPv4 defaults to true, no Backend means udp) and
  CheckNetworkConfig (Network required, SubnetLen bounds and defaults, SubnetMin/SubnetMax inside
  the Network and aligned, the same for IPv6): netfamily.py.
- pkg/backend/manager.go (types looked up lower-cased) and pkg/backend/<type>/*.go (options;
  udp, ipip, alloc, ipsec and tencent-vpc panic without an IPv4 public address): netbackend.py.
Beyond flannel's own checks, we warn about what breaks nodes later: a missing Backend (udp, not
vxlan), the flannel Network covering etcd or the cluster's other ranges, secrets in the config.
"""

from __future__ import annotations

import ipaddress
import json
import math
from collections.abc import Iterable, Mapping
from datetime import date, datetime, time
from typing import Any
from urllib.parse import urlsplit

from . import gojson, netfamily
from .config import Config
from .errors import ConfigError
from .gojson import Slot, Value
from .netbackend import check_backend
from .netfamily import IPV4, IPV6
from .netfields import (
    BACKENDS,
    SECRET_PLACEHOLDER,
    IPNetwork,
    Version,
    config_fields,
    without_secrets,
)
from .netlint import REFUSED, Context, Dialect, Finding, Linter, Range, kept, quoted
from .seed import seeder

__all__ = [
    "BACKENDS",
    "SECRET_PLACEHOLDER",
    "Finding",
    "Range",
    "check",
    "check_config",
    "cluster_ranges",
    "effective",
    "lint",
    "lint_config",
    "lint_json",
    "render",
    "without_secrets",
]

Ranges = Mapping[str, str] | Iterable[Range] | None


def lint(
    network: Any,
    *,
    etcd_endpoints: Iterable[str] = (),
    other_ranges: Ranges = None,
    arches: Iterable[str] = (),
    flannel_version: Version | None = None,
    public_ip: str | None = None,
    iface: Iterable[str] | None = None,
) -> list[Finding]:
    """Every finding about `network`, flannel's net-conf as a TOML table (Config.network).

    other_ranges names further CIDRs the flannel Network must not overlap, e.g.
    {"Kubernetes service CIDR": "10.0.0.0/24"}. arches, flannel_version, public_ip and iface
    ([flanneld]), when given, enable the checks that depend on them.
    """
    ctx = _context(etcd_endpoints, other_ranges, arches, flannel_version, public_ip, iface)
    return _lint_table(network, ctx).findings


def lint_json(
    text: str,
    *,
    etcd_endpoints: Iterable[str] = (),
    other_ranges: Ranges = None,
    arches: Iterable[str] = (),
    flannel_version: Version | None = None,
    public_ip: str | None = None,
    iface: Iterable[str] | None = None,
) -> list[Finding]:
    """Like lint, for a net-conf.json's text; findings carry the line and column of their key."""
    ctx = _context(etcd_endpoints, other_ranges, arches, flannel_version, public_ip, iface)
    return _lint_text(text, "json", ctx).findings


def check(network: Any, *, source: str = "[network]", **context: Any) -> list[Finding]:
    """Like lint, but raises ConfigError (exit 2) listing every error; returns the rest."""
    findings = lint(network, **context)
    _raise_errors(findings, source)
    return findings


def effective(
    network: Any, *, arches: Iterable[str] = (), flannel_version: Version | None = None
) -> dict[str, Any]:
    """The config as flanneld will use it: canonical key names, defaults filled in.

    SubnetLen/SubnetMin/SubnetMax (and the IPv6 ones) as CheckNetworkConfig computes them,
    Backend.Type "udp" when Backend is missing, and the backend's option defaults from its source.
    Raises ConfigError when the config has errors.
    """
    result = _lint_table(network, _context((), None, arches, flannel_version, None, None))
    _raise_errors(result.findings, "[network]")
    return result.effective


def lint_config(config: Config, network_json: str | None = None) -> list[Finding]:
    """lint() in everything the config knows: etcd endpoints, arches, flannel version,
    [flanneld].public_ip, the [cluster] ranges. network_json: lint that net-conf.json's text in
    this context, instead of config.network."""
    ctx = _context(
        config.etcd.endpoints,
        cluster_ranges(config),
        config.flannel.arches,
        config.flannel.version_tuple,
        config.flanneld.public_ip,
        config.flanneld.iface,
    )
    if network_json is not None:
        return _lint_text(network_json, "json", ctx).findings
    return _lint_table(config.network, ctx).findings


def check_config(config: Config) -> list[Finding]:
    """lint_config(), raising ConfigError (exit 2) naming the config file when any is an error."""
    findings = lint_config(config)
    _raise_errors(findings, f"[network] in {config.source}")
    return findings


def render(network: Any) -> str:
    """The net-conf.json of a `[network]` table: the one rendering that the payload, the
    user-data, `build.py seed`, the node seeder and lint all use (the seeder's canonical())."""
    for path, problem in _unrepresentable(network, ""):
        raise ConfigError(f"[network] {path}: {problem}")
    return seeder().canonical(json.dumps(network))


def cluster_ranges(config: Config) -> list[Range]:
    """The [cluster] ranges, each with what an overlap with the flannel Network breaks."""
    cluster, where = config.cluster, config.source
    ranges = [
        Range(
            "Kubernetes service CIDR",
            cidr,
            "kube-proxy takes the traffic to those addresses for Services, so pods given one "
            "cannot be reached",
            f" ([cluster] service_cidrs in {where})",
        )
        for cidr in cluster.service_cidrs
    ]
    ranges += [
        Range(
            "node network",
            cidr,
            "flannel routes all of its Network into the overlay, so nodes lose the hosts "
            "(etcd, the API server, each other) on that network",
            f" ([cluster] node_networks in {where})",
        )
        for cidr in cluster.node_networks
    ]
    if cluster.docker_bridge:
        ranges.append(
            Range(
                "docker bridge",
                cluster.docker_bridge,
                "on a host whose docker runs without flannel's options, docker0 holds those "
                "addresses and takes the traffic meant for pods in them",
                f" ([cluster] docker_bridge in {where})",
            )
        )
    return ranges


# --- the run -----------------------------------------------------------------------------------


def _context(
    endpoints: Iterable[str],
    others: Ranges,
    arches: Iterable[str],
    version: Version | None,
    public_ip: str | None,
    iface: Iterable[str] | None,
) -> Context:
    if isinstance(others, Mapping):
        ranges = tuple(Range(label, cidr) for label, cidr in others.items())
    else:
        ranges = tuple(others or ())
    ifaces = None if iface is None else tuple(iface)
    return Context(tuple(endpoints), ranges, tuple(arches), version, public_ip, ifaces)


def _raise_errors(findings: list[Finding], source: str) -> None:
    errors = [f for f in findings if f.level == "error"]
    if errors:
        noun = "error" if len(errors) == 1 else "errors"
        lines = [f"flannel network config ({source}): {len(errors)} {noun}:"]
        lines += [f"  {f.message}" for f in errors]
        raise ConfigError("\n".join(lines))


def _lint_table(network: Any, ctx: Context) -> Linter:
    problems = list(_unrepresentable(network, ""))
    if problems:
        result = Linter(ctx, "toml")
        for path, text in problems:
            result.error(path or "network", text)
        return result
    return _lint_text(render(network), "toml", ctx)  # what flannel reads is the rendering


def _lint_text(text: str, dialect: Dialect, ctx: Context) -> Linter:
    lint = Linter(ctx, dialect)
    try:
        doc = gojson.parse(text)
    except gojson.JSONSyntaxError as exc:
        lint.syntax(exc, text)
        return lint
    _run(lint, doc)
    return lint


def _unrepresentable(value: Any, path: str) -> Iterable[tuple[str, str]]:
    """TOML values JSON has no form of: dates and times, nan and inf."""
    if isinstance(value, dict):
        for key, item in value.items():
            yield from _unrepresentable(item, f"{path}.{key}" if path else str(key))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            yield from _unrepresentable(item, f"{path}[{i}]")
    elif isinstance(value, date | datetime | time):
        why = "a TOML date or time, which JSON (and so flannel) cannot express"
        yield path, f"{value} is {why}; quote it if you meant a string"
    elif isinstance(value, float) and not math.isfinite(value):
        yield path, f"{value} is not a number JSON (and so flannel) can express"


def _run(lint: Linter, doc: Value) -> None:
    """ParseConfig, CheckNetworkConfig and the backend, in flanneld's order."""
    if doc.kind != "object":
        text = (
            f"must be {lint.a_table()} like {lint.obj('Network', quoted(IPV4.example))}, not "
            f"{lint.describe(doc)}: {REFUSED}"
        )
        if lint.toml:
            lint.error("network", text)
        else:
            lint.findings.append(Finding("error", "", f"the config {text}", doc.line, doc.column))
        return
    fields = config_fields(lint.ctx.flannel_version)
    slots, unknown = gojson.decode_struct(doc, fields)
    lint.keys(slots, unknown, list(fields), "")
    netfamily.decode_errors(lint, slots)

    ipv4, ipv6 = netfamily.enabled(slots, IPV4), netfamily.enabled(slots, IPV6)
    lint.effective["EnableIPv4"] = ipv4
    if ipv6:
        lint.effective["EnableIPv6"] = True
    nets: list[IPNetwork] = []
    for fam, on in ((IPV4, ipv4), (IPV6, ipv6)):
        if on:
            net = netfamily.check_family(lint, slots, fam)
            nets += [net] if net is not None else []
        elif fam.enable in fields:
            netfamily.ignored(lint, slots, fam)
    if not ipv4 and not ipv6:
        lint.error(
            "EnableIPv4",
            "is false and EnableIPv6 is not true: flannel would have no network at all "
            f'("none matched ip stack"). Remove {lint.kv("EnableIPv4", "false")}, or set '
            f"{lint.kv('EnableIPv6', 'true')} with an IPv6Network",
            kept(slots.get("EnableIPv4")),
        )
    netfamily.unused_networks(lint, slots)
    if ipv6 and not ipv4:
        _ipv6_only_interface(lint, slots)
    check_backend(lint, slots.get("Backend"), ipv4=ipv4, ipv6=ipv6)
    _overlaps(lint, nets)


def _ipv6_only_interface(lint: Linter, slots: dict[str, Slot]) -> None:
    """main.go and pkg/ipmatch: without --iface, an IPv6-only flanneld looks --public-ip up among
    the interfaces' IPv6 addresses; an IPv4 one is never found, and flanneld exits."""
    public_ip, ifaces = lint.ctx.public_ip, lint.ctx.iface
    try:
        ipv4_public = ipaddress.ip_address(public_ip or "").version == 4
    except ValueError:
        ipv4_public = False
    if ipv4_public and ifaces == ():
        lint.error(
            "EnableIPv4",
            f"false (IPv6 only) with [flanneld] public_ip = {public_ip}, an IPv4 address, and no "
            "[flanneld] iface: flanneld looks the public IP up among the interfaces' IPv6 "
            'addresses and exits ("Failed to find any valid interface to use: error looking up '
            'v6 interface"). Set [flanneld] iface to the interface to use',
            kept(slots.get("EnableIPv4")),
        )


def _overlaps(lint: Linter, nets: list[IPNetwork]) -> None:
    """Beyond flannel: the ranges its Network would take from etcd and the rest of the cluster."""
    ranges: list[tuple[Range, IPNetwork]] = []
    for other in lint.ctx.ranges:
        try:
            ranges.append((other, ipaddress.ip_network(str(other.cidr), strict=False)))
        except ValueError:
            lint.error(other.label, f'"{other.cidr}" is not a CIDR like "10.0.0.0/24"')
    for net in nets:
        path = "Network" if net.version == 4 else "IPv6Network"
        for url in lint.ctx.etcd_endpoints:
            host = urlsplit(url).hostname or ""
            try:
                addr = ipaddress.ip_address(host)
            except ValueError:
                continue  # a host name: cannot know its address here
            if addr in net:
                lint.warn(
                    path,
                    f"{net} contains the etcd endpoint {addr} ({url}), but flannel treats all "
                    f"of {net} as pod addresses (routes, docker's bridge, ip-masq rules): once a "
                    "node leases the subnet holding it, nodes lose etcd, and flannel with it. "
                    "Pick a Network your hosts do not use",
                )
        for other, cidr in ranges:
            if cidr.version == net.version and net.overlaps(cidr):
                lint.warn(
                    path,
                    f"{net} overlaps the {other.label} {cidr}{other.origin}: {other.why}. Pick "
                    "ranges that do not overlap",
                )
