"""The pytest side of a verify run: fixtures over the live Lab, and a readable summary.

verify.runner passes an instance of LabPlugin to pytest.main, so the checks in verify/test_*.py
see the lab that runner set up (and tears down). The checks cannot run without it.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
import testinfra

from .lab import Lab, Node


class LabPlugin:
    def __init__(self, lab: Lab) -> None:
        self._lab = lab
        self.results: list[tuple[str, str, str]] = []  # (check, outcome, first line of why)
        self.started = time.monotonic()

    # -- fixtures

    @pytest.fixture
    def lab(self) -> Lab:
        return self._lab

    @pytest.fixture
    def node(self, request: pytest.FixtureRequest) -> Node:
        return self._lab.nodes[request.param]

    @pytest.fixture
    def machine(self, node: Node) -> Any:
        """testinfra over docker exec into the node (its own fixture name: testinfra has `host`)."""
        return testinfra.get_host(f"docker://{node.container.name}")

    def pytest_generate_tests(self, metafunc: pytest.Metafunc) -> None:
        """`node`: every node that should come up on flannel, unless the test names its own."""
        if "node" in metafunc.fixturenames and not any(
            m.name == "parametrize" for m in metafunc.definition.iter_markers()
        ):
            good = [n.name for n in self._lab.nodes.values() if n.expect_docker]
            metafunc.parametrize("node", good, indirect=True)

    # -- summary

    @pytest.hookimpl(hookwrapper=True)
    def pytest_runtest_makereport(self, item: pytest.Item, call: Any):  # type: ignore[no-untyped-def]
        outcome = yield
        report = outcome.get_result()
        if report.when == "call" or (report.when == "setup" and report.outcome != "passed"):
            why = ""
            if report.failed:
                text = (
                    str(report.longrepr.reprcrash.message)
                    if hasattr(report.longrepr, "reprcrash")
                    else str(report.longrepr)
                )
                why = text.strip().splitlines()[0] if text.strip() else ""
            self.results.append((item.nodeid.split("::", 1)[-1], report.outcome, why))

    def summary(self) -> str:
        lab = self._lab
        lines = [f"flannelnode verify: image {lab.image} (run {lab.run_id})", ""]
        width = max((len(name) for name, _, _ in self.results), default=10)
        for name, outcome, why in self.results:
            mark = {"passed": "PASS", "failed": "FAIL", "skipped": "SKIP"}.get(outcome, outcome)
            lines.append(f"  {mark}  {name:<{width}}  {why}".rstrip())
        failed = sum(1 for _, o, _ in self.results if o != "passed")
        lines += ["", "boot: node container start -> docker running with flannel options"]
        samples = []
        for node in lab.nodes.values():
            if node.expect_docker:
                samples += node.boots
                shown = ", ".join(f"{b:.2f} s" for b in node.boots) or "-"
                lines.append(
                    f"  {node.name}: {shown}" + (f"  ({node.error})" if node.error else "")
                )
        if samples:
            samples.sort()
            median = (
                samples[len(samples) // 2]
                if len(samples) % 2
                else (samples[len(samples) // 2 - 1] + samples[len(samples) // 2]) / 2
            )
            lines.append(f"  median {median:.2f} s over {len(samples)} boots")
        late = [n for n in lab.nodes.values() if n.role == "late"]
        if late and lab.late_etcd_started_at is not None:
            booted = max(n.booted_at for n in late)
            lines += [
                "",
                f"late etcd: started {lab.late_etcd_started_at - booted:.0f} s after the late "
                f"nodes booted (delay {lab.late_etcd_delay:g} s); docker active after it:",
            ]
            for node in late:
                shown = f"{node.after_etcd:.2f} s" if node.after_etcd is not None else "never"
                lines.append(f"  {node.name}: {shown}")
        lines.append("")
        lines.append(
            f"{len(self.results) - failed} of {len(self.results)} checks passed"
            + (f", {failed} FAILED" if failed else "")
            + f" in {time.monotonic() - self.started:.0f} s"
        )
        return "\n".join(lines) + "\n"


def lab_of(config: pytest.Config) -> Lab:
    """The lab of this pytest session, for fixtures wider than a function (`lab` is one)."""
    for plugin in config.pluginmanager.get_plugins():
        if isinstance(plugin, LabPlugin):
            return plugin._lab
    raise RuntimeError("the verify checks run only through verify.run (python -m verify)")
