"""`make mutate`: mutation testing with cosmic-ray over the modules in mutation/targets.toml.

Each module gets its own cosmic-ray session in build/mutation/<module>.sqlite: the module is
mutated in place, one mutant at a time, and its tests run against each (the file is restored
after every run). Prints per module the mutants killed, the survivors (line, operator, diff), the
time taken, and the total score over the non-equivalent mutants.

    python -m mutation.run                  # every target
    python -m mutation.run flannelnode/lock.py flannelnode/arch.py
    MUTATE_RESUME=1 python -m mutation.run  # go on with sessions already begun
    MUTATE_SURVIVORS=1 python -m mutation.run  # after adding tests: run the survivors again
"""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import sqlite3
import subprocess
import sys
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path

from . import filters

REPO = Path(__file__).resolve().parent.parent
OUT = REPO / "build" / "mutation"
TARGETS = Path(__file__).resolve().parent / "targets.toml"
TIMEOUT = 300.0  # the most seconds per mutant: a mutant that hangs the tests counts as killed


@dataclass(frozen=True)
class Survivor:
    module: str
    line: int
    operator: str
    diff: str


def _entry(test: str) -> str:
    return f"{shlex.quote(sys.executable)} -m pytest -x -q -p no:cacheprovider {test}"


def _test_command(tests: list[str], limits: list[float] | None = None) -> str:
    """One command for all the entries. cosmic-ray runs it without a shell (shlex.split), so the
    `&&` between entries needs `sh -c`: bare, it reached pytest as a file name, and pytest's exit 4
    counted every mutant as killed. limits: seconds per entry (coreutils' timeout, whose exit 124
    kills the mutant), so that a mutant looping in a fast first entry costs that entry's limit,
    not the whole target's."""
    entries = [_entry(t) for t in tests]
    if limits is not None:
        entries = [
            f"timeout -k 5 {limit:.0f} {e}" for e, limit in zip(entries, limits, strict=True)
        ]
    return f"sh -c {shlex.quote(' && '.join(entries))}"


def timeout_after(baseline: float) -> float:
    """A mutant that loops forever (a parser's index that stops moving) costs this much: ten times
    the unmutated run, at least 30 s for a loaded host, at most TIMEOUT."""
    return min(TIMEOUT, max(30.0, 10 * baseline))


def _config(
    module: str,
    tests: list[str],
    path: Path,
    timeout: float = TIMEOUT,
    limits: list[float] | None = None,
) -> None:
    path.write_text(
        "[cosmic-ray]\n"
        f"module-path = {json.dumps(module)}\n"
        f"timeout = {timeout:.0f}\n"
        "excluded-modules = []\n"
        f"test-command = {json.dumps(_test_command(tests, limits))}\n"
        '\n[cosmic-ray.distributor]\nname = "local"\n'
    )


def _equivalent() -> set[tuple[str, str, str]]:
    """(module, operator, the mutated line, stripped): stable when lines move."""
    table = tomllib.loads(TARGETS.read_text())
    return {(e["module"], e["operator"], e["mutant"].strip()) for e in table.get("equivalent", [])}


def _mutated_line(diff: str) -> str:
    """The first added line; for a mutant that only removes lines (a decorator), the first removed
    one with its "-", so that removing `@cache` and removing `@property` stay apart."""
    lines = diff.splitlines()
    added = [ln[1:] for ln in lines if ln.startswith("+") and not ln.startswith("+++")]
    if added:
        return added[0].strip()
    removed = [ln[1:].strip() for ln in lines if ln.startswith("-") and not ln.startswith("---")]
    removed = [ln for ln in removed if ln]  # cosmic-ray's diff takes the blank lines above too
    return "-" + removed[0] if removed else ""


def _module_path(module: str, stem: str) -> str:
    """cosmic-ray only mutates files named *.py: a script (the node seeder) is reached through a
    symlink under build/mutation/, which cosmic-ray's writes follow to the script itself."""
    if module.endswith(".py"):
        return module
    link = OUT / "scripts" / f"{stem}.py"
    link.parent.mkdir(parents=True, exist_ok=True)
    link.unlink(missing_ok=True)
    link.symlink_to(REPO / module)
    return str(link.relative_to(REPO))


class BaselineFailed(Exception):
    """The tests fail on the unmutated code: every mutant would count as killed."""


