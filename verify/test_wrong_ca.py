"""A node whose user-data carries a CA that does not sign etcd's certificate: the seeder fails
and says why, flanneld keeps retrying and says why, and docker does not come up on a subnet of
its own. Nothing here is finished or failed for good: with a right CA delivered, flanneld would
take over without a restart."""

from __future__ import annotations

import time
from typing import Any

import pytest

from .checks import DOCKER_ENV, SUBNET_ENV, TLS_CA_ERROR, units

pytestmark = pytest.mark.parametrize("node", ["wrong-ca"], indirect=True)

SEEDER_LINE = "does not sign the server certificate"  # scripts/flannel-seed-etcd
WATCH = 7  # seconds: longer than flanneld's RestartSec=5s, so a restart in between would show


def test_booted_into_a_visible_wait(node: Any) -> None:
    """The lab saw the seeder fail and flanneld retrying (the boot itself cannot finish)."""
    assert node.error is None, node.error


def test_seeder_fails_and_names_the_ca(machine: Any) -> None:
    seed = units(machine, "flannel-seed-etcd", props="ActiveState,Result")["flannel-seed-etcd"]
    assert seed["ActiveState"] == "failed", seed
    log = machine.check_output("journalctl -u flannel-seed-etcd --no-pager -o cat")
    assert SEEDER_LINE in log, f"the seeder's reason is not in its journal:\n{log[-2000:]}"


def test_flanneld_keeps_retrying_and_names_the_tls_problem(machine: Any) -> None:
    before = units(machine, "flanneld")["flanneld"]
    time.sleep(WATCH)
    after = units(machine, "flanneld")["flanneld"]
    assert before["ActiveState"] == after["ActiveState"] == "activating", (before, after)
    assert before["SubState"] == after["SubState"] == "start", (before, after)
    assert after["MainPID"] not in ("", "0"), after
    assert after["MainPID"] == before["MainPID"], f"flanneld was restarted: {before} -> {after}"
    assert after["NRestarts"] == before["NRestarts"], (before, after)
    log = machine.check_output("journalctl -u flanneld --no-pager -o cat")
    assert TLS_CA_ERROR.search(log), f"no x509 error in flanneld's journal:\n{log[-2000:]}"


def test_boot_does_not_finish(machine: Any) -> None:
    """multi-user.target waits for docker, docker for flanneld: the node says it is starting."""
    state = machine.run("systemctl is-system-running").stdout.strip()
    assert state == "starting", state


def test_docker_does_not_start(machine: Any) -> None:
    machine.run("systemctl start --no-block docker")  # what an operator might try
    time.sleep(3)
    docker = units(machine, "docker", props="ActiveState,MainPID")["docker"]
    docker0 = machine.run("ip -4 -o addr show dev docker0").stdout.strip()
    assert docker["ActiveState"] != "active" and docker["MainPID"] == "0", docker
    assert machine.run("pgrep -x dockerd").rc != 0, "a dockerd process runs"
    assert docker0 == "", f"docker0 has an address without flannel: {docker0}"
    assert not machine.file(SUBNET_ENV).exists
    assert not machine.file(DOCKER_ENV).exists
