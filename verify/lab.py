"""The lab a verify run checks: a docker network, etcd with TLS, node containers booting the
image under test through cloud-init's NoCloud datasource with user-data from
flannelnode.userdata.render.

Lab is a context manager: whatever it created is removed on exit, also on an exception or
Ctrl-C. describe() writes what the checks need (names, addresses, expectations) as JSON for the
pytest session in verify/conftest.py.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import ipaddress
import json
import random
import secrets
import shutil
import tarfile
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from flannelnode import userdata
from flannelnode.config import Config

from . import etcd as etcd_mod
from . import pki as pki_mod
from .containers import LABEL, Profile, VerifyError, client, put_files, remove_all, run, wait_for

SEED_DIR = "/var/lib/cloud/seed/nocloud"
BUSYBOX = "/bin/busybox"
BOOT_TIMEOUT = 120  # container start -> systemd up
CLOUD_INIT_TIMEOUT = 300  # the seeder's own deadline is inside this
DOCKER_TIMEOUT = 120


@dataclass
class Node:
    name: str
    container: Container
    instance_id: str
    user_data: str
    expect_docker: bool = True
    started_at: float = 0.0  # time.monotonic() just before `docker start`
    boots: list[float] = field(default_factory=list)  # seconds: start -> docker active
    error: str | None = None  # why the last boot did not come up, for the checks to report


def _pick_subnet(c: docker.DockerClient, avoid: list[ipaddress.IPv4Network]) -> list[str]:
    """Candidate /24s for the harness network, in random order, clear of the flannel network
    (node routes would clash) and of docker's own networks."""
    used = list(avoid)
    for net in c.networks.list():
        for pool in (net.attrs.get("IPAM") or {}).get("Config") or []:
            with contextlib.suppress(ValueError):
                used.append(ipaddress.ip_network(pool.get("Subnet", ""), strict=False))
    options = [ipaddress.ip_network(f"10.{a}.{b}.0/24") for a in (213, 214) for b in range(256)]
    random.shuffle(options)
    return [str(n) for n in options if not any(n.overlaps(u) for u in used)][:20]


