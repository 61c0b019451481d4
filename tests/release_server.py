"""A local stand-in for GitHub's release download service, on 127.0.0.1 only.

Like GitHub, /<owner>/<repo>/releases/download/<tag>/<asset> answers 302 to an object URL that
serves the bytes (with HTTP Range). Faults are queued per asset name and consumed one request
at a time, so a test can script "500, then succeed" or "cut the body, then serve the resume":

    "500", "404", ...   answer with that status
    "cut"               send half of the body, then close the connection
    "cut@N"             send exactly N bytes of the body, then close the connection
    "stall"             send half of the body, then send nothing more (until the server stops)
    "ignore-range"      answer a Range request with the whole body (200)

`pace[name] = seconds` spreads every body of that asset over about that many seconds, so that
clients overlap. `sent[name]` counts the body bytes served, `downloads(name)` the object requests.
It also answers proxy-style requests (absolute URI in the request line), so it can act as the
HTTP proxy of a test that names a host that does not exist.
"""

from __future__ import annotations

import contextlib
import threading
from collections import defaultdict
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import urlsplit

PREFIX = "/flannel-io/flannel/releases/download/"
OBJECTS = "/objects/"


class ReleaseServer:
    def __init__(self, port: int = 0) -> None:
        self.assets: dict[tuple[str, str], bytes] = {}
        self.faults: dict[str, list[str]] = defaultdict(list)
        self.requests: list[tuple[str, str]] = []  # (path, Range header)
        self.proxied: list[str] = []
        self.pace: dict[str, float] = {}
        self.sent: dict[str, int] = defaultdict(int)
        self._stopping = threading.Event()
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer(("127.0.0.1", port), _handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    def start(self) -> ReleaseServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # ends stalled and paced bodies
        self._httpd.shutdown()
        self._httpd.server_close()

    def add(self, tag: str, name: str, body: bytes) -> None:
        self.assets[(tag, name)] = body

    def hits(self, name: str) -> int:
        return sum(1 for path, _ in self.requests if path.endswith("/" + name))

    def downloads(self, name: str) -> int:
        """Requests for the bytes of name (the redirects not counted)."""
        return sum(
            1 for path, _ in self.requests if path.startswith(OBJECTS) and path.endswith("/" + name)
        )


def _handler(server: ReleaseServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path
            if path.startswith("http://"):  # we are being used as a proxy
                server.proxied.append(path)
                path = urlsplit(path).path
            server.requests.append((path, self.headers.get("Range", "")))
            if path.startswith(PREFIX):
                self.send_response(302)
                self.send_header("Location", OBJECTS + path[len(PREFIX) :])
                self.send_header("Content-Length", "0")
                self.end_headers()
            elif path.startswith(OBJECTS):
                self._object(path[len(OBJECTS) :])
            else:
                self._status(404)

        def _status(self, code: int) -> None:
            self.send_response(code)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _object(self, rest: str) -> None:
            tag, _, name = rest.partition("/")
            body = server.assets.get((tag, name))
            fault = server.faults[name].pop(0) if server.faults[name] else None
            if fault and fault.isdigit():
                return self._status(int(fault))
            if body is None:
                return self._status(404)
            start = 0
            rng = self.headers.get("Range", "")
            if rng.startswith("bytes=") and fault != "ignore-range":
                start = int(rng[len("bytes=") :].split("-")[0])
                if start >= len(body):
                    return self._status(416)
            self.send_response(206 if start else 200)
            if start:
                self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            self.send_header("Content-Length", str(len(body) - start))
            self.send_header("Accept-Ranges", "bytes")
            self.end_headers()
            payload = body[start:]
            if fault == "cut":  # the connection drops halfway through the body
                return self._send(name, payload[: len(payload) // 2], close=True)
            if fault and fault.startswith("cut@"):
                return self._send(name, payload[: int(fault[4:])], close=True)
            if fault == "stall":
                self._send(name, payload[: len(payload) // 2])
                server._stopping.wait(120)
                self.close_connection = True
                return
            self._send(name, payload)

        def _send(self, name: str, data: bytes, close: bool = False) -> None:
            pace = server.pace.get(name)
            step = max(1, len(data) // 50) if pace else len(data) or 1
            try:
                for i in range(0, len(data), step):
                    if pace and server._stopping.wait(pace / 50):
                        break
                    self.wfile.write(data[i : i + step])
                    self.wfile.flush()
                    with server._lock:
                        server.sent[name] += len(data[i : i + step])
            except OSError:  # the client went away (interrupted, or a test is over)
                close = True
            if close:
                self.close_connection = True

    return Handler


def main() -> None:
    """Serve a directory laid out as <tag>/<asset> on 127.0.0.1, for demos and manual runs:

    python -m tests.release_server DIR [PORT [SECONDS]]   (stops after SECONDS, default 3600)
    """
    import sys
    import time
    from pathlib import Path

    root = Path(sys.argv[1])
    port = int(sys.argv[2]) if len(sys.argv) > 2 else 0
    server = ReleaseServer(port)
    for path in sorted(root.glob("*/*")):
        server.add(path.parent.name, path.name, path.read_bytes())
    server.start()
    print(f"serving {len(server.assets)} assets from {root} at {server.url}", flush=True)
    with contextlib.suppress(KeyboardInterrupt):
        time.sleep(float(sys.argv[3]) if len(sys.argv) > 3 else 3600)
    server.stop()


if __name__ == "__main__":
    main()
