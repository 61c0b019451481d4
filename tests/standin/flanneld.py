#!/usr/bin/env python3
"""flanneld stand-in for tests: flanneld's start-up contract and datapath, as nodes see them.

flannel's release binaries cannot be downloaded on the build machines, so the tests build this
script into an ELF `flanneld` (see launcher.c and tests/standin_release.py) and ship it through
the same gates as a real release. It is never part of the product. Each build knows the flannel
version it stands in for (VERSION below, substituted by tests/standin.build); behaviour that
changed between flannel releases follows that version.

What it does, in flanneld's own order (main.go of the release it stands in for):
  1. Flags are parsed the way Go's `flag` package parses them: `-x` and `--x`, `-x=v`, `-x v`
     for non-boolean flags, booleans only as `-x` or `-x=<bool>`, `--` ends the flags and the
     first non-flag argument stops parsing. The flag set is flanneld's, per release (klog's -v,
     -vmodule, -log_backtrace_at included; --iface and --iface-regex repeatable). An unknown
     flag, a bad value or -h/-help prints Go's message and the usage on stderr and exits 0:
     flanneld's usage function calls os.Exit(0), so even a typo is a "clean" exit.
  2. --version prints VERSION on stderr, exit 0 (checked before the environment is read).
  3. FLANNELD_<FLAG> (upper case, '-' -> '_') sets each flag not given on the command line;
     an unusable value is logged and ignored, as coreos/pkg's flagutil.SetFlagsFromEnv does.
  4. --subnet-lease-renew-margin outside (0, 1440): exit 1.
  5. The previous subnets are read from --subnet-file (default /run/flannel/subnet.env).
     The etcd TLS files are loaded: a missing or unreadable file, or a key that does not match
     its certificate, exits 1. As in flannel, >= v0.18 uses the CA only together with a client
     certificate and key; <= v0.17 (etcd's v2 transport) loads each file that is given.
  6. The network config is read from <prefix>/config: etcd v2 keys API for flannel <= v0.17,
     etcd v3 (through etcd's gRPC-JSON gateway) from v0.18 on. Any failure - a refused
     connection, a CA that does not sign the server (logged with Go's `x509: certificate signed
     by unknown authority` and the endpoint), a rejected client certificate, a missing key, a
     config CheckNetworkConfig refuses - is logged and retried every second, forever, without
     READY. SIGTERM/SIGINT: exit 0.
  7. Address family from EnableIPv4 (default true) / EnableIPv6: neither -> exit 1.
  8. br_netfilter (flannel >= v0.26.0): exit 1 with `Failed to check br_netfilter` when
     <proc-sys>/net/bridge/bridge-nf-call-iptables (IPv4) or ...-ip6tables (IPv6) is absent.
     EnableNFTables skips the check only from v0.28.0 on, as in flannel (v0.26.x and v0.27.x
     check regardless).
  9. External interface: each --iface (name or address), then each --iface-regex (addresses,
     then names), then --iface-can-reach, else the default route's interface (the interface
     holding --public-ip when that is given); an interface must have a global or link-local
     address of each enabled family (so `--iface=lo` fails, `--iface=127.0.0.1` works, as in
     flannel). None usable: exit 1. --public-ip/--public-ipv6 override the advertised address.
  - Backend, before the lease (pkg/backend): host-gw refuses a --public-ip that is not the
     interface's address (exit 1). vxlan creates flannel.<VNI> (VNI 1 unless Backend.VNI; UDP
     port Backend.Port, 0 leaving the kernel's 8472; learning off unless Backend.Learning; GBP;
     on the external interface and address; MTU = link MTU (or Backend.MTU) - 50; a random
     locally administered MAC), or keeps an existing compatible one with its MAC (so a restart
     keeps the VtepMAC) and recreates an incompatible one; failing: exit 1.
 10. Lease, as flannel's etcd LocalManager: the lease whose PublicIP is ours is reused (and
     rewritten with a fresh 24 h TTL); else the subnet of the previous --subnet-file when free
     and inside the config; else a random one of the first 100 free subnets. Created
     put-if-absent with a 24 h TTL: v3 a txn on version == 0 with a granted lease, v2 a PUT
     with prevExist=false and ttl=86400. Keys <prefix>/subnets/10.5.52.0-24, with
     `&<ipv6>-<len>` appended for an IPv6 lease; value {"PublicIP", "PublicIPv6",
     "BackendType", "BackendData", "BackendV6Data"}. etcd errors while acquiring are retried.
  - Datapath, after the lease: vxlan puts <lease network address>/32 on flannel.<VNI> (any
     other address of the flannel network on it removed) and sets it up. --ip-masq: flannel's
     masquerade rules (nat FLANNEL-POSTRTG, jumped to from POSTROUTING: RETURN for the
     kube-proxy mark and inside the flannel network, MASQUERADE (--random-fully where iptables
     has it, unless --ip-masq-fully-random-disable) for the flannel network leaving it and for
     others entering it); the previous lease's rules (from the old subnet file) are removed
     when network or lease changed. --iptables-forward-rules (default true): filter
     FLANNEL-FWD, jumped to from FORWARD, accepting -s and -d the flannel network. Chains are
     cleared first; each rule set is applied with `iptables-restore --noflush` (an existing rule
     deleted, then appended) and checked every --iptables-resync seconds, all of it applied
     again when one is missing. An iptables failure is logged; flanneld goes on.
 11. --subnet-file is written as WriteSubnetFile does (temp file `.<name>`, mode 0644, rename):
     FLANNEL_NETWORK + FLANNEL_SUBNET (IPv4), FLANNEL_IPV6_NETWORK + FLANNEL_IPV6_SUBNET (IPv6),
     FLANNEL_MTU (interface MTU minus the backend's overhead), FLANNEL_IPMASQ.
 12. Other leases are watched (vxlan, host-gw): the list, then etcd's watch from the revision
     (v3) or index (v2) after it, a fresh list whenever the history is gone, as flannel's
     LeaseWatcher: a lease that appears or changes is added, one deleted or expired removed,
     our own skipped, a lease of another backend type ignored with a warning. host-gw: a route
     to the lease's subnet via its PublicIP on the external interface, put back within 10 s
     when removed (routeCheck). vxlan, in flannel's order: a permanent neighbour <lease network
     address> -> VtepMAC on flannel.<VNI>, a permanent FDB entry VtepMAC -> PublicIP (self),
     then the route <lease network> via <its network address> onlink on flannel.<VNI>; on
     removal all three go.
 13. READY=1 to $NOTIFY_SOCKET, then it runs until SIGTERM/SIGINT (exit 0), renewing the lease
     --subnet-lease-renew-margin minutes before it expires. It leaves the datapath in place
     when it stops, as flanneld does.
Log lines use klog's layout (`E1130 12:00:00.000000 1234 main.go:0] ...`) and flanneld's
wording where operators look for it.

Divergences, and why no test depends on them:
  - The kernel is programmed with iproute2's `ip` and `bridge` (JSON output read back) where
    flannel uses netlink: the same links, addresses, routes, neighbour and FDB entries; the node
    images carry iproute2 anyway. iptables goes through the iptables binaries, as in flannel
    (go-iptables). The rules are in place before READY=1 (flannel applies them from goroutines,
    so usually just after): nothing of ours can tell.
  - Datapath left out, because no node config of ours uses it and verify does not check it:
    IPv6 (flannel-v6.<VNI>, IPv6 routes and ip6tables rules; the IPv6 lease and subnet file
    are there), the nftables traffic manager (EnableNFTables: no rules at all), vxlan's
    DirectRouting (always encapsulated), the datapath of the other backends (udp, ipip,
    wireguard, ipsec, ...: their lease attributes and MTU only), re-creating a flannel.<VNI>
    deleted behind flanneld's back (v0.27's device watcher; a restart creates it again),
    --ip-blackhole-route, the healthz server. Watch events are applied one at a time, where
    flannel batches them; each change opens a new watch from the next revision.
  - The lease is only renewed on time; our own lease deleted behind flanneld's back is not
    noticed (flannel watches it). Tests look at start-up, restart and other nodes' leases.
  - A retried error is logged when it changes and then every 30 s with a repeat count, where
    flanneld logs it every second (and prints "timed out" on stdout); the text is the same.
    Errors from etcd's clients are worded after Go's (`dial tcp ...: connect: connection
    refused`, `x509: ...`, `remote error: tls: ...`), not byte for byte; the klog header has
    no real source line.
  - Only the primary IPv4 address of each interface is seen (SIOCGIFADDR), IPv6 ones from
    /proc/net/if_inet6; tests use 127.0.0.1/::1 on lo.
  - No Kubernetes subnet manager (--kube-subnet-mgr is accepted, ignored with a warning), no
    etcd username/password, no backends beyond their MTU overhead and lease attributes; -v,
    -vmodule and -log_backtrace_at are checked like klog but change nothing.
  - Test hooks (environment, never set on a node): FLANNEL_STANDIN_PROC_SYS replaces /proc/sys
    for the br_netfilter check (a test cannot unload a kernel module); FLANNEL_STANDIN_DATAPATH=off
    builds no datapath at all (host tests run it in the build host's own network namespace,
    whose devices and iptables are not theirs to change; the VtepMAC is then the external
    interface's, stable across restarts as a kept device's is); FLANNEL_STANDIN_MAX_SECONDS
    (default 3600) is a safety cap after which a leaked stand-in logs and exits 0, where real
    flanneld runs forever. Tests stop it long before.
Exit codes are flanneld's: 0 usage/help/--version/signal, 1 fatal start-up error.
Standard library only (it runs inside node containers on their python3).
"""

import base64
import contextlib
import datetime
import fcntl
import http.client
import ipaddress
import json
import os
import random
import re
import signal
import socket
import ssl
import struct
import subprocess
import sys
import threading
import time
from urllib.parse import quote, urlencode, urlsplit

