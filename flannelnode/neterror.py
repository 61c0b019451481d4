"""A failed request in one short line: which host (or proxy) and the root cause.

requests' own text is urllib3's chain of wrappers ("HTTPConnectionPool(host=..., port=...): Max
retries exceeded with url: <the whole path> (Caused by NewConnectionError(...))"): long, and the
cause comes last, so cutting it to a length loses exactly the part that says what went wrong.
"""

from __future__ import annotations

import socket
from urllib.parse import urlsplit

_MAX_CHAIN = 16


def _chain(exc: BaseException) -> list[BaseException]:
    """exc and what it wraps (urllib3 keeps the cause in .reason and in args), outermost first."""
    out: list[BaseException] = []
    todo: list[BaseException] = [exc]
    while todo and len(out) < _MAX_CHAIN:
        e = todo.pop(0)
        if any(e is seen for seen in out):
            continue
        out.append(e)
        reason = getattr(e, "reason", None)
        nested = [a for a in getattr(e, "args", ()) if isinstance(a, BaseException)]
        todo += [x for x in (reason, e.__cause__, e.__context__, *nested) if x is not None]
    return out


def unresolvable(exc: BaseException) -> bool:
    """The host (or proxy) name does not resolve: asking again will not change that."""
    return any(isinstance(e, socket.gaierror) for e in _chain(exc))


def describe(exc: BaseException, url: str) -> str:
    """e.g. "cannot connect to proxy 127.0.0.1:3128: [Errno 111] Connection refused"."""
    from urllib3.exceptions import (
        ConnectTimeoutError,
        NewConnectionError,
        ProxyError,
        ReadTimeoutError,
    )

    chain = _chain(exc)
    proxy = any(isinstance(e, ProxyError) for e in chain)
    pool = next((p for e in chain if (p := getattr(e, "pool", None)) is not None), None)
    host = getattr(pool, "host", None) or urlsplit(url).hostname or "?"
    port = getattr(pool, "port", None) or urlsplit(url).port
    where = ("proxy " if proxy else "") + (f"{host}:{port}" if port else host)
    gai = next((e for e in chain if isinstance(e, socket.gaierror)), None)
    if gai is not None:
        return f"cannot resolve {'the proxy ' if proxy else ''}{host}: {gai.strerror or gai}"
    connecting = any(isinstance(e, NewConnectionError) for e in chain)
    root = next((e for e in reversed(chain) if isinstance(e, OSError) and e.errno), None)
    if root is not None:
        return f"{'cannot connect to ' if connecting else ''}{where}: [Errno {root.errno}] " + (
            root.strerror or str(root)
        )
    if any(isinstance(e, ReadTimeoutError) for e in chain):
        return f"{where}: read timed out (nothing arrived for fetch.timeout seconds)"
    if any(isinstance(e, ConnectTimeoutError) for e in chain):
        return f"cannot connect to {where}: timed out"
    return f"{where}: {chain[-1]}"
