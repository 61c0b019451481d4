"""Restarts an operator does: flanneld alone, and the whole node. Nothing moves, nothing doubles,
etcd is not written again."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .checks import DOCKER_ENV, SUBNET_ENV, dockerd_args, env_file, leases
from .containers import wait_for


@pytest.mark.parametrize("node", ["node1"], indirect=True)
def test_flanneld_restart_keeps_lease_and_docker_options(lab: Any, node: Any, machine: Any) -> None:
    before_env = machine.file(SUBNET_ENV).content_string
    before_docker = machine.file(DOCKER_ENV).content_string
    before_leases = leases(lab)
    old_pid = machine.check_output("systemctl show -p MainPID --value docker").strip()

    machine.check_output("timeout 60 systemctl restart flanneld")
    wait_for(
        "docker to run again after flanneld restarted",
        lambda: (
            machine.service("docker").is_running
            and machine.check_output("systemctl show -p MainPID --value docker").strip() != old_pid
        ),
        timeout=60,
    )
    assert machine.file(SUBNET_ENV).content_string == before_env
    assert machine.file(DOCKER_ENV).content_string == before_docker
    assert before_docker.count("DOCKER_NETWORK_OPTIONS=") == 1
    assert leases(lab) == before_leases  # same keys, not even rewritten (mod_revision)
    args = dockerd_args(machine)
    assert sum(a.startswith("--bip") for a in args) == 1, args
    assert sum(a.startswith("--mtu") for a in args) == 1, args


@pytest.mark.parametrize("node", ["node2"], indirect=True)
def test_node_restart_does_not_reseed(lab: Any, node: Any, machine: Any) -> None:
    key = f"{lab.config.etcd.prefix}/config"
    config_before = lab.etcd.get(key)
    before_leases = leases(lab)
    subnet_before = env_file(machine, SUBNET_ENV)["FLANNEL_SUBNET"]

    since = int(time.time())
    lab.restart(node)
    assert node.error is None, node.error
    assert lab.etcd.get(key) == config_before  # same value, version and revisions
    assert leases(lab) == before_leases
    env = env_file(machine, SUBNET_ENV)  # /run is new: flanneld wrote it again at this boot
    assert env["FLANNEL_SUBNET"] == subnet_before
    args = dockerd_args(machine)
    assert f"--bip={subnet_before}" in args, args
    # the seed unit is once per instance: skipped on its marker, and the seeder process logged
    # nothing. (`journalctl -b` cannot tell container boots apart: they share the host's boot id.)
    seed = machine.service("flannel-seed-etcd")
    assert seed.systemd_properties["ConditionResult"] == "no", "the seed unit ran again"
    seeder_log = machine.check_output(
        f"journalctl --since @{since} --no-pager -o cat -t flannel-seed-etcd"
    )
    assert seeder_log.strip() in ("", "-- No entries --"), f"the seeder ran again: {seeder_log}"
    log = machine.check_output(f"journalctl --since @{since} --no-pager -o cat")
    assert "Cloud-init v." in log, "no cloud-init run in the journal since the restart"
