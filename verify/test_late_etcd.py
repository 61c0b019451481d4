"""Late etcd: nodes booted before their etcd is up (a whole-cluster power-on) come up on flannel
by themselves once it is, however late, without a manual step.

late1 boots for the first time: its seeder waits for etcd, flanneld after it. late2 was seeded
before (its seed unit is skipped): flanneld itself waits, for longer than systemd's default start
timeout. Their etcd (etcd-late) starts only the lab's late_etcd_delay after they booted; the
nodes boot with the others, so the delay runs while the other checks do. Until it starts, both
wait visibly without docker; then, within LATE_TIMEOUT, both hold distinct leases in it and run
docker on them, and the network config is written exactly once.
"""

from __future__ import annotations

import ipaddress
import json
import time
from dataclasses import dataclass, field
from typing import Any

import pytest
import testinfra

from .checks import DOCKER_ENV, SUBNET_ENV, dockerd_args, env_file, lease_network, leases, units
from .checks import node_ip as container_ip
from .containers import VerifyError, wait_for
from .plugin import lab_of

LATE_TIMEOUT = 240  # etcd-late healthy -> every late node with docker active and booted
WATCH = 7  # seconds between two looks at the waiting nodes (> flanneld's RestartSec=5s)
UNITS = ("flannel-seed-etcd", "flanneld", "docker")


@dataclass
class LateRun:
    """What the late nodes looked like before etcd-late started, and how they came up."""

    waiting: list[dict[str, dict[str, Any]]] = field(default_factory=list)  # looks, per node
    errors: dict[str, str] = field(default_factory=dict)  # node -> why it did not come up
    seconds: float = 0.0  # etcd-late healthy -> the last late node booted with docker active


def _machine(node: Any) -> Any:
    return testinfra.get_host(f"docker://{node.container.name}")


def _look(machine: Any) -> dict[str, Any]:
    """A read-only snapshot of a waiting node."""
    jobs = machine.run("systemctl list-jobs --no-legend --plain").stdout
    return {
        "units": units(machine, *UNITS),
        "jobs": {line.split()[1]: line.split()[2:] for line in jobs.splitlines() if line.split()},
        "system": machine.run("systemctl is-system-running").stdout.strip(),
        "dockerd": machine.run("pgrep -x dockerd").rc == 0,
        "docker0": machine.run("ip -4 -o addr show dev docker0").stdout.strip(),
        "files": [p for p in (SUBNET_ENV, DOCKER_ENV) if machine.file(p).exists],
    }


def _late_nodes(lab: Any) -> list[Any]:
    nodes = [n for n in lab.nodes.values() if n.role == "late"]
    if not nodes:
        pytest.skip("this lab has no late nodes")
    return nodes


@pytest.fixture(scope="module")
def late(request: pytest.FixtureRequest) -> LateRun:
    """Look at the late nodes, wait out the delay, look again, start etcd-late, and wait (bounded)
    until each late node has booted with docker active. Only reads the nodes meanwhile."""
    lab = lab_of(request.config)
    nodes = _late_nodes(lab)
    result = LateRun()
    if any(n.error for n in nodes) or lab.late_etcd_due is None:
        result.errors = {n.name: f"did not boot into the wait: {n.error}" for n in nodes}
        return result
    first = time.monotonic()
    result.waiting.append({n.name: _look(_machine(n)) for n in nodes})
    time.sleep(max(0.0, lab.late_etcd_due - time.monotonic(), first + WATCH - time.monotonic()))
    result.waiting.append({n.name: _look(_machine(n)) for n in nodes})

    lab.start_late_etcd()
    started = lab.late_etcd_started_at
    for node in nodes:
        machine = _machine(node)

        def up(machine: Any = machine) -> bool:
            state = machine.run("systemctl is-system-running").stdout.strip()
            return state in ("running", "degraded") and machine.service("docker").is_running

        left = started + LATE_TIMEOUT - time.monotonic()
        try:
            wait_for(f"{node.name} up after etcd-late started", up, left, every=1)
        except VerifyError as exc:
            result.errors[node.name] = str(exc)
            continue
        # systemd's monotonic clock is the host's: exact, no polling delay in it
        out = machine.check_output("systemctl show -p ActiveEnterTimestampMonotonic docker")
        node.after_etcd = round(int(out.split("=", 1)[1]) / 1e6 - started, 2)
    result.seconds = round(time.monotonic() - started, 1)
    return result


