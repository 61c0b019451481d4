"""Two network namespaces joined by a veth pair, each reaching the test etcd on its 127.0.0.1.

For the stand-in's datapath on the build host without touching the host's own network: each
namespace is a "node" (10.99.0.1/24 and 10.99.0.2/24 on eth0, its default route via the other,
as flanneld picks the default route's interface). etcd listens on the host's loopback, which a
namespace does not share, so socat relays each etcd port through a unix socket (a file, seen
from every namespace) to the same port on the namespace's own 127.0.0.1: the certificates stay
valid. Everything is removed on close(); every command is bounded.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

ADDRESSES = ("10.99.0.1", "10.99.0.2")
TIMEOUT = 30


def sh(*argv: str, check: bool = True) -> str:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=TIMEOUT, check=False)
    if check and done.returncode != 0:
        raise AssertionError(f"{' '.join(argv)}: {done.stderr or done.stdout}")
    return done.stdout


class Namespaces:
    def __init__(self, etcd_ports: list[int]) -> None:
        for tool in ("ip", "socat", "iptables"):
            if shutil.which(tool) is None:
                raise AssertionError(f"{tool} is not installed (make deps)")
        tag = uuid.uuid4().hex[:6]
        self.names = [f"fnst-{tag}-a", f"fnst-{tag}-b"]
        self.dir = Path(tempfile.mkdtemp(prefix="fnst-"))  # short: unix socket paths
        self.relays: list[subprocess.Popen[bytes]] = []
        try:
            self._create(tag, etcd_ports)
        except BaseException:
            self.close()
            raise

    def _create(self, tag: str, ports: list[int]) -> None:
        for name in self.names:
            sh("ip", "netns", "add", name)
            sh("ip", "-n", name, "link", "set", "lo", "up")
        a, b = self.names
        sh("ip", "link", "add", f"fn{tag}a", "netns", a, "type", "veth",
           "peer", "name", f"fn{tag}b", "netns", b)  # fmt: skip
        for name, link, address, peer in (
            (a, f"fn{tag}a", ADDRESSES[0], ADDRESSES[1]),
            (b, f"fn{tag}b", ADDRESSES[1], ADDRESSES[0]),
        ):
            sh("ip", "-n", name, "link", "set", link, "name", "eth0")
            sh("ip", "-n", name, "addr", "add", f"{address}/24", "dev", "eth0")
            sh("ip", "-n", name, "link", "set", "eth0", "up")
            sh("ip", "-n", name, "route", "add", "default", "via", peer)
        for port in ports:
            sock = self.dir / f"etcd-{port}.sock"
            self._relay("socat", f"UNIX-LISTEN:{sock},fork", f"TCP:127.0.0.1:{port}")
            for name in self.names:
                self._relay("ip", "netns", "exec", name, "socat",
                            f"TCP-LISTEN:{port},bind=127.0.0.1,fork,reuseaddr",
                            f"UNIX-CONNECT:{sock}")  # fmt: skip
        for port in ports:
            for name in self.names:
                self._wait_listening(name, port)

    def _wait_listening(self, name: str, port: int) -> None:
        stop_at = time.monotonic() + TIMEOUT
        listen = ("ip", "netns", "exec", name, "ss", "-Hltn", f"sport = :{port}")
        while "LISTEN" not in sh(*listen, check=False):
            if time.monotonic() > stop_at:
                raise AssertionError(f"the etcd relay in {name} does not listen on {port}")
            time.sleep(0.05)

    def _relay(self, *argv: str) -> None:
        quiet = subprocess.DEVNULL
        self.relays.append(subprocess.Popen(argv, stdout=quiet, stderr=quiet))

    def exec(self, index: int, *argv: str, check: bool = True) -> str:
        """A command inside namespace `index` (0: a, 1: b)."""
        return sh("ip", "netns", "exec", self.names[index], *argv, check=check)

    def prefix(self, index: int) -> list[str]:
        return ["ip", "netns", "exec", self.names[index]]

    def close(self) -> None:
        for relay in self.relays:
            relay.kill()
            relay.wait(timeout=10)
        for name in self.names:
            for pid in sh("ip", "netns", "pids", name, check=False).split():
                sh("kill", "-9", pid, check=False)
            sh("ip", "netns", "del", name, check=False)
        shutil.rmtree(self.dir, ignore_errors=True)