VERSION = "v0.27.4"  # standin-build: version
PROC_SYS = os.environ.get("FLANNEL_STANDIN_PROC_SYS", "/proc/sys")
MAX_SECONDS = float(os.environ.get("FLANNEL_STANDIN_MAX_SECONDS", "3600"))
RETRY_SECONDS = 1.0  # getConfig's pace
REPEAT_LOG_SECONDS = 30.0
REQUEST_TIMEOUT = 5.0
RACE_RETRIES = 10
SUBNET_TTL = 24 * 3600
# bytes each backend's encapsulation costs (flannel: vxlan 50, udp 28, ipip 20, wireguard 80)
OVERHEAD = {"vxlan": 50, "udp": 28, "ipip": 20, "host-gw": 0, "wireguard": 80, "alloc": 0}
BACKENDS = set(OVERHEAD) | {"ipsec", "extension", "tencentvpc"}
SIOCGIFADDR, SIOCGIFMTU, SIOCGIFHWADDR = 0x8915, 0x8921, 0x8927


def version_tuple(text):
    numbers = re.findall(r"\d+", text)[:3]
    return tuple(int(n) for n in numbers + ["0"] * (3 - len(numbers)))


V = version_tuple(VERSION)
ETCD_V2 = V < (0, 18, 0)


class Exit(Exception):
    """Stop with this exit code (the message, if any, is already logged)."""

    def __init__(self, code):
        Exception.__init__(self, code)
        self.code = code


class Transient(Exception):
    """This try failed; flanneld tries again."""


class NotFound(Exception):
    """The key is absent."""


# --- klog-style logging ------------------------------------------------------------------------


def log(level, message, where="main.go"):
    now = datetime.datetime.now()
    stamp = now.strftime("%m%d %H:%M:%S.%f")
    sys.stderr.write(f"{level}{stamp} {os.getpid():7d} {where}:0] {message}\n")
    sys.stderr.flush()


class Reporter:
    """Logs a retried error when it changes, then every REPEAT_LOG_SECONDS with a count."""

    def __init__(self):
        self.last, self.since, self.repeats = None, 0.0, 0

    def __call__(self, level, message, where="main.go"):
        now = time.monotonic()
        if message != self.last:
            self.last, self.since, self.repeats = message, now, 0
            log(level, message, where)
        elif now - self.since >= REPEAT_LOG_SECONDS:
            self.repeats += 1
            log(level, f"{message} (still failing, every {RETRY_SECONDS:g}s)", where)
            self.since = now


# --- flags, as Go's flag package ---------------------------------------------------------------


def go_bool(text):
    if text in ("1", "t", "T", "TRUE", "true", "True"):
        return True
    if text in ("0", "f", "F", "FALSE", "false", "False"):
        return False
    raise ValueError("parse error")


def go_int(text, base=0, bits=64, raw=False):
    """strconv.ParseInt; flag's int values report its errors as 'parse error'/'value out of range',
    klog's Level passes strconv's own error through (raw)."""
    s = text
    ok = bool(s) and s.isascii() and not any(c.isspace() for c in s)
    value = None
    if ok:
        try:
            if base == 0 and re.fullmatch(r"[+-]?0[0-7_]+", s):
                value = int(s.replace("_", ""), 8)
            else:
                value = int(s, base)
        except ValueError:
            value = None
    if value is None:
        raise ValueError(
            f'strconv.ParseInt: parsing "{text}": invalid syntax' if raw else "parse error"
        )
    if not -(1 << (bits - 1)) <= value < (1 << (bits - 1)):
        raise ValueError(
            f'strconv.ParseInt: parsing "{text}": value out of range'
            if raw
            else "value out of range"
        )
    return value


def klog_vmodule(text):
    for part in text.split(",") if text else []:
        pattern, eq, level = part.partition("=")
        if not eq or not pattern or "=" in level:
            raise ValueError("syntax error: expect comma-separated list of filename=N")
        try:
            go_int(level, 10, 32, raw=True)
        except ValueError:
            raise ValueError("syntax error: expect comma-separated list of filename=N") from None
    return text


def klog_trace(text):
    if not text:
        return text
    fields = text.split(":")
    if len(fields) != 2 or "." not in fields[0] or not fields[1].isdigit():
        raise ValueError("syntax error: expect file.go:234")
    if int(fields[1]) <= 0:
        raise ValueError("negative or zero value for level")
    return text


class Flag:
    def __init__(self, name, kind, default, usage, since=(0, 0, 0)):
        self.name, self.kind, self.default, self.usage, self.since = (
            name,
            kind,
            default,
            usage,
            since,
        )

    def convert(self, text):
        if self.kind == "bool":
            return go_bool(text)
        if self.kind == "int":
            return go_int(text)
        if self.kind == "level":
            return go_int(text, 10, 32, raw=True)
        if self.kind == "vmodule":
            return klog_vmodule(text)
        if self.kind == "trace":
            return klog_trace(text)
        return text


FLAGS = [
    Flag("etcd-endpoints", "string", "http://127.0.0.1:4001,http://127.0.0.1:2379",
         "a comma-delimited list of etcd endpoints"),
    Flag("etcd-prefix", "string", "/coreos.com/network", "etcd prefix"),
    Flag("etcd-keyfile", "string", "", "SSL key file used to secure etcd communication"),
    Flag("etcd-certfile", "string", "", "SSL certification file used to secure etcd communication"),
    Flag("etcd-cafile", "string", "",
         "SSL Certificate Authority file used to secure etcd communication"),
    Flag("etcd-username", "string", "", "username for BasicAuth to etcd"),
    Flag("etcd-password", "string", "", "password for BasicAuth to etcd"),
    Flag("iface", "slice", [], "interface to use (IP or name) for inter-host communication. "
         "Can be specified multiple times to check each option in order. Returns the first "
         "match found."),
    Flag("iface-regex", "slice", [], "regex expression to match the first interface to use (IP "
         "or name) for inter-host communication. Can be specified multiple times to check each "
         "regex in order. Returns the first match found. Regexes are checked after specific "
         "interfaces specified by the iface option have already been checked."),
    Flag("iface-can-reach", "string", "", "detect interface to use (IP or name) for inter-host "
         "communication based on which will be used for provided IP. This is exactly the "
         "interface to use of command 'ip route get <ip-address>'", (0, 18, 0)),
    Flag("subnet-file", "string", "/run/flannel/subnet.env",
         "filename where env variables (subnet, MTU, ... ) will be written to"),
    Flag("public-ip", "string", "", "IP accessible by other nodes for inter-host communication"),
    Flag("public-ipv6", "string", "",
         "IPv6 accessible by other nodes for inter-host communication"),
    Flag("subnet-lease-renew-margin", "int", 60,
         "subnet lease renewal margin, in minutes, ranging from 1 to 1439"),
    Flag("ip-masq", "bool", False,
         "setup IP masquerade rule for traffic destined outside of overlay network"),
    Flag("ip-masq-fully-random-disable", "bool", False, "disable fully-random mode for MASQUERADE",
         (0, 27, 4)),
    Flag("kube-subnet-mgr", "bool", False,
         "contact the Kubernetes API for subnet assignment instead of etcd."),
    Flag("kube-api-url", "string", "", "Kubernetes API server URL. Does not need to be specified "
         "if flannel is running in a pod."),
    Flag("kube-annotation-prefix", "string", "flannel.alpha.coreos.com",
         'Kubernetes annotation prefix. Can contain single slash "/", otherwise it will be '
         "appended at the end."),
    Flag("kubeconfig-file", "string", "", "kubeconfig file location. Does not need to be "
         "specified if flannel is running in a pod."),
    Flag("version", "bool", False, "print version and exit"),
    Flag("healthz-ip", "string", "0.0.0.0", "the IP address for healthz server to listen"),
    Flag("healthz-port", "int", 0, "the port for healthz server to listen(0 to disable)"),
    Flag("iptables-resync", "int", 5, "resync period for iptables rules, in seconds"),
    Flag("iptables-forward-rules", "bool", True,
         "add default accept rules to FORWARD chain in iptables"),
    Flag("ip-blackhole-route", "bool", False,
         "add blackroute route ont the node for the local podCIDR", (0, 27, 1)),
    Flag("net-config-path", "string", "/etc/kube-flannel/net-conf.json",
         "path to the network configuration file"),
    Flag("set-node-network-unavailable", "bool", True, "set NodeNetworkUnavailable after ready"),
    Flag("v", "level", 0, "number for the log level verbosity"),
    Flag("vmodule", "vmodule", "",
         "comma-separated list of pattern=N settings for file-filtered logging"),
    Flag("log_backtrace_at", "trace", "", "when logging hits line file:N, emit a stack trace"),
]  # fmt: skip


