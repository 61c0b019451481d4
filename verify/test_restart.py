"""Restarts an operator does, and a crash: flanneld alone, and the whole node.

flanneld restarted, killed or stopped leaves dockerd (same process) and the containers on it
running; the lease, subnet.env and docker's options stay as they were. A node restart keeps the
lease and does not seed etcd again."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .checks import (
    DOCKER_ENV,
    SUBNET_ENV,
    dockerd_args,
    env_file,
    lease_owners,
    lease_values,
    nested_image,
    units,
)
from .containers import wait_for

KEEPER = "flannelnode-verify-keeper"  # a nested container that must survive flanneld
FLANNELD_TIMEOUT = 60  # > RestartSec=5s plus flanneld's start


def _docker_state(machine: Any) -> dict[str, str]:
    """dockerd's unit state and PID, and the keeper container's id and state."""
    docker = units(machine, "docker")["docker"]
    inspect = machine.run(
        f"docker inspect -f '{{{{.Id}}}} {{{{.State.Status}}}} {{{{.State.StartedAt}}}}' {KEEPER}"
    )
    cid, status, started = [*inspect.stdout.split(), "-", "-", "-"][:3]
    return {
        "docker": docker["ActiveState"],
        "dockerd_pid": docker["MainPID"],
        "container": cid,
        "container_status": status,
        "container_started": started,
    }


@pytest.fixture
def keeper(machine: Any) -> dict[str, str]:
    """A nested container running before flanneld is touched; the state to compare against."""
    if _docker_state(machine)["container_status"] != "running":
        machine.run(f"docker rm -f {KEEPER}")
        image = nested_image(machine)
        machine.check_output(
            f"timeout 60 docker run -d --name {KEEPER} {image} /bin/busybox sleep 86400"
        )
    before = _docker_state(machine)
    assert before["docker"] == "active" and before["container_status"] == "running", before
    return before


def _flannel_state(lab: Any, machine: Any) -> dict[str, Any]:
    return {
        "subnet.env": machine.file(SUBNET_ENV).content_string,
        "docker options": machine.file(DOCKER_ENV).content_string,
        "leases": lease_values(lab),  # same subnets, same owners
    }


def _flanneld_active_with_new_pid(machine: Any, old_pid: str) -> Any:
    def up() -> bool:
        state = units(machine, "flanneld")["flanneld"]
        return state["ActiveState"] == "active" and state["MainPID"] not in ("0", old_pid)

    wait_for("flanneld active again with a new process", up, FLANNELD_TIMEOUT, every=0.5)


def _assert_docker_untouched(machine: Any, before: dict[str, str], what: str) -> None:
    after = _docker_state(machine)
    assert after == before, f"{what} touched docker or its container: {before} -> {after}"
    args = dockerd_args(machine)
    assert sum(a.startswith("--bip") for a in args) == 1, args
    assert sum(a.startswith("--mtu") for a in args) == 1, args


@pytest.mark.parametrize("node", ["node1"], indirect=True)
def test_flanneld_restart_keeps_docker_and_its_containers(
    lab: Any, node: Any, machine: Any, keeper: dict[str, str]
) -> None:
    flannel_before = _flannel_state(lab, machine)
    old_pid = units(machine, "flanneld")["flanneld"]["MainPID"]

    machine.check_output(f"timeout {FLANNELD_TIMEOUT} systemctl restart flanneld")
    _flanneld_active_with_new_pid(machine, old_pid)
    _assert_docker_untouched(machine, keeper, "systemctl restart flanneld")
    assert _flannel_state(lab, machine) == flannel_before
    assert flannel_before["docker options"].count("DOCKER_NETWORK_OPTIONS=") == 1


@pytest.mark.parametrize("node", ["node1"], indirect=True)
def test_flanneld_crash_is_restarted_and_keeps_docker(
    lab: Any, node: Any, machine: Any, keeper: dict[str, str]
) -> None:
    flannel_before = _flannel_state(lab, machine)
    state = units(machine, "flanneld")["flanneld"]

    machine.check_output(f"kill -KILL {state['MainPID']}")
    _flanneld_active_with_new_pid(machine, state["MainPID"])  # Restart=on-failure, by systemd
    restarts = units(machine, "flanneld")["flanneld"]["NRestarts"]
    assert int(restarts) == int(state["NRestarts"]) + 1, "systemd did not restart flanneld"
    _assert_docker_untouched(machine, keeper, "flanneld's crash and restart")
    assert _flannel_state(lab, machine) == flannel_before


@pytest.mark.parametrize("node", ["node1"], indirect=True)
def test_flanneld_stop_and_start_keep_docker(
    lab: Any, node: Any, machine: Any, keeper: dict[str, str]
) -> None:
    flannel_before = _flannel_state(lab, machine)
    old_pid = units(machine, "flanneld")["flanneld"]["MainPID"]

    machine.check_output(f"timeout {FLANNELD_TIMEOUT} systemctl stop flanneld")
    assert units(machine, "flanneld")["flanneld"]["ActiveState"] in ("inactive", "failed")
    time.sleep(1)  # a stop propagated to docker would be under way by now
    _assert_docker_untouched(machine, keeper, "systemctl stop flanneld")

    machine.check_output(f"timeout {FLANNELD_TIMEOUT} systemctl start flanneld")
    _flanneld_active_with_new_pid(machine, old_pid)
    _assert_docker_untouched(machine, keeper, "systemctl start flanneld")
    assert _flannel_state(lab, machine) == flannel_before


@pytest.mark.parametrize("node", ["node2"], indirect=True)
def test_node_restart_does_not_reseed(lab: Any, node: Any, machine: Any) -> None:
    key = f"{lab.config.etcd.prefix}/config"
    config_before = lab.etcd.get(key)
    before_leases = lease_owners(lab)
    subnet_before = env_file(machine, SUBNET_ENV)["FLANNEL_SUBNET"]

    since = int(time.time())
    lab.restart(node)
    assert node.error is None, node.error
    assert lab.etcd.get(key) == config_before  # same value, version and revisions
    assert lease_owners(lab) == before_leases  # same subnets, same owners
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
