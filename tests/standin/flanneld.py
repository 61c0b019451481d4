#!/usr/bin/env python3
"""flanneld stand-in for tests: the part of flanneld's contract that flannelnode's artifacts use.

flannel's release binaries cannot be downloaded on the build machines, so the tests build this
script into an ELF `flanneld` (see launcher.c and tests/standin_release.py) and ship it through
the same gates as a real release: served by the local release server, pinned in a test lock,
checked for its ELF machine, staged by the payload step. It is never part of the product.

What it does, as flanneld (>= v0.18, etcd v3) does:
  - takes the flags flanneld.service passes: --ip-masq, --etcd-endpoints, --etcd-cafile,
    --etcd-certfile, --etcd-keyfile, --etcd-prefix, --iface (repeatable), --public-ip; any other
    flag is ignored with a warning;
  - reads <prefix>/config from etcd v3 through the gRPC-JSON gateway over TLS, trusting only
    --etcd-cafile, and waits (retrying) while the key is absent or etcd does not answer;
  - checks the config and derives the subnets as flannel's CheckNetworkConfig does (Network,
    SubnetLen defaults, SubnetMin/SubnetMax defaults, alignment);
  - reuses the lease under <prefix>/subnets/ whose PublicIP is this node's, else claims a free
    subnet put-if-absent in one txn (create_revision == 0) under
    <prefix>/subnets/<a.b.c.d>-<len>, value {"PublicIP", "PublicIPv6", "BackendType",
    "BackendData"}, retrying with another subnet when a concurrent node won the race;
  - writes /run/flannel/subnet.env atomically (FLANNEL_NETWORK, FLANNEL_SUBNET as the .1 address,
    FLANNEL_MTU = interface MTU minus the backend's overhead, FLANNEL_IPMASQ);
  - sends READY=1 to $NOTIFY_SOCKET, then runs until SIGTERM/SIGINT (exit 0).

Limits, on purpose:
  - no overlay at all: no flannel.1/vxlan device, no routes, no ARP/FDB entries, no iptables
    (--ip-masq only sets FLANNEL_IPMASQ); pods on different nodes cannot talk through it;
  - the lease has no TTL and is never renewed or watched; other nodes' leases are not watched;
  - IPv4 only; etcd v3 only (no v2 API, so it stands in for flannel >= v0.18 only); no
    Kubernetes subnet manager, no --subnet-file/--subnet-lease-renew-margin and the like;
  - a TLS failure (wrong CA, rejected client certificate) exits 1 at once with one clear line,
    where real flanneld logs the error and keeps retrying: the unit's failure is what the
    tests look at.

Exit codes: 0 stopped by a signal; 1 TLS or etcd failure that retrying cannot fix; 2 bad flags
or a bad network config.
Standard library only, Python 3.6+ (it runs inside node containers).
"""

import argparse
import base64
import fcntl
import http.client
import ipaddress
import json
import os
import random
import signal
import socket
import ssl
import struct
import sys
import time
from urllib.parse import urlsplit

PROG = "flanneld"
SUBNET_ENV = os.environ.get("FLANNEL_STANDIN_SUBNET_FILE", "/run/flannel/subnet.env")
# bytes each backend's encapsulation costs (flannel: vxlan 50, udp 28, ipip 20, host-gw 0)
OVERHEAD = {"vxlan": 50, "udp": 28, "ipip": 20, "host-gw": 0, "wireguard": 80, "alloc": 0}
RETRY_SECONDS = float(os.environ.get("FLANNEL_STANDIN_RETRY", "1"))
REQUEST_TIMEOUT = 5.0
CLAIM_ATTEMPTS = 20
SIOCGIFADDR, SIOCGIFMTU, SIOCGIFHWADDR = 0x8915, 0x8921, 0x8927


class Fatal(Exception):
    """Retrying cannot fix this: log one line, exit with `code`."""

    def __init__(self, message, code=1):
        Exception.__init__(self, message)
        self.code = code


class Transient(Exception):
    """This endpoint or this moment failed; another endpoint or a later try may not."""


def log(message):
    sys.stderr.write(f"{PROG}: {message}\n")
    sys.stderr.flush()


# --- flags ---------------------------------------------------------------------------------------


def parse_flags(argv):
    p = argparse.ArgumentParser(prog=PROG, add_help=False, allow_abbrev=False)
    p.add_argument("--ip-masq", nargs="?", const="true", default="false")
    p.add_argument("--etcd-endpoints", default="http://127.0.0.1:2379,http://127.0.0.1:4001")
    p.add_argument("--etcd-cafile", default="")
    p.add_argument("--etcd-certfile", default="")
    p.add_argument("--etcd-keyfile", default="")
    p.add_argument("--etcd-prefix", default="/coreos.com/network")
    p.add_argument("--iface", action="append", default=[])
    p.add_argument("--public-ip", default="")
    args, unknown = p.parse_known_args(argv)
    for flag in unknown:
        log(f"warning: ignoring unsupported flag {flag} (this is the test stand-in)")
    args.ip_masq = args.ip_masq.lower() in ("true", "1", "t", "yes")
    args.etcd_prefix = args.etcd_prefix.rstrip("/") or "/"
    return args