class FlagSet:
    def __init__(self, argv0):
        self.argv0 = argv0
        self.flags = {f.name: f for f in FLAGS if f.since <= V}
        self.values = {
            name: (list(f.default) if f.kind == "slice" else f.default)
            for name, f in self.flags.items()
        }
        self.actual = set()

    def __getitem__(self, name):
        return self.values[name]

    def set(self, name, text):
        flag = self.flags[name]
        value = flag.convert(text)
        if flag.kind == "slice":
            self.values[name].append(value)
        else:
            self.values[name] = value

    def usage(self):
        out = [f"Usage: {self.argv0} [OPTION]..."]
        for name in sorted(self.flags):
            flag = self.flags[name]
            kind = {"bool": "", "string": "string", "int": "int"}.get(flag.kind, "value")
            line = f"  -{name}" + (f" {kind}" if kind else "")
            line += "\t" if len(line) <= 4 else "\n    \t"
            line += flag.usage
            default = flag.default
            if default not in ("", 0, False, []):
                if flag.kind == "string":
                    line += f' (default "{default}")'
                else:
                    line += f" (default {str(default).lower() if default is True else default})"
            out.append(line)
        sys.stderr.write("\n".join(out) + "\n")
        sys.stderr.flush()

    def fail(self, message):
        sys.stderr.write(message + "\n")
        self.usage()
        raise Exit(0)  # flanneld's usage() ends in os.Exit(0)

    def parse(self, args):
        args = list(args)
        while args:
            s = args[0]
            if len(s) < 2 or s[0] != "-":
                return
            dashes = 1
            if s[1] == "-":
                dashes = 2
                if len(s) == 2:
                    return
            name = s[dashes:]
            if not name or name[0] in "-=":
                self.fail(f"bad flag syntax: {s}")
            args.pop(0)
            name, has_value, value = name.partition("=")
            flag = self.flags.get(name)
            if flag is None:
                if name in ("help", "h"):
                    self.usage()
                    raise Exit(0)
                self.fail(f"flag provided but not defined: -{name}")
            if flag.kind == "bool":
                try:
                    self.set(name, value if has_value else "true")
                except ValueError as exc:
                    self.fail(f'invalid boolean value "{value}" for -{name}: {exc}')
            else:
                if not has_value and args:
                    has_value, value = "=", args.pop(0)
                if not has_value:
                    self.fail(f"flag needs an argument: -{name}")
                try:
                    self.set(name, value)
                except ValueError as exc:
                    self.fail(f'invalid value "{value}" for flag -{name}: {exc}')
            self.actual.add(name)

    def from_env(self, prefix):
        """flagutil.SetFlagsFromEnv: flags not set on the command line; the last error wins."""
        error = None
        for name in sorted(self.flags):
            if name in self.actual:
                continue
            key = prefix + "_" + name.replace("-", "_").upper()
            value = os.environ.get(key, "")
            if value:
                try:
                    self.set(name, value)
                except ValueError as exc:
                    error = f'invalid value "{value}" for {key}: {exc}'
        return error


# --- network config: flannel's ParseConfig + CheckNetworkConfig --------------------------------


def field(conf, name):
    """Go's encoding/json matches field names case-insensitively."""
    if name in conf:
        return conf[name]
    for key, value in conf.items():
        if key.lower() == name.lower():
            return value
    return None


class Config:
    def __init__(self, raw):
        try:
            conf = json.loads(raw)
        except ValueError as exc:
            raise ValueError(f"invalid character in the network config: {exc}") from None
        if not isinstance(conf, dict):
            raise ValueError(
                "json: cannot unmarshal the network config into Go value of type subnet.Config"
            )
        self.enable_ipv4 = self._bool(conf, "EnableIPv4", True)
        self.enable_ipv6 = self._bool(conf, "EnableIPv6", False)
        self.enable_nftables = self._bool(conf, "EnableNFTables", False)
        backend = field(conf, "Backend")
        if backend is None:
            self.backend_type, backend = "udp", {}
        elif isinstance(backend, dict):
            self.backend_type = str(field(backend, "Type") or "")
        else:
            raise ValueError("error decoding Backend property of config")
        self.vni = int(field(backend, "VNI") or 1)
        self.backend = backend
        self.network = self._net(conf, "Network", ipaddress.IPv4Network)
        self.network6 = self._net(conf, "IPv6Network", ipaddress.IPv6Network)
        self.subnet_len = int(field(conf, "SubnetLen") or 0)
        self.subnet_len6 = int(field(conf, "IPv6SubnetLen") or 0)
        self.subnet_min = self._ip(conf, "SubnetMin", ipaddress.IPv4Address)
        self.subnet_max = self._ip(conf, "SubnetMax", ipaddress.IPv4Address)
        self.subnet_min6 = self._ip(conf, "IPv6SubnetMin", ipaddress.IPv6Address)
        self.subnet_max6 = self._ip(conf, "IPv6SubnetMax", ipaddress.IPv6Address)
        self._check()

    @staticmethod
    def _bool(conf, name, default):
        value = field(conf, name)
        if value is None:
            return default
        if not isinstance(value, bool):
            raise ValueError(
                f"json: cannot unmarshal {type(value).__name__} into Go struct field "
                f"Config.{name} of type bool"
            )
        return value

    @staticmethod
    def _net(conf, name, kind):
        value = field(conf, name)
        if not value:
            return None
        try:
            return kind(str(value), strict=False)
        except ValueError:
            raise ValueError(f"invalid CIDR address: {value}") from None

    @staticmethod
    def _ip(conf, name, kind):
        value = field(conf, name)
        if not value:
            return None
        try:
            return int(kind(str(value)))
        except ValueError:
            raise ValueError(f"invalid IP address: {value}") from None

    def _check(self):
        if self.enable_ipv4:
            net = self.network
            if net is None:
                raise ValueError("please define a correct Network parameter in the flannel config")
            self.subnet_len, self.subnet_min, self.subnet_max = self._family(
                net, 32, self.subnet_len, self.subnet_min, self.subnet_max, 30, 28, 22, 24, ""
            )
        else:
            self.subnet_len, self.subnet_min, self.subnet_max = 0, 0, 0
        if self.enable_ipv6:
            net = self.network6
            if net is None:
                raise ValueError(
                    "please define a correct IPv6Network parameter in the flannel config"
                )
            self.subnet_len6, self.subnet_min6, self.subnet_max6 = self._family(
                net,
                128,
                self.subnet_len6,
                self.subnet_min6,
                self.subnet_max6,
                126,
                124,
                62,
                64,
                "IPv6",
            )

    @staticmethod
    def _family(net, bits, length, low, high, longest, smallest, roomy, default_len, v6):
        if length:
            if length > longest:
                raise ValueError(f"SubnetLen must be less than /{longest + 1}")
            if length < net.prefixlen + 2:
                raise ValueError("network must be able to accommodate at least four subnets")
        elif net.prefixlen > smallest:
            name = "IPv6Network" if v6 else "network"
            raise ValueError(f"{name} is too small. Minimum useful network prefix is /{smallest}")
        else:
            length = default_len if net.prefixlen <= roomy else net.prefixlen + 2
        size = 1 << (bits - length)
        base, end = int(net.network_address), int(net.network_address) + net.num_addresses
        kind = ipaddress.IPv6Address if v6 else ipaddress.IPv4Address
        if not low:
            low = base + size
        elif not base <= low < end:
            raise ValueError(f"{v6}SubnetMin is not in the range of the {v6}Network")
        if not high:
            high = end - size
        elif not base <= high < end:
            raise ValueError(f"{v6}SubnetMax is not in the range of the {v6}Network")
        if low % size:
            raise ValueError(f"{v6}SubnetMin is not on a SubnetLen boundary: {kind(low)}")
        if high % size:
            raise ValueError(f"{v6}SubnetMax is not on a SubnetLen boundary: {kind(high)}")
        return length, low, high


# --- subnet keys and leases --------------------------------------------------------------------

KEY_RE = re.compile(r"(\d+\.\d+.\d+.\d+)-(\d+)(?:&([a-f\d:]+)-(\d+))?$")


def subnet_key(sn, sn6):
    key = f"{sn.network_address}-{sn.prefixlen}"
    if sn6 is not None:
        key += f"&{sn6.network_address}-{sn6.prefixlen}"
    return key


def parse_key(key):
    m = KEY_RE.search(key)
    if not m:
        return None, None
    try:
        sn = ipaddress.IPv4Network(f"{m.group(1)}/{m.group(2)}", strict=False)
        sn6 = None
        if m.group(3):
            sn6 = ipaddress.IPv6Network(f"{m.group(3)}/{m.group(4)}", strict=False)
    except ValueError:
        return None, None
    return sn, sn6


def overlaps(a, b):
    return a is not None and b is not None and a.overlaps(b)


def parse_lease(key, value):
    """(subnet, subnet6, attrs) of a lease key and its JSON value, or None (logged)."""
    sn, sn6 = parse_key(key)
    try:
        attrs = json.loads(value)
    except ValueError:
        attrs = None
    if sn is None or not isinstance(attrs, dict):
        log("W", f"Ignoring bad subnet node: {key}", "registry.go")
        return None
    return sn, sn6, attrs


# --- this node's interfaces --------------------------------------------------------------------


def _ioctl(name, request):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return fcntl.ioctl(s.fileno(), request, struct.pack("256s", name.encode()[:15]))


def iface_names():
    return sorted(os.listdir("/sys/class/net"))


def iface_ipv4(name):
    """The interface's (primary) IPv4 address, or None."""
    try:
        return ipaddress.IPv4Address(socket.inet_ntoa(_ioctl(name, SIOCGIFADDR)[20:24]))
    except OSError:
        return None


def iface_ipv6(name):
    found = []
    try:
        with open("/proc/net/if_inet6") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 6 and fields[5] == name:
                    found.append(ipaddress.IPv6Address(int(fields[0], 16)))
    except OSError:
        pass
    return found


def usable(addresses):
    """ip.GetInterfaceIP{4,6}Addrs: global unicast first, then link-local; never loopback."""

    def global_unicast(a):
        return not (
            a.is_unspecified
            or a.is_loopback
            or a.is_multicast
            or a.is_link_local
            or a == ipaddress.IPv4Address("255.255.255.255")
        )

    return [a for a in addresses if global_unicast(a)] + [a for a in addresses if a.is_link_local]


def addrs4(name):
    address = iface_ipv4(name)
    return usable([address] if address else [])


def addrs6(name):
    return usable(iface_ipv6(name))


def iface_mtu(name):
    return struct.unpack("i", _ioctl(name, SIOCGIFMTU)[16:20])[0]


def iface_mac(name):
    raw = _ioctl(name, SIOCGIFHWADDR)[18:24]
    return ":".join(f"{b:02x}" for b in bytearray(raw))


def default_iface(v6=False):
    try:
        if v6:
            with open("/proc/net/ipv6_route") as f:
                for line in f:
                    fields = line.split()
                    default = len(fields) >= 10 and fields[0] == "0" * 32 and fields[1] == "00"
                    if default and fields[9] != "lo":
                        return fields[9]
        else:
            with open("/proc/net/route") as f:
                for line in f.readlines()[1:]:
                    fields = line.split()
                    if len(fields) > 7 and fields[1] == "00000000" and fields[7] == "00000000":
                        return fields[0]
    except OSError:
        pass
    return None