class Lab:
    def __init__(
        self,
        image: str,
        config: Config,
        *,
        profile: Profile | None = None,
        tools_base: str = etcd_mod.DEFAULT_TOOLS_BASE,
        workdir: Path | None = None,
        log: Any = print,
    ) -> None:
        self.image = image
        self.config = config
        self.profile = profile or Profile()
        self.tools_base = tools_base
        self.log = log
        self.run_id = f"fnv-{secrets.token_hex(3)}"
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix=f"{self.run_id}-"))
        self.docker = client()
        self.nodes: dict[str, Node] = {}
        self.etcd: etcd_mod.Etcd | None = None
        self.network = f"{self.run_id}-net"
        self.tools = ""
        self.busybox = b""
        self.manifest: Path | None = None  # the payload manifest of the image under test

    # -- lifecycle

    def __enter__(self) -> Lab:
        try:
            self._check_image()
            self.tools = etcd_mod.tools_image(self.docker, self.tools_base, self.log)
            self._start_etcd()
            self.busybox = self._busybox()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        removed = remove_all(self.docker, self.run_id)
        if removed:
            self.log(f"removed {len(removed)} harness objects ({self.run_id})")
        if self._own_workdir:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def _check_image(self) -> None:
        try:
            self.docker.images.get(self.image)
        except docker.errors.ImageNotFound:
            raise VerifyError(
                f"image {self.image} does not exist (build it: make images)"
            ) from None

    def _start_etcd(self) -> None:
        flannel_net = ipaddress.ip_network(self.config.network["Network"], strict=False)
        for subnet in _pick_subnet(self.docker, [flannel_net]):
            try:
                self.docker.networks.create(
                    self.network,
                    driver="bridge",
                    labels={LABEL: self.run_id},
                    ipam=docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet)]),
                )
                break
            except docker.errors.APIError as exc:
                if "overlap" not in str(exc):
                    raise
        else:
            raise VerifyError("found no free /24 in 10.213.0.0/15 for the harness network")
        net = ipaddress.ip_network(subnet)
        ip = str(net.network_address + 2)
        self.pki = pki_mod.make(self.workdir / "pki", [ip, "etcd"])
        self.log(f"{self.run_id}: network {self.network} {subnet}, etcd at https://{ip}:2379")
        self.etcd = etcd_mod.start(
            self.docker, self.tools, f"{self.run_id}-etcd", self.network, ip, self.pki, self.run_id
        )

    def _busybox(self) -> bytes:
        bits, _ = self.etcd.container.get_archive(BUSYBOX)
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
            member = tar.extractfile("busybox")
            assert member is not None
            return member.read()

    # -- nodes

    def node_config(self) -> Config:
        """The config as a node in this lab sees it: etcd is the lab's."""
        assert self.etcd is not None
        etcd = dataclasses.replace(self.config.etcd, endpoints=[self.etcd.endpoint])
        return dataclasses.replace(self.config, etcd=etcd)

    def add_node(self, name: str, wrong_ca: bool = False) -> Node:
        """Create (not start) a node container with its NoCloud seed in place."""
        tls = userdata.TlsFiles(
            self.pki.wrong_ca if wrong_ca else self.pki.ca,
            self.pki.client_cert,
            self.pki.client_key,
        )
        text = userdata.render(self.node_config(), tls, seed_deadline=60)
        instance_id = f"{self.run_id}-{name}-{secrets.token_hex(2)}"
        volume = self.docker.volumes.create(
            f"{self.run_id}-{name}-docker", labels={LABEL: self.run_id}
        )
        container = self.docker.containers.create(
            self.image,
            name=f"{self.run_id}-{name}",
            hostname=name,
            labels={LABEL: self.run_id},
            detach=True,
            network=self.network,
            volumes={
                "/sys/fs/cgroup": {"bind": "/sys/fs/cgroup", "mode": "rw"},
                volume.name: {"bind": "/var/lib/docker", "mode": "rw"},
            },
            **self.profile.kwargs(),
        )
        meta = f"instance-id: {instance_id}\nlocal-hostname: {name}\n"
        put_files(
            container,
            {
                f"{SEED_DIR}/user-data": (text.encode(), 0o600),
                f"{SEED_DIR}/meta-data": (meta.encode(), 0o644),
                "/usr/local/share/flannelnode-verify/busybox": (self.busybox, 0o755),
            },
        )
        node = Node(name, container, instance_id, text, expect_docker=not wrong_ca)
        self.nodes[name] = node
        return node

    def start(self, nodes: list[Node]) -> None:
        """Start nodes at the same moment (one thread each) and wait until each is booted and,
        for good nodes, docker runs; records start -> docker active per node."""

        def one(node: Node) -> None:
            node.started_at = time.monotonic()
            node.container.start()

        threads = [threading.Thread(target=one, args=(n,), daemon=True) for n in nodes]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=60)
        waits = [threading.Thread(target=self.wait_booted, args=(n,), daemon=True) for n in nodes]
        for t in waits:
            t.start()
        for t in waits:
            t.join(timeout=BOOT_TIMEOUT + DOCKER_TIMEOUT + 30)

    def restart(self, node: Node) -> None:
        node.container.stop(timeout=30)
        node.started_at = time.monotonic()
        node.container.start()
        self.wait_booted(node)

    def wait_booted(self, node: Node) -> None:
        """Record the boot's duration in node.boots, or why it did not come up in node.error."""
        node.error = None
        try:
            self._wait_booted(node)
        except VerifyError as exc:
            node.error = str(exc)
            self.log(f"{node.name}: {exc}")

    def _wait_booted(self, node: Node) -> None:
        def systemd_up() -> bool:
            _rc, out = run(node.container, "systemctl is-system-running", timeout=10)
            state = out.strip()
            return state in ("running", "degraded")

        wait_for(f"systemd in {node.name}", systemd_up, BOOT_TIMEOUT)
        if not node.expect_docker:
            return
        wait_for(
            f"docker.service active in {node.name}",
            lambda: run(node.container, "systemctl is-active docker", 10)[1].strip() == "active",
            DOCKER_TIMEOUT,
        )
        # systemd's monotonic clock is the host's (containers share CLOCK_MONOTONIC), so this is
        # exact, with no polling delay in it
        _, args = run(
            node.container,
            "tr '\\0' ' ' </proc/$(systemctl show -p MainPID --value docker)/cmdline",
        )
        if "--bip=" not in args:
            raise VerifyError(f"docker runs without flannel's options: {args.strip()}")
        _, out = run(node.container, "systemctl show -p ActiveEnterTimestampMonotonic docker")
        entered = int(out.strip().split("=", 1)[1]) / 1e6
        node.boots.append(round(entered - node.started_at, 2))

    # -- for the checks

    @property
    def description(self) -> dict[str, Any]:
        """What the checks and a person debugging need to know about this lab, JSON-ready."""
        assert self.etcd is not None
        node_files = {f.path: f.content.decode() for f in _userdata_files(self.node_config())}
        return {
            "run_id": self.run_id,
            "image": self.image,
            "manifest": str(self.manifest),
            "pki": {k: str(v) for k, v in dataclasses.asdict(self.pki).items()},
            "etcd": {"container": self.etcd.container.name, "ip": self.etcd.ip},
            "config": self.node_config().to_dict(),
            "userdata_files": node_files,
            "nodes": {
                n.name: {
                    "container": n.container.name,
                    "instance_id": n.instance_id,
                    "expect_docker": n.expect_docker,
                    "boots": n.boots,
                }
                for n in self.nodes.values()
            },
        }

    def describe(self, path: Path) -> Path:
        path.write_text(json.dumps(self.description, indent=2) + "\n")
        return path


def _userdata_files(config: Config) -> list[Any]:
    """Node files user-data writes over the payload's copies (they name the lab's etcd)."""
    from flannelnode.payload import node_files

    wanted = {f"{config.install.prefix}/cfg/flanneld", f"{config.install.prefix}/cfg/net-conf.json"}
    return [f for f in node_files(config) if f.path in wanted]
