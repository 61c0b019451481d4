"""The etcd seeder against a real 3-member TLS etcd cluster on 127.0.0.1.

The seeder runs as on a node (the script in a subprocess) unless a test needs to steer its
internals. Values are read back through an independent client: etcd3 over gRPC for v3, a raw
HTTPS GET for v2. Subprocesses use this interpreter (the pyenv shim behind `python3` here costs
0.1 s a start); FLANNEL_SEED_PYTHON=/path/to/python3.6 runs them under another one.
"""

from __future__ import annotations

import base64
import json
import os
import shlex
import ssl
import subprocess
import sys
import time
import urllib.error
import urllib.request
import uuid
import warnings
from pathlib import Path

import pytest

from flannelnode import seed as builder_seed
from flannelnode.config import Config
from flannelnode.config import load as load_config

from .etcd_cluster import EtcdCluster, free_ports

os.environ.setdefault("PROTOCOL_BUFFERS_PYTHON_IMPLEMENTATION", "python")  # before importing etcd3
with warnings.catch_warnings():  # etcd3 0.12's generated protobuf code is old
    warnings.simplefilter("ignore", DeprecationWarning)
    import etcd3


SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "flannel-seed-etcd"
NET_A = {"Network": "10.5.0.0/16", "Backend": {"Type": "vxlan"}}
NET_B = {"Network": "10.6.0.0/16", "SubnetLen": 26, "Backend": {"Type": "vxlan"}}


@pytest.fixture
def prefix(request: pytest.FixtureRequest) -> str:
    """A key prefix no other test uses, so tests share the session cluster without interfering."""
    return f"/test/{request.node.name.replace('[', '-').rstrip(']')}-{uuid.uuid4().hex[:8]}"


def command(
    cluster: EtcdCluster,
    prefix: str,
    network: dict | str,
    *extra: str,
    ca: Path | None = None,
    cert: Path | None = None,
    key: Path | None = None,
) -> list[str]:
    c = cluster.certs
    interpreter = shlex.split(os.environ.get("FLANNEL_SEED_PYTHON", "")) or [sys.executable]
    return [
        *interpreter,
        str(SCRIPT),
        "--endpoints",
        ",".join(cluster.endpoints),
        "--cacert",
        str(ca or c.ca),
        "--cert",
        str(cert or c.cert),
        "--key",
        str(key or c.key),
        "--prefix",
        prefix,
        "--config-json",
        network if isinstance(network, str) else json.dumps(network),
        "--stats",
        *extra,
    ]


def seed(
    cluster: EtcdCluster, prefix: str, network: dict | str, *extra: str, **tls: Path
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command(cluster, prefix, network, *extra, **tls),
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )


def stats(result: subprocess.CompletedProcess[str]) -> dict:
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def oracle(cluster: EtcdCluster) -> etcd3.Etcd3Client:
    return cluster.oracle()


def v3_get(cluster: EtcdCluster, key: str) -> tuple[dict | None, object]:
    client = oracle(cluster)
    try:
        value, meta = client.get(key)
    finally:
        client.close()
    return (None if value is None else json.loads(value)), meta


def v2_get(cluster: EtcdCluster, key: str) -> dict | None:
    context = ssl.create_default_context(cafile=str(cluster.certs.ca))
    context.load_cert_chain(str(cluster.certs.cert), str(cluster.certs.key))
    member = next(m for m in cluster.members if m.running)
    try:
        with urllib.request.urlopen(
            f"{member.client_url}/v2/keys{key}?quorum=true", context=context, timeout=10
        ) as response:
            node = json.load(response)["node"]
    except urllib.error.HTTPError as exc:
        if exc.code == 404:
            return None
        raise
    return {"value": json.loads(node["value"]), "modifiedIndex": node["modifiedIndex"]}