def iface_by_ip(address):
    for name in iface_names():
        pool = [iface_ipv4(name)] if address.version == 4 else iface_ipv6(name)
        if address in pool:
            return name
    return None


class ExtIface:
    def __init__(self, name, addr, addr6, iface_addr=None):
        self.name, self.addr, self.addr6 = name, addr, addr6
        self.iface_addr = iface_addr  # the interface's own IPv4 address (addr: --public-ip)


def lookup_ext_iface(ifname, regex, can_reach, v4, v6, public_ip, public_ipv6):
    """ipmatch.LookupExtIface, for one --iface / --iface-regex / the default; raises ValueError."""
    name = addr = addr6 = None
    if ifname:
        try:
            wanted = ipaddress.ip_address(ifname)
        except ValueError:
            wanted = None
        if wanted is not None:
            log("I", f"Searching for interface using {wanted}", "match.go")
            name = iface_by_ip(wanted)
            if name is None:
                raise ValueError(f"error looking up interface {ifname}: no interface with this IP")
            if wanted.version == 4:
                addr = wanted
            else:
                addr6 = wanted
            if v4 and v6 and public_ipv6:
                other = iface_by_ip(ipaddress.ip_address(public_ipv6))
                if other is None:
                    raise ValueError(f"error looking up v6 interface {public_ipv6}")
                if other != name:
                    raise ValueError(
                        f"v6 interface {other} must be the same with v4 interface {name}"
                    )
                addr6 = ipaddress.ip_address(public_ipv6)
        else:
            if ifname not in iface_names():
                raise ValueError(
                    f"error looking up interface {ifname}: route ip+net: no such network interface"
                )
            name = ifname
    elif regex:
        try:
            pattern = re.compile(regex)
        except re.error as exc:
            raise ValueError(f"could not compile the IP address regex '{regex}': {exc}") from None
        for candidate in iface_names():
            a4 = [a for a in addrs4(candidate) if pattern.search(str(a))]
            a6 = [a for a in addrs6(candidate) if pattern.search(str(a))]
            if (not v4 or a4) and (not v6 or a6):
                name, addr, addr6 = candidate, (a4 or [None])[0], (a6 or [None])[0]
                break
        if name is None:
            name = next((n for n in iface_names() if pattern.search(n)), None)
        if name is None:
            raise ValueError(
                f"Could not match pattern {regex} to any of the available network interfaces"
            )
    elif can_reach:
        log("I", f"Determining interface to use based on given ifcanreach: {can_reach}", "match.go")
        try:
            target = ipaddress.ip_address(can_reach)
            family = socket.AF_INET if target.version == 4 else socket.AF_INET6
            with socket.socket(family, socket.SOCK_DGRAM) as probe:  # `ip route get`: no packet
                probe.connect((str(target), 9))
                source = ipaddress.ip_address(probe.getsockname()[0].split("%")[0])
        except (ValueError, OSError) as exc:
            raise ValueError(f"failed to get ifcanreach based interface: {exc}") from None
        name = iface_by_ip(source)
        if name is None:
            raise ValueError(f"failed to get ifcanreach based interface: no interface has {source}")
        if source.version == 4:
            addr = source
        else:
            addr6 = source
    else:
        log("I", "Determining IP address of default interface", "match.go")
        name = default_iface(v6=not v4)
        if name is None:
            raise ValueError("failed to get default interface: Unable to find default route")
        if v4 and v6 and default_iface(v6=True) != name:
            raise ValueError(
                "v6 default route interface must be the same with v4 default route "
                f"interface {name}"
            )
    if v4 and addr is None:
        found = addrs4(name)
        if not found:
            raise ValueError(f"failed to find IPv4 address for interface {name}")
        addr = found[0]
    if v6 and addr6 is None:
        found = addrs6(name)
        if not found:
            raise ValueError(f"failed to find IPv6 address for interface {name}")
        addr6 = found[0]
    if addr is not None:
        log("I", f"Using interface with name {name} and address {addr}", "match.go")
    if addr6 is not None:
        log("I", f"Using interface with name {name} and v6 address {addr6}", "match.go")
    ext, ext6 = (addr if v4 else None), (addr6 if v6 else None)
    if public_ip:
        try:
            ext = ipaddress.IPv4Address(public_ip)
        except ValueError:
            raise ValueError(f"invalid public IP address: {public_ip}") from None
    if public_ipv6:
        try:
            ext6 = ipaddress.IPv6Address(public_ipv6)
        except ValueError:
            raise ValueError(f"invalid public IPv6 address: {public_ipv6}") from None
    return ExtIface(name, ext, ext6, addr if v4 else None)


def pick_iface(flags, v4, v6):
    public_ip, public_ipv6 = flags["public-ip"], flags["public-ipv6"]
    can_reach = flags.values.get("iface-can-reach", "")
    if not flags["iface"] and not flags["iface-regex"] and not can_reach:
        try:
            return lookup_ext_iface(
                public_ip or public_ipv6, "", "", v4, v6, public_ip, public_ipv6
            )
        except ValueError as exc:
            log("E", f"Failed to find any valid interface to use: {exc}")
            raise Exit(1) from None
    tries = [(i, "", "") for i in flags["iface"]] + [("", r, "") for r in flags["iface-regex"]]
    if can_reach:
        tries.append(("", "", can_reach))
    for ifname, regex, reach in tries:
        try:
            return lookup_ext_iface(ifname, regex, reach, v4, v6, public_ip, public_ipv6)
        except ValueError as exc:
            log("I", f"Could not find valid interface matching {ifname or regex or reach}: {exc}")
    log("E", "Failed to find interface to use that matches the interfaces and/or regexes provided")
    raise Exit(1)


# --- etcd --------------------------------------------------------------------------------------


def read_file(path):
    try:
        with open(path, "rb") as f:
            return f.read()
    except OSError as exc:
        raise ValueError(f"open {path}: {(exc.strerror or str(exc)).lower()}") from None


def tls_context(cafile, certfile, keyfile):
    """None (no TLS config) or an SSLContext; ValueError where flanneld's client creation fails."""
    if ETCD_V2:
        # etcd's transport.TLSInfo: the pair together, the CA on its own
        if not certfile and not keyfile and not cafile:
            return None
        if bool(certfile) != bool(keyfile):
            raise ValueError(
                f"KeyFile and CertFile must both be present[key: {keyfile}, cert: {certfile}]"
            )
    elif not certfile or not keyfile:
        log(
            "W",
            "no certificate provided: connecting to etcd with http. This is insecure",
            "registry.go",
        )
        return None
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if certfile:
        for path in (certfile, keyfile):
            data = read_file(path)
            if b"-----BEGIN" not in data:
                what = "certificate" if path == certfile else "key"
                raise ValueError(f"tls: failed to find any PEM data in {what} input")
        try:
            context.load_cert_chain(certfile, keyfile)
        except ssl.SSLError as exc:
            if "KEY_VALUES_MISMATCH" in str(exc) or "key values mismatch" in str(exc):
                raise ValueError("tls: private key does not match public key") from None
            raise ValueError(f"tls: failed to parse the certificate or key: {exc}") from None
    if cafile:
        data = read_file(cafile)
        # Go's NewCertPool: a file without a PEM block is an empty pool, no error; every
        # handshake then fails
        with contextlib.suppress(ssl.SSLError, ValueError):
            context.load_verify_locations(cadata=data.decode("ascii", "replace"))
    else:
        context.load_default_certs()
    return context


def go_tls_error(exc, host):
    prefix = "" if ETCD_V2 else "tls: failed to verify certificate: "
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", 0)
        if code in (2, 18, 19, 20, 21):
            return prefix + "x509: certificate signed by unknown authority"
        if code in (9, 10):
            return prefix + "x509: certificate has expired or is not yet valid"
        if code == 62:
            return prefix + f"x509: certificate is not valid for {host}"
        return prefix + f"x509: {getattr(exc, 'verify_message', exc)}"
    text = str(exc)
    for reason, go in (
        ("CERTIFICATE_REQUIRED", "certificate required"),
        ("BAD_CERTIFICATE", "bad certificate"),
        ("UNKNOWN_CA", "unknown certificate authority"),
        ("CERTIFICATE_EXPIRED", "expired certificate"),
        ("HANDSHAKE_FAILURE", "handshake failure"),
    ):
        if reason in text:
            return f"remote error: tls: {go}"
    return f"tls: {text}"


