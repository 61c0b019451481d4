"""Each node that booted with good user-data: on flannel's lease, with docker on it."""

from __future__ import annotations

import ipaddress
import json
import stat
from pathlib import Path
from typing import Any

from .checks import (
    DOCKER_ENV,
    DOCKER_KEY,
    SUBNET_ENV,
    dockerd_args,
    env_file,
    lease_network,
    leases,
    nested_image,
    node_ip,
)


def test_boots_to_docker_running(node: Any) -> None:
    assert node.error is None, node.error
    assert node.boots, "no boot was timed"


def test_payload_files_modes_owners(lab: Any, machine: Any) -> None:
    manifest = json.loads(Path(lab.description["manifest"]).read_text())
    rewritten = lab.description["userdata_files"]  # user-data names this lab's etcd in these
    wrong = []
    for entry in manifest["files"]:
        f = machine.file(entry["path"])
        if not f.exists:
            wrong.append(f"{entry['path']}: missing")
            continue
        mode = f"{stat.S_IMODE(f.mode):04o}"
        owner = f"{f.user}:{f.group}"
        # a network config holding a backend secret comes 0600 from the user-data
        want = rewritten.get(entry["path"], entry)["mode"]
        if mode != want or owner != entry["owner"]:
            wrong.append(f"{entry['path']}: {mode} {owner}, expected {want} {entry['owner']}")
        elif entry["path"] in rewritten:
            if f.content_string != rewritten[entry["path"]]["content"]:
                wrong.append(f"{entry['path']}: not what user-data wrote")
        elif f.sha256sum != entry["sha256"]:
            wrong.append(f"{entry['path']}: sha256 differs from the payload manifest")
    assert not wrong, "\n".join(wrong)


def test_units_enabled(machine: Any) -> None:
    for unit in ("flanneld.service", "docker.service"):
        assert machine.service(unit).is_enabled, f"{unit} is not enabled"


def test_tls_material_delivered_by_user_data(lab: Any, machine: Any) -> None:
    etcd = lab.config.etcd
    for path in (etcd.ca_file, etcd.cert_file, etcd.key_file):
        f = machine.file(path)
        assert f.exists, f"{path} missing on the running node"
        assert (stat.S_IMODE(f.mode), f.user, f.group) == (0o600, "root", "root"), path


def test_cloud_init_finished_without_errors(machine: Any) -> None:
    result = machine.run("cloud-init status --long")
    assert "status: done" in result.stdout, result.stdout + result.stderr
    assert result.rc == 0, result.stdout + result.stderr


def test_subnet_env_keeps_every_flannel_variable(lab: Any, machine: Any) -> None:
    env = env_file(machine, SUBNET_ENV)
    assert set(env) >= {"FLANNEL_NETWORK", "FLANNEL_SUBNET", "FLANNEL_MTU", "FLANNEL_IPMASQ"}, env
    assert env["FLANNEL_NETWORK"] == lab.config.network["Network"]
    assert lease_network(env).subnet_of(ipaddress.ip_network(env["FLANNEL_NETWORK"]))
    assert env["FLANNEL_IPMASQ"] == "true"  # the unit runs flanneld --ip-masq
    assert DOCKER_KEY not in env, "docker options were written into flanneld's own file"


def test_docker_options_from_flannel(machine: Any) -> None:
    flannel = env_file(machine, SUBNET_ENV)
    docker = env_file(machine, DOCKER_ENV)
    assert docker[DOCKER_KEY].split() == [
        f"--bip={flannel['FLANNEL_SUBNET']}",
        "--ip-masq=false",
        f"--mtu={flannel['FLANNEL_MTU']}",
    ]


def test_dockerd_runs_with_the_lease_and_mtu(machine: Any) -> None:
    env = env_file(machine, SUBNET_ENV)
    args = dockerd_args(machine)
    assert args, "dockerd is not running"
    assert [a for a in args if a.startswith("--bip")] == [f"--bip={env['FLANNEL_SUBNET']}"], args
    assert [a for a in args if a.startswith("--mtu")] == [f"--mtu={env['FLANNEL_MTU']}"], args


def test_docker0_carries_the_lease(machine: Any) -> None:
    env = env_file(machine, SUBNET_ENV)
    out = machine.check_output("ip -4 -o addr show dev docker0")
    assert f"inet {env['FLANNEL_SUBNET']} " in out, out


def test_nested_container_on_the_lease(machine: Any) -> None:
    env = env_file(machine, SUBNET_ENV)
    image = nested_image(machine)
    out = machine.check_output(
        f"timeout 60 docker run --rm {image} "
        "sh -c 'ip -4 -o addr show dev eth0; cat /sys/class/net/eth0/mtu'"
    )
    address = ipaddress.ip_interface(out.split(" inet ")[1].split()[0])
    assert address.ip in lease_network(env), (
        f"{address} is not in the lease {env['FLANNEL_SUBNET']}"
    )
    assert out.strip().splitlines()[-1] == env["FLANNEL_MTU"], out


def test_etcd_holds_the_config_written_once(lab: Any) -> None:
    """Both nodes seeded at the same moment: one write, the configured value."""
    kv = lab.etcd.get(f"{lab.config.etcd.prefix}/config")
    assert kv is not None, "no network config in etcd"
    assert json.loads(kv["value"]) == lab.config.network
    assert kv["version"] == 1, f"the config was written {kv['version']} times"


def test_each_node_holds_a_distinct_lease(lab: Any) -> None:
    held = leases(lab)
    good = [n for n in lab.nodes.values() if n.expect_docker]
    owners = {kv["value"]["PublicIP"]: net for net, kv in held.items()}
    assert len(held) == len(good), f"{len(held)} leases for {len(good)} nodes: {sorted(held)}"
    for node in good:
        ip = node_ip(node)
        assert ip in owners, f"{node.name} ({ip}) holds no lease: {owners}"
    assert len(set(owners.values())) == len(good)


def test_seeder_wrote_once_across_the_fleet(lab: Any) -> None:
    """The journals agree with etcd: one node wrote the config, every other found it there."""
    wrote = found = 0
    for node in (n for n in lab.nodes.values() if n.expect_docker):
        _, out = node.container.exec_run(["journalctl", "--no-pager", "-o", "cat"])
        log = out.decode(errors="replace")
        wrote += log.count("flannel-seed-etcd: wrote the network config")
        found += log.count("already holds this network config: nothing written")
    good = sum(1 for n in lab.nodes.values() if n.expect_docker)
    assert (wrote, found) == (1, good - 1), f"{wrote} wrote, {found} found it in place"
