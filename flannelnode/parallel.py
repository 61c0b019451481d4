"""Run a few jobs at once so that one Ctrl-C still ends the command within a second.

concurrent.futures joins its worker threads before the process may exit, so a worker blocked in
a socket read (a stalled server: up to fetch.timeout) held the process long after Ctrl-C. These
workers are daemon threads instead: on KeyboardInterrupt the main thread sets `stop`, which every
wait and read loop of a job checks, gives the workers `grace` seconds to leave cleanly, and
re-raises; a worker still blocked in the kernel ends with the process. That is safe because of
what a job may leave behind: a partial download is a prefix of the asset, resumed by the next run;
outputs are staged in temp dirs that replace their target only when complete; a cache lock is
released by the kernel when the process ends.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

GRACE = 0.3  # seconds the workers get to notice `stop` after Ctrl-C


def run(
    jobs: Sequence[Callable[[], Any]], stop: threading.Event, workers: int = 4
) -> list[tuple[Any, BaseException | None]]:
    """(result, exception) per job, in the order of jobs. Raises KeyboardInterrupt on Ctrl-C."""
    outcomes: list[tuple[Any, BaseException | None]] = [(None, None)] * len(jobs)
    pending = iter(range(len(jobs)))
    take = threading.Lock()

    def worker() -> None:
        while not stop.is_set():
            with take:
                i = next(pending, None)
            if i is None:
                return
            try:
                outcomes[i] = (jobs[i](), None)
            except BaseException as exc:  # handed to the caller, who decides what is fatal
                outcomes[i] = (None, exc)

    threads = [
        threading.Thread(target=worker, name=f"flannelnode-{n}", daemon=True)
        for n in range(max(1, min(workers, len(jobs))))
    ]
    for t in threads:
        t.start()
    try:
        for t in threads:
            while t.is_alive():
                t.join(0.1)  # short waits: the main thread must see SIGINT at once
    except KeyboardInterrupt:
        stop.set()
        deadline = time.monotonic() + GRACE
        for t in threads:
            t.join(max(0.0, deadline - time.monotonic()))
        raise
    return outcomes
