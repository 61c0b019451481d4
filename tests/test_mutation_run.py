"""mutation/run.py's test command, run the way cosmic-ray runs it (cosmic_ray.testing.run_tests:
shlex.split, no shell): every entry of a target's `tests` runs, and any failing one kills."""

from __future__ import annotations

import time
import tomllib
from pathlib import Path

import pytest
from cosmic_ray.testing import run_tests
from cosmic_ray.work_item import TestOutcome as Outcome

from mutation import run


@pytest.fixture
def suite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "test_a.py").write_text("def test_a():\n    pass\n")
    bad = "def test_ok():\n    pass\n\ndef test_bad():\n    assert 0\n"
    (tmp_path / "test_b.py").write_text(bad)
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("tests", "outcome"),
    [
        (["test_a.py"], Outcome.SURVIVED),
        (["test_a.py", "test_b.py -k ok"], Outcome.SURVIVED),
        (["test_a.py", "test_b.py -k 'ok or bad'"], Outcome.KILLED),
        (["test_b.py -k bad", "test_a.py"], Outcome.KILLED),
    ],
)
def test_every_entry_runs_and_any_failure_kills(suite: Path, tests: list[str], outcome) -> None:
    result, output = run_tests(run._test_command(tests), timeout=120)
    assert result == outcome, output


def test_the_second_entry_really_runs(suite: Path) -> None:
    result, output = run_tests(run._test_command(["test_a.py", "test_b.py -k ok"]), timeout=120)
    assert result == Outcome.SURVIVED
    assert output.count("1 passed") == 2, output


def test_the_config_file_holds_the_command(suite: Path) -> None:
    tests = ["test_a.py", "test_b.py -k 'ok or bad'"]
    run._config("m.py", tests, suite / "c.toml")
    config = tomllib.loads((suite / "c.toml").read_text())["cosmic-ray"]
    assert config["test-command"] == run._test_command(tests)


def test_a_failing_baseline_stops_the_module(suite: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(run, "REPO", suite)
    with pytest.raises(run.BaselineFailed, match=r"m\.py: its tests fail before any mutation"):
        run.check_baseline("m.py", ["test_a.py", "test_b.py -k bad"])
    took = run.check_baseline("m.py", ["test_a.py", "test_b.py -k ok"])
    assert len(took) == 2 and all(0 < seconds < run.TIMEOUT for seconds in took)


def test_a_mutant_looping_in_a_fast_entry_costs_that_entrys_limit(suite: Path) -> None:
    (suite / "test_hang.py").write_text("import time\n\ndef test_hang():\n    time.sleep(120)\n")
    started = time.monotonic()
    result, output = run_tests(run._test_command(["test_hang.py", "test_a.py"], [2, 60]), 120)
    assert result == Outcome.KILLED, output
    assert time.monotonic() - started < 30  # the first entry's 2 s, not cosmic-ray's 120 s
    result, output = run_tests(run._test_command(["test_a.py", "test_b.py -k ok"], [30, 30]), 120)
    assert result == Outcome.SURVIVED, output


@pytest.mark.parametrize(("baseline", "timeout"), [(0.5, 30.0), (4.0, 40.0), (60.0, run.TIMEOUT)])
def test_a_hanging_mutant_costs_ten_baselines_within_bounds(
    baseline: float, timeout: float
) -> None:
    assert run.timeout_after(baseline) == timeout


def test_survivors_run_again_against_new_tests_and_only_while_the_module_is_unchanged(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real cosmic-ray session on a one-line module: a weak test lets `+x` and `x` survive;
    after a stronger test, MUTATE_SURVIVORS runs only those again, and they are killed."""
    (tmp_path / "m.py").write_text("def f(x):\n    return -x\n")
    (tmp_path / "test_m.py").write_text("from m import f\n\ndef test_f():\n    assert f(0) == 0\n")
    monkeypatch.setattr(run, "REPO", tmp_path)
    monkeypatch.setattr(run, "OUT", tmp_path / "out")
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MUTATE_RESUME", raising=False)
    monkeypatch.delenv("MUTATE_SURVIVORS", raising=False)
    killed, counted, survivors, _ = run.run_module("m.py", ["test_m.py"])
    assert sorted(s.operator for s in survivors) == [
        "core/ReplaceUnaryOperator_Delete_USub",
        "core/ReplaceUnaryOperator_USub_UAdd",
    ]
    assert killed == counted - 2

    (tmp_path / "test_m.py").write_text("from m import f\n\ndef test_f():\n    assert f(2) == -2\n")
    monkeypatch.setenv("MUTATE_SURVIVORS", "1")
    assert run.run_module("m.py", ["test_m.py"])[:3] == (counted, counted, [])

    (tmp_path / "m.py").write_text("def f(x):\n    return 0 - x\n")
    with pytest.raises(run.StaleSession, match=r"m\.py changed since its session began"):
        run.run_module("m.py", ["test_m.py"])


def test_a_mutant_is_keyed_by_its_added_line_or_else_its_removed_one() -> None:
    header = "--- mutation diff ---\n--- a/m.py\n+++ b/m.py\n@@ -1,3 +1,2 @@\n"
    changed = header + "-    return a < b\n+    return a <= b\n"
    removed = header + "-\n-\n-@cache\n def fold(c):\n"
    assert run._mutated_line(changed) == "return a <= b"
    assert run._mutated_line(removed) == "-@cache"
    assert run._mutated_line(header + "-@property\n") != run._mutated_line(removed)
