"""Progress for long work: a live bar on a terminal, plain timestamp-free lines in CI logs."""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from . import urls


class Reporter:
    def __init__(self, quiet: bool = False) -> None:
        self.quiet = quiet
        self.tty = sys.stderr.isatty()
        self._bars: Any = None
        self._lock = threading.Lock()

    def log(self, msg: str) -> None:
        if self.quiet:
            return
        msg = urls.scrub(msg)
        if self._bars is not None:
            self._bars.console.print(msg, markup=False, highlight=False)
        else:
            self._write(msg)

    def alarm(self, msg: str) -> None:
        """A message that must be seen even with -q (a skipped or weakened step)."""
        self._write(f"*** {urls.scrub(msg)}")

    def _write(self, msg: str) -> None:
        """Whole lines, one write each: worker threads log at the same time."""
        with self._lock:
            sys.stderr.write(msg + "\n")
            sys.stderr.flush()

    @contextmanager
    def bars(self) -> Iterator[None]:
        """Inside this block, transfers draw a bar each (on a terminal)."""
        if not self.tty or self.quiet:
            yield
            return
        from rich.progress import (
            BarColumn,
            DownloadColumn,
            Progress,
            TextColumn,
            TransferSpeedColumn,
        )

        with Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            DownloadColumn(),
            TransferSpeedColumn(),
            transient=False,
        ) as bars:
            self._bars = bars
            try:
                yield
            finally:
                self._bars = None

    def transfer(self, name: str):
        """A callback (bytes so far, total) for one transfer: a bar, or a line per quarter."""
        if self._bars is None:
            return None if self.quiet else self._quarters(name)
        with self._lock:
            task = self._bars.add_task(name, total=None)

        def update(done: int, total: int | None) -> None:
            self._bars.update(task, completed=done, total=total)

        return update

    def _quarters(self, name: str):
        logged = [0]

        def update(done: int, total: int | None) -> None:
            quarter = 4 * done // total if total else 0
            if 0 < quarter < 4 and quarter > logged[0]:
                logged[0] = quarter
                self.log(f"{name}: {done / 2**20:.1f} of {total / 2**20:.1f} MiB")

        return update
