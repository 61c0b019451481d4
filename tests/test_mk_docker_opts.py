"""scripts/mk-docker-opts.sh under dash and bash, and shellcheck on every node shell script."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "mk-docker-opts.sh"
SHELLS = ["dash", "bash"]

SUBNET_ENV = (
    "FLANNEL_NETWORK=10.1.0.0/16\n"
    "FLANNEL_SUBNET=10.1.15.1/24\n"
    "FLANNEL_MTU=1450\n"
    "FLANNEL_IPMASQ=true\n"
)
BOTH = (
    'DOCKER_OPT_BIP="--bip=10.1.15.1/24"\n'
    'DOCKER_OPT_IPMASQ="--ip-masq=false"\n'
    'DOCKER_OPT_MTU="--mtu=1450"\n'
    'DOCKER_OPTS="--bip=10.1.15.1/24 --ip-masq=false --mtu=1450"\n'
)


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: apt-get install -y {package}")
    return path


@pytest.fixture(params=SHELLS)
def shell(request: pytest.FixtureRequest) -> str:
    return require(request.param, request.param)


@pytest.fixture
def subnet(tmp_path: Path) -> Path:
    path = tmp_path / "flannel" / "subnet.env"
    path.parent.mkdir()
    path.write_text(SUBNET_ENV)
    return path


def run(shell: str, *args: str | Path, env: dict[str, str] | None = None):
    return subprocess.run(
        [shell, str(SCRIPT), *map(str, args)],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], **(env or {})},
        timeout=30,
    )


def ok(shell: str, subnet: Path, out: Path, *flags: str, env: dict[str, str] | None = None) -> str:
    result = run(shell, "-f", subnet, "-d", out, *flags, env=env)
    assert result.returncode == 0, result.stderr
    assert result.stderr == ""
    return out.read_text()


def test_default_writes_individual_and_combined(shell: str, subnet: Path, tmp_path: Path) -> None:
    out = tmp_path / "docker_opts.env"
    assert ok(shell, subnet, out) == BOTH
    assert out.stat().st_mode & 0o777 == 0o644


def test_individual_only(shell: str, subnet: Path, tmp_path: Path) -> None:
    assert ok(shell, subnet, tmp_path / "o", "-i") == (
        'DOCKER_OPT_BIP="--bip=10.1.15.1/24"\n'
        'DOCKER_OPT_IPMASQ="--ip-masq=false"\n'
        'DOCKER_OPT_MTU="--mtu=1450"\n'
    )


def test_combined_only_with_key(shell: str, subnet: Path, tmp_path: Path) -> None:
    text = ok(shell, subnet, tmp_path / "o", "-c", "-k", "DOCKER_NETWORK_OPTIONS")
    assert text == 'DOCKER_NETWORK_OPTIONS="--bip=10.1.15.1/24 --ip-masq=false --mtu=1450"\n'


def test_both_flags_mean_both_forms(shell: str, subnet: Path, tmp_path: Path) -> None:
    assert ok(shell, subnet, tmp_path / "o", "-i", "-c") == BOTH


def test_key_without_c_renames_combined(shell: str, subnet: Path, tmp_path: Path) -> None:
    text = ok(shell, subnet, tmp_path / "o", "-k", "X_OPTS")
    assert text.splitlines()[-1] == 'X_OPTS="--bip=10.1.15.1/24 --ip-masq=false --mtu=1450"'
    assert "DOCKER_OPTS=" not in text


def test_m_omits_ip_masq(shell: str, subnet: Path, tmp_path: Path) -> None:
    assert ok(shell, subnet, tmp_path / "o", "-m") == (
        'DOCKER_OPT_BIP="--bip=10.1.15.1/24"\n'
        'DOCKER_OPT_MTU="--mtu=1450"\n'
        'DOCKER_OPTS="--bip=10.1.15.1/24 --mtu=1450"\n'
    )


@pytest.mark.parametrize("ipmasq", ["FLANNEL_IPMASQ=false\n", ""])
def test_ip_masq_only_when_flannel_masquerades(
    shell: str, subnet: Path, tmp_path: Path, ipmasq: str
) -> None:
    subnet.write_text(SUBNET_ENV.replace("FLANNEL_IPMASQ=true\n", ipmasq))
    assert (
        ok(shell, subnet, tmp_path / "o", "-c") == 'DOCKER_OPTS="--bip=10.1.15.1/24 --mtu=1450"\n'
    )


def test_d_writes_where_told(shell: str, subnet: Path, tmp_path: Path) -> None:
    out = tmp_path / "flannel" / "docker"
    ok(shell, subnet, out, "-c")
    assert sorted(p.name for p in out.parent.iterdir()) == ["docker", "subnet.env"]
    assert subnet.read_text() == SUBNET_ENV


def test_the_file_is_replaced_whole_never_rewritten_in_place(
    shell: str, subnet: Path, tmp_path: Path
) -> None:
    # docker (or anyone) reading the file while the script runs must see the old options or the
    # new ones, never a truncated file: the new file is written aside and renamed over the old
    # one, so a reader that opened the old file still reads it all, and the inode changes.
    out = tmp_path / "flannel" / "docker"
    old = 'DOCKER_OPTS="--bip=10.9.9.1/24 --mtu=1400"\n'
    out.write_text(old)
    before = out.stat().st_ino
    fd = os.open(out, os.O_RDONLY)
    try:
        assert ok(shell, subnet, out) == BOTH
        assert os.pread(fd, 4096, 0).decode() == old
    finally:
        os.close(fd)
    assert out.stat().st_ino != before
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)
    assert sorted(p.name for p in out.parent.iterdir()) == ["docker", "subnet.env"]


def test_quoted_values_and_crlf(shell: str, subnet: Path, tmp_path: Path) -> None:
    subnet.write_text(
        "FLANNEL_SUBNET=\"10.1.15.1/24\"\r\nFLANNEL_MTU='1450'\r\nFLANNEL_IPMASQ=true"
    )
    assert ok(shell, subnet, tmp_path / "o") == BOTH


def test_rerun_is_byte_for_byte_stable(shell: str, subnet: Path, tmp_path: Path) -> None:
    out = tmp_path / "flannel" / "docker"
    first = ok(shell, subnet, out).encode()
    for _ in range(3):
        assert ok(shell, subnet, out).encode() == first
    assert sorted(p.name for p in out.parent.iterdir()) == ["docker", "subnet.env"]


def test_other_shell_gives_same_bytes(subnet: Path, tmp_path: Path) -> None:
    outputs = {ok(require(s, s), subnet, tmp_path / f"o-{s}").encode() for s in SHELLS}
    assert len(outputs) == 1


def test_environment_is_not_inherited(shell: str, subnet: Path, tmp_path: Path) -> None:
    env = {"DOCKER_OPTS": "--stale", "DOCKER_OPT_EXTRA": "--x", "FLANNEL_MTU": "9000"}
    assert ok(shell, subnet, tmp_path / "o", env=env) == BOTH


def test_subnet_file_is_not_sourced(shell: str, subnet: Path, tmp_path: Path) -> None:
    marker = tmp_path / "executed"
    subnet.write_text(SUBNET_ENV + f"touch {marker}\n$(touch {marker})\n")
    assert ok(shell, subnet, tmp_path / "o") == BOTH
    assert not marker.exists()


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("FLANNEL_SUBNET=10.1.15.1/24$(id)", "FLANNEL_SUBNET"),
        ('FLANNEL_SUBNET=10.1.15.1/24" --evil="', "FLANNEL_SUBNET"),
        ("FLANNEL_SUBNET=10.1.15.1", "FLANNEL_SUBNET"),
        ("FLANNEL_MTU=1450 --x", "FLANNEL_MTU"),
    ],
)
def test_unsafe_values_refused(
    shell: str, subnet: Path, tmp_path: Path, line: str, message: str
) -> None:
    subnet.write_text(SUBNET_ENV + line + "\n")
    result = run(shell, "-f", subnet, "-d", tmp_path / "o")
    assert result.returncode == 1
    assert message in result.stderr
    assert not (tmp_path / "o").exists()


def test_missing_subnet_file(shell: str, tmp_path: Path) -> None:
    out = tmp_path / "o"
    result = run(shell, "-f", tmp_path / "nope.env", "-d", out)
    assert result.returncode == 1
    assert "nope.env" in result.stderr and "does not exist" in result.stderr
    assert not out.exists()


@pytest.mark.parametrize("variable", ["FLANNEL_SUBNET", "FLANNEL_MTU"])
def test_missing_variable(shell: str, subnet: Path, tmp_path: Path, variable: str) -> None:
    subnet.write_text("".join(ln for ln in SUBNET_ENV.splitlines(True) if variable not in ln))
    out = tmp_path / "o"
    out.write_text("previous\n")
    result = run(shell, "-f", subnet, "-d", out)
    assert result.returncode == 1
    assert f"does not set {variable}" in result.stderr
    assert out.read_text() == "previous\n"
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


@pytest.mark.parametrize("spelling", ["same", "dotdot", "symlink-dir"])
def test_d_equal_to_f_refused(shell: str, subnet: Path, tmp_path: Path, spelling: str) -> None:
    if spelling == "same":
        target = subnet
    elif spelling == "dotdot":
        target = subnet.parent / ".." / "flannel" / "subnet.env"
    else:
        (tmp_path / "link").symlink_to(subnet.parent)
        target = tmp_path / "link" / "subnet.env"
    result = run(shell, "-f", subnet, "-d", target)
    assert result.returncode == 2
    assert "refusing -d" in result.stderr
    assert "overwrite flanneld's own variables" in result.stderr
    assert subnet.read_text() == SUBNET_ENV


def test_d_hard_link_to_f_refused(shell: str, subnet: Path, tmp_path: Path) -> None:
    alias = tmp_path / "alias.env"
    os.link(subnet, alias)
    result = run(shell, "-f", subnet, "-d", alias)
    assert result.returncode == 2
    assert subnet.read_text() == SUBNET_ENV


@pytest.mark.parametrize("key", ["1ABC", "A-B", "A B", "A;B", ""])
def test_invalid_key_refused(shell: str, subnet: Path, tmp_path: Path, key: str) -> None:
    result = run(shell, "-f", subnet, "-d", tmp_path / "o", "-k", key)
    assert result.returncode == 2
    assert "not a valid variable name" in result.stderr


def test_missing_output_directory(shell: str, subnet: Path, tmp_path: Path) -> None:
    result = run(shell, "-f", subnet, "-d", tmp_path / "no" / "o")
    assert result.returncode == 1
    assert "does not exist" in result.stderr


def test_help(shell: str) -> None:
    result = run(shell, "-h")
    assert result.returncode == 0
    assert "/run/flannel/subnet.env" in result.stdout
    assert "/run/docker_opts.env" in result.stdout
    for flag in ("-f", "-d", "-k", "-c", "-i", "-m"):
        assert f"  {flag}  " in result.stdout


@pytest.mark.parametrize("args", [["-x"], ["extra"], ["-k"]])
def test_usage_errors(shell: str, args: list[str]) -> None:
    result = run(shell, *args)
    assert result.returncode == 2
    assert result.stderr


def test_output_is_a_valid_environment_file(shell: str, subnet: Path, tmp_path: Path) -> None:
    out = tmp_path / "o"
    ok(shell, subnet, out)
    probe = subprocess.run(
        [shell, "-c", f'. "{out}"; printf "%s|%s" "$DOCKER_OPTS" "$DOCKER_OPT_MTU"'],
        capture_output=True,
        text=True,
        check=True,
    )
    assert probe.stdout == "--bip=10.1.15.1/24 --ip-masq=false --mtu=1450|--mtu=1450"


def _shell_scripts() -> list[Path]:
    found = []
    for path in sorted((REPO / "scripts").iterdir()):
        if not path.is_file():
            continue
        with path.open("rb") as handle:
            first = handle.readline()
        words = first[2:].split() if first.startswith(b"#!") else []
        if words and words[0].endswith(b"/env") and len(words) > 1:
            words = words[1:]
        interpreter = words[0].rsplit(b"/", 1)[-1] if words else b""
        if path.suffix == ".sh" or interpreter in (b"sh", b"bash", b"dash", b"ksh"):
            found.append(path)
    return found


def test_scripts_found() -> None:
    names = {p.name for p in _shell_scripts()}
    assert {"mk-docker-opts.sh", "flannelnode-docker-generator"} <= names


@pytest.mark.parametrize("script", _shell_scripts(), ids=lambda p: p.name)
def test_shellcheck_clean(script: Path) -> None:
    shellcheck = require("shellcheck", "shellcheck")
    result = subprocess.run([shellcheck, str(script)], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert os.access(script, os.X_OK), f"{script} is not executable"
