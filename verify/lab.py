"""The lab a verify run checks: a docker network, etcd with TLS, node containers booting the
image under test through cloud-init's NoCloud datasource with user-data from
flannelnode.userdata.render.

A second etcd ("etcd-late", same CA, its own address) is created with the lab but started only
when a check calls start_late_etcd(): nodes added with late=True point at it, so they boot into
a cluster whose etcd is not there yet, as after a whole-cluster power-on.

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
from flannelnode.units import SEED_MARKER

from . import etcd as etcd_mod
from . import pki as pki_mod
from .containers import LABEL, Profile, VerifyError, client, put_files, remove_all, run, wait_for
from .pods import PROBE, PROBE_SOURCE

SEED_DIR = "/var/lib/cloud/seed/nocloud"
BUSYBOX = "/bin/busybox"
BOOT_TIMEOUT = 120  # container start -> systemd up
CLOUD_INIT_TIMEOUT = 300  # the seeder's own deadline is inside this
DOCKER_TIMEOUT = 120
WAITING_TIMEOUT = 120  # container start -> the node visibly waiting for etcd (not-docker nodes)
SEED_DEADLINE = 60  # the seeder's deadline in user-data, where etcd is up from the start
LATE_ETCD_DELAY = 180.0  # default: late nodes booted -> etcd-late started
LATE_ETCD_MAX_DELAY = 600.0  # the seeder waits delay + LATE_SEED_MARGIN < its unit's 15 min
LATE_SEED_MARGIN = 300  # > the late check's wait after etcd-late started
LATE_IP_OFFSET = 250  # etcd-late's address in the /24; dynamic node addresses stay below .128
ROLES = ("good", "wrong-ca", "late")


@dataclass
class Node:
    name: str
    container: Container
    instance_id: str
    user_data: str
    # good: docker up on flannel at boot; wrong-ca: its user-data carries a CA that does not sign
    # etcd's certificate; late: its etcd (etcd-late) starts only once a check starts it
    role: str = "good"
    seeded_before: bool = False  # its seed marker is in place: the seed unit is skipped
    started_at: float = 0.0  # time.monotonic() just before `docker start`
    booted_at: float = 0.0  # time.monotonic() when the boot wait ended
    boots: list[float] = field(default_factory=list)  # seconds: start -> docker active
    after_etcd: float | None = None  # late nodes: seconds from etcd-late up to docker active
    error: str | None = None  # why the last boot did not come up, for the checks to report

    @property
    def expect_docker(self) -> bool:
        """docker comes up on flannel at boot (the nodes the general checks run on)."""
        return self.role == "good"


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
        late_etcd_delay: float = LATE_ETCD_DELAY,
        log: Any = print,
    ) -> None:
        if not 0 <= late_etcd_delay <= LATE_ETCD_MAX_DELAY:
            raise VerifyError(
                f"late etcd delay {late_etcd_delay:g} s: use 0 to {LATE_ETCD_MAX_DELAY:g} s (the "
                "late nodes' seeder must still be waiting when etcd-late starts)"
            )
        self.image = image
        self.late_etcd_delay = float(late_etcd_delay)
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
        self.late_etcd: etcd_mod.Etcd | None = None  # created with the lab, started by a check
        self.late_etcd_started_at: float | None = None  # time.monotonic() once it is healthy
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
                    ipam=docker.types.IPAMConfig(
                        pool_configs=[docker.types.IPAMPool(subnet, iprange=_lower_half(subnet))]
                    ),
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
        self.etcd = etcd_mod.create(
            self.docker, self.tools, f"{self.run_id}-etcd", self.network, ip, self.pki, self.run_id
        )
        self.etcd.start()
        late_ip = str(net.network_address + LATE_IP_OFFSET)
        cert, key = pki_mod.server_cert(self.workdir / "pki", "server-late", [late_ip, "etcd-late"])
        late_pki = dataclasses.replace(self.pki, server_cert=cert, server_key=key)
        self.late_etcd = etcd_mod.create(
            self.docker,
            self.tools,
            f"{self.run_id}-etcd-late",
            self.network,
            late_ip,
            late_pki,
            self.run_id,
            hostname="etcd-late",
        )
        self.log(f"{self.run_id}: etcd-late at {self.late_etcd.endpoint} (created, not started)")

    def start_late_etcd(self, timeout: float = 60) -> None:
        """Start etcd-late and wait until it answers; records when."""
        assert self.late_etcd is not None
        self.late_etcd.start(timeout)
        self.late_etcd_started_at = time.monotonic()
        self.log(f"{self.run_id}: etcd-late started")

    @property
    def late_etcd_due(self) -> float | None:
        """time.monotonic() at which etcd-late is to start: the delay after the last late node
        booted (None: no late node booted)."""
        booted = [n.booted_at for n in self.nodes.values() if n.role == "late" and n.booted_at]
        return max(booted) + self.late_etcd_delay if booted else None

    def _busybox(self) -> bytes:
        bits, _ = self.etcd.container.get_archive(BUSYBOX)
        with tarfile.open(fileobj=io.BytesIO(b"".join(bits))) as tar:
            member = tar.extractfile("busybox")
            assert member is not None
            return member.read()

    # -- nodes

    def pristine(self) -> str:
        """A container from the image that does not boot (no systemd, no cloud-init, no
        user-data): the image as built, for the image checks over testinfra's docker://."""
        name = f"{self.run_id}-image"
        self.docker.containers.run(
            self.image,
            entrypoint=["sleep", "infinity"],
            name=name,
            detach=True,
            network_mode="none",
            labels={LABEL: self.run_id},
        )
        return name

    def node_config(self, late: bool = False) -> Config:
        """The config as a node in this lab sees it: etcd is the lab's (etcd-late for late)."""
        server = self.late_etcd if late else self.etcd
        assert server is not None
        etcd = dataclasses.replace(self.config.etcd, endpoints=[server.endpoint])
        return dataclasses.replace(self.config, etcd=etcd)

    def add_node(
        self, name: str, wrong_ca: bool = False, late: bool = False, seeded_before: bool = False
    ) -> Node:
        """Create (not start) a node container with its NoCloud seed in place. late: its etcd is
        etcd-late, and its seeder waits longer than the delay. seeded_before: the seed unit's
        marker is in place, as on every boot after an instance's first, so flanneld itself is
        what waits for etcd."""
        tls = userdata.TlsFiles(
            self.pki.wrong_ca if wrong_ca else self.pki.ca,
            self.pki.client_cert,
            self.pki.client_key,
        )
        deadline = int(self.late_etcd_delay) + LATE_SEED_MARGIN if late else SEED_DEADLINE
        # the wrong CA is the point of that node: build-time checks would refuse it
        text = userdata.render(
            self.node_config(late), tls, seed_deadline=deadline, check_tls=not wrong_ca
        )
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
        files = {
            f"{SEED_DIR}/user-data": (text.encode(), 0o600),
            f"{SEED_DIR}/meta-data": (meta.encode(), 0o644),
            "/usr/local/share/flannelnode-verify/busybox": (self.busybox, 0o755),
            PROBE: (PROBE_SOURCE.read_bytes(), 0o755),
        }
        if seeded_before:
            files[SEED_MARKER] = (b"", 0o644)
        put_files(container, files)
        role = "wrong-ca" if wrong_ca else "late" if late else "good"
        node = Node(name, container, instance_id, text, role=role, seeded_before=seeded_before)
        self.nodes[name] = node
        return node

    def start(self, nodes: list[Node]) -> None:
        """Start nodes at the same moment (one thread each) and wait until each is booted: for
        good nodes, docker runs (records start -> docker active); the others wait visibly."""

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
            t.join(timeout=BOOT_TIMEOUT + max(DOCKER_TIMEOUT, WAITING_TIMEOUT) + 30)

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
            node.booted_at = time.monotonic()
        except VerifyError as exc:
            node.error = str(exc)
            self.log(f"{node.name}: {exc}")

    def _wait_booted(self, node: Node) -> None:
        if not node.expect_docker:
            self._wait_waiting(node)
            return

        def systemd_up() -> bool:
            _rc, out = run(node.container, "systemctl is-system-running", timeout=10)
            state = out.strip()
            return state in ("running", "degraded")

        wait_for(f"systemd in {node.name}", systemd_up, BOOT_TIMEOUT)
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

    def _wait_waiting(self, node: Node) -> None:
        """A node that cannot reach a working etcd never finishes booting (multi-user.target
        waits for docker, docker for flanneld): wait for what does happen instead. wrong-ca: the
        seeder failed on the CA and flanneld is up, retrying. late: whichever comes first waits
        for etcd: the seeder (first boot) or flanneld (seeded before)."""
        if node.role == "wrong-ca":
            want = {"flannel-seed-etcd": "failed", "flanneld": "activating"}
        elif node.seeded_before:
            want = {"flanneld": "activating"}
        else:
            want = {"flannel-seed-etcd": "activating"}

        def waiting() -> bool:
            return all(unit_state(node.container, u) == s for u, s in want.items())

        what = ", ".join(f"{u} {s}" for u, s in want.items())
        wait_for(f"{what} in {node.name}", waiting, BOOT_TIMEOUT + WAITING_TIMEOUT, every=0.5)

    # -- for the checks

    @property
    def description(self) -> dict[str, Any]:
        """What the checks and a person debugging need to know about this lab, JSON-ready."""
        assert self.etcd is not None
        node_files = {
            f.path: {"content": f.content.decode(), "mode": f"{f.mode:04o}"}
            for f in _userdata_files(self.node_config())
        }
        return {
            "run_id": self.run_id,
            "image": self.image,
            "manifest": str(self.manifest),
            "pki": {k: str(v) for k, v in dataclasses.asdict(self.pki).items()},
            "etcd": {"container": self.etcd.container.name, "ip": self.etcd.ip},
            "late_etcd": {
                "container": self.late_etcd.container.name if self.late_etcd else None,
                "ip": self.late_etcd.ip if self.late_etcd else None,
                "delay": self.late_etcd_delay,
                "started": self.late_etcd_started_at is not None,
            },
            "config": self.node_config().to_dict(),
            "userdata_files": node_files,
            "nodes": {
                n.name: {
                    "container": n.container.name,
                    "instance_id": n.instance_id,
                    "role": n.role,
                    "seeded_before": n.seeded_before,
                    "expect_docker": n.expect_docker,
                    "boots": n.boots,
                    "after_etcd": n.after_etcd,
                }
                for n in self.nodes.values()
            },
        }

    def describe(self, path: Path) -> Path:
        path.write_text(json.dumps(self.description, indent=2) + "\n")
        return path


def unit_state(container: Container, unit: str) -> str:
    """The unit's ActiveState (active, activating, inactive, failed, ...)."""
    return run(container, f"systemctl show -p ActiveState --value {unit}", 10)[1].strip()


def _lower_half(subnet: str) -> str:
    """The first half of a network: docker hands out dynamic addresses only there, so the fixed
    address of etcd-late (created long before it starts) is never given to a node."""
    net = ipaddress.ip_network(subnet)
    return str(next(net.subnets(prefixlen_diff=1)))


def _userdata_files(config: Config) -> list[Any]:
    """Node files user-data writes over the payload's copies (they name the lab's etcd)."""
    from flannelnode.userdata import config_files

    return config_files(config)