# --- network config: flannel's CheckNetworkConfig, IPv4 -------------------------------------------


class Network:
    def __init__(self, raw):
        try:
            conf = json.loads(raw)
        except ValueError as exc:
            raise Fatal(f"the network config in etcd is not JSON: {exc}", 2) from None
        if not isinstance(conf, dict) or not conf.get("Network"):
            raise Fatal("the network config in etcd has no Network", 2)
        try:
            self.network = ipaddress.IPv4Network(conf["Network"], strict=False)
        except ValueError as exc:
            raise Fatal(f"Network {conf['Network']!r}: {exc}", 2) from None
        prefix = self.network.prefixlen
        self.subnet_len = int(conf.get("SubnetLen") or 0)
        if not self.subnet_len:
            self.subnet_len = 24 if prefix <= 22 else prefix + 2
        if self.subnet_len > 30 or self.subnet_len < prefix + 2:
            raise Fatal(
                f"SubnetLen {self.subnet_len} must be <= 30 and >= Network's length + 2 "
                f"({prefix + 2})",
                2,
            )
        size = 1 << (32 - self.subnet_len)
        base = int(self.network.network_address)
        self.subnet_min = self._bound(conf, "SubnetMin", base + size)
        self.subnet_max = self._bound(conf, "SubnetMax", base + self.network.num_addresses - size)
        if self.subnet_min > self.subnet_max:
            raise Fatal("SubnetMin is above SubnetMax", 2)
        backend = conf.get("Backend") or {}
        self.backend = str(backend.get("Type") or "udp").lower()
        self.vni = int(backend.get("VNI") or 1)

    def _bound(self, conf, key, default):
        if not conf.get(key):
            return default
        try:
            value = int(ipaddress.IPv4Address(conf[key]))
        except ValueError:
            raise Fatal(f"{key} {conf[key]!r} is not an IPv4 address", 2) from None
        if ipaddress.IPv4Address(value) not in self.network:
            raise Fatal(f"{key} {conf[key]} is not inside Network {self.network}", 2)
        if value % (1 << (32 - self.subnet_len)):
            raise Fatal(f"{key} {conf[key]} is not aligned to SubnetLen {self.subnet_len}", 2)
        return value

    def candidates(self):
        size = 1 << (32 - self.subnet_len)
        for start in range(self.subnet_min, self.subnet_max + 1, size):
            yield ipaddress.IPv4Network((start, self.subnet_len))


def lease_key(prefix, subnet):
    """flannel's key: <prefix>/subnets/10.5.52.0-24."""
    return f"{prefix}/subnets/{subnet.network_address}-{subnet.prefixlen}"


def subnet_of_key(key):
    name = key.rsplit("/", 1)[-1]
    address, _, length = name.partition("-")
    return ipaddress.IPv4Network(f"{address}/{length}")


# --- this node's interface ---------------------------------------------------------------------


def _ioctl(name, request):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        return fcntl.ioctl(s.fileno(), request, struct.pack("256s", name.encode()[:15]))


def iface_ipv4(name):
    try:
        return socket.inet_ntoa(_ioctl(name, SIOCGIFADDR)[20:24])
    except OSError:
        return None


def iface_mtu(name):
    return struct.unpack("i", _ioctl(name, SIOCGIFMTU)[16:20])[0]


def iface_mac(name):
    raw = _ioctl(name, SIOCGIFHWADDR)[18:24]
    return ":".join(f"{b:02x}" for b in bytearray(raw))


def default_route_iface():
    with open("/proc/net/route") as f:
        for line in f.readlines()[1:]:
            fields = line.split()
            if len(fields) > 7 and fields[1] == "00000000" and fields[7] == "00000000":
                return fields[0]
    return None


def pick_iface(wanted):
    """(name, ipv4) like flannel: the first --iface (name or address) that exists, else the
    interface of the default route."""
    names = sorted(os.listdir("/sys/class/net"))
    for want in wanted:
        for name in names:
            if name == want or iface_ipv4(name) == want:
                address = iface_ipv4(name)
                if address:
                    return name, address
    if wanted:
        raise Fatal("none of --iface {} has an IPv4 address".format(",".join(wanted)))
    name = default_route_iface()
    if name is None or iface_ipv4(name) is None:
        raise Fatal("no default route with an IPv4 address; pass --iface")
    return name, iface_ipv4(name)