class Etcd:
    """The few calls flannel's etcd registry makes, over HTTP(S): v2 keys API or v3 gateway."""

    def __init__(self, endpoints, context, prefix):
        self.endpoints = [e.strip().rstrip("/") for e in endpoints.split(",") if e.strip()]
        self.context = context
        self.prefix = "/" + prefix.strip("/") if prefix.strip("/") else ""
        self.current = random.randrange(len(self.endpoints)) if self.endpoints else 0
        self.index = None

    def request(self, method, path, body=None, form=False, timeout=REQUEST_TIMEOUT):
        """(status, JSON) from the first endpoint that answers; Transient when none does."""
        if not self.endpoints:
            raise Transient("etcdclient: no available endpoints")
        errors = []
        for _ in self.endpoints:
            url = self.endpoints[self.current]
            try:
                return self._once(url, method, path, body, form, timeout)
            except Transient as exc:
                errors.append((url, str(exc)))
                self.current = (self.current + 1) % len(self.endpoints)
        errors.sort(key=lambda error: self.endpoints.index(error[0]))  # a stable message
        if ETCD_V2:
            parts = [
                f'error #{i}: {verb(method)} "{url}{path}": {e}'
                for i, (url, e) in enumerate(errors)
            ]
            raise Transient(
                "client: etcd cluster is unavailable or misconfigured; " + "; ".join(parts)
            )
        raise Transient(
            "; ".join(f'etcd {url}: connection error: desc = "{e}"' for url, e in errors)
        )

    def connection(self, url, timeout):
        parts = urlsplit(url)
        host, port = parts.hostname or "127.0.0.1", parts.port or 2379
        if parts.scheme == "https":
            context = self.context or ssl.create_default_context()
            conn = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
        else:
            conn = http.client.HTTPConnection(host, port, timeout=timeout)
        return conn, host, port

    def _once(self, url, method, path, body, form, timeout=REQUEST_TIMEOUT):
        conn, host, port = self.connection(url, timeout)
        if form:
            payload, ctype = urlencode(body), "application/x-www-form-urlencoded"
        else:
            payload, ctype = (None if body is None else json.dumps(body)), "application/json"
        try:
            conn.request(method, path, body=payload, headers={"Content-Type": ctype})
            response = conn.getresponse()
            status, data = response.status, response.read()
            self.index = response.getheader("X-Etcd-Index")  # v2: the index a watch goes on from
        except ssl.SSLError as exc:
            handshake = "transport: authentication handshake failed: " if not ETCD_V2 else ""
            raise Transient(handshake + go_tls_error(exc, host)) from None
        except ssl.CertificateError as exc:
            raise Transient(go_tls_error(exc, host)) from None
        except ConnectionRefusedError:
            raise Transient(f"dial tcp {host}:{port}: connect: connection refused") from None
        except TimeoutError:
            raise Transient(f"dial tcp {host}:{port}: i/o timeout") from None
        except (OSError, http.client.HTTPException) as exc:
            raise Transient(f"{host}:{port}: {exc or type(exc).__name__}") from None
        finally:
            conn.close()
        try:
            answer = json.loads(data.decode("utf-8")) if data else {}
        except ValueError:
            raise Transient(f"HTTP {status}: {data[:200].decode('utf-8', 'replace')}") from None
        if status >= 500 and not (ETCD_V2 and "errorCode" in answer):
            raise Transient(f"HTTP {status}: {answer.get('error') or answer.get('message')}")
        if not ETCD_V2 and status != 200:
            raise Transient(f"etcdserver: {answer.get('error') or answer.get('message') or status}")
        return status, answer

    # -- the registry -------------------------------------------------------------------------

    def config_key(self):
        return f"{self.prefix}/config"

    def subnets_key(self):
        return f"{self.prefix}/subnets"

    def get_config(self):
        key = self.config_key()
        if ETCD_V2:
            _, answer = self.request("GET", f"/v2/keys{quote(key)}?quorum=true")
            if "errorCode" in answer:
                raise NotFound(v2_error(answer))
            return answer["node"].get("value", "")
        _, answer = self.request("POST", "/v3/kv/range", {"key": b64(key)})
        kvs = answer.get("kvs") or []
        if not kvs:
            raise NotFound(
                "flannel config not found in etcd store. Did you create your config using "
                "etcdv3 API?"
            )
        return unb64(kvs[0].get("value", ""))

    def leases(self):
        """[(subnet, subnet6, attrs)] of every parseable lease under <prefix>/subnets."""
        return self.leases_at()[0]

    def leases_at(self):
        """(leases, cursor): the cursor is where a watch of later changes starts (v3: the
        revision after this read, v2: the etcd index after it)."""
        if ETCD_V2:
            _, answer = self.request(
                "GET", f"/v2/keys{quote(self.subnets_key())}?recursive=true&quorum=true"
            )
            cursor = int(self.index or 0) + 1
            if answer.get("errorCode") == 100:
                return [], cursor
            if "errorCode" in answer:
                raise Transient(v2_error(answer))
            items = [(n["key"], n.get("value", "")) for n in answer["node"].get("nodes") or []]
        else:
            key = self.subnets_key()
            _, answer = self.request(
                "POST", "/v3/kv/range", {"key": b64(key), "range_end": prefix_end(key)}
            )
            cursor = int((answer.get("header") or {}).get("revision", 0)) + 1
            items = [
                (unb64(kv["key"]), unb64(kv.get("value", ""))) for kv in answer.get("kvs") or []
            ]
        out = []
        for key, value in items:
            lease = parse_lease(key, value)
            if lease is not None:
                out.append(lease)
        return out, cursor

    def watch(self, cursor, timeout):
        """Changes under <prefix>/subnets from cursor on: (events, next cursor), each event
        ("put", key, value) or ("delete", key, None). An empty list after `timeout` seconds
        without a change. Transient on errors, NotFound when the cursor is gone (compacted or
        cleared): then the caller reads the whole list again, as flannel's watcher does."""
        if ETCD_V2:
            return self._watch_v2(cursor, timeout)
        return self._watch_v3(cursor, timeout)

    def _watch_v2(self, cursor, timeout):
        path = f"/v2/keys{quote(self.subnets_key())}?wait=true&recursive=true&waitIndex={cursor}"
        try:
            _, answer = self.request("GET", path, timeout=timeout)
        except Transient as exc:
            if "timed out" in str(exc) or "i/o timeout" in str(exc):
                return [], cursor
            raise
        if answer.get("errorCode") == 401:  # the index was cleared from etcd's history
            raise NotFound(v2_error(answer))
        if "errorCode" in answer:
            raise Transient(v2_error(answer))
        node = answer.get("node") or {}
        gone = answer.get("action") in ("delete", "expire", "compareAndDelete")
        kind = "delete" if gone else "put"
        event = (kind, node.get("key", ""), None if kind == "delete" else node.get("value", ""))
        return [event], int(node.get("modifiedIndex", cursor)) + 1

    def _watch_v3(self, cursor, timeout):
        key = self.subnets_key()
        body = {
            "create_request": {
                "key": b64(key),
                "range_end": prefix_end(key),
                "start_revision": str(cursor),
            }
        }
        url = self.endpoints[self.current]
        conn, host, port = self.connection(url, timeout)
        try:
            conn.request("POST", "/v3/watch", body=json.dumps(body),
                         headers={"Content-Type": "application/json"})  # fmt: skip
            response = conn.getresponse()
            if response.status != 200:
                raise Transient(f"watch: HTTP {response.status}")
            decoder, buffer = json.JSONDecoder(), ""
            while True:
                chunk = response.read1(65536)
                if not chunk:
                    raise Transient("watch: the stream ended")
                buffer += chunk.decode("utf-8", "replace")
                while True:
                    buffer = buffer.lstrip()
                    try:
                        message, end = decoder.raw_decode(buffer)
                    except ValueError:
                        break
                    buffer = buffer[end:]
                    result = message.get("result") or {}
                    if message.get("error") or result.get("canceled"):
                        if int(result.get("compact_revision") or 0):
                            raise NotFound(f"watch: revision {cursor} compacted")
                        raise Transient(f"watch: {message.get('error') or 'canceled'}")
                    events = []
                    for event in result.get("events") or []:
                        kv = event.get("kv") or {}
                        kind = "delete" if event.get("type") == "DELETE" else "put"
                        value = unb64(kv["value"]) if kind == "put" and kv.get("value") else ""
                        events.append((kind, unb64(kv.get("key", "")), value))
                        cursor = max(cursor, int(kv.get("mod_revision") or 0) + 1)
                    if events:
                        return events, cursor
        except TimeoutError:
            return [], cursor
        except ssl.SSLError as exc:
            self.current = (self.current + 1) % len(self.endpoints)
            raise Transient(go_tls_error(exc, host)) from None
        except (OSError, http.client.HTTPException) as exc:
            self.current = (self.current + 1) % len(self.endpoints)
            raise Transient(f"{host}:{port}: {exc or type(exc).__name__}") from None
        finally:
            conn.close()

    def delete(self, sn, sn6):
        key = f"{self.subnets_key()}/{subnet_key(sn, sn6)}"
        if ETCD_V2:
            self.request("DELETE", f"/v2/keys{quote(key)}")
        else:
            self.request("POST", "/v3/kv/deleterange", {"key": b64(key)})

    def write(self, sn, sn6, attrs, create):
        """createSubnet (put-if-absent; False if the key exists) or updateSubnet, TTL 24 h."""
        key = f"{self.subnets_key()}/{subnet_key(sn, sn6)}"
        value = json.dumps(attrs, separators=(",", ":"))
        if ETCD_V2:
            query = "?prevExist=false" if create else ""
            _, answer = self.request(
                "PUT",
                f"/v2/keys{quote(key)}{query}",
                {"value": value, "ttl": SUBNET_TTL},
                form=True,
            )
            if answer.get("errorCode") == 105:
                return False
            if "errorCode" in answer:
                raise Transient(v2_error(answer))
            return True
        _, grant = self.request("POST", "/v3/lease/grant", {"TTL": SUBNET_TTL})
        lease = grant.get("ID")
        put = {"key": b64(key), "value": b64(value), "lease": lease}
        if not create:
            self.request("POST", "/v3/kv/put", put)
            return True
        _, answer = self.request(
            "POST",
            "/v3/kv/txn",
            {
                "compare": [
                    {"key": b64(key), "result": "EQUAL", "target": "VERSION", "version": "0"}
                ],
                "success": [{"request_put": put}],
            },
        )
        if not answer.get("succeeded"):
            self.request("POST", "/v3/lease/revoke", {"ID": lease})
            return False
        return True


def verb(method):
    return method.capitalize()


def v2_error(answer):
    return "{}: {} ({}) [{}]".format(
        answer.get("errorCode"), answer.get("message"), answer.get("cause"), answer.get("index")
    )


def b64(text):
    return base64.b64encode(text.encode()).decode("ascii")


def unb64(text):
    return base64.b64decode(text).decode()


def prefix_end(prefix):
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode("ascii")


# --- the subnet file ---------------------------------------------------------------------------


def read_subnet_file(path, key, kind):
    """ReadCIDRFromSubnetFile: the network of KEY=<cidr> in the previous file, or None."""
    try:
        with open(path) as f:
            lines = f.read().splitlines()
    except FileNotFoundError:
        lines = []
    except OSError as exc:
        log("E", f"Couldn't fetch previous {key} from subnet file at {path}: {exc}")
        return None
    for line in lines:
        name, eq, value = line.strip().partition("=")
        if eq and name.strip() == key:
            value = value.strip().strip("'\"")
            if "," in value:
                log(
                    "E",
                    f"error reading subnet: more than 1 entry found for key: {key} in "
                    f"file {path}: ",
                )
                return None
            try:
                return kind(value, strict=False)
            except ValueError as exc:
                log("E", f"Couldn't parse previous {key} from subnet file at {path}: {exc}")
                return None
    log("W", f"no subnet found for key: {key} in file: {path}")
    return None