def test_late_nodes_boot_into_a_wait(lab: Any) -> None:
    for node in _late_nodes(lab):
        assert node.error is None, f"{node.name}: {node.error}"


def test_late_nodes_wait_without_docker_while_etcd_is_down(lab: Any, late: LateRun) -> None:
    assert len(late.waiting) == 2, "the late nodes were not looked at before etcd-late started"
    pids: dict[str, set[str]] = {}
    for look in late.waiting:
        for node in _late_nodes(lab):
            seen = look[node.name]
            where = f"{node.name}: {seen}"
            seed, flanneld, docker = (seen["units"][u] for u in UNITS)
            # docker: not running, never on its default bridge, but its start still queued
            assert docker["ActiveState"] != "active" and not seen["dockerd"], where
            assert seen["docker0"] == "", where
            assert seen["files"] == [], where
            assert seen["jobs"].get("docker.service", [""])[0] == "start", where
            assert seen["system"] == "starting", where
            # whoever waits for etcd is still at it, not failed and not given up
            if node.seeded_before:
                assert flanneld["ActiveState"] == "activating", where
                assert flanneld["NRestarts"] == "0", where
                pids.setdefault(node.name, set()).add(flanneld["MainPID"])
            else:
                assert seed["ActiveState"] == "activating", where
                assert flanneld["ActiveState"] == "inactive", where
                assert seen["jobs"].get("flanneld.service", [""])[0] == "start", where
    for name, seen_pids in pids.items():
        assert len(seen_pids) == 1, f"{name}: flanneld was restarted while waiting: {seen_pids}"


def test_late_nodes_come_up_by_themselves(lab: Any, late: LateRun) -> None:
    assert not late.errors, late.errors
    for node in _late_nodes(lab):
        machine = _machine(node)
        flanneld = units(machine, "flanneld")["flanneld"]
        assert flanneld["ActiveState"] == "active", f"{node.name}: {flanneld}"
        assert flanneld["NRestarts"] == "0", f"{node.name}: flanneld gave up and was restarted"
        status = machine.run("cloud-init status --long")
        assert "status: done" in status.stdout, f"{node.name}: {status.stdout}"


def test_late_nodes_hold_distinct_leases_in_the_late_etcd(lab: Any, late: LateRun) -> None:
    assert not late.errors, late.errors
    nodes = _late_nodes(lab)
    held = leases(lab, lab.late_etcd)
    owners = {kv["value"]["PublicIP"]: net for net, kv in held.items()}
    assert len(held) == len(nodes), f"{len(held)} leases for {len(nodes)} late nodes: {owners}"
    for node in nodes:
        ip = container_ip(node)
        assert ip in owners, f"{node.name} ({ip}) holds no lease: {owners}"
        env = env_file(_machine(node), SUBNET_ENV)
        assert lease_network(env) == ipaddress.ip_network(owners[ip]), (node.name, env, owners)
    assert len(set(owners.values())) == len(nodes)


def test_late_docker_runs_on_the_lease(lab: Any, late: LateRun) -> None:
    assert not late.errors, late.errors
    for node in _late_nodes(lab):
        machine = _machine(node)
        env = env_file(machine, SUBNET_ENV)
        args = dockerd_args(machine)
        assert [a for a in args if a.startswith("--bip")] == [f"--bip={env['FLANNEL_SUBNET']}"]
        assert [a for a in args if a.startswith("--mtu")] == [f"--mtu={env['FLANNEL_MTU']}"]
        docker0 = machine.check_output("ip -4 -o addr show dev docker0")
        assert f"inet {env['FLANNEL_SUBNET']} " in docker0, (node.name, docker0)


def test_late_config_seeded_exactly_once(lab: Any, late: LateRun) -> None:
    assert not late.errors, late.errors
    kv = lab.late_etcd.get(f"{lab.config.etcd.prefix}/config")
    assert kv is not None, "no network config in etcd-late"
    assert json.loads(kv["value"]) == lab.config.network
    assert kv["version"] == 1, f"the config was written {kv['version']} times"
    wrote = 0
    for node in _late_nodes(lab):
        log = _machine(node).run("journalctl -u flannel-seed-etcd --no-pager -o cat").stdout
        wrote += log.count("flannel-seed-etcd: wrote the network config")
    assert wrote == 1, f"{wrote} late nodes say they wrote the config"
