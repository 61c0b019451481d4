"""An exclusive lock on a file between processes (and threads), waited for in small steps.

flock(2) is released by the kernel when its holder ends, however it ends (kill -9 included), so a
crashed run never leaves a stale lock. The lock file itself is never deleted: a process could
otherwise lock a fresh file of the same name while another still holds the unlinked one. Every
open() is its own lock owner, so two threads of one process exclude each other too.

The wait polls with LOCK_NB instead of blocking in flock: it must notice the stop flag (Ctrl-C)
within a fraction of a second, and give up when the holder makes no progress for `idle_limit`
seconds or holds on for more than `max_wait` seconds in all.
"""

from __future__ import annotations

import fcntl
import os
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import FetchError, Interrupted

POLL = 0.05  # seconds between attempts while another holder has the lock


@contextmanager
def exclusive(
    path: Path,
    *,
    stop: threading.Event,
    progress: Callable[[], Hashable],
    idle_limit: float,
    max_wait: float,
    waiting: Callable[[], None] = lambda: None,
    what: str = "",
) -> Iterator[None]:
    """Hold path's lock for the block. `progress()` changes while the holder gets on with it;
    `waiting()` is called once, if the lock is taken when we ask."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
    try:
        _acquire(fd, path, stop, progress, idle_limit, max_wait, waiting, what)
        yield
    finally:
        os.close(fd)  # releases the lock


def _acquire(
    fd: int,
    path: Path,
    stop: threading.Event,
    progress: Callable[[], Hashable],
    idle_limit: float,
    max_wait: float,
    waiting: Callable[[], None],
    what: str,
) -> None:
    start = changed = time.monotonic()
    seen = progress()
    told = False
    while True:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            pass
        if not told:
            waiting()
            told = True
        if stop.wait(POLL):
            raise Interrupted(f"{what or path}: interrupted while waiting for {path}")
        now, marker = time.monotonic(), progress()
        if marker != seen:
            seen, changed = marker, now
        if now - changed > idle_limit or now - start > max_wait:
            why = (
                f"has made no progress for {idle_limit:.0f} s"
                if now - changed > idle_limit
                else f"has held it for {max_wait:.0f} s"
            )
            raise FetchError(
                f"{what or path}: another flannelnode run holds the lock {path} and {why}. "
                "Stop that run (or let it finish) and try again, or give this run a cache of "
                "its own with FLANNELNODE_CACHE"
            )
