"""A real etcd for the nodes under test: Debian's etcd-server in a container on the harness's
network, client-cert TLS, one member. The harness reads it back from the host through the same
v3 gRPC-JSON gateway the nodes use, with the stdlib only.

The container runs from a "tools" image built once per base image: the base plus Debian's
etcd-server and busybox-static (the rootfs of the nested test container inside each node; there
is no registry to pull one from). apt inside the build reaches the Debian mirror.
"""

from __future__ import annotations

import base64
import io
import json
import ssl
import urllib.error
import urllib.request
from dataclasses import dataclass
from typing import Any

import docker
import docker.errors
from docker.models.containers import Container

from .containers import LABEL, VerifyError, put_files, wait_for
from .pki import Pki

DEFAULT_TOOLS_BASE = "flannelnode/base-debian:bookworm"
TOOLS_REPO = "flannelnode-verify/tools"
PKI_DIR = "/etc/etcd-verify"
PORT = 2379

_DOCKERFILE = """\
FROM {base}
RUN apt-get update -q \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends \\
      etcd-server busybox-static \\
 && apt-get clean && rm -rf /var/lib/apt/lists/*
ENTRYPOINT ["/usr/bin/etcd"]
"""


def tools_image(c: docker.DockerClient, base: str, log: Any = print) -> str:
    """The tools image for base, built once (tagged by the base image's id)."""
    try:
        base_id = c.images.get(base).id.split(":")[-1][:12]
    except docker.errors.ImageNotFound:
        raise VerifyError(
            f"tools base image {base} is missing; build the base image first (make images) or "
            "pass --tools-base with a local Debian image"
        ) from None
    tag = f"{TOOLS_REPO}:{base_id}"
    try:
        c.images.get(tag)
        return tag
    except docker.errors.ImageNotFound:
        pass
    log(f"building {tag} (etcd-server, busybox-static) from {base}")
    dockerfile = io.BytesIO(_DOCKERFILE.format(base=base).encode())
    try:
        c.images.build(fileobj=dockerfile, tag=tag, rm=True, forcerm=True, network_mode="host")
    except docker.errors.BuildError as exc:
        lines = [str(x.get("stream", x.get("error", ""))).rstrip() for x in exc.build_log]
        raise VerifyError(f"building {tag} failed:\n" + "\n".join(lines[-15:])) from None
    return tag


@dataclass
class Etcd:
    container: Container
    ip: str
    pki: Pki

    @property
    def endpoint(self) -> str:
        return f"https://{self.ip}:{PORT}"

    def _context(self) -> ssl.SSLContext:
        context = ssl.create_default_context(cafile=str(self.pki.ca))
        context.load_cert_chain(str(self.pki.client_cert), str(self.pki.client_key))
        return context

    def post(self, path: str, body: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        request = urllib.request.Request(
            self.endpoint + path,
            data=json.dumps(body).encode(),
            headers={"Content-Type": "application/json"},
        )
        with urllib.request.urlopen(request, context=self._context(), timeout=timeout) as r:
            return json.load(r)

    def healthy(self) -> bool:
        try:
            with urllib.request.urlopen(
                self.endpoint + "/health", context=self._context(), timeout=2
            ) as r:
                return json.load(r).get("health") == "true"
        except (OSError, ValueError, urllib.error.URLError):
            return False

    def get(self, key: str) -> dict[str, Any] | None:
        """The key's kv record, value decoded, or None: {key, value, version, create_revision,
        mod_revision}."""
        kvs = self.post("/v3/kv/range", {"key": _b64(key)}).get("kvs") or []
        return _decode(kvs[0]) if kvs else None

    def get_prefix(self, prefix: str) -> list[dict[str, Any]]:
        end = bytearray(prefix.encode())
        end[-1] += 1
        body = {"key": _b64(prefix), "range_end": base64.b64encode(bytes(end)).decode()}
        return [_decode(kv) for kv in self.post("/v3/kv/range", body).get("kvs") or []]

    def put(self, key: str, value: str) -> None:
        self.post("/v3/kv/put", {"key": _b64(key), "value": _b64(value)})

    def delete(self, key: str) -> None:
        self.post("/v3/kv/deleterange", {"key": _b64(key)})

    def logs(self, lines: int = 30) -> str:
        return self.container.logs(tail=lines).decode(errors="replace")

    def start(self, timeout: float = 60) -> None:
        """Start the container and wait until etcd answers /health over TLS."""
        self.container.start()

        def up() -> bool:
            self.container.reload()
            if self.container.status == "exited":
                raise VerifyError(f"etcd exited at start:\n{self.logs()}")
            return self.healthy()

        wait_for(f"etcd at {self.endpoint} to be healthy", up, timeout)


def _b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


def _decode(kv: dict[str, Any]) -> dict[str, Any]:
    return {
        "key": base64.b64decode(kv["key"]).decode(),
        "value": base64.b64decode(kv.get("value", "")).decode(),
        "version": int(kv.get("version", 0)),
        "create_revision": int(kv.get("create_revision", 0)),
        "mod_revision": int(kv.get("mod_revision", 0)),
    }


def create(
    c: docker.DockerClient,
    image: str,
    name: str,
    network: str,
    ip: str,
    pki: Pki,
    run_id: str,
    hostname: str = "etcd",
) -> Etcd:
    """The etcd container with its certificates in place, not started (Etcd.start)."""
    files = {
        f"{PKI_DIR}/{n}": (p.read_bytes(), 0o600)
        for n, p in (
            ("ca.pem", pki.ca),
            ("server.pem", pki.server_cert),
            ("server-key.pem", pki.server_key),
        )
    }
    url = f"https://{ip}:{PORT}"
    container = c.containers.create(
        image,
        name=name,
        hostname=hostname,
        labels={LABEL: run_id},
        detach=True,
        command=[
            "--name=verify",
            "--data-dir=/var/lib/etcd-verify",
            f"--listen-client-urls={url},https://127.0.0.1:{PORT}",
            f"--advertise-client-urls={url}",
            "--client-cert-auth",
            f"--trusted-ca-file={PKI_DIR}/ca.pem",
            f"--cert-file={PKI_DIR}/server.pem",
            f"--key-file={PKI_DIR}/server-key.pem",
            "--logger=zap",
            "--log-level=warn",
        ],
        network=network,
        networking_config={network: c.api.create_endpoint_config(ipv4_address=ip)},
    )
    put_files(container, files)
    return Etcd(container, ip, pki)
