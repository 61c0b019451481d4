"""A flannelnode qcow2 booted under qemu, for the VM test (tests/test_images.py) and bench/vm.py.

The VM has its own kernel, so it shows what containers sharing the host's kernel cannot: which
kernel modules our files load, the sysctls they set, the real boot order, cloud-init's NoCloud
datasource from a seed ISO.

- Network: qemu's user-mode network with `restrict=on`: nothing the guest sends leaves qemu except
  through the explicit forwards. Each port in `host_ports` is forwarded from 10.0.2.100 in the
  guest to the host's 127.0.0.1 (a `guestfwd` that runs socat per connection; qemu refuses one on
  its own gateway 10.0.2.2), so an etcd on the host's loopback serves the VM at
  https://10.0.2.100:<port> (its server certificate carries that IP).
  The host reaches the guest's sshd through a hostfwd from a free 127.0.0.1 port.
- Access: ssh with a per-run key that the user-data authorizes for root, one multiplexed
  connection (ControlMaster) for the polling and for testinfra's ssh backend. ssh rather than
  the serial console: testinfra and verify/checks.py work over it unchanged, commands return
  exit codes and separate output, and the console stays a clean boot log for failure reports.
- Disk: a copy-on-write overlay of the qcow2, so the built image is never touched and every boot
  is a first boot (a fresh instance-id in a fresh seed ISO).
- Accelerator: FLANNELNODE_QEMU_ACCEL (kvm where it works; unset or empty: TCG with one thread
  per vCPU).

close() kills qemu and the ssh master; qemu also dies with the test process (PR_SET_PDEATHSIG).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import yaml

from flannelnode import userdata
from flannelnode.config import Config

from .etcd_cluster import _die_with_parent, free_ports

# the host's loopback as the guest sees it: a guestfwd address in qemu's user-mode network
GUEST_HOST_IP = "10.0.2.100"
GUEST_MAC = "52:54:00:12:34:56"
# A static address, as many on-premises nodes have: with restrict=on qemu's DHCP offers no router,
# and flanneld (like real flanneld) needs a default route to pick its interface. The gateway is
# qemu's; it forwards nothing but the guestfwd ports.
NETWORK_CONFIG = f"""\
version: 2
ethernets:
  nic0:
    match:
      macaddress: "{GUEST_MAC}"
    addresses: [10.0.2.15/24]
    gateway4: 10.0.2.2