# --- etcd v3 over the gRPC-JSON gateway --------------------------------------------------------


def _b64(text):
    return base64.b64encode(text.encode()).decode("ascii")


def _unb64(text):
    return base64.b64decode(text).decode()


def _prefix_end(prefix):
    raw = bytearray(prefix.encode())
    raw[-1] += 1
    return base64.b64encode(bytes(raw)).decode("ascii")


def tls_context(cafile, certfile, keyfile):
    """Trust only --etcd-cafile (SSL_CERT_FILE in the environment must not widen it)."""
    try:
        context = ssl.create_default_context(cafile=cafile or None)
        if certfile:
            context.load_cert_chain(certfile, keyfile or None)
    except (OSError, ValueError, ssl.SSLError) as exc:
        raise Fatal(
            f"cannot load the etcd TLS files (ca {cafile}, cert {certfile}, key {keyfile}): {exc}"
        ) from None
    return context


class Etcd:
    def __init__(self, endpoints, context, cafile):
        self.endpoints = [e.strip().rstrip("/") for e in endpoints.split(",") if e.strip()]
        if not self.endpoints:
            raise Fatal("--etcd-endpoints is empty", 2)
        self.context = context
        self.cafile = cafile
        self.current = random.randrange(len(self.endpoints))

    def post(self, path, body):
        """JSON from the first endpoint that answers; Transient when none does."""
        errors = []
        for _ in self.endpoints:
            url = self.endpoints[self.current]
            try:
                return self._once(url, path, body)
            except Transient as exc:
                errors.append(f"{url}: {exc}")
                self.current = (self.current + 1) % len(self.endpoints)
        raise Transient("; ".join(errors))

    def _once(self, url, path, body):
        parts = urlsplit(url)
        port = parts.port or 2379
        if parts.scheme == "https":
            conn = http.client.HTTPSConnection(
                parts.hostname, port, timeout=REQUEST_TIMEOUT, context=self.context
            )
        else:
            conn = http.client.HTTPConnection(parts.hostname, port, timeout=REQUEST_TIMEOUT)
        try:
            conn.request(
                "POST", path, body=json.dumps(body), headers={"Content-Type": "application/json"}
            )
            response = conn.getresponse()
            status, data = response.status, response.read()
        except ssl.SSLError as exc:
            raise Fatal(self._tls_message(url, exc)) from None
        except ssl.CertificateError as exc:
            raise Fatal(
                f"TLS error with etcd {url}: the server certificate does not match: {exc}"
            ) from None
        except (OSError, http.client.HTTPException) as exc:
            raise Transient(str(exc) or type(exc).__name__) from None
        finally:
            conn.close()
        if status >= 500:
            raise Transient(f"HTTP {status}: {data[:200].decode('utf-8', 'replace')}")
        if status != 200:
            text = data[:300].decode("utf-8", "replace")
            raise Fatal(f"etcd {url} answered HTTP {status} to {path}: {text}")
        return json.loads(data.decode("utf-8"))

    def _tls_message(self, url, exc):
        text = str(exc)
        if "CERTIFICATE_VERIFY_FAILED" in text or "certificate verify failed" in text:
            ca = self.cafile or "(system default)"
            why = getattr(exc, "verify_message", None) or text
            return (
                f"TLS error with etcd {url}: the CA {ca} does not sign the server's certificate "
                f"({why})"
            )
        return f"TLS error with etcd {url}: the handshake failed: {text}"

    def get(self, key):
        """(value, mod_revision) or (None, 0)."""
        reply = self.post("/v3/kv/range", {"key": _b64(key)})
        kvs = reply.get("kvs") or []
        if not kvs:
            return None, 0
        return _unb64(kvs[0].get("value", "")), int(kvs[0].get("mod_revision", 0))

    def list_prefix(self, prefix):
        reply = self.post("/v3/kv/range", {"key": _b64(prefix), "range_end": _prefix_end(prefix)})
        return [(_unb64(kv["key"]), _unb64(kv.get("value", ""))) for kv in reply.get("kvs") or []]

    def create(self, key, value):
        """Put-if-absent in one txn; True when this call created the key."""
        reply = self.post(
            "/v3/kv/txn",
            {
                "compare": [
                    {
                        "key": _b64(key),
                        "result": "EQUAL",
                        "target": "CREATE",
                        "create_revision": "0",
                    }
                ],
                "success": [{"request_put": {"key": _b64(key), "value": _b64(value)}}],
                "failure": [],
            },
        )
        return bool(reply.get("succeeded"))


# --- the agent ---------------------------------------------------------------------------------


