"""The image itself, before any node boots from it: no TLS private key anywhere in it."""

from __future__ import annotations

import contextlib
import io
import re
import tarfile
from collections.abc import Iterator
from typing import Any

import docker.errors

# a whole PEM private key block (a name in code or docs is not one)
PEM_KEY = re.compile(
    rb"-----BEGIN ([A-Z0-9]+ )*PRIVATE KEY-----\r?\n(?:[A-Za-z0-9+/=:, -]*\r?\n){3,}?"
    rb"[A-Za-z0-9+/=\r\n]*-----END ([A-Z0-9]+ )*PRIVATE KEY-----"
)
MAX_SCAN = 4 << 20  # a PEM key sits in a small file; the big ones are binaries and archives


class _Stream(io.RawIOBase):
    """A file object over docker's export chunks, for tarfile's streaming mode."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self.chunks, self.rest = chunks, b""

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        while not self.rest:
            try:
                self.rest = next(self.chunks)
            except StopIteration:
                return 0
        n = min(len(buffer), len(self.rest))
        buffer[:n] = self.rest[:n]
        self.rest = self.rest[n:]
        return n


def test_no_tls_private_key_in_the_image(lab: Any) -> None:
    """Keys reach nodes only through user-data: the image holds none, not even a stray one."""
    container = lab.docker.containers.create(
        lab.image, entrypoint=["/bin/true"], labels={"org.flannelnode.verify": lab.run_id}
    )
    found = []
    try:
        stream = io.BufferedReader(_Stream(container.export(chunk_size=1 << 20)), 1 << 20)
        with tarfile.open(fileobj=stream, mode="r|") as tar:
            for member in tar:
                if not member.isfile() or member.size > MAX_SCAN:
                    continue
                f = tar.extractfile(member)
                body = f.read() if f is not None else b""
                # a key file is text: keys compiled into a library (gnutls' self-tests) are not
                # what this looks for
                if not body.startswith(b"\x7fELF") and PEM_KEY.search(body):
                    found.append("/" + member.name)
    finally:
        with contextlib.suppress(docker.errors.NotFound):
            container.remove(force=True)
    etcd = lab.config.etcd
    assert etcd.key_file not in found
    assert not found, f"the image holds private keys: {', '.join(sorted(found))}"