"""
ACCEL_ENV = "FLANNELNODE_QEMU_ACCEL"
SSH_USER = "root"
# what a failure report shows from the guest's journal
JOURNAL_UNITS = (
    "systemd-modules-load",
    "systemd-sysctl",
    "flannel-seed-etcd",
    "flanneld",
    "docker",
)


class VmError(AssertionError):
    """A VM did not do what the test waited for; the message carries the console and journal."""


def accel_args(env: dict[str, str] | None = None) -> list[str]:
    accel = (os.environ if env is None else env).get(ACCEL_ENV) or "tcg"
    if accel == "tcg":
        return ["-accel", "tcg,thread=multi", "-cpu", "max"]
    return ["-accel", accel, "-cpu", "max"]


def ssh_keypair(directory: Path) -> tuple[Path, str]:
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    key = directory / "id_ed25519"
    if not key.exists():
        subprocess.run(
            ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "flannelnode-vm-test",
             "-f", str(key)],
            check=True, timeout=60,
        )  # fmt: skip
    return key, key.with_suffix(".pub").read_text().strip()


def user_data(config: Config, tls: userdata.TlsFiles, public_key: str, deadline: int = 120) -> str:
    """The product's user-data, plus (test side only) root's ssh key for the test to get in.

    flannelnode.userdata.render takes no extra cloud-config on purpose: it is the node's
    contract. The test merges its key in as cloud-config keys of cloud-init's ssh module.
    """
    rendered = userdata.render(config, tls, seed_deadline=deadline)
    doc = yaml.safe_load(rendered)
    assert isinstance(doc, dict) and "write_files" in doc, rendered[:300]
    doc.update({"disable_root": False, "ssh_pwauth": False, "ssh_authorized_keys": [public_key]})
    return "#cloud-config\n" + yaml.safe_dump(doc, sort_keys=False, width=100)


class Vm:
    """One boot of a disk image. start() returns at once; wait_* poll with bounded waits."""

    def __init__(
        self,
        disk: Path,
        workdir: Path,
        seed_iso: Path,
        ssh_key: Path,
        *,
        memory_mib: int = 1024,
        cpus: int = 2,
        overlay: bool = True,
        host_ports: tuple[int, ...] = (),
    ) -> None:
        self.disk, self.workdir, self.seed_iso, self.ssh_key = (
            disk.resolve(),
            workdir,
            seed_iso,
            ssh_key,
        )
        self.memory_mib, self.cpus, self.overlay = memory_mib, cpus, overlay
        self.host_ports = host_ports
        workdir.mkdir(parents=True, exist_ok=True)
        self.serial = workdir / "serial.log"
        self.qemu_log = workdir / "qemu.log"
        self.ssh_config = workdir / "ssh_config"
        # the ssh master's socket: a short path (sockaddr_un holds 108 bytes; pytest's are long)
        self.control_dir = Path(tempfile.mkdtemp(prefix="fnvm-"))
        self.port = 0
        self.process: subprocess.Popen | None = None
        self.started_at = 0.0  # time.monotonic() just before qemu was started

    # -- lifecycle

    def start(self) -> None:
        drive = self.disk
        fmt = "raw" if self.disk.suffix == ".raw" else "qcow2"
        if self.overlay:
            drive = self.workdir / "overlay.qcow2"
            drive.unlink(missing_ok=True)
            subprocess.run(
                ["qemu-img", "create", "-q", "-f", "qcow2", "-F", fmt, "-b", str(self.disk),
                 str(drive)],
                check=True, timeout=60,
            )  # fmt: skip
            fmt = "qcow2"
        [self.port] = free_ports(1)
        self._write_ssh_config()
        argv = [
            "qemu-system-x86_64", *accel_args(), "-machine", "pc", "-smp", str(self.cpus),
            "-m", str(self.memory_mib), "-display", "none", "-monitor", "none",
            "-serial", f"file:{self.serial}",
            "-drive", f"file={drive},if=virtio,format={fmt}",
            "-drive", f"file={self.seed_iso},media=cdrom,readonly=on",
            "-nic", self._nic(),
        ]  # fmt: skip
        self.started_at = time.monotonic()
        with self.qemu_log.open("wb") as log:
            self.process = subprocess.Popen(
                argv,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=_die_with_parent,
            )

    def _nic(self) -> str:
        forwards = [f"hostfwd=tcp:127.0.0.1:{self.port}-:22"] + [
            f"guestfwd=tcp:{GUEST_HOST_IP}:{port}-cmd:socat - TCP:127.0.0.1:{port}"
            for port in self.host_ports
        ]
        return ",".join(
            ["user", "model=virtio-net-pci", f"mac={GUEST_MAC}", "restrict=on", *forwards]
        )

    def _write_ssh_config(self) -> None:
        self.ssh_config.write_text(
            "Host vm\n"
            "  HostName 127.0.0.1\n"
            f"  Port {self.port}\n"
            f"  User {SSH_USER}\n"
            f"  IdentityFile {self.ssh_key}\n"
            "  IdentitiesOnly yes\n"
            "  StrictHostKeyChecking no\n"
            "  UserKnownHostsFile /dev/null\n"
            "  LogLevel ERROR\n"
            "  BatchMode yes\n"
            "  ConnectTimeout 10\n"
            "  ServerAliveInterval 5\n"
            "  ServerAliveCountMax 3\n"
            "  ControlMaster auto\n"
            f"  ControlPath {self.control_dir}/%C\n"
            "  ControlPersist 120s\n"
        )

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def close(self) -> None:
        if self.ssh_config.exists():
            subprocess.run(
                ["ssh", "-F", str(self.ssh_config), "-O", "exit", "vm"],
                capture_output=True, timeout=15, check=False,
            )  # fmt: skip
        if self.process is not None and self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=30)
        shutil.rmtree(self.control_dir, ignore_errors=True)

    def __enter__(self) -> Vm:
        try:
            self.start()
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- getting in

    def ssh(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess:
        """command through the shared ssh connection; returncode 255: ssh itself failed."""
        try:
            return subprocess.run(
                ["ssh", "-F", str(self.ssh_config), "vm", command],
                capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL,
            )  # fmt: skip
        except subprocess.TimeoutExpired as exc:
            return subprocess.CompletedProcess(exc.cmd, 255, "", f"timed out after {timeout}s")

    def out(self, command: str, timeout: float = 60) -> str:
        res = self.ssh(command, timeout)
        if res.returncode != 0:
            raise self.error(f"`{command}` failed ({res.returncode}): {res.stderr.strip()}")
        return res.stdout

    def testinfra_host(self):
        import testinfra

        return testinfra.get_host("ssh://vm", ssh_config=str(self.ssh_config))

    def wait_for(self, what: str, ready: Callable[[], bool], timeout: float, every=2.0) -> float:
        """Poll until ready() is true; returns seconds since qemu started. Fails with the
        console tail and the journal when qemu exits or the time is up."""
        stop_at = time.monotonic() + timeout
        while True:
            if not self.running:
                raise self.error(f"qemu exited ({self.process.returncode}) waiting for {what}")
            if ready():
                return time.monotonic() - self.started_at
            if time.monotonic() > stop_at:
                raise self.error(f"no {what} after {timeout:g}s")
            time.sleep(every)

    def wait_cloud_init(self, timeout: float) -> float:
        """Until cloud-init finished all its stages (done or error)."""

        def finished() -> bool:
            status = self.ssh("cloud-init status", 30).stdout
            return "status: done" in status or "status: error" in status

        return self.wait_for("end of cloud-init (cloud-final)", finished, timeout)

    def wait_ssh(self, timeout: float) -> float:
        return self.wait_for("ssh login", lambda: self.ssh("true", 30).returncode == 0, timeout)

    def active_monotonic(self, unit: str) -> float:
        """When unit entered 'active', on the VM's clock (seconds since its kernel started)."""
        value = self.out(f"systemctl show -p ActiveEnterTimestampMonotonic --value {unit}")
        return int(value.strip() or 0) / 1e6

    def since_start(self, guest_monotonic: float) -> float:
        """A guest CLOCK_MONOTONIC reading, as seconds since qemu was started on the host: the
        guest's uptime now maps to the host's now (the ssh round trip is the error, < 1 s)."""
        uptime = float(self.out("cat /proc/uptime").split()[0])
        host_now = time.monotonic() - self.started_at
        return host_now - (uptime - guest_monotonic)

    # -- failure reports

    def console_tail(self, lines: int = 40) -> str:
        if not self.serial.exists():
            return "(no serial console output)"
        text = self.serial.read_bytes().decode(errors="replace").replace("\r", "")
        return "\n".join(text.splitlines()[-lines:])

    def journal(self, lines: int = 80) -> str:
        """The guest's journal of JOURNAL_UNITS and cloud-init's status (when ssh works)."""
        units = " ".join(f"-u {u}" for u in JOURNAL_UNITS)
        res = self.ssh(
            f"cloud-init status --long; journalctl -b --no-pager -o short-monotonic -n {lines} "
            f"{units}",
            30,
        )
        if res.returncode == 255:
            return f"(not reachable over ssh: {res.stderr.strip()})"
        return res.stdout.rstrip()

    def error(self, message: str) -> VmError:
        qemu = self.qemu_log.read_text(errors="replace")[-1500:] if self.qemu_log.exists() else ""
        return VmError(
            f"{message}\n--- qemu output ---\n{qemu.strip() or '(none)'}"
            f"\n--- serial console, last lines ({self.serial}) ---\n{self.console_tail()}"
            f"\n--- guest: cloud-init status, journal of {', '.join(JOURNAL_UNITS)} ---\n"
            f"{self.journal()}"
        )


