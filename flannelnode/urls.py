"""URLs a user configures: one validator for all of them, and redaction wherever one is shown.

Every URL-shaped setting (fetch.mirror, fetch.github, repo.baseurl, etcd.endpoints, the Debian
mirror, `seed --endpoints`) goes through `check`. The raw string is checked, not what urlsplit
makes of it: urlsplit silently drops tabs and newlines, so a newline in a base URL would
otherwise reach a file we render (a second `gpgcheck=0` line in flannelnode.repo).

Credentials (user:password@, query values such as ?token=) are used only for the request.
`check` remembers them, and `scrub` removes them from any text we print or write, including error
text that a library built from the URL.
"""

from __future__ import annotations

import threading
import unicodedata
from urllib.parse import parse_qsl, quote, unquote, urlsplit, urlunsplit

REDACTED = "***"
MIN_SECRET = 4  # shorter values would blank out ordinary text; nobody uses them as tokens

_secrets: set[str] = set()
_secrets_lock = threading.Lock()


def check(
    value: str, schemes: tuple[str, ...] = ("http", "https"), credentials: bool = True
) -> str:
    """The URL without a trailing slash, or ValueError saying what is wrong (never the secret)."""
    shown = redact(value)
    bad = next((c for c in value if c.isspace() or unicodedata.category(c).startswith("C")), None)
    if bad is not None:
        raise ValueError(
            f"{shown!r} contains {'whitespace' if bad.isspace() else 'a control character'} "
            f"({bad!r}); a URL has none (percent-encode it)"
        )
    try:
        parts = urlsplit(value)
        port = parts.port
    except ValueError as exc:  # "Invalid IPv6 URL", "Port out of range 0-65535", ...
        raise ValueError(f"{shown!r} is not a valid URL: {exc}") from None
    wanted = " or ".join(f"{s}://" for s in schemes)
    if parts.scheme not in schemes:
        raise ValueError(f"{shown!r} is not a {wanted} URL")
    if parts.scheme == "file":
        if parts.netloc not in ("", "localhost") or not parts.path.startswith("/"):
            raise ValueError(f"{shown!r}: a file:// URL names an absolute path (file:///srv/repo)")
        return value.rstrip("/")
    if not parts.hostname:
        raise ValueError(f"{shown!r} has no host")
    if port == 0:
        raise ValueError(f"{shown!r}: port 0 is not a port; use 1 to 65535")
    if not credentials and (parts.username is not None or parts.query):
        raise ValueError(
            f"{shown!r} carries credentials (user:password@ or a query), and this URL is "
            "written into files that are published or baked into images; use a URL without them"
        )
    remember(value)
    return value.rstrip("/")


def remember(url: str) -> None:
    """Note the credentials in url, so that `scrub` hides them wherever they turn up."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return
    found = []
    if "@" in parts.netloc:
        userinfo = parts.netloc.rpartition("@")[0]
        user, _, password = userinfo.partition(":")
        # the password, or a token passed as the user name (https://TOKEN@host); a user name
        # beside a password is not secret and may be a common word
        found += [userinfo, password or user]
    found += [v for _, v in parse_qsl(parts.query, keep_blank_values=True)]
    found += [v for _, v in parse_qsl(parts.fragment, keep_blank_values=True)]
    found = [s for s in found if len(s) >= MIN_SECRET]
    with _secrets_lock:
        for secret in found:
            _secrets.update({secret, quote(secret, safe=""), unquote(secret)})


def redact(url: str) -> str:
    """url with its userinfo and query/fragment values replaced by ***; for display and records."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return scrub(url)
    netloc = parts.netloc
    if "@" in netloc:
        netloc = f"{REDACTED}@{netloc.rpartition('@')[2]}"
    query = "&".join(
        f"{k}={REDACTED}" if v else k for k, v in parse_qsl(parts.query, keep_blank_values=True)
    )
    fragment = REDACTED if parts.fragment else ""
    return urlunsplit((parts.scheme, netloc, parts.path, query, fragment))


def without_credentials(url: str) -> str:
    """url as it may be published: no userinfo, no query, no fragment."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc.rpartition("@")[2], parts.path, "", ""))


def scrub(text: str) -> str:
    """text with every remembered credential replaced by ***."""
    with _secrets_lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        text = text.replace(secret, REDACTED)
    return text
