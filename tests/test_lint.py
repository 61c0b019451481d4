"""`build.py lint [FILE|-]`: any net-conf.json (a file or stdin) or node.toml, as flannel reads it;
exit codes, -q, --strict, and every line naming the file it is about."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from flannelnode import cli

REPO = Path(__file__).resolve().parent.parent
GOOD_JSON = '{\n  "Network": "10.244.0.0/16",\n  "Backend": {"Type": "vxlan"}\n}\n'
BAD_JSON = (
    '{\n  "Network": "10.244.0.0/16",\n  "SubnetLen": 31,\n  "Backend": {"Type": "vxlan"}\n}\n'
)
NODE = '[etcd]\nendpoints = ["https://127.0.0.1:2379"]\n[flannel]\narches = ["amd64"]\n'


def run(capsys, *argv: str, stdin: bytes | None = None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(stdin)))
    capsys.readouterr()
    rc = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err, err
    return rc, out, err


@pytest.fixture
def here(tmp_path, monkeypatch):
    """An empty working directory (no ./node.toml) with a node.toml beside it."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "conf").mkdir()
    node = tmp_path / "conf" / "node.toml"
    node.write_text(NODE)
    return tmp_path


def test_lint_a_net_conf_json_file(here, capsys):
    path = here / "net-conf.json"
    path.write_text(GOOD_JSON)
    node = str(here / "conf" / "node.toml")
    rc, out, err = run(capsys, "--config", node, "lint", str(path))
    assert rc == 0, err
    assert out.splitlines()[0] == (
        f"{path}: checked as flannel v0.27.4 reads it, with the arches, etcd endpoints, "
        f"[flanneld] and [cluster] of {node}"
    )
    assert f"{path}:2:3: info: Network: 10.244.0.0/16 gives room for 255 node subnets" in out
    assert err == ""

    path.write_text(BAD_JSON)
    rc, out, err = run(capsys, "--config", node, "lint", str(path))
    assert rc == 2
    assert err.splitlines() == [
        f"{path}:3:3: error: SubnetLen: 31 is larger than 30; flannel needs at least 4 addresses "
        'per node subnet ("SubnetLen must be less than /31"). Use 24 (the default for /16), or '
        "remove it"
    ]


def test_lint_a_net_conf_json_from_stdin(here, capsys, monkeypatch):
    node = str(here / "conf" / "node.toml")
    rc, out, err = run(
        capsys, "--config", node, "lint", "-", stdin=BAD_JSON.encode(), monkeypatch=monkeypatch
    )
    assert rc == 2
    assert err.startswith("<stdin>:3:3: error: SubnetLen: 31 is larger than 30")
    assert out.startswith("<stdin>: checked as flannel v0.27.4 reads it")


def test_json_only_shapes_and_syntax_errors(here, capsys, monkeypatch):
    node = str(here / "conf" / "node.toml")
    nulls = b'{"Network": "10.244.0.0/16", "EnableIPv4": null, "Backend": null}'
    rc, out, err = run(capsys, "--config", node, "lint", "-", stdin=nulls, monkeypatch=monkeypatch)
    assert rc == 2
    assert '<stdin>:1:50: error: Backend: null: flannel reads its type as ""' in err
    assert "<stdin>:1:30: warning: EnableIPv4: null changes nothing here" in out

    rc, _, err = run(
        capsys, "--config", node, "lint", "-", stdin=b' ["10.244.0.0/16"]', monkeypatch=monkeypatch
    )
    assert rc == 2
    assert err.startswith(
        '<stdin>:1:2: error: the config must be an object like {"Network": "10.244.0.0/16"}, '
        "not an array: flanneld refuses the whole config"
    )

    broken = b'{\n  "Network": "10.244.0.0/16",\n  // pods\n}'
    rc, out, err = run(capsys, "--config", node, "lint", "-", stdin=broken, monkeypatch=monkeypatch)
    assert rc == 2
    assert err == (
        "<stdin>:3:3: error: not JSON as flannel reads it: invalid character '/' looking for "
        "beginning of object key string (flanneld refuses the whole config and retries every "
        "second, forever). JSON has no comments: remove them\n"
    )


def test_build_py_lint_reads_stdin_and_files(here, tmp_path):
    node = str(here / "conf" / "node.toml")
    (tmp_path / "bad.json").write_text(BAD_JSON)
    for argv, stdin in ((["lint", "-"], BAD_JSON), (["lint", str(tmp_path / "bad.json")], None)):
        proc = subprocess.run(
            [sys.executable, str(REPO / "build.py"), "--config", node, *argv],
            input=stdin,
            capture_output=True,
            text=True,
            check=False,
            timeout=60,
        )
        assert proc.returncode == 2, proc.stderr
        assert "Traceback" not in proc.stderr
        assert ":3:3: error: SubnetLen: 31 is larger than 30" in proc.stderr


