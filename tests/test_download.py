"""download.download() against a scripted HTTP server on 127.0.0.1: each request takes the next
scripted answer (status, headers, body), so every branch of a transfer can be reached directly.
tests/test_fetch.py covers the same module through `build.py fetch` and the GitHub-like server."""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from flannelnode import download as dl
from flannelnode.errors import FetchError, IntegrityError, Interrupted

BODY = bytes(range(256)) * 64  # 16 KiB


class _Quiet(ThreadingHTTPServer):
    def handle_error(self, request: object, client_address: object) -> None:
        pass  # a client that hangs up mid-body is what several tests do


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    length: int | None = None  # Content-Length if not len(body); -1: none, the close ends it


class Scripted:
    """Answers in order; the last one repeats. `seen` holds each request's headers."""

    def __init__(self, *answers: Answer) -> None:
        self.answers = list(answers)
        self.seen: list[dict[str, str]] = []
        script = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                script.seen.append(dict(self.headers))
                a = script.answers.pop(0) if len(script.answers) > 1 else script.answers[0]
                self.send_response(a.status)
                for k, v in a.headers.items():
                    self.send_header(k, v)
                if a.length != -1:
                    self.send_header("Content-Length", str(a.length or len(a.body)))
                self.end_headers()
                self.wfile.write(a.body)
                self.close_connection = a.length is not None

        self.httpd = _Quiet(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        serve = threading.Thread(target=self.httpd.serve_forever, args=(0.02,), daemon=True)
        serve.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/flanneld-amd64"


@pytest.fixture
def serve() -> Iterator:
    servers: list[Scripted] = []

    def start(*answers: Answer) -> Scripted:
        servers.append(Scripted(*answers))
        return servers[-1]

    yield start
    for s in servers:
        s.httpd.shutdown()
        s.httpd.server_close()


def _get(
    url: str, part: Path, retries: int = 2, logged: list[str] | None = None, **kw
) -> list[str]:
    logged = [] if logged is None else logged
    with dl.session() as http:
        dl.download(
            url, part, http=http, timeout=5, retries=retries, backoff=0.01, log=logged.append, **kw
        )
    return logged


def test_a_whole_body_lands_in_the_part_file_with_progress(serve, tmp_path):
    s = serve(Answer(body=BODY))
    seen: list[tuple[int, int | None]] = []
    assert (
        _get(s.url, tmp_path / "part", progress=lambda got, total: seen.append((got, total))) == []
    )
    assert (tmp_path / "part").read_bytes() == BODY
    assert seen[-1] == (len(BODY), len(BODY))
    assert s.seen[0]["Accept-Encoding"] == "identity"  # the bytes as they are, never gzip
    assert s.seen[0]["User-Agent"] == "flannelnode"
    assert "Range" not in s.seen[0]


def test_a_partial_file_is_resumed_from_its_size(serve, tmp_path):
    part = tmp_path / "part"
    part.write_bytes(BODY[:1000])
    rest = Answer(206, {"Content-Range": f"bytes 1000-{len(BODY) - 1}/{len(BODY)}"}, BODY[1000:])
    s = serve(rest)
    seen: list[tuple[int, int | None]] = []
    _get(s.url, part, progress=lambda got, total: seen.append((got, total)))
    assert s.seen[0]["Range"] == "bytes=1000-"
    assert part.read_bytes() == BODY
    assert seen[-1] == (len(BODY), len(BODY))  # counted from the partial, not from zero


def test_a_server_ignoring_the_range_replaces_the_partial(serve, tmp_path):
    part = tmp_path / "part"
    part.write_bytes(b"stale bytes")
    _get(serve(Answer(body=BODY)).url, part)
    assert part.read_bytes() == BODY


def test_a_refused_range_restarts_from_zero(serve, tmp_path):
    part = tmp_path / "part"
    part.write_bytes(BODY + b"more than the asset")
    s = serve(Answer(416), Answer(body=BODY))
    logged = _get(s.url, part)
    assert part.read_bytes() == BODY
    assert "Range" not in s.seen[1]
    assert "server refused the resume range; restarting from zero" in logged[0]


def test_a_resume_answered_at_another_offset_starts_over(serve, tmp_path):
    part = tmp_path / "part"
    part.write_bytes(BODY[:1000])
    wrong = Answer(206, {"Content-Range": f"bytes 0-{len(BODY) - 1}/{len(BODY)}"}, BODY)
    s = serve(wrong, Answer(body=BODY))
    logged = _get(s.url, part)
    assert part.read_bytes() == BODY
    assert "server answered the resume with bytes 0-" in logged[0]
    assert "Range" not in s.seen[1]


@pytest.mark.parametrize("status", [500, 503, 429])
def test_5xx_and_429_are_retried_with_the_attempt_and_the_reason(serve, tmp_path, status):
    s = serve(Answer(status), Answer(body=BODY))
    logged = _get(s.url, tmp_path / "part", retries=1)
    assert (tmp_path / "part").read_bytes() == BODY
    (line,) = logged
    assert re.fullmatch(
        rf"retrying {re.escape(s.url)} in \d+\.\ds \(attempt 2/2\): HTTP {status} .+", line
    )


@pytest.mark.parametrize("status", [404, 403, 401, 410, 499])
def test_other_4xx_are_not_retried(serve, tmp_path, status):
    s = serve(Answer(status))
    with pytest.raises(FetchError, match=f"^{re.escape(s.url)}: HTTP {status}") as exc:
        _get(s.url, tmp_path / "part", retries=3)
    assert len(s.seen) == 1
    assert ("The release may not publish this asset" in str(exc.value)) is (status == 404)


def test_a_redirect_status_that_is_not_followed_is_an_error(serve, tmp_path):
    s = serve(Answer(304))
    with pytest.raises(FetchError, match=r": HTTP 304 Not Modified$"):
        _get(s.url, tmp_path / "part")


def test_giving_up_names_the_attempts_and_the_last_error(serve, tmp_path):
    s = serve(Answer(502))
    logged: list[str] = []
    with pytest.raises(FetchError, match=r"gave up after 3 attempts; last error: HTTP 502 Bad Gat"):
        _get(s.url, tmp_path / "part", retries=2, logged=logged)
    assert len(s.seen) == 3
    assert ["(attempt 2/3)" in logged[0], "(attempt 3/3)" in logged[1]] == [True, True]


@pytest.mark.parametrize("retries", [0, 1])
def test_the_attempts_are_the_retries_and_one(serve, tmp_path, retries):
    s = serve(Answer(500))
    with pytest.raises(FetchError, match=f"gave up after {retries + 1} attempts"):
        _get(s.url, tmp_path / "part", retries=retries)
    assert len(s.seen) == retries + 1


@pytest.mark.parametrize("coding", ["gzip", "GZIP", "br", "zstd"])
def test_a_content_coding_is_refused(serve, tmp_path, coding):
    s = serve(Answer(headers={"Content-Encoding": coding}, body=BODY))
    with pytest.raises(FetchError, match=f"Content-Encoding {coding.lower()} although"):
        _get(s.url, tmp_path / "part")


def test_identity_coding_named_by_the_server_is_fine(serve, tmp_path):
    _get(serve(Answer(headers={"Content-Encoding": "Identity"}, body=BODY)).url, tmp_path / "p")
    assert (tmp_path / "p").read_bytes() == BODY


def test_a_short_body_is_retried_and_resumed(serve, tmp_path):
    part = tmp_path / "part"
    cut = Answer(body=BODY[:5000], length=len(BODY))  # the connection closes after 5000 bytes
    rest = Answer(206, {"Content-Range": f"bytes 5000-{len(BODY) - 1}/{len(BODY)}"}, BODY[5000:])
    s = serve(cut, rest)
    logged = _get(s.url, part)
    assert part.read_bytes() == BODY
    assert s.seen[1]["Range"] == "bytes=5000-"
    assert logged and "(attempt 2/3)" in logged[0]


def test_a_declared_body_over_1_gib_is_refused_before_reading(serve, tmp_path, monkeypatch):
    part = tmp_path / "part"
    s = serve(Answer(body=b"x", length=(1 << 30) + 1))
    with pytest.raises(IntegrityError, match=r"the body is over 1024 MiB; no flannel release"):
        _get(s.url, part)
    assert not part.exists()


def test_exactly_1_gib_declared_is_read(serve, tmp_path, monkeypatch):
    # the limit is the documented 1 GiB; a body of that size is fine (cut short here, and retried)
    s = serve(Answer(body=BODY, length=1 << 30))
    with pytest.raises(FetchError, match=r"mid-body: .*16384 bytes read, 1073725440 more expected"):
        _get(s.url, tmp_path / "part", retries=0)


def test_a_body_growing_past_the_limit_is_refused_and_dropped(serve, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "MAX_BYTES", 10_000)  # no Content-Length can warn: count the bytes
    part = tmp_path / "part"
    s = serve(Answer(body=BODY, length=-1))
    with pytest.raises(IntegrityError, match="the body is over 0 MiB"):
        _get(s.url, part)
    assert not part.exists()


def test_a_transfer_past_the_deadline_stops_and_keeps_what_came(serve, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "MAX_SECONDS", -1.0)
    part = tmp_path / "part"
    with pytest.raises(FetchError, match=r"not finished after -1 s \((\d+) bytes so far\)") as exc:
        _get(serve(Answer(body=BODY)).url, part)
    kept = part.read_bytes()
    assert kept and BODY.startswith(kept)  # kept: the next run resumes
    assert f"({len(kept)} bytes so far)" in str(exc.value)


def test_a_stop_ends_the_retry_wait(serve, tmp_path):
    s = serve(Answer(500))
    stop = threading.Event()
    stop.set()
    with pytest.raises(Interrupted, match=f"{re.escape(s.url)}: interrupted"):
        _get(s.url, tmp_path / "part", stop=stop)
    assert len(s.seen) == 1


def test_a_stop_ends_a_transfer_at_its_next_read(serve, tmp_path):
    stop = threading.Event()
    s = serve(Answer(body=BODY * 192))  # 3 MiB: more than one read of at most 1 MiB
    with pytest.raises(Interrupted, match="interrupted"):
        _get(s.url, tmp_path / "part", stop=stop, progress=lambda got, total: stop.set())
    assert 0 < (tmp_path / "part").stat().st_size < len(BODY) * 192


@pytest.mark.parametrize("jitter", ["low", "high"])
def test_the_backoff_doubles_from_the_first_wait_and_is_capped(
    serve, tmp_path, monkeypatch, jitter
):
    waits: list[float] = []
    asked: list[tuple[float, float]] = []

    class Clock(threading.Event):
        def wait(self, timeout: float | None = None) -> bool:
            waits.append(timeout or 0.0)
            return False

    def uniform(low: float, high: float) -> float:
        asked.append((low, high))
        return low if jitter == "low" else high

    monkeypatch.setattr(dl.random, "uniform", uniform)
    s = serve(Answer(500))
    with dl.session() as http, pytest.raises(FetchError):
        dl.download(
            s.url, tmp_path / "p", http=http, timeout=5, retries=4, backoff=10, stop=Clock()
        )
    # backoff * 2**(attempt - 1), capped at 30 s, times a jitter in [0.5, 1]
    assert set(asked) == {(0.5, 1.0)}
    assert waits == ([5, 10, 15, 15] if jitter == "low" else [10, 20, 30, 30])


def test_a_body_without_a_length_is_read_to_the_close(serve, tmp_path):
    seen: list[tuple[int, int | None]] = []
    s = serve(Answer(body=BODY, length=-1))
    _get(s.url, tmp_path / "part", progress=lambda got, total: seen.append((got, total)))
    assert (tmp_path / "part").read_bytes() == BODY
    assert seen[-1] == (len(BODY), None)


def test_importing_the_module_does_not_import_requests():
    # a verified cache hit never downloads: it must not pay for importing requests (~100 ms)
    import subprocess
    import sys

    code = "import sys, flannelnode.download; print('requests' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_a_body_of_exactly_the_limit_is_kept(serve, tmp_path, monkeypatch):
    monkeypatch.setattr(dl, "MAX_BYTES", len(BODY))
    _get(serve(Answer(body=BODY, length=-1)).url, tmp_path / "part")
    assert (tmp_path / "part").read_bytes() == BODY


class Clock:
    """download's time.monotonic: the start, then one reading per read of the body."""

    def __init__(self, *readings: float) -> None:
        self.readings = list(readings)

    def monotonic(self) -> float:
        return self.readings.pop(0) if len(self.readings) > 1 else self.readings[0]


@pytest.mark.parametrize(("now", "finished"), [(3600.0, True), (3600.5, False)])
def test_one_download_may_take_an_hour(serve, tmp_path, monkeypatch, now, finished):
    monkeypatch.setattr(dl, "time", Clock(0.0, now))
    url = serve(Answer(body=BODY)).url
    if finished:
        _get(url, tmp_path / "part")
        assert (tmp_path / "part").read_bytes() == BODY
    else:
        with pytest.raises(FetchError, match="not finished after 3600 s"):
            _get(url, tmp_path / "part")
