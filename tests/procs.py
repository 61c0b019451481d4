"""`build.py` as a separate process, for what only a process shows: signals, exit codes, races."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent


class BuildPy:
    """One `build.py` run; its stderr is collected line by line while it runs."""

    def __init__(
        self, config: Path, build: Path, *args: str, env: dict[str, str] | None = None
    ) -> None:
        cmd = [sys.executable, str(REPO / "build.py"), "--config", str(config)]
        self.proc = subprocess.Popen(
            [*cmd, "--build-dir", str(build), *args],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env={**os.environ, **(env or {})},
            # a shell without job control starts background jobs with SIGINT ignored; the
            # test sends SIGINT as a terminal would, so the child must have the default
            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        )
        self.lines: list[str] = []
        self.out = ""
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line)

    @property
    def err(self) -> str:
        return "".join(self.lines)

    def wait_until(self, condition: Callable[[], bool], timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if self.proc.poll() is not None:
                raise AssertionError(f"build.py ended (rc {self.proc.returncode}): {self.err}")
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting; stderr so far: {self.err}")
            time.sleep(0.02)

    def interrupt(self) -> float:
        """Send one SIGINT (a Ctrl-C); return the seconds until the process has ended."""
        start = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        try:
            self.proc.wait(timeout=30)
        finally:
            self.kill()
        return time.monotonic() - start

    def wait(self, timeout: float = 120) -> int:
        try:
            rc = self.proc.wait(timeout=timeout)
        finally:
            self.kill()
        return rc

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()
        self._reader.join(5)
        if self.proc.stdout is not None and not self.proc.stdout.closed:
            self.out = self.proc.stdout.read()
            self.proc.stdout.close()
