"""HTTP download with bounded retries, backoff and resume (HTTP Range).

Retried: 5xx, 429, dropped connections, timeouts, short bodies. Not retried: other 4xx (the asset
is not there; asking again will not make it appear). Standard proxy variables apply (requests).

Resume is exact: every byte that arrived is in the partial file (the body is read with read1,
which hands over whatever the socket delivered, so a cut loses nothing), and the next attempt asks
for `Range: bytes=<partial size>-`. The body is asked for without content coding (identity), so
the bytes on the wire are the asset's bytes and a range offset means the same in both.
"""

from __future__ import annotations

import random
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from . import neterror, urls
from .errors import FetchError, IntegrityError, Interrupted

if TYPE_CHECKING:
    import requests

CHUNK = 1 << 20  # read1 returns what has arrived, up to this
MAX_BACKOFF = 30.0
MAX_SECONDS = 3600.0  # one download, all attempts: a 40 MB flanneld at 12 KB/s; slower: a mirror
MAX_BYTES = 1 << 30  # flanneld is ~40 MB; a body past this is no flannel asset (or never ends)

Progress = Callable[[int, int | None], None]  # (bytes so far, total or None)


class _Retry(Exception):
    """A failure worth another attempt."""


def session() -> requests.Session:
    import requests  # imported here: a verified cache hit must not pay for it

    s = requests.Session()
    s.headers["User-Agent"] = "flannelnode"
    return s


def download(
    url: str,
    part: Path,
    *,
    http: requests.Session,
    timeout: float,
    retries: int,
    backoff: float,
    progress: Progress | None = None,
    log: Callable[[str], None] = lambda msg: None,
    stop: threading.Event | None = None,
) -> None:
    """Fetch url into part, resuming from whatever part already holds.

    `stop` (set on Ctrl-C) ends a retry wait at once and a transfer at its next read.
    """
    import requests
    from urllib3.exceptions import HTTPError as Urllib3Error

    stop = stop or threading.Event()
    shown = urls.redact(url)
    deadline = time.monotonic() + MAX_SECONDS
    last = ""
    for attempt in range(retries + 1):
        if attempt:
            delay = min(MAX_BACKOFF, backoff * 2 ** (attempt - 1)) * random.uniform(0.5, 1.0)
            log(f"retrying {shown} in {delay:.1f}s (attempt {attempt + 1}/{retries + 1}): {last}")
            if stop.wait(delay):
                raise Interrupted(f"{shown}: interrupted")
        try:
            _attempt(url, part, http, timeout, progress, stop, deadline)
            return
        except _Retry as exc:
            last = str(exc)
        except (requests.ConnectionError, requests.Timeout) as exc:
            if neterror.unresolvable(exc):  # asking the resolver again will not help
                raise FetchError(
                    f"{shown}: {neterror.describe(exc, url)}. Check the host name (fetch.mirror, "
                    "fetch.github, the proxy variables) and this host's DNS, or use --local"
                ) from None
            last = neterror.describe(exc, url)
        except (requests.exceptions.ChunkedEncodingError, Urllib3Error) as exc:
            last = f"connection dropped mid-body: {neterror.describe(exc, url)}"
    raise FetchError(f"{shown}: gave up after {retries + 1} attempts; last error: {last}")


def _attempt(
    url: str,
    part: Path,
    http: requests.Session,
    timeout: float,
    progress: Progress | None,
    stop: threading.Event,
    deadline: float,
) -> None:
    shown = urls.redact(url)
    have = part.stat().st_size if part.exists() else 0
    headers = {"Accept-Encoding": "identity"}
    if have:
        headers["Range"] = f"bytes={have}-"
    with http.get(url, headers=headers, stream=True, timeout=timeout) as resp:
        if resp.status_code == 416:  # our partial is longer than the asset: start over
            part.unlink()
            raise _Retry("server refused the resume range; restarting from zero")
        if resp.status_code >= 500 or resp.status_code == 429:
            raise _Retry(f"HTTP {resp.status_code} {resp.reason}")
        if resp.status_code == 404:
            raise FetchError(
                f"{shown}: HTTP 404 Not Found. The release may not publish this asset, or the "
                "mirror does not hold it; check the version and arch, or set --mirror/--local"
            )
        if resp.status_code not in (200, 206):
            raise FetchError(f"{shown}: HTTP {resp.status_code} {resp.reason}")
        coding = resp.headers.get("Content-Encoding", "identity").lower()
        if coding != "identity":
            raise FetchError(
                f"{shown}: the server sent the asset with Content-Encoding {coding} although "
                "flannelnode asked for the bytes as they are (identity); use another mirror"
            )
        if resp.status_code == 200:
            have = 0  # the server ignored Range: the body is the whole asset
        elif not resp.headers.get("Content-Range", "").startswith(f"bytes {have}-"):
            part.unlink()
            raise _Retry(f"server answered the resume with {resp.headers.get('Content-Range')}")
        length = resp.headers.get("Content-Length")
        total = have + int(length) if length and length.isdigit() else None
        got = have
        if total is not None and total > MAX_BYTES:
            _too_big(shown, part)
        with part.open("ab" if have else "wb") as out:
            while chunk := resp.raw.read1(CHUNK, decode_content=False):
                out.write(chunk)
                got += len(chunk)
                if stop.is_set():
                    raise Interrupted(f"{shown}: interrupted")
                if got > MAX_BYTES:
                    out.close()
                    _too_big(shown, part)
                if time.monotonic() > deadline:
                    raise FetchError(
                        f"{shown}: not finished after {MAX_SECONDS:.0f} s ({got} bytes so far); "
                        "the link is too slow. Run again to resume, or use --mirror or --local"
                    )
                if progress:
                    progress(got, total)
        if total is not None and got < total:
            raise _Retry(f"truncated body: {got} of {total} bytes")


def _too_big(shown: str, part: Path) -> None:
    part.unlink(missing_ok=True)
    raise IntegrityError(
        f"{shown}: the body is over {MAX_BYTES >> 20} MiB; no flannel release asset is near that "
        "big. Check what the mirror serves under this name"
    )