def seed_iso(text: str, workdir: Path, name: str = "node") -> tuple[Path, str]:
    """user-data text -> a NoCloud seed ISO with a fresh instance-id and NETWORK_CONFIG (the
    project's seed-iso)."""
    instance_id = f"flannelnode-vm-{name}-{secrets.token_hex(3)}"
    ud = userdata.write(text, workdir / f"{instance_id}.user-data")
    network = workdir / f"{instance_id}.network-config"
    network.write_text(NETWORK_CONFIG)
    iso = userdata.seed_iso(ud, workdir / f"{instance_id}.iso", instance_id, network)
    return iso, instance_id


# What a node got from flannelnode before it loaded br_netfilter itself (commit dec7ee5 and
# earlier): no modules-load.d and sysctl.d files, no modprobe before flanneld.
class Ext4:
    """The root filesystem (first partition) of a disk image, through debugfs on a raw copy of
    it: no mount, no loop device, no boot."""

    def __init__(self, qcow2: Path, raw: Path) -> None:
        subprocess.run(["qemu-img", "convert", "-O", "raw", str(qcow2), str(raw)], check=True,
                       timeout=600)  # fmt: skip
        table = json.loads(subprocess.run(["sfdisk", "--json", str(raw)], capture_output=True,
                                          text=True, check=True, timeout=60).stdout)  # fmt: skip
        part = table["partitiontable"]
        offset = int(part["partitions"][0]["start"]) * int(part.get("sectorsize", 512))
        self.fs = f"{raw}?offset={offset}"

    def edit(self, *requests: str, write: bool = False) -> str:
        """debugfs requests run in one session (-w: the filesystem is changed); any error fails."""
        res = subprocess.run(
            ["debugfs", *(["-w"] if write else []), "-f", "-", self.fs],
            input="\n".join(requests) + "\n", capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if res.returncode != 0 or "debugfs: " in res.stderr.replace("debugfs 1.", ""):
            raise RuntimeError(f"debugfs {requests}: {res.stderr.strip()}")
        return res.stdout

    def cat(self, path: str) -> str:
        res = subprocess.run(["debugfs", "-R", f"cat {path}", self.fs], capture_output=True,
                             text=True, check=True, timeout=60)  # fmt: skip
        return res.stdout

    def run(self, request: str) -> str:
        res = subprocess.run(["debugfs", "-R", request, self.fs], capture_output=True,
                             text=True, timeout=120)  # fmt: skip
        assert res.returncode == 0, res.stderr
        return res.stdout + res.stderr  # "File not found" comes on stderr

    def stat(self, path: str) -> dict[str, str] | None:
        """Type, Mode, User, Group, Size of path; None when it does not exist."""
        out = self.run(f"stat {path}")
        if "File not found" in out:
            return None
        fields: dict[str, str] = {}
        for key, value in re.findall(r"\b(Type|Mode|User|Group|Size):\s+(\S+)", out):
            fields.setdefault(key, value)  # the first Size: the Fragment line has one too
        assert {"Type", "Mode", "User", "Group"} <= set(fields), out
        return fields

    def names(self, directory: str) -> list[str]:
        out = self.run(f"ls -p {directory}")
        assert "File not found" not in out, out
        # -p: /inode/mode/uid/gid/name/size/
        return [f.split("/")[5] for f in out.splitlines() if f.count("/") >= 6]

    def read(self, path: str, dest: Path) -> bytes:
        self.run(f"dump {path} {dest}")
        return dest.read_bytes()


MODULES_LOAD = "/usr/lib/modules-load.d/flannel.conf"
SYSCTL = "/usr/lib/sysctl.d/90-flannel.conf"
FLANNELD_UNIT = "/usr/lib/systemd/system/flanneld.service"


def without_module_loading(qcow2: Path, out: Path) -> Path:
    """A raw copy of qcow2 with the old payload's node prerequisites: MODULES_LOAD and SYSCTL
    removed, flanneld.service without its `ExecStartPre=-/sbin/modprobe br_netfilter`.

    Edited offline with debugfs on the ext4 root partition (no mount, no loop device, no boot:
    the image is exactly the built one otherwise). Returns out (a sparse .raw file).
    """
    out.unlink(missing_ok=True)
    fs = Ext4(qcow2, out)
    unit = fs.cat(FLANNELD_UNIT)
    assert "ExecStart=" in unit, f"{FLANNELD_UNIT} not found in {qcow2}: {unit[:200]}"
    kept = [ln for ln in unit.splitlines() if not ln.startswith("ExecStartPre=-/sbin/modprobe")]
    assert len(kept) < len(unit.splitlines()), f"no modprobe ExecStartPre in {FLANNELD_UNIT}"
    old_unit = out.with_suffix(".flanneld.service")
    old_unit.write_text("\n".join(kept) + "\n")
    fs.edit(
        f"rm {MODULES_LOAD}",
        f"rm {SYSCTL}",
        f"rm {FLANNELD_UNIT}",
        f"write {old_unit} {FLANNELD_UNIT}",
        f"set_inode_field {FLANNELD_UNIT} mode 0100644",
        f"set_inode_field {FLANNELD_UNIT} uid 0",
        f"set_inode_field {FLANNELD_UNIT} gid 0",
        write=True,
    )
    old_unit.unlink()
    listing = fs.edit(f"ls {Path(MODULES_LOAD).parent}", f"ls {Path(SYSCTL).parent}")
    assert Path(MODULES_LOAD).name not in listing and Path(SYSCTL).name not in listing, listing
    return out