def check_baseline(module: str, tests: list[str]) -> list[float]:
    """Run each of the target's entries once, unmutated; how long each took. A failing baseline
    (a missing tool, a typo in a `-k`, dockerd down) would otherwise score 100%."""
    took = []
    for test in tests:
        started = time.monotonic()
        result = subprocess.run(
            shlex.split(_test_command([test])),
            cwd=REPO,
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        if result.returncode != 0:
            tail = "\n".join((result.stdout + result.stderr).splitlines()[-15:])
            raise BaselineFailed(
                f"{module}: its tests fail before any mutation (exit {result.returncode}, "
                f"{test}); fix them or the target's `tests` in {TARGETS.name} first:\n{tail}"
            )
        took.append(time.monotonic() - started)
    return took


class StaleSession(Exception):
    """MUTATE_SURVIVORS on a session whose module has changed since: its mutants' lines moved."""


def _digest(module: str) -> str:
    return hashlib.sha256((REPO / module).read_bytes()).hexdigest()


def _forget_survivors(module: str, session: Path, digest_file: Path) -> int:
    """Drop the survivors' results so that `cosmic-ray exec` runs them again, against the tests
    as they are now. Valid only while the module is byte for byte the one the session mutated."""
    if not session.exists():
        raise StaleSession(f"{module}: no session in {session} to take survivors from")
    if not digest_file.exists() or digest_file.read_text() != _digest(module):
        raise StaleSession(
            f"{module} changed since its session began ({session}); run it whole (without "
            "MUTATE_SURVIVORS)"
        )
    with sqlite3.connect(session) as db:
        return db.execute("DELETE FROM work_results WHERE test_outcome = 'SURVIVED'").rowcount


def run_module(module: str, tests: list[str]) -> tuple[int, int, list[Survivor], float]:
    """(killed, counted, survivors, seconds) for one module."""
    OUT.mkdir(parents=True, exist_ok=True)
    baseline = check_baseline(module, tests)
    limits = [timeout_after(seconds) for seconds in baseline]
    stem = module.replace("/", "_").replace("-", "_").removesuffix(".py")
    config, session = OUT / f"{stem}.toml", OUT / f"{stem}.sqlite"
    _config(_module_path(module, stem), tests, config, min(TIMEOUT, sum(limits)) + 10, limits)
    started = time.monotonic()
    cosmic = [sys.executable, "-m", "cosmic_ray.cli"]
    twins_file, digest_file = OUT / f"{stem}.twins.json", OUT / f"{stem}.sha256"
    if os.environ.get("MUTATE_SURVIVORS"):
        again = _forget_survivors(module, session, digest_file)
        print(f"{module}: running its {again} survivors again", flush=True)
    elif not (os.environ.get("MUTATE_RESUME") and session.exists()):
        session.unlink(missing_ok=True)
        digest_file.write_text(_digest(module))
        subprocess.run([*cosmic, "init", str(config), str(session)], check=True, cwd=REPO)
        twins, annotations = filters.mark(session, REPO)
        twins_file.write_text(json.dumps(twins))
        print(f"{module}: {annotations} mutants in annotations not run (never evaluated)")
    twin_of = json.loads(twins_file.read_text()) if twins_file.exists() else {}
    subprocess.run([*cosmic, "exec", str(config), str(session)], check=True, cwd=REPO)
    dump = subprocess.run(
        [*cosmic, "dump", str(session)], check=True, cwd=REPO, capture_output=True, text=True
    ).stdout
    equivalent = _equivalent()
    jobs = [json.loads(line) for line in dump.splitlines()]
    outcome = {job["job_id"]: (result or {}).get("test_outcome") for job, result in jobs}
    weight = {job_id: 1 for job_id in outcome}
    for twin, runs in twin_of.items():  # a twin counts with the outcome of the one that ran
        weight[runs] += 1
        weight[twin] = 0
    killed = counted = 0
    survivors = []
    for job, result in jobs:
        if result is None or not weight[job["job_id"]]:
            continue
        mutation = job["mutations"][0]
        diff = result.get("diff") or ""
        operator = mutation["operator_name"]
        if (module, operator, _mutated_line(diff)) in equivalent:
            continue
        if outcome[job["job_id"]] in (None, "incompetent"):  # not run, or could not be made
            continue
        counted += weight[job["job_id"]]
        if outcome[job["job_id"]] == "survived":
            survivors.append(Survivor(module, int(mutation["start_pos"][0]), operator, diff))
        else:
            killed += weight[job["job_id"]]
    return killed, counted, survivors, time.monotonic() - started


def main(argv: list[str]) -> int:
    targets = tomllib.loads(TARGETS.read_text())["target"]
    if argv:
        targets = [t for t in targets if t["module"] in argv]
    total_killed = total = 0
    lines = []
    for target in targets:
        try:
            killed, counted, survivors, seconds = run_module(target["module"], target["tests"])
        except (BaselineFailed, StaleSession) as error:
            print(error, file=sys.stderr)
            return 1
        total_killed, total = total_killed + killed, total + counted
        lines.append(f"{target['module']}: {killed}/{counted} killed in {seconds:.0f}s")
        for s in survivors:
            lines.append(f"  SURVIVED {s.module}:{s.line} {s.operator}\n{s.diff}")
        print(lines[-1 - len(survivors)], flush=True)
    print("\n".join(lines))
    score = 100.0 * total_killed / total if total else 100.0
    print(f"mutation score: {total_killed}/{total} = {score:.1f}% of non-equivalent mutants")
    return 0 if score >= 90.0 else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