def write_subnet_file(path, config, ipmasq, sn, sn6, mtu):
    """WriteSubnetFile: the same lines, order and mode; temp file `.<name>` then rename."""
    directory, name = os.path.split(path)
    lines = []
    if config.enable_ipv4:
        lines.append(f"FLANNEL_NETWORK={config.network}")
        lines.append(f"FLANNEL_SUBNET={sn.network_address + 1}/{sn.prefixlen}")
    if config.enable_ipv6:
        lines.append(f"FLANNEL_IPV6_NETWORK={config.network6}")
        lines.append(f"FLANNEL_IPV6_SUBNET={sn6.network_address + 1}/{sn6.prefixlen}")
    lines.append(f"FLANNEL_MTU={mtu}")
    lines.append(f"FLANNEL_IPMASQ={'true' if ipmasq else 'false'}")
    if directory:
        os.makedirs(directory, 0o755, exist_ok=True)
    tmp = os.path.join(directory, "." + name)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    with os.fdopen(fd, "w") as f:
        f.write("".join(line + "\n" for line in lines))
    os.rename(tmp, path)


# --- the datapath: flannel's vxlan and host-gw backends, its iptables traffic manager ---------

DATAPATH = os.environ.get("FLANNEL_STANDIN_DATAPATH", "on") != "off"
COMMAND_TIMEOUT = 30
ROUTE_CHECK_SECONDS = 10.0  # RouteNetwork.routeCheck's pace
WATCH_SECONDS = 30.0  # an idle watch is opened again after this long
VXLAN_OVERHEAD = 50
KUBE_PROXY_MARK = "0x4000/0x4000"


class DatapathError(Exception):
    """A command that programs the kernel failed."""


def command(*argv, stdin=None, check=True):
    try:
        done = subprocess.run(
            list(argv),
            input=stdin,
            capture_output=True,
            text=True,
            timeout=COMMAND_TIMEOUT,
            check=False,
        )
    except FileNotFoundError:
        raise DatapathError(f'exec: "{argv[0]}": executable file not found in $PATH') from None
    except subprocess.TimeoutExpired:
        raise DatapathError(f"{argv[0]}: no answer within {COMMAND_TIMEOUT}s") from None
    if check and done.returncode != 0:
        raise DatapathError(f"{' '.join(argv)}: {(done.stderr or done.stdout).strip()}")
    return done


def new_mac():
    """mac.NewHardwareAddr: random, locally administered, unicast."""
    raw = bytearray(os.urandom(6))
    raw[0] = (raw[0] & 0xFE) | 0x02
    return ":".join(f"{b:02x}" for b in raw)


def link_details(name):
    """`ip -d -j link show` of one link, or None when it does not exist."""
    done = command("ip", "-d", "-j", "link", "show", "dev", name, check=False)
    if done.returncode != 0:
        return None
    return json.loads(done.stdout)[0]


class Vxlan:
    """flannel.<VNI>: created (or an existing compatible one kept, with its MAC) before the
    lease is taken, since the lease carries its MAC; configured once the lease is known."""

    def __init__(self, config, ext, mtu):
        backend = config.backend
        self.vni = config.vni
        self.name = f"flannel.{self.vni}"
        self.port = int(field(backend, "Port") or 0)
        self.gbp = bool(field(backend, "GBP"))
        self.learning = bool(field(backend, "Learning"))
        self.ext, self.local, self.mtu = ext.name, ext.addr, mtu
        log(
            "I",
            f"VXLAN config: VNI={self.vni} Port={self.port} GBP={str(self.gbp).lower()} "
            f"Learning={str(self.learning).lower()} DirectRouting=false",
            "vxlan.go",
        )
        self.mac = self.ensure()

    def incompatible(self, existing):
        """vxlanLinksIncompat: why an existing link cannot be kept ("" when it can)."""
        info = existing.get("linkinfo") or {}
        if info.get("info_kind") != "vxlan":
            return f"link type: vxlan vs {info.get('info_kind')}"
        data = info.get("info_data") or {}
        if data.get("id") != self.vni:
            return f"vni: {self.vni} vs {data.get('id')}"
        if data.get("link") and data.get("link") != self.ext:
            return f"vtep (external) interface: {self.ext} vs {data.get('link')}"
        if self.local and data.get("local") and data.get("local") != str(self.local):
            return f"vtep (external) IP: {self.local} vs {data.get('local')}"
        if self.port and data.get("port") and data.get("port") != self.port:
            return f"port: {self.port} vs {data.get('port')}"
        if bool(data.get("gbp")) != self.gbp:
            return f"gbp: {self.gbp} vs {bool(data.get('gbp'))}"
        return ""

    def ensure(self):
        existing = link_details(self.name)
        if existing is not None:
            why = self.incompatible(existing)
            if not why:
                return existing["address"]
            log(
                "W",
                f'"{self.name}" already exists with incompatible configuration: {why}; '
                "recreating device",
                "device.go",
            )
            command("ip", "link", "del", "dev", self.name)
        mac = new_mac()
        args = ["ip", "link", "add", self.name, "address", mac, "mtu", str(self.mtu - 50)]
        args += ["type", "vxlan", "id", str(self.vni), "dev", self.ext]
        if self.local:
            args += ["local", str(self.local)]
        # 0: the kernel's default, 8472 (flannel leaves the attribute out)
        args += ["dstport", str(self.port), "learning" if self.learning else "nolearning"]
        if self.gbp:
            args.append("gbp")
        command(*args)
        accept_ra = f"/proc/sys/net/ipv6/conf/{self.name}/accept_ra"
        with contextlib.suppress(OSError), open(accept_ra, "w") as f:
            f.write("0")
        return mac

    def configure(self, sn, network):
        """EnsureV4AddressOnLink(<lease network address>/32), then up, then the MAC check."""
        wanted = ipaddress.IPv4Interface(f"{sn.network_address}/32")
        shown = json.loads(command("ip", "-j", "-4", "addr", "show", "dev", self.name).stdout)
        present = False
        for entry in (shown[0].get("addr_info") or []) if shown else []:
            have = ipaddress.IPv4Interface(f"{entry['local']}/{entry['prefixlen']}")
            if have == wanted:
                present = True
            elif have.ip in network:
                command("ip", "addr", "del", str(have), "dev", self.name)
                log("I", f"removed IP address {have} from {self.name}", "iface.go")
        if not present:
            command("ip", "addr", "add", str(wanted), "dev", self.name)
        command("ip", "link", "set", "dev", self.name, "up")
        mac = (link_details(self.name) or {}).get("address")
        if mac != self.mac:
            raise DatapathError(f"{self.name}'s mac address wanted: {self.mac}, but got: {mac}")

    def added(self, sn, attrs):
        mac = (attrs.get("BackendData") or {}).get("VtepMAC")
        if not mac:
            log("E", f"error decoding subnet lease JSON: no VtepMAC for {sn}", "vxlan_network.go")
            return
        gateway, public = str(sn.network_address), attrs.get("PublicIP")
        log("I", f"adding subnet: {sn} PublicIP: {public} VtepMAC: {mac}", "vxlan_network.go")
        # ARP, then FDB, then the route, as flannel orders them
        command("ip", "neigh", "replace", gateway, "lladdr", mac, "dev", self.name,
                "nud", "permanent")  # fmt: skip
        command("bridge", "fdb", "replace", mac, "dev", self.name, "dst", public, "self",
                "permanent")  # fmt: skip
        command("ip", "route", "replace", str(sn), "via", gateway, "dev", self.name, "onlink")

    def removed(self, sn, attrs):
        mac = (attrs.get("BackendData") or {}).get("VtepMAC") or ""
        gateway, public = str(sn.network_address), attrs.get("PublicIP") or ""
        log("I", f"removing subnet: {sn} PublicIP: {public} VtepMAC: {mac}", "vxlan_network.go")
        for argv in (
            ("ip", "neigh", "del", gateway, "dev", self.name),
            ("bridge", "fdb", "del", mac, "dev", self.name, "dst", public, "self"),
            ("ip", "route", "del", str(sn), "via", gateway, "dev", self.name, "onlink"),
        ):
            try:  # every entry, whatever the one before did
                command(*argv)
            except DatapathError as exc:
                log("E", f"{exc}", "vxlan_network.go")

    def check(self):
        pass


class HostGw:
    """A route per remote lease, via its PublicIP on the external interface."""

    def __init__(self, ext):
        self.ext = ext.name
        self.routes = {}

    def configure(self, sn, network):
        pass

    def route(self, sn, attrs):
        return ("ip", "route", "replace", str(sn), "via", attrs.get("PublicIP", ""),
                "dev", self.ext)  # fmt: skip

    def added(self, sn, attrs):
        log("I", f"Subnet added: {sn} via {attrs.get('PublicIP')}", "route_network.go")
        self.routes[sn] = self.route(sn, attrs)
        command(*self.routes[sn])

    def removed(self, sn, attrs):
        log("I", f"Subnet removed: {sn}", "route_network.go")
        self.routes.pop(sn, None)
        command("ip", "route", "del", str(sn), "via", attrs.get("PublicIP", ""), "dev", self.ext)

    def check(self):
        """routeCheck: put back a route someone removed."""
        for sn, argv in list(self.routes.items()):
            shown = command("ip", "-4", "route", "show", "exact", str(sn), "dev", self.ext).stdout
            if f"via {argv[5]}" not in shown:
                command(*argv)
                log("I", f"Route recovered {sn} : {argv[5]}", "route_network.go")