def one_line_error(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    return lines[0]


def test_fresh_v3_seed(etcd: EtcdCluster, prefix: str) -> None:
    cmd = command(etcd, prefix, NET_A)
    direct = cmd[cmd.index(str(SCRIPT)) :]  # as a node runs it: exec bit and shebang
    result = subprocess.run(direct, capture_output=True, text=True, timeout=60, check=False)

    out = stats(result)
    assert (out["action"], out["api"], out["requests"]) == ("written", "v3", 2)
    value, meta = v3_get(etcd, f"{prefix}/config")
    assert value == NET_A
    assert meta.version == 1 and meta.create_revision == meta.mod_revision == out["revision"]
    assert v2_get(etcd, f"{prefix}/config") is None
    assert "wrote the network config" in result.stderr


def test_v2_for_old_flannel_and_v3_keyspaces_are_separate(etcd: EtcdCluster, prefix: str) -> None:
    old = stats(seed(etcd, prefix, NET_A, "--flannel-version", "v0.17.0"))
    assert (old["action"], old["api"]) == ("written", "v2")
    assert v2_get(etcd, f"{prefix}/config")["value"] == NET_A
    assert v3_get(etcd, f"{prefix}/config")[0] is None  # flannel >= v0.18 would not see it

    new = stats(seed(etcd, prefix, NET_B, "--flannel-version", "v0.18.0"))
    assert (new["action"], new["api"]) == ("written", "v3")  # no conflict: another keyspace
    assert v3_get(etcd, f"{prefix}/config")[0] == NET_B
    assert v2_get(etcd, f"{prefix}/config")["value"] == NET_A


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_rerun_writes_nothing(etcd: EtcdCluster, prefix: str, api: str) -> None:
    first = stats(seed(etcd, prefix, NET_A, "--api", api))
    before = v3_get(etcd, f"{prefix}/config")[1] if api == "v3" else None
    # the same config, formatted differently and with keys in another order, is the same config
    again = seed(etcd, prefix, json.dumps(dict(reversed(NET_A.items())), indent=4), "--api", api)

    out = stats(again)
    assert out["action"] == "unchanged" and out["revision"] == first["revision"]
    assert "nothing written" in again.stderr
    if api == "v3":
        assert out["requests"] == 1
        _, meta = v3_get(etcd, f"{prefix}/config")
        assert meta.version == 1
        assert meta.response_header.revision == before.response_header.revision  # no new revision
    else:
        assert v2_get(etcd, f"{prefix}/config")["modifiedIndex"] == first["revision"]


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_conflict_exits_3_with_a_diff(etcd: EtcdCluster, prefix: str, api: str) -> None:
    stats(seed(etcd, prefix, NET_A, "--api", api))

    result = seed(etcd, prefix, NET_B, "--api", api)

    assert result.returncode == 3 and result.stdout == ""
    assert "already holds a different network config; pass --force" in result.stderr
    assert f"--- {prefix}/config (in etcd)" in result.stderr
    assert '\n-  "Network": "10.5.0.0/16"\n+  "Network": "10.6.0.0/16",\n' in result.stderr
    assert '+  "SubnetLen": 26' in result.stderr
    kept = (
        v3_get(etcd, f"{prefix}/config")[0]
        if api == "v3"
        else v2_get(etcd, f"{prefix}/config")["value"]
    )
    assert kept == NET_A


@pytest.mark.parametrize("api", ["v3", "v2"])
def test_force_replaces(etcd: EtcdCluster, prefix: str, api: str) -> None:
    first = stats(seed(etcd, prefix, NET_A, "--api", api))

    out = stats(seed(etcd, prefix, NET_B, "--api", api, "--force"))

    assert out["action"] == "replaced" and out["revision"] > first["revision"]
    if api == "v3":
        value, meta = v3_get(etcd, f"{prefix}/config")
        assert value == NET_B and meta.version == 2 and meta.mod_revision == out["revision"]
    else:
        assert v2_get(etcd, f"{prefix}/config") == {
            "value": NET_B,
            "modifiedIndex": out["revision"],
        }


def test_one_member_down(etcd: EtcdCluster, prefix: str) -> None:
    etcd.stop_member(0)
    out = stats(seed(etcd, prefix, NET_A))
    assert out["action"] == "written"
    assert v3_get(etcd, f"{prefix}/config")[0] == NET_A


def test_fails_over_from_a_dead_member(
    etcd: EtcdCluster, prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The seeder starts on a random endpoint; pin it to the dead one to see the failover."""
    module = builder_seed.seeder()
    monkeypatch.setattr(module.random, "randrange", lambda n: 0)
    etcd.stop_member(0)
    # the two left elect a leader first (member 0 may have led): without one, member 1 answers
    # "no leader" and the seeder rightly moves on to member 2, which this test does not pin
    etcd.wait_healthy()
    c = etcd.certs

    outcome = module.seed(
        etcd.endpoints,
        json.dumps(NET_A),
        prefix=prefix,
        cacert=str(c.ca),
        cert=str(c.cert),
        key=str(c.key),
        deadline=20,
    )

    assert outcome.action == "written" and outcome.endpoint == etcd.endpoints[1]
    assert outcome.requests == 3  # refused by the dead member, then txn + read-back
    assert v3_get(etcd, f"{prefix}/config")[0] == NET_A


def test_waits_for_etcd_started_later(etcd: EtcdCluster, prefix: str) -> None:
    for index in range(len(etcd.members)):
        etcd.stop_member(index)
    started = time.monotonic()
    process = subprocess.Popen(
        command(etcd, prefix, NET_A, "--deadline", "60", "--timeout", "2"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        time.sleep(10)
        assert process.poll() is None, "the seeder gave up while etcd was down"
        for index in range(len(etcd.members)):
            etcd.start_member(index)
        stdout, stderr = process.communicate(timeout=50)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    elapsed = time.monotonic() - started

    assert process.returncode == 0, stderr
    assert json.loads(stdout)["action"] == "written"
    assert elapsed >= 10  # it waited out etcd's absence rather than failing
    assert v3_get(etcd, f"{prefix}/config")[0] == NET_A


def test_wrong_ca_fails_fast_and_names_the_ca(etcd: EtcdCluster, prefix: str) -> None:
    started = time.monotonic()
    result = seed(etcd, prefix, NET_A, "--deadline", "60", ca=etcd.certs.other_ca)

    assert result.returncode == 1
    assert time.monotonic() - started < 30  # no retrying until the 60 s deadline
    message = one_line_error(result)
    assert (
        f"the CA at {etcd.certs.other_ca} does not sign the server certificate of https://127.0.0.1:"
        in message
    )


def test_client_cert_from_another_ca_fails_fast(etcd: EtcdCluster, prefix: str) -> None:
    started = time.monotonic()
    result = seed(
        etcd,
        prefix,
        NET_A,
        "--deadline",
        "60",
        cert=etcd.certs.other_cert,
        key=etcd.certs.other_key,
    )

    assert result.returncode == 1
    assert time.monotonic() - started < 30  # well before the 60 s deadline
    assert f"rejected the client certificate {etcd.certs.other_cert}" in one_line_error(result)
    assert v3_get(etcd, f"{prefix}/config")[0] is None


def test_expired_or_mismatched_client_cert_is_bad_input(etcd: EtcdCluster, prefix: str) -> None:
    expired = seed(etcd, prefix, NET_A, cert=etcd.certs.expired_cert, key=etcd.certs.expired_key)
    assert expired.returncode == 2
    assert (
        f"client certificate {etcd.certs.expired_cert} expired on Jan  1 00:00:00 2001"
        in one_line_error(expired)
    )

    future = seed(etcd, prefix, NET_A, cert=etcd.certs.future_cert, key=etcd.certs.future_key)
    assert future.returncode == 2
    assert (
        f"client certificate {etcd.certs.future_cert} is not valid before Jan  1 00:00:00 2990 "
        "GMT (is the clock right?)" in one_line_error(future)
    )

    mismatched = seed(etcd, prefix, NET_A, key=etcd.certs.other_key)
    assert mismatched.returncode == 2
    assert "the key does not belong to the certificate" in one_line_error(mismatched)


def test_unreachable_cluster_gives_up_at_the_deadline(etcd: EtcdCluster, prefix: str) -> None:
    nobody = [f"https://127.0.0.1:{port}" for port in free_ports(2)]
    cmd = command(etcd, prefix, NET_A, "--deadline", "2")
    cmd[cmd.index("--endpoints") + 1] = ",".join(nobody)
    started = time.monotonic()

    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)

    assert result.returncode == 1
    assert time.monotonic() - started >= 2  # it kept trying until the deadline
    message = one_line_error(result)
    assert "no etcd endpoint answered within the 2s deadline" in message
    assert all(url in message for url in nobody) and "connection refused" in message


@pytest.mark.parametrize(
    ("extra", "complaint"),
    [
        (("--config-json", "{not json"), "--config-json is not valid JSON"),
        (("--config-json", "[]"), "must be a non-empty JSON object"),
        (("--flannel-version", "latest"), "flannel version 'latest' is not like v0.17.0"),
        (("--prefix", "coreos.com/network"), "must start with /"),
        (("--endpoints", "https://127.0.0.1:0"), "port 0 is not a port; use 1 to 65535"),
        (("--endpoints", "https://127.0.0.1:23\t79"), "contains whitespace or a control"),
        (("--endpoints", "ftp://127.0.0.1"), "is not an http:// or https:// URL with a host"),
        (("--endpoints", "https://[::1:2379"), "is not a valid URL"),
        (("--endpoints", " , "), "no etcd endpoints given"),
    ],
)
def test_bad_input_exits_2(
    etcd: EtcdCluster, prefix: str, extra: tuple[str, ...], complaint: str
) -> None:
    cmd = command(etcd, prefix, NET_A)
    for flag, value in zip(extra[::2], extra[1::2], strict=True):
        if flag in cmd:
            cmd[cmd.index(flag) + 1] = value
        else:
            cmd += [flag, value]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    assert result.returncode == 2
    assert complaint in one_line_error(result)


def test_fifty_seeders_at_once_write_once(etcd: EtcdCluster, prefix: str) -> None:
    processes = [
        subprocess.Popen(
            command(etcd, prefix, NET_A, "--deadline", "60", "-q"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(50)
    ]
    try:
        results = [(p.wait(timeout=90), *p.communicate()) for p in processes]
    finally:
        for p in processes:
            if p.poll() is None:
                p.kill()
                p.wait()

    assert [code for code, _, _ in results] == [0] * 50, [err for _, _, err in results if err]
    actions = sorted(json.loads(out)["action"] for _, out, _ in results)
    assert actions == ["unchanged"] * 49 + ["written"]
    value, meta = v3_get(etcd, f"{prefix}/config")
    assert value == NET_A and meta.version == 1 and meta.create_revision == meta.mod_revision


def node_toml(path: Path, version: str, cluster: EtcdCluster, prefix: str, net: str) -> Config:
    path.write_text(
        f'[flannel]\nversion = "{version}"\n'
        f"[etcd]\nendpoints = {json.dumps(cluster.endpoints)}\nprefix = {json.dumps(prefix)}\n"
        f'[network]\nNetwork = "{net}"\n[network.Backend]\nType = "vxlan"\n'
    )
    return load_config(path, env={})


@pytest.mark.parametrize(("version", "read_back"), [("v0.27.4", "v3"), ("v0.17.0", "v2")])
def test_builder_runs_the_same_seeder(
    etcd: EtcdCluster,
    prefix: str,
    version: str,
    read_back: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = node_toml(tmp_path / "node.toml", version, etcd, prefix, "10.6.0.0/16")
    wanted = {"Network": "10.6.0.0/16", "Backend": {"Type": "vxlan"}}
    c = etcd.certs
    tls = {"cacert": c.ca, "cert": c.cert, "key": c.key}

    assert builder_seed.run(config, deadline=20, **tls) == 0
    assert "wrote the network config" in capsys.readouterr().err
    assert builder_seed.run(config, deadline=20, **tls) == 0
    assert "nothing written" in capsys.readouterr().err

    if read_back == "v3":
        value, meta = v3_get(etcd, f"{prefix}/config")
        assert value == wanted and meta.version == 1
    else:
        assert v2_get(etcd, f"{prefix}/config")["value"] == wanted
        assert v3_get(etcd, f"{prefix}/config")[0] is None

    other = node_toml(tmp_path / "other.toml", version, etcd, prefix, "10.7.0.0/16")
    assert builder_seed.run(other, deadline=20, **tls) == 3
    assert '+  "Network": "10.7.0.0/16"' in capsys.readouterr().err


def raw_v3(cluster: EtcdCluster, key: str) -> bytes | None:
    client = oracle(cluster)
    try:
        return client.get(key)[0]
    finally:
        client.close()


def test_build_host_and_node_seed_the_same_bytes(
    etcd: EtcdCluster, prefix: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """One rendering: `build.py seed` and the node seeder (reading the payload's net-conf.json)
    write byte-identical values, whatever the key order in node.toml."""
    from flannelnode.payload import net_conf

    path = tmp_path / "node.toml"
    path.write_text(
        f'[etcd]\nendpoints = {json.dumps(etcd.endpoints)}\nprefix = "{prefix}/host"\n'
        '[network]\nNetwork = "10.8.0.0/16"\nSubnetLen = 26\n'
        '[network.Backend]\nVNI = 4\nType = "vxlan"\n'
    )
    config = load_config(path, env={})
    c = etcd.certs
    assert builder_seed.run(config, deadline=20, cacert=c.ca, cert=c.cert, key=c.key) == 0
    capsys.readouterr()
    file = tmp_path / "net-conf.json"
    file.write_bytes(net_conf(config, public=False).content)
    cmd = command(etcd, f"{prefix}/node", "{}")
    cmd[cmd.index("--config-json") : cmd.index("--config-json") + 2] = ["--config-file", str(file)]
    node = subprocess.run(cmd, capture_output=True, text=True, timeout=60, check=False)
    assert node.returncode == 0, node.stderr
    host_value = raw_v3(etcd, f"{prefix}/host/config")
    assert host_value is not None
    assert host_value == raw_v3(etcd, f"{prefix}/node/config")
    assert host_value.decode() + "\n" == file.read_text()


def test_what_flannel_reads_differently_is_a_different_config(
    etcd: EtcdCluster, prefix: str
) -> None:
    """Two spellings of Type in another order: the same dict to Python, not to flannel."""
    first = '{"Network": "10.5.0.0/16", "Backend": {"type": "host-gw", "Type": "vxlan"}}'
    stats(seed(etcd, prefix, first))
    again = seed(etcd, prefix, '{"Network": "10.5.0.0/16", "Backend": {"type": "host-gw"}}')
    assert again.returncode == 3, again.stderr
    swapped = seed(
        etcd, prefix, '{"Backend": {"Type": "vxlan", "type": "host-gw"}, "Network": "10.5.0.0/16"}'
    )
    assert swapped.returncode == 3, swapped.stderr  # flannel would read host-gw now
    same = seed(
        etcd, prefix, '{"Backend": {"type": "host-gw", "Type": "vxlan"}, "Network": "10.5.0.0/16"}'
    )
    assert stats(same)["action"] == "unchanged"


# -- the read-back after a write, against a stub that acknowledges writes it does not keep


class _ForgetfulEtcd:
    """An etcd HTTP gateway (v3 JSON and v2 keys) on 127.0.0.1 that answers every write with
    success and every read with `shown` (None: the key is absent). A proxy or a member that loses
    acknowledged writes looks like this to the seeder."""

    def __init__(self, shown: str | None) -> None:
        import http.server

        stub = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def _answer(self, status: int, body: dict) -> None:
                data = json.dumps(body).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def do_POST(self) -> None:  # v3: /v3/kv/txn, /v3/kv/range
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.paths.append(self.path)
                if self.path == "/v3/kv/txn":
                    self._answer(200, {"succeeded": True, "header": {"revision": "7"}})
                elif stub.shown is None:
                    self._answer(200, {"header": {"revision": "7"}})
                else:
                    value = base64.b64encode(stub.shown.encode()).decode()
                    self._answer(200, {"kvs": [{"value": value, "mod_revision": "7"}]})

            def do_PUT(self) -> None:  # v2
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                stub.paths.append("PUT " + self.path.split("?")[0])
                self._answer(201, {"node": {"modifiedIndex": 7}})

            def do_GET(self) -> None:
                stub.paths.append("GET " + self.path.split("?")[0])
                if stub.shown is None:
                    self._answer(404, {"errorCode": 100, "message": "Key not found"})
                else:
                    self._answer(200, {"node": {"value": stub.shown, "modifiedIndex": 7}})

        self.shown = shown
        self.paths: list[str] = []
        self.httpd = _serve(Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def _serve(handler: type, tls: ssl.SSLContext | None = None):
    """An HTTP(S) server on 127.0.0.1 for a stub, serving in a thread."""
    import http.server
    import threading

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    if tls is not None:
        httpd.socket = tls.wrap_socket(httpd.socket, server_side=True)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    return httpd


@pytest.mark.parametrize("api", ["v3", "v2"])
@pytest.mark.parametrize(
    "shown",
    [None, json.dumps(NET_B), "not json"],
    ids=["absent", "another-config", "garbage"],
)
def test_a_write_etcd_does_not_keep_is_a_failure(api: str, shown: str | None) -> None:
    stub = _ForgetfulEtcd(shown)
    try:
        interpreter = shlex.split(os.environ.get("FLANNEL_SEED_PYTHON", "")) or [sys.executable]
        result = subprocess.run(
            [
                *interpreter,
                str(SCRIPT),
                "--endpoints",
                stub.url,
                "--config-json",
                json.dumps(NET_A),
                "--api",
                api,
                "--deadline",
                "10",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
    finally:
        stub.close()
    assert result.returncode == 1, result.stderr
    line = one_line_error(result)
    assert "wrote /coreos.com/network/config but read back" in line
    assert repr(shown) in line
    write, read = (
        ("/v3/kv/txn", "/v3/kv/range")
        if api == "v3"
        else ("PUT /v2/keys/coreos.com/network/config", "GET /v2/keys/coreos.com/network/config")
    )
    assert stub.paths == [write, read]  # one write, then the read that caught it


def test_the_seeder_stays_python_3_6() -> None:
    # nodes run it with their platform python3, 3.6 on EL8; ruff lints it as 3.7 (its oldest)
    import ast

    ast.parse(SCRIPT.read_text(), feature_version=(3, 6))
    assert "from __future__ import annotations" not in SCRIPT.read_text()


# -- what etcd (or what stands in its place) may answer


def _seed_at(url: str, *extra: str, certs=None) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, str(SCRIPT), "--endpoints", url, "--config-json", json.dumps(NET_A)]
    if certs is not None:
        cmd += ["--cacert", str(certs.ca), "--cert", str(certs.cert), "--key", str(certs.key)]
    return subprocess.run(
        [*cmd, "--api", "v3", *extra], capture_output=True, text=True, timeout=60, check=False
    )


def test_an_http_500_is_worth_waiting_for_and_its_text_is_kept_short() -> None:
    """etcd answers 500 with no leader or while stopping: the seeder waits and tries again until
    its deadline, and quotes what the member said (the first 200 characters of a non-JSON body)."""
    import http.server

    class Handler(http.server.BaseHTTPRequestHandler):
        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            body = ("etcdserver: no leader " + "x" * 300).encode()
            self.send_response(500)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

    httpd = _serve(Handler)
    url = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        started = time.monotonic()
        result = _seed_at(url, "--deadline", "2")
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started >= 2  # retried until the deadline
    message = one_line_error(result)
    said = "etcdserver: no leader " + "x" * 178  # 200 characters
    assert f"last error: {url}: HTTP 500: {said}" in message
    assert said + "x" not in message


def test_a_tls_handshake_with_no_common_cipher_is_named(etcd: EtcdCluster) -> None:
    """A server the seeder shares no cipher with alerts at once: a failure worth a clear line,
    not a retry until the deadline."""
    import http.server

    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(etcd.certs.server_cert, etcd.certs.server_key)
    tls.maximum_version = ssl.TLSVersion.TLSv1_2
    tls.set_ciphers("AES128-SHA256")  # RSA key exchange: Python's clients offer only (EC)DHE

    httpd = _serve(http.server.BaseHTTPRequestHandler, tls)
    url = f"https://127.0.0.1:{httpd.server_address[1]}"
    try:
        started = time.monotonic()
        result = _seed_at(url, "--deadline", "30", certs=etcd.certs)
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert result.returncode == 1, result.stderr
    assert time.monotonic() - started < 15  # no waiting out the deadline
    assert f"the TLS handshake with {url} failed: " in one_line_error(result)
    assert "HANDSHAKE_FAILURE" in one_line_error(result)


def test_a_placeholder_anywhere_is_refused_with_its_path(etcd: EtcdCluster, prefix: str) -> None:
    from flannelnode.netfields import SECRET_PLACEHOLDER

    net = {"Network": "10.6.0.0/16", "Backend": {"Type": "vxlan", "Extra": [1, SECRET_PLACEHOLDER]}}
    result = seed(etcd, prefix, net)
    assert result.returncode == 2
    assert "Backend.Extra[1] holds a placeholder, not the secret" in one_line_error(result)


def test_keys_are_ordered_as_flannel_folds_them(etcd: EtcdCluster, prefix: str) -> None:
    # Go's encoding/json folds the Kelvin sign (U+212A) like K: "\u212aind" sorts as KIND
    seed(etcd, prefix, '{"Network": "10.7.0.0/16", "Lambda": 1, "\u212aind": 2}')
    assert raw_v3(etcd, f"{prefix}/config") == (
        b'{\n  "\\u212aind": 2,\n  "Lambda": 1,\n  "Network": "10.7.0.0/16"\n}'
    )


@pytest.mark.parametrize(
    ("flag", "value"), [("--deadline", "soon"), ("--deadline", "0"), ("--timeout", "-5")]
)
def test_a_duration_that_is_not_positive_is_refused(flag: str, value: str) -> None:
    result = _seed_at("https://127.0.0.1:2379", flag, value)
    assert result.returncode == 2
    last = result.stderr.strip().splitlines()[-1]
    assert f"argument {flag}: {value!r} is not a positive number of seconds" in last
