"""Hostile and careless input: every URL setting is checked on its raw string, credentials in a URL
are never printed or written, and an OS error on a path the user named is one line, not a
traceback. Each case is run through the command line, as a user runs it."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from flannelnode import base, config, urls
from flannelnode.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
SEEDER = REPO / "scripts" / "flannel-seed-etcd"
SECRET = "s3cr3t-t0ken-4711"


def _no_traceback(result) -> None:
    assert "Traceback" not in result.out + result.err, result.err


# (id, node.toml text or [fetch] keys, environment, command line, exit code, words in the error)
CONFIG_CASES = [
    (
        "mirror-port-out-of-range",
        "",
        {},
        ["fetch", "--mirror", "http://127.0.0.1:99999"],
        2,
        ["fetch.mirror", "Port out of range", "command line"],
    ),
    (
        "mirror-space-in-host",
        "",
        {},
        ["fetch", "--mirror", "http://exa mple.com"],
        2,
        ["fetch.mirror", "whitespace"],
    ),
    (
        "mirror-newline-from-env",
        "",
        {"FLANNEL_MIRROR": "http://127.0.0.1:8080/\nx"},
        ["fetch"],
        2,
        ["fetch.mirror", "FLANNEL_MIRROR"],
    ),
    (
        "repo-url-newline-injects-a-line",
        "",
        {"FLANNELNODE_REPO_URL": "https://repo.example.com/el9\ngpgcheck=0"},
        ["config"],
        2,
        ["repo.baseurl", "FLANNELNODE_REPO_URL", "whitespace"],
    ),
    (
        "repo-baseurl-not-a-url",
        "",
        {},
        ["repo", "--unsigned", "--baseurl", "not a url"],
        2,
        ["repo.baseurl", "command line"],
    ),
    (
        "repo-baseurl-without-scheme",
        "",
        {},
        ["repo", "--unsigned", "--baseurl", "repo.example.com/el9"],
        2,
        ["repo.baseurl", "not a http:// or https:// or file:// URL"],
    ),
    (
        "repo-baseurl-with-credentials",
        "",
        {},
        ["repo", "--unsigned", "--baseurl", f"https://ci:{SECRET}@repo.example.com/el9"],
        2,
        ["repo.baseurl", "credentials"],
    ),
    (
        "etcd-endpoint-port-out-of-range",
        '[etcd]\nendpoints = ["https://10.0.0.1:99999"]\n',
        {},
        ["config"],
        2,
        ["etcd.endpoints", "Port out of range"],
    ),
    (
        "etcd-endpoint-port-zero",
        '[etcd]\nendpoints = ["https://10.0.0.1:0"]\n',
        {},
        ["config"],
        2,
        ["etcd.endpoints", "port 0"],
    ),
    (
        "etcd-endpoint-broken-ipv6",
        '[etcd]\nendpoints = ["https://[::1"]\n',
        {},
        ["config"],
        2,
        ["etcd.endpoints", "Invalid IPv6 URL"],
    ),
    (
        "seed-endpoints-broken-ipv6",
        "",
        {},
        [
            "seed",
            "--etcd-ca",
            "x",
            "--etcd-cert",
            "x",
            "--etcd-key",
            "x",
            "--endpoints",
            "https://[::1",
        ],
        2,
        ["etcd.endpoints", "Invalid IPv6 URL", "command line"],
    ),
    (
        "lock-file-not-utf8",
        {"lock": "bad.lock"},
        {},
        ["fetch"],
        2,
        ["bad.lock", "UTF-8"],
    ),
    (
        "lock-file-is-a-directory",
        {"lock": "lockdir"},
        {},
        ["fetch"],
        2,
        ["lockdir", "Is a directory"],
    ),
    (
        "cache-is-a-file",
        "",
        {"FLANNELNODE_CACHE": "afile"},
        ["fetch"],
        2,
        ["fetch.cache_dir", "not a directory", "FLANNELNODE_CACHE"],
    ),
    (
        "build-dir-is-a-file",
        "",
        {},
        ["--build-dir", "afile", "fetch"],
        2,
        ["--build-dir afile", "not a directory"],
    ),
    (
        "seed-iso-output-under-a-file",
        "",
        {},
        ["seed-iso", "--user-data", "user-data", "-o", "afile/seed.iso"],
        2,
        ["afile", "a file is in the way"],
    ),
]


@pytest.mark.parametrize(
    "toml, env, argv, code, words", [c[1:] for c in CONFIG_CASES], ids=[c[0] for c in CONFIG_CASES]
)
def test_bad_input_is_one_clear_line(project, monkeypatch, toml, env, argv, code, words):
    if isinstance(toml, dict):
        project.config(**toml)
    else:
        project.config(toml)
    (project.root / "bad.lock").write_bytes(b'["v0.27.4"]\n"flanneld-amd64" = "\xff\xfe"\n')
    (project.root / "lockdir").mkdir()
    (project.root / "afile").write_text("not a directory\n")
    (project.root / "user-data").write_text("#cloud-config\n{}\n")
    for var, value in env.items():
        monkeypatch.setenv(var, value)
    if argv[0] == "--build-dir":
        from flannelnode import cli

        project.capsys.readouterr()
        rc = cli.main(["--config", str(project.root / "node.toml"), *argv])
        captured = project.capsys.readouterr()
        out, err = captured.out, captured.err
    else:
        result = project.run(*argv)
        rc, out, err = result.rc, result.out, result.err
    assert "Traceback" not in out + err, err
    assert rc == code, err
    lines = err.strip().splitlines()
    assert lines and lines[0].startswith("error: "), err
    for word in words:
        assert word in err, f"{word!r} not in: {err}"
    assert SECRET not in out + err


def test_repo_url_newline_never_reaches_the_repo_file(project, monkeypatch):
    """The injected `gpgcheck=0` line must not survive anywhere: the config is refused."""
    project.config()
    monkeypatch.setenv("FLANNELNODE_REPO_URL", "https://repo.example.com/el9\ngpgcheck=0")
    result = project.run("repo", "--unsigned")
    _no_traceback(result)
    assert result.rc == 2
    assert not (project.build / "repo").exists()


@pytest.mark.parametrize(
    "endpoint, words",
    [
        ("https://[::1", "Invalid IPv6 URL"),
        ("https://127.0.0.1:99999", "Port out of range"),
        ("https://127.0.0.1:0", "port 0"),
        ("https://127.0.0.1:2379\n/x", "whitespace"),
        ("https://etcd\t.example:2379", "whitespace"),
    ],
)
def test_node_seeder_refuses_bad_endpoints_in_one_line(endpoint, words, tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            str(SEEDER),
            "--endpoints",
            endpoint,
            "--config-json",
            '{"Network": "10.244.0.0/16"}',
            "--deadline",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    assert len(result.stderr.strip().splitlines()) == 1, result.stderr
    assert words in result.stderr


# -- credentials in URLs


def test_mirror_credentials_are_used_but_never_shown_or_recorded(server, project):
    from .assets import elf, sha

    body = elf("amd64")
    server.add("v0.27.4", "flanneld-amd64", body)
    project.pin({"v0.27.4": {"flanneld-amd64": sha(body)}})
    host = server.url.split("://", 1)[1]
    project.config('[flannel]\narches = ["amd64"]\n', mirror=f"http://ci:{SECRET}@{host}")

    fetched = project.run("fetch")
    manifest = project.run("manifest")

    assert fetched.rc == 0 and manifest.rc == 0, fetched.err + manifest.err
    assert server.hits("flanneld-amd64"), server.requests  # the mirror was really used
    record = project.build / "fetch" / "v0.27.4" / "amd64" / "release.json"
    source = json.loads(record.read_text())["source"]
    assert source.startswith("http://***@127.0.0.1:"), source
    for text in (fetched.out, fetched.err, manifest.out, manifest.err):
        assert SECRET not in text
    for path in project.built():
        assert SECRET.encode() not in path.read_bytes(), path


def test_credentials_in_a_failed_download_stay_hidden(server, project):
    from .assets import elf, sha

    project.pin({"v0.27.4": {"flanneld-amd64": sha(elf("amd64"))}})  # pinned, not served: 404
    host = server.url.split("://", 1)[1]
    project.config('[flannel]\narches = ["amd64"]\n', mirror=f"http://{SECRET}@{host}/mirror")
    result = project.run("fetch")
    _no_traceback(result)
    assert result.rc == 1
    assert "404" in result.err and "***@127.0.0.1" in result.err, result.err
    assert SECRET not in result.out + result.err


def test_credentials_of_a_refused_connection_stay_hidden(project):
    project.config('[flannel]\narches = ["amd64"]\n', mirror=f"http://ci:{SECRET}@127.0.0.1:1")
    project.pin({"v0.27.4": {"flanneld-amd64": "0" * 64}})
    result = project.run("fetch")
    _no_traceback(result)
    assert result.rc == 1
    assert "gave up" in result.err
    assert SECRET not in result.out + result.err


@pytest.mark.parametrize(
    "url, shown",
    [
        ("https://user:pw-1234@host/p", "https://***@host/p"),
        ("https://TOKEN1234@host:8443/p", "https://***@host:8443/p"),
        ("https://host/p?token=abcd1234&x", "https://host/p?token=***&x"),
        ("https://host/p", "https://host/p"),
    ],
)
def test_redact(url, shown):
    assert urls.redact(url) == shown


def test_scrub_hides_credentials_in_text_a_library_built():
    urls.check("https://builder:pa%2Fss-9876@mirror.example.com/flannel?token=tok-5555")
    text = "GET /flannel?token=tok-5555 failed for builder:pa/ss-9876 (pa%2Fss-9876)"
    assert urls.scrub(text) == "GET /flannel?token=*** failed for *** (***)"


def test_debian_mirror_credentials_stay_out_of_the_image_apt_sources():
    sources = base._sources(f"http://apt:{SECRET}@mirror.example.com/debian")
    assert SECRET not in sources
    assert "URIs: http://mirror.example.com/debian\n" in sources


@pytest.mark.parametrize(
    "value, words",
    [
        ("http://mirror.example.com/debian\nDeb: x", "whitespace"),
        ("ftp://mirror.example.com/debian", "not a http:// or https://"),
        ("http://mirror.example.com:70000/debian", "Port out of range"),
    ],
)
def test_debian_mirror_from_the_environment_is_checked(value, words):
    """FLANNELNODE_DEBIAN_MIRROR sets images.debian_mirror, checked with the config."""
    with pytest.raises(ConfigError) as exc:
        config.load(env={"FLANNELNODE_DEBIAN_MIRROR": value})
    message = str(exc.value)
    assert "images.debian_mirror" in message and words in message
    assert "(from environment variable FLANNELNODE_DEBIAN_MIRROR)" in message