def masq_rules(network, sn, random_fully):
    """masqRules, in flannel's order."""
    cluster, pod = str(network), str(sn)
    note = ["-m", "comment", "--comment", "flanneld masq"]
    masq = ["-j", "MASQUERADE"] + (["--random-fully"] if random_fully else [])
    return [
        ("nat", "POSTROUTING", [*note, "-j", "FLANNEL-POSTRTG"]),
        ("nat", "FLANNEL-POSTRTG",
         ["-m", "mark", "--mark", KUBE_PROXY_MARK, *note, "-j", "RETURN"]),
        ("nat", "FLANNEL-POSTRTG", ["-s", pod, "-d", cluster, *note, "-j", "RETURN"]),
        ("nat", "FLANNEL-POSTRTG", ["-s", cluster, "-d", pod, *note, "-j", "RETURN"]),
        ("nat", "FLANNEL-POSTRTG", ["!", "-s", cluster, "-d", pod, *note, "-j", "RETURN"]),
        ("nat", "FLANNEL-POSTRTG", ["-s", cluster, "!", "-d", "224.0.0.0/4", *note, *masq]),
        ("nat", "FLANNEL-POSTRTG", ["!", "-s", cluster, "-d", cluster, *note, *masq]),
    ]  # fmt: skip


def forward_rules(network):
    note = ["-m", "comment", "--comment", "flanneld forward"]
    return [
        ("filter", "FORWARD", [*note, "-j", "FLANNEL-FWD"]),
        ("filter", "FLANNEL-FWD", ["-s", str(network), *note, "-j", "ACCEPT"]),
        ("filter", "FLANNEL-FWD", ["-d", str(network), *note, "-j", "ACCEPT"]),
    ]


def flannel_chain(rule):
    """The FLANNEL-* chain a rule lives in or jumps to."""
    _, chain, spec = rule
    return chain if chain.startswith("FLANNEL-") else spec[-1]


def restore_line(action, chain, spec):
    return " ".join([action, chain, *(f'"{a}"' if " " in a else a for a in spec)])


class IPTables:
    """go-iptables over the iptables binaries, as flannel's iptables traffic manager uses it."""

    def chain_exists(self, table, chain):
        return command("iptables", "-w", "-t", table, "-S", chain, check=False).returncode == 0

    def clear_chain(self, table, chain):
        if command("iptables", "-w", "-t", table, "-N", chain, check=False).returncode != 0:
            command("iptables", "-w", "-t", table, "-F", chain)

    def exists(self, rule):
        table, chain, spec = rule
        done = command("iptables", "-w", "-t", table, "-C", chain, *spec, check=False)
        return done.returncode == 0

    def random_fully(self):
        """HasRandomFully: iptables >= 1.6.2."""
        try:
            out = command("iptables", "--version", check=False).stdout
        except DatapathError:
            return False
        return version_tuple(out) >= (1, 6, 2) if out else False

    def restore(self, lines):
        tables = {}
        for table, line in lines:
            tables.setdefault(table, []).append(line)
        payload = "".join(f"*{t}\n" + "\n".join(rows) + "\nCOMMIT\n" for t, rows in tables.items())
        command("iptables-restore", "--noflush", "-w", stdin=payload)

    def bootstrap(self, rules):
        """ipTablesBootstrap: each rule deleted if present, then appended, in one restore."""
        lines = []
        for rule in rules:
            if not self.chain_exists(rule[0], flannel_chain(rule)):
                self.clear_chain(rule[0], flannel_chain(rule))
            if self.exists(rule):
                lines.append((rule[0], restore_line("-D", rule[1], rule[2])))
            lines.append((rule[0], restore_line("-A", rule[1], rule[2])))
        self.restore(lines)

    def ensure(self, rules):
        if all(self.chain_exists(r[0], flannel_chain(r)) and self.exists(r) for r in rules):
            return
        log("I", "Some iptables rules are missing; deleting and recreating rules", "iptables.go")
        self.bootstrap(rules)

    def teardown(self, rules):
        lines = [
            (r[0], restore_line("-D", r[1], r[2]))
            for r in rules
            if self.chain_exists(r[0], flannel_chain(r)) and self.exists(r)
        ]
        if lines:
            self.restore(lines)


class Datapath:
    """What runs once the lease is known: the rules, and the backend following other leases."""

    def __init__(self, backend, etcd, own):
        self.backend, self.etcd, self.own = backend, etcd, own
        self.iptables = IPTables()
        self.rules = []
        self.known = {}  # subnet -> attrs: LeaseWatcher's list
        self.lock = threading.Lock()

    def masquerade(self, network, sn, prev_network, prev, random_fully_disable):
        """SetupAndEnsureMasqRules: the previous lease's rules go when network or lease moved."""
        random_fully = self.iptables.random_fully() and not random_fully_disable
        if not (network == prev_network and prev == sn) and prev_network and prev:
            log(
                "I",
                f"Current network or subnet ({network}, {sn}) is not equal to previous one "
                f"({prev_network}, {prev}), trying to recycle old iptables rules",
                "iptables.go",
            )
            try:
                self.iptables.teardown(masq_rules(prev_network, prev, random_fully))
            except DatapathError as exc:
                log("E", f"Failed to setup masq rules, {exc}")
                raise Exit(1) from None
        log("I", "Setting up masking rules", "iptables.go")
        self.chain("nat", "FLANNEL-POSTRTG")
        self.ensure_rules(masq_rules(network, sn, random_fully))

    def chain(self, table, chain):
        """CreateIP4Chain: a failure is logged, the rules are tried anyway."""
        try:
            self.iptables.clear_chain(table, chain)
        except DatapathError as exc:
            log("E", f"Failed to setup IPTables. Error on creating the chain: {exc}", "iptables.go")

    def forward(self, network):
        log("I", "Changing default FORWARD chain policy to ACCEPT", "iptables.go")
        self.chain("filter", "FLANNEL-FWD")
        self.ensure_rules(forward_rules(network))

    def ensure_rules(self, rules):
        self.rules += rules
        try:
            self.iptables.bootstrap(rules)
        except DatapathError as exc:
            log("E", f"Failed to bootstrap IPTables: {exc}", "iptables.go")

    def resync_rules(self):
        with self.lock:
            try:
                self.iptables.ensure(self.rules)
            except DatapathError as exc:
                log("E", f"Failed to ensure iptables rules: {exc}", "iptables.go")

    def check_routes(self):
        if self.backend is None:
            return
        with self.lock:
            try:
                self.backend.check()
            except DatapathError as exc:
                log("E", f"Error recovering routes: {exc}", "route_network.go")

    def apply(self, kind, sn, attrs):
        if sn == self.own:
            return
        wanted = "vxlan" if isinstance(self.backend, Vxlan) else "host-gw"
        if attrs.get("BackendType") != wanted:
            log("W", f"Ignoring non-{wanted} subnet: type={attrs.get('BackendType')}")
            return
        with self.lock:
            try:
                if kind == "added":
                    self.known[sn] = attrs
                    self.backend.added(sn, attrs)
                elif self.known.pop(sn, None) is not None:
                    self.backend.removed(sn, attrs)
            except DatapathError as exc:
                log("E", f"{kind} {sn}: {exc}")

    def reset(self, leases):
        """LeaseWatcher.Reset: every lease not seen before is added, every one gone removed."""
        seen = {sn: attrs for sn, _, attrs in leases if sn != self.own}
        for sn, attrs in seen.items():
            if sn not in self.known:
                self.apply("added", sn, attrs)
        for sn in [sn for sn in self.known if sn not in seen]:
            self.apply("removed", sn, self.known[sn])

    def watch(self):
        """WatchLeases, forever (a daemon thread): the list, then its changes."""
        report, cursor = Reporter(), None
        while True:
            try:
                if cursor is None:
                    leases, cursor = self.etcd.leases_at()
                    self.reset(leases)
                events, cursor = self.etcd.watch(cursor, WATCH_SECONDS)
                for kind, key, value in events:
                    sn, _ = parse_key(key)
                    if kind == "delete" and sn in self.known:
                        self.apply("removed", sn, self.known[sn])
                    elif kind == "put":
                        lease = parse_lease(key, value)
                        if lease is not None:
                            self.apply("added", lease[0], lease[2])
            except NotFound:
                cursor = None
            except Transient as exc:
                report("E", f"Watch subnets: {exc}", "registry.go")
                cursor = None
                time.sleep(RETRY_SECONDS)
            except Exception as exc:  # a bug here must show, not end the watch silently
                report("E", f"Watch subnets: {type(exc).__name__}: {exc}", "registry.go")
                cursor = None
                time.sleep(RETRY_SECONDS)


# --- the agent ---------------------------------------------------------------------------------