def test_a_node_toml_as_the_file_is_its_own_context(here, capsys):
    other = here / "other.toml"
    other.write_text(NODE + '[network]\nNetwork = "10.0.0.0/29"\nBackend = {Type = "vxlan"}\n')
    rc, _, err = run(capsys, "lint", str(other))
    assert rc == 2
    assert err.startswith(f'{other} [network]: error: Network: "10.0.0.0/29" is too small')
    rc, _, err = run(capsys, "--config", str(here / "conf" / "node.toml"), "lint", str(other))
    assert rc == 2 and "two node configs" in err


@pytest.mark.parametrize(
    ("content", "words"),
    [
        ("Network: 10.0.0.0/8\n", ["neither a net-conf.json (JSON: invalid character 'N'", "TOML"]),
        ("   \n", ["empty"]),
        (None, ["no such file"]),
    ],
)
def test_what_is_not_a_network_config_exits_2(here, capsys, content, words):
    path = here / "x.conf"
    if content is not None:
        path.write_text(content)
    rc, _, err = run(capsys, "--config", str(here / "conf" / "node.toml"), "lint", str(path))
    assert rc == 2
    assert err.startswith(f"error: {path}: ")
    for word in words:
        assert word in err


def test_quiet_prints_errors_only_and_strict_fails_on_warnings(here, capsys):
    node = here / "conf" / "node.toml"
    node.write_text(NODE + '[network]\nNetwork = "10.244.0.0/16"\nBackend = {Type = "udp"}\n')
    rc, out, err = run(capsys, "--config", str(node), "lint", "-q")
    assert (rc, out, err) == (0, "", "")
    rc, out, err = run(capsys, "--config", str(node), "lint")
    assert rc == 0 and f"{node} [network]: warning: Backend.Type: udp forwards every" in out
    rc, out, err = run(capsys, "--config", str(node), "lint", "--strict", "-q")
    assert rc == 2 and out == ""
    assert err.splitlines() == [
        f"{node} [network]: warning: Backend.Type: udp forwards every packet through flanneld "
        'in user space: slow, meant for debugging only. Use "vxlan"',
        f"{node} [network]: --strict: 1 warning fails the lint",
    ]
    node.write_text(NODE + '[network]\nNetwork = "10.244.0.0/16"\nBackend = {Type = "vxlan"}\n')
    assert run(capsys, "--config", str(node), "lint", "--strict")[0] == 0


def test_the_config_read_is_named_in_every_message(project):
    project.config(
        '[network]\nNetwork = "10.244.0.0/16"\nSubnetLen = 31\nBackend = {Type = "vxlan"}\n'
    )
    other = project.root / "other.toml"
    (project.root / "node.toml").rename(other)
    result = project.run("--config", str(other), "lint")
    assert result.rc == 2
    assert result.err.startswith(f"{other} [network]: error: SubnetLen: 31")
    assert "node.toml" not in result.out + result.err
    payload = project.run("--config", str(other), "payload")
    assert payload.rc == 2
    assert f"flannel network config ([network] in {other}): 1 error" in payload.err


def test_a_missing_default_config_is_said_once_loudly(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    rc, out, err = run(capsys, "lint")
    assert rc == 0
    alarm = [line for line in err.splitlines() if line.startswith("*** ")]
    assert len(alarm) == 1
    assert (
        f"no node.toml in {tmp_path} and no --config: using flannelnode's built-in defaults"
        in (alarm[0])
    )
    assert "flannel v0.27.4 for amd64, arm64" in alarm[0] and "Pass --config FILE" in alarm[0]
    assert "the built-in defaults [network]: info: Network" in out
    rc, _, err = run(capsys, "lint", "--strict")
    assert rc == 2 and "--strict: 1 warning fails the lint" in err
    rc, out, err = run(capsys, "config")
    assert rc == 0 and err.count("*** no node.toml") == 1
    rc, out, err = run(capsys, "-q", "payload")  # fails later (nothing fetched), says it first
    assert rc == 1 and err.startswith("*** no node.toml")

    args = cli.parser().parse_args(["config"])
    cli._load(args)
    cli._load(args)
    assert capsys.readouterr().err.count("*** no node.toml") == 1


def test_lint_never_echoes_a_secret_from_json(here, capsys, monkeypatch):
    secret = "hunter2-hunter2"
    backend = {"Type": "wireguard", "PSK": secret, "psk": secret, "Password": secret}
    text = json.dumps({"Network": "10.244.0.0/16", "Backend": backend})
    node = str(here / "conf" / "node.toml")
    rc, out, err = run(
        capsys, "--config", node, "lint", "-", stdin=text.encode(), monkeypatch=monkeypatch
    )
    assert rc == 2 and secret not in out + err


def test_a_toml_date_in_network_is_named_not_a_traceback(here, capsys):
    node = here / "conf" / "node.toml"
    node.write_text(NODE + '[network]\nNetwork = 1979-05-27\nBackend = {Type = "vxlan"}\n')
    rc, _, err = run(capsys, "--config", str(node), "lint")
    assert rc == 2
    assert err == (
        f"{node} [network]: error: Network: 1979-05-27 is a TOML date or time, which JSON (and "
        "so flannel) cannot express; quote it if you meant a string\n"
    )
    assert run(capsys, "--config", str(node), "config")[0] == 0
    rc, _, err = run(capsys, "--config", str(node), "payload")
    assert rc == 2 and "TOML date" in err
