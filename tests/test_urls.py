"""urls.check for file:// repository URLs, and which credentials `scrub` hides.

What a file:// URL may be is RFC 8089's rule: `file:///path`, or `file://localhost/path`
(section 2: the authority is empty or "localhost" for the local machine); another host or a
relative path is not a local file. Credentials shorter than four characters are documented as
left alone (they would blank out ordinary words in every message).
"""

from __future__ import annotations

import pytest

from flannelnode import urls

REPO_SCHEMES = ("http", "https", "file")  # repo.baseurl's


@pytest.mark.parametrize(
    ("url", "kept"),
    [
        ("file:///srv/repo/", "file:///srv/repo"),
        ("file://localhost/srv/repo", "file://localhost/srv/repo"),
        ("file:/srv/repo", "file:/srv/repo"),
    ],
)
def test_a_local_file_url_is_accepted(url: str, kept: str) -> None:
    assert urls.check(url, REPO_SCHEMES, credentials=False) == kept


@pytest.mark.parametrize("url", ["file://mirror.example.com/srv/repo", "file:srv/repo", "file:"])
def test_a_file_url_that_is_not_a_local_absolute_path_is_refused(url: str) -> None:
    with pytest.raises(ValueError, match=r"a file:// URL names an absolute path"):
        urls.check(url, REPO_SCHEMES, credentials=False)


def test_file_urls_are_refused_where_only_http_is_allowed() -> None:
    with pytest.raises(ValueError, match=r"is not a http:// or https:// URL"):
        urls.check("file:///srv/repo")


@pytest.mark.parametrize(
    ("secret", "hidden"), [("abc", False), ("abcd", True), ("abcde", True), ("a1b2c3d4e5", True)]
)
def test_credentials_of_four_characters_or_more_are_hidden(secret: str, hidden: bool) -> None:
    urls.check(f"https://{secret}@mirror.example.com/flannel")
    urls.check(f"https://mirror.example.com/flannel?token={secret}")
    text = f"login failed for {secret}"
    assert urls.scrub(text) == ("login failed for ***" if hidden else text)


def test_remember_ignores_a_string_that_is_no_url() -> None:
    """base.py remembers the host's apt mirror, which it did not parse: never an error."""
    urls.remember("http://[::1")
    urls.remember("https://tok9-secret@[::1")