def notify(message):
    """sd_notify: one datagram to $NOTIFY_SOCKET ('@' names an abstract socket)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.connect(address)
            s.sendall(message.encode())
    except OSError as exc:
        log("E", f"Failed to notify systemd the message READY=1 {exc}")


def get_config(etcd):
    """getConfig: every second, forever, until a usable config is found."""
    report = Reporter()
    while True:
        try:
            config = Config(etcd.get_config())
            log("I", f"Found network config - Backend type: {config.backend_type}")
            return config
        except NotFound as exc:
            report("E", f"Couldn't fetch network config: {exc}")
        except (Transient, ValueError) as exc:
            report("E", f"Couldn't fetch network config: {exc}")
        time.sleep(RETRY_SECONDS)


def compatible(config, sn, sn6):
    if sn is None:
        return False
    ok4 = config.subnet_min <= int(sn.network_address) <= config.subnet_max and (
        sn.prefixlen == config.subnet_len
    )
    if not config.enable_ipv6:
        return ok4 and sn6 is None
    return (
        ok4
        and sn6 is not None
        and config.subnet_min6 <= int(sn6.network_address) <= config.subnet_max6
        and sn6.prefixlen == config.subnet_len6
    )


def allocate(config, leases):
    """allocateSubnet: random among the first 100 free subnets of each family."""

    def free(low, high, length, bits, kind, taken):
        found, size, start = [], 1 << (bits - length), low
        while start <= high and len(found) < 100:
            candidate = kind((start, length))
            if not any(overlaps(candidate, t) for t in taken):
                found.append(candidate)
            start += size
        return found

    v4 = free(
        config.subnet_min,
        config.subnet_max,
        config.subnet_len,
        32,
        ipaddress.IPv4Network,
        [sn for sn, _, _ in leases],
    )
    v6 = None
    if config.enable_ipv6:
        v6 = free(
            config.subnet_min6,
            config.subnet_max6,
            config.subnet_len6,
            128,
            ipaddress.IPv6Network,
            [sn6 for _, sn6, _ in leases],
        )
    if not v4 or v6 == []:
        log("E", "Error registering network: failed to acquire lease: out of subnets")
        raise Exit(1)
    return random.choice(v4), (random.choice(v6) if v6 else None)


def acquire(etcd, config, attrs, prev, prev6, report):
    """AcquireLease / tryAcquireLease: (subnet, subnet6)."""
    for _ in range(RACE_RETRIES):
        leases = retrying(report, etcd.leases)
        mine = next(
            (lease for lease in leases if lease[2].get("PublicIP") == attrs["PublicIP"]), None
        )
        if mine is not None:
            sn, sn6, _ = mine
            if compatible(config, sn, sn6):
                log(
                    "I",
                    f"Found lease (ip: {sn} ipv6: {sn6 or '::/0'}) for current IP "
                    f"({attrs['PublicIP']}), reusing",
                    "local_manager.go",
                )
                retrying(report, etcd.write, sn, sn6, attrs, False)
                return sn, sn6
            log(
                "I",
                f"Found lease ({sn}) for current IP ({attrs['PublicIP']}) but not "
                "compatible with current config, deleting",
                "local_manager.go",
            )
            retrying(report, etcd.delete, sn, sn6)
        sn = sn6 = None
        if prev is not None and prev.prefixlen and not any(le[0] == prev for le in leases):
            if compatible(config, prev, prev6):
                log("I", f"Found previously leased subnet ({prev}), reusing", "local_manager.go")
                sn, sn6 = prev, prev6
            else:
                log(
                    "E",
                    f"Found previously leased subnet ({prev}) that is not compatible "
                    "with the Etcd network config, ignoring",
                    "local_manager.go",
                )
        if sn is None:
            sn, sn6 = allocate(config, leases)
        if retrying(report, etcd.write, sn, sn6, attrs, True):
            log(
                "I",
                f"Allocated lease (ip: {sn} ipv6: {sn6 or '::/0'}) to current node "
                f"({attrs['PublicIP']})",
                "local_manager.go",
            )
            return sn, sn6
    log(
        "E",
        "Error registering network: failed to acquire lease: Max retries reached trying "
        "to acquire a subnet",
    )
    raise Exit(1)


def retrying(report, call, *args):
    while True:
        try:
            return call(*args)
        except Transient as exc:
            report("E", f"etcd: {exc}", "local_manager.go")
        time.sleep(RETRY_SECONDS)


def br_netfilter(config):
    if V < (0, 26, 0) or (config.enable_nftables and V >= (0, 28, 0)):
        return
    for enabled, name in (
        (config.enable_ipv4, "bridge-nf-call-iptables"),
        (config.enable_ipv6, "bridge-nf-call-ip6tables"),
    ):
        path = os.path.join(PROC_SYS, "net", "bridge", name)
        if enabled and not os.path.exists(path):
            log("E", f"Failed to check br_netfilter: stat {path}: no such file or directory")
            raise Exit(1)


def run(argv0, argv):
    flags = FlagSet(argv0)
    flags.parse(argv)
    if flags["version"]:
        sys.stderr.write(VERSION + "\n")
        sys.stderr.flush()
        return 0
    error = flags.from_env("FLANNELD")
    if error:
        log("E", "Failed to set flag FLANNELD from env" + error)
    margin = flags["subnet-lease-renew-margin"]
    if margin >= 24 * 60 or margin <= 0:
        log("E", "Invalid subnet-lease-renew-margin option, out of acceptable range")
        return 1
    if flags["kube-subnet-mgr"]:
        log("W", "test stand-in: --kube-subnet-mgr is not implemented; using etcd")
    subnet_file = flags["subnet-file"]
    prev = read_subnet_file(subnet_file, "FLANNEL_SUBNET", ipaddress.IPv4Network)
    prev6 = read_subnet_file(subnet_file, "FLANNEL_IPV6_SUBNET", ipaddress.IPv6Network)
    try:
        context = tls_context(flags["etcd-cafile"], flags["etcd-certfile"], flags["etcd-keyfile"])
    except ValueError as exc:
        log("E", f"Failed to create SubnetManager: {exc}")
        return 1
    etcd = Etcd(flags["etcd-endpoints"], context, flags["etcd-prefix"])
    log("I", f"Created subnet manager: Etcd Local Manager with Previous Subnet: {prev or 'None'}")
    log("I", "Installing signal handlers")

    def on_signal(signum, frame):
        log("I", "shutdownHandler sent cancel signal...")
        raise Exit(0)

    def on_cap(signum, frame):
        log("E", f"test stand-in: FLANNEL_STANDIN_MAX_SECONDS={MAX_SECONDS:g} reached, exiting")
        raise Exit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGALRM, on_cap)
    signal.setitimer(signal.ITIMER_REAL, MAX_SECONDS)

    config = get_config(etcd)
    if not config.enable_ipv4 and not config.enable_ipv6:
        log("E", "none defined stack")
        return 1
    br_netfilter(config)
    ext = pick_iface(flags, config.enable_ipv4, config.enable_ipv6)
    backend = config.backend_type.lower()
    if backend not in BACKENDS:
        log("E", f"Error fetching backend: unknown backend type: {config.backend_type}")
        return 1
    if backend == "host-gw" and ext.addr != ext.iface_addr:
        log(
            "E",
            "Error fetching backend: your PublicIP differs from interface IP, meaning that "
            "probably you're on a NAT, which is not supported by host-gw backend",
        )
        return 1
    link_mtu = iface_mtu(ext.name)
    if backend == "vxlan":
        link_mtu = int(field(config.backend, "MTU") or link_mtu)
    network = None  # the backend's own part of the datapath (vxlan, host-gw; IPv4)
    if not DATAPATH:
        log("W", "test stand-in: FLANNEL_STANDIN_DATAPATH=off: no datapath is built")
    elif config.enable_ipv4 and backend in ("vxlan", "host-gw"):
        try:
            network = Vxlan(config, ext, link_mtu) if backend == "vxlan" else HostGw(ext)
        except DatapathError as exc:
            log("E", f"Error registering network: failed to create vxlan device: {exc}")
            return 1
    attrs = {
        "PublicIP": str(ext.addr or "0.0.0.0"),
        "PublicIPv6": str(ext.addr6) if ext.addr6 else None,
        "BackendType": backend,
    }
    if backend == "vxlan":
        # without a device (datapath off): a MAC that stays the same across restarts, as a
        # kept device's does
        data = {"VNI": config.vni, "VtepMAC": network.mac if network else iface_mac(ext.name)}
        if ext.addr:
            attrs["BackendData"] = data
        if ext.addr6:
            attrs["BackendV6Data"] = data
    report = Reporter()
    sn, sn6 = acquire(etcd, config, attrs, prev, prev6, report)
    if network is not None:
        try:
            network.configure(sn, config.network)
        except DatapathError as exc:
            log("E", f"Error registering network: failed to configure interface: {exc}")
            return 1
    datapath = None
    if DATAPATH:
        # the watch has a client of its own: renewals go on meanwhile, from this thread
        watcher = Etcd(flags["etcd-endpoints"], context, flags["etcd-prefix"])
        datapath = Datapath(network, watcher, sn)
        if flags["ip-masq"] and config.enable_ipv4:
            prev_network = read_subnet_file(subnet_file, "FLANNEL_NETWORK", ipaddress.IPv4Network)
            datapath.masquerade(
                config.network,
                sn,
                prev_network,
                prev,
                flags.values.get("ip-masq-fully-random-disable", False),
            )
        if flags["iptables-forward-rules"] and config.enable_ipv4:
            datapath.forward(config.network)
    mtu = link_mtu - OVERHEAD.get(backend, 0)
    try:
        write_subnet_file(subnet_file, config, flags["ip-masq"], sn, sn6, mtu)
        log("I", f"Wrote subnet file to {subnet_file}")
    except OSError as exc:
        log("W", f"Failed to write subnet file: {exc}")
    log("I", "Running backend.")
    if network is not None:
        log("I", "watching for new subnet leases", "vxlan_network.go")
        threading.Thread(target=datapath.watch, name="watch-leases", daemon=True).start()
    notify("READY=1")
    now = time.monotonic()
    renew_at = now + SUBNET_TTL - margin * 60
    resync = max(1, flags["iptables-resync"])
    rules_at, routes_at = now + resync, now + ROUTE_CHECK_SECONDS
    while True:
        due = min(renew_at, rules_at, routes_at) if datapath else renew_at
        time.sleep(max(0.0, min(60.0, due - time.monotonic())))
        now = time.monotonic()
        if datapath and now >= rules_at:
            datapath.resync_rules()
            rules_at = now + resync
        if datapath and now >= routes_at:
            datapath.check_routes()
            routes_at = now + ROUTE_CHECK_SECONDS
        if now >= renew_at:
            retrying(report, etcd.write, sn, sn6, attrs, False)
            log("I", "Lease renewed", "local_manager.go")
            renew_at = time.monotonic() + SUBNET_TTL - margin * 60


def main():
    # run by the ELF launcher as `python3 -I -c SCRIPT argv0 ARGS...`, or as a plain script
    if sys.argv[0] == "-c" and len(sys.argv) > 1:
        argv0, argv = sys.argv[1], sys.argv[2:]
    else:
        argv0, argv = sys.argv[0], sys.argv[1:]
    try:
        return run(argv0, argv)
    except Exit as exc:
        return exc.code
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
