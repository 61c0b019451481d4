"""A node whose user-data carries a CA that does not sign etcd's certificate must fail visibly
and must not bring docker up on a subnet of its own."""

from __future__ import annotations

from typing import Any

import pytest

from .checks import DOCKER_ENV, SUBNET_ENV
from .containers import wait_for

pytestmark = pytest.mark.parametrize("node", ["wrong-ca"], indirect=True)

SEEDER_LINE = "does not sign the server certificate"  # scripts/flannel-seed-etcd
FLANNELD_LINES = ("TLS error with etcd", "x509")  # the stand-in; real flanneld says x509: ...


def test_first_boot_fails_visibly(machine: Any) -> None:
    """cloud-init reports the error, a unit is failed, the journal says why in one line."""
    result = machine.run("cloud-init status --long")
    assert "status: error" in result.stdout, result.stdout
    failed = machine.check_output("systemctl list-units --failed --plain --no-legend")
    assert "cloud-final.service" in failed or "flanneld.service" in failed, failed
    log = machine.check_output("journalctl --no-pager -o cat")
    assert SEEDER_LINE in log, "the seeder's reason is not in the journal"


def test_flanneld_fails_with_a_clear_line(machine: Any) -> None:
    """Started by hand (or by the image at boot), flanneld fails on the CA, visibly."""
    machine.run("timeout 30 systemctl start flanneld")

    def failed_visibly() -> bool:
        log = machine.run("journalctl -u flanneld --no-pager -o cat").stdout
        return any(line in log for line in FLANNELD_LINES)

    wait_for("flanneld's TLS error in the journal", failed_visibly, timeout=30, every=1)
    assert not machine.service("flanneld").is_running
    result = machine.check_output("systemctl show -p Result --value flanneld").strip()
    assert result == "exit-code", f"flanneld Result={result}"


def test_docker_does_not_start(machine: Any) -> None:
    machine.run("timeout 30 systemctl start docker")  # what an operator might try
    docker0 = machine.run("ip -4 -o addr show dev docker0").stdout.strip()
    assert not machine.service("docker").is_running, f"docker runs without flannel: {docker0}"
    assert not machine.file(SUBNET_ENV).exists
    assert not machine.file(DOCKER_ENV).exists
    assert docker0 == ""