def wait_for(what, call, stop):
    """call() until it returns non-None; retries Transient errors every RETRY_SECONDS."""
    last = None
    while not stop["now"]:
        try:
            value = call()
            if value is not None:
                return value
            reason = "not found"
        except Transient as exc:
            reason = str(exc)
        if reason != last:
            log(f"waiting for {what}: {reason} (retrying every {RETRY_SECONDS:g}s)")
            last = reason
        time.sleep(RETRY_SECONDS)
    raise SystemExit(0)


def claim(etcd, prefix, network, public_ip, backend_data, stop):
    """(subnet, reused): this node's existing lease, else a new one, put-if-absent."""
    value = json.dumps(
        {
            "PublicIP": public_ip,
            "PublicIPv6": None,
            "BackendType": network.backend,
            "BackendData": backend_data,
        },
        separators=(",", ":"),
    )
    for _ in range(CLAIM_ATTEMPTS):
        leases = wait_for("the lease list", lambda: etcd.list_prefix(prefix + "/subnets/"), stop)
        taken = set()
        for key, raw in leases:
            try:
                subnet = subnet_of_key(key)
            except ValueError:
                continue
            taken.add(subnet)
            try:
                owner = json.loads(raw).get("PublicIP")
            except (ValueError, AttributeError):
                owner = None
            if (
                owner == public_ip
                and subnet.network_address in network.network
                and subnet.prefixlen == network.subnet_len
            ):
                return subnet, True
        free = [s for s in network.candidates() if s not in taken]
        if not free:
            raise Fatal(f"no free subnet left in {network.network} ({len(taken)} leases)")
        subnet = random.choice(free[:100])  # flannel picks at random among the first free ones
        key = lease_key(prefix, subnet)
        if wait_for("the lease txn", lambda key=key: etcd.create(key, value), stop) is True:
            return subnet, False
        log(f"{key} was taken by another node meanwhile; trying another subnet")
    raise Fatal(f"could not claim a subnet after {CLAIM_ATTEMPTS} attempts")


def write_subnet_env(path, network, subnet, mtu, ipmasq):
    lines = [
        f"FLANNEL_NETWORK={network.network}",
        f"FLANNEL_SUBNET={subnet.network_address + 1}/{subnet.prefixlen}",
        f"FLANNEL_MTU={mtu}",
        f"FLANNEL_IPMASQ={'true' if ipmasq else 'false'}",
    ]
    directory = os.path.dirname(path) or "."
    if not os.path.isdir(directory):
        os.makedirs(directory, 0o755)
    tmp = f"{directory}/.{os.path.basename(path)}.{os.getpid()}"
    with open(tmp, "w") as f:
        f.write("\n".join(lines) + "\n")
        f.flush()
        os.fsync(f.fileno())
    os.chmod(tmp, 0o644)
    os.rename(tmp, path)


def notify(message):
    """sd_notify: one datagram to $NOTIFY_SOCKET ('@' names an abstract socket)."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
        s.connect(address)
        s.sendall(message.encode())
    return True


def run(argv):
    args = parse_flags(argv)
    stop = {"now": False}

    def on_signal(signum, frame):
        stop["now"] = True
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    name, address = pick_iface(args.iface)
    public_ip = args.public_ip or address
    log(f"using interface {name} with address {address} (public ip {public_ip})")
    etcd = Etcd(
        args.etcd_endpoints,
        tls_context(args.etcd_cafile, args.etcd_certfile, args.etcd_keyfile),
        args.etcd_cafile,
    )
    config_key = args.etcd_prefix + "/config"
    raw = wait_for(f"the network config at {config_key}", lambda: etcd.get(config_key)[0], stop)
    network = Network(raw)
    backend_data = (
        {"VNI": network.vni, "VtepMAC": iface_mac(name)} if network.backend == "vxlan" else None
    )
    subnet, reused = claim(etcd, args.etcd_prefix, network, public_ip, backend_data, stop)
    log(
        "{} lease {} ({})".format(
            "reusing" if reused else "acquired", subnet, lease_key(args.etcd_prefix, subnet)
        )
    )
    mtu = iface_mtu(name) - OVERHEAD.get(network.backend, 0)
    write_subnet_env(SUBNET_ENV, network, subnet, mtu, args.ip_masq)
    log(f"wrote {SUBNET_ENV}: subnet {subnet}, mtu {mtu}, backend {network.backend}")
    notify(f"READY=1\nSTATUS=lease {subnet}")
    while not stop["now"]:
        signal.pause()
    return 0


def main(argv=None):
    try:
        return run(sys.argv[1:] if argv is None else argv)
    except Fatal as exc:
        log(f"error: {exc}")
        return exc.code
    except KeyboardInterrupt:
        return 0


if __name__ == "__main__":
    sys.exit(main())
