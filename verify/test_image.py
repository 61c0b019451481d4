"""The image as built, before any node boots from it, on testinfra's own `host` fixture.

The same checks images/validate.sh runs at the end of every build (a second implementation,
so a bug in one shows in the other), against whatever testinfra's --hosts names: a container
from the image that does not boot (`python -m verify` starts one: docker://), a qcow2 or an
AMI instance over ssh:// (or aws ssm://). Those boot, and a booted node has its own machine-id,
host keys, cloud-init state, the TLS key its user-data delivered and node files that user-data
rewrote: there, deselect the `pristine` checks with -m 'not pristine'.

    python -m pytest verify/test_image.py --hosts=docker://CONTAINER \\
        --payload-manifest=build/payload/amd64/manifest.json
"""

from __future__ import annotations

import shlex
from typing import Any

import pytest

from flannelnode.arch import ARCHES

from .checks import PEM_KEY

MAX_SCAN = 4 << 20  # a PEM key sits in a small file; the big ones are binaries and archives
UNITS = ("flanneld.service", "docker.service")  # what provision.sh enables
GENERATOR = "/usr/lib/systemd/system-generators/flannelnode-docker-generator"
# dpkg's and uname's names -> flannel's
_ARCH_NAMES = {"x86_64": "amd64", "aarch64": "arm64", "armhf": "arm", "armv7l": "arm",
               "ppc64el": "ppc64le", "mips64el": "mips64le"}  # fmt: skip


def _image_arch(host: Any) -> str:
    dpkg = host.run("dpkg --print-architecture")
    name = dpkg.stdout.strip() if dpkg.rc == 0 else host.check_output("uname -m").strip()
    return _ARCH_NAMES.get(name, name)


@pytest.mark.pristine  # a node's user-data rewrites some (etcd endpoints, a secret's net-conf)
def test_payload_files_modes_owners_sha256(host: Any, payload_manifest: dict) -> None:
    entries = {e["path"]: e for e in payload_manifest["files"]}
    paths = " ".join(shlex.quote(p) for p in entries)
    # two commands for all files: over ssh or docker exec, one per file and property is slow
    stats = host.run(f"stat -c '%n|%F|%a|%U:%G' {paths}").stdout.splitlines()
    sums = host.run(f"sha256sum {paths}").stdout.splitlines()
    seen = {n: (kind, f"{int(mode, 8):04o}", owner)
            for n, kind, mode, owner in (line.split("|") for line in stats)}  # fmt: skip
    digests = {line.split()[1]: line.split()[0] for line in sums}
    wrong = []
    for path, entry in entries.items():
        kind, mode, owner = seen.get(path, ("missing", "", ""))
        if kind != "regular file":
            wrong.append(f"{path}: {kind}")
        elif (mode, owner) != (entry["mode"], entry["owner"]):
            wrong.append(f"{path}: {mode} {owner}, expected {entry['mode']} {entry['owner']}")
        elif digests.get(path) != entry["sha256"]:
            wrong.append(f"{path}: sha256 differs from the payload manifest")
    assert not wrong, "\n".join(wrong)


def test_flanneld_is_an_elf_for_the_images_arch(host: Any, payload_manifest: dict) -> None:
    path = f"{payload_manifest['prefix']}/bin/flanneld"
    header = bytes(int(b) for b in host.check_output(f"od -An -tu1 -N20 {path}").split())
    assert header[:4] == b"\x7fELF", f"{path} is not an ELF file"
    order = "big" if header[5] == 2 else "little"
    machine = int.from_bytes(header[18:20], order)
    arch = _image_arch(host)
    assert arch in ARCHES, f"unknown image arch {arch}"
    assert machine == ARCHES[arch].elf_machine, f"{path}: e_machine {machine}, the image is {arch}"


def test_units_enabled(host: Any) -> None:
    for unit in UNITS:
        state = host.run(f"systemctl is-enabled {unit}").stdout.strip()
        assert state == "enabled", f"{unit}: {state}"


def test_the_generator_makes_flannels_docker_dropin(host: Any) -> None:
    out = host.check_output(
        f"d=$(mktemp -d) && {GENERATOR} $d && cat $d/docker.service.d/flannel.conf; rm -rf $d"
    )
    assert "ExecStart=/bin/false" not in out, out
    assert "After=flanneld.service" in out and "EnvironmentFile=" in out, out


@pytest.mark.pristine
def test_no_private_key_in_the_image(host: Any) -> None:
    """Keys reach nodes only through user-data: the image holds none, not even a stray one."""
    candidates = host.run(
        f"find / -xdev -type f -size -{MAX_SCAN}c -exec grep -lsaE "
        "-e '-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----' {} +"
    ).stdout.splitlines()
    found = []
    for path in candidates:
        body = host.file(path).content
        # a key file is text: keys compiled into a library (gnutls' self-tests) are not
        # what this looks for
        if not body.startswith(b"\x7fELF") and PEM_KEY.search(body):
            found.append(path)
    assert not found, f"the image holds private keys: {', '.join(sorted(found))}"


@pytest.mark.pristine
def test_nothing_a_node_makes_for_itself(host: Any) -> None:
    """machine-id, ssh host keys, cloud-init state and authorized keys: each node's own."""
    machine_id = host.file("/etc/machine-id")
    assert not machine_id.exists or machine_id.size == 0, "/etc/machine-id holds an id"
    dbus = host.file("/var/lib/dbus/machine-id")
    assert dbus.is_symlink or not dbus.exists or dbus.size == 0, "/var/lib/dbus/machine-id"
    homes = {line.split(":")[5] for line in host.file("/etc/passwd").content_string.splitlines()
             if line.count(":") >= 6} | {"/root"}  # fmt: skip
    keys = " ".join(shlex.quote(f"{h}/.ssh/{n}") for h in sorted(homes)
                    for n in ("authorized_keys", "authorized_keys2"))  # fmt: skip
    found = host.run(
        "ls -d /etc/ssh/ssh_host_* /var/lib/cloud/instance /var/lib/cloud/instances/* "
        f"/var/lib/cloud/data/* /var/lib/cloud/sem/* {keys} 2>/dev/null; "
        "find /var/log -maxdepth 1 -name 'cloud-init*.log' -size +0 2>/dev/null"
    ).stdout.split()
    assert not found, f"node-specific state in the image: {', '.join(found)}"
