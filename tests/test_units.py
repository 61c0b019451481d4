"""Rendered units: golden files, systemd-analyze verify in a temp root, the docker generator.

Golden files live in tests/golden/ as the node tree (tests/golden/<node path>) plus
tests/golden/MODES ("<octal mode> <node path>" per file), rendered from the repository's node.toml.
After an intended change to units/ or flannelnode/units.py, regenerate them and review the diff:

    FLANNELNODE_UPDATE_GOLDEN=1 .venv/bin/pytest tests/test_units.py -k golden
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import jinja2
import pytest

from flannelnode import config, units
from flannelnode.errors import ConfigError

REPO = Path(__file__).resolve().parent.parent
GOLDEN = Path(__file__).resolve().parent / "golden"
HOST_UNITS = Path("/usr/lib/systemd/system")
GENERATOR = REPO / "scripts" / "flannelnode-docker-generator"

# What each flavour's vendor docker.service looks like where it matters to us. The vendor ExecStart
# names another binary than the drop-in does, so a test can tell which ExecStart is in effect.
VENDOR_UNITS = {
    "docker-ce": (
        "[Service]\nType=notify\n"
        "ExecStart=/usr/bin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock\n"
    ),
    "docker.io": (
        "[Service]\nType=notify\nEnvironmentFile=-/etc/default/docker\n"
        "ExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock"
        " $DOCKER_OPTS\n"
    ),
    "moby-engine": (
        "[Service]\nType=notify\nEnvironmentFile=-/etc/sysconfig/docker\n"
        "ExecStart=/usr/bin/dockerd \\\n          --host=fd:// \\\n"
        "          --exec-opt native.cgroupdriver=systemd \\\n          $OPTIONS\n"
    ),
}
DOCKERD = {
    "docker-ce": "/usr/bin/dockerd",
    "docker.io": "/usr/sbin/dockerd",
    "moby-engine": "/usr/bin/dockerd",
}


def require(tool: str, package: str) -> str:
    path = shutil.which(tool)
    if path is None:
        pytest.fail(f"{tool} is not installed: apt-get install -y {package}")
    return path


def load(overrides: dict[str, object] | None = None) -> config.Config:
    return config.load(REPO / "node.toml", env={}, overrides=overrides)


@pytest.fixture(scope="module")
def default_config() -> config.Config:
    return load()


def _write(root: Path, path: str, content: bytes | str, mode: int = 0o644) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_bytes(content.encode() if isinstance(content, str) else content)
    target.chmod(mode)
    return target


def _stub(root: Path, path: str) -> None:
    _write(root, path, "#!/bin/sh\nexit 0\n", 0o755)


def node_root(tmp_path: Path, cfg: config.Config, flavour: str | None = None) -> Path:
    """A root with the host's system units (for the targets), our files, and stub executables."""
    root = tmp_path / "root"
    # The host's own docker/containerd/flanneld units (if any) must not leak into the test root.
    host_specific = shutil.ignore_patterns("docker*", "containerd*", "flannel*")
    shutil.copytree(
        HOST_UNITS, root / HOST_UNITS.relative_to("/"), symlinks=True, ignore=host_specific
    )
    for node_file in units.render(cfg) + units.scripts(cfg):
        _write(root, node_file.path, node_file.content, node_file.mode)
    _stub(root, f"{cfg.install.prefix}/bin/flanneld")
    _stub(root, "/bin/touch")
    _stub(root, "/bin/sh")  # the docker drop-in's guard
    _stub(root, "/sbin/modprobe")
    if flavour is not None:
        _write(root, f"{units.UNIT_DIR}/docker.service", VENDOR_UNITS[flavour])
        _write(root, f"{units.UNIT_DIR}/docker.socket", "[Socket]\nListenStream=/run/docker.sock\n")
        _stub(root, DOCKERD[flavour])
    return root


def verify(root: Path, *unit_names: str) -> subprocess.CompletedProcess[str]:
    analyze = require("systemd-analyze", "systemd")
    return subprocess.run(
        [analyze, "verify", f"--root={root}", *unit_names],
        capture_output=True,
        text=True,
        env={**os.environ, "SYSTEMD_LOG_COLOR": "0"},
        timeout=60,
    )


def assert_clean(result: subprocess.CompletedProcess[str]) -> None:
    # verify exits 0 on unknown keys and on drop-ins it cannot open: any output is a failure.
    assert result.returncode == 0 and not result.stdout and not result.stderr, (
        result.stdout + result.stderr
    )


def run_generator(root: Path, out: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            require("dash", "dash"),
            str(GENERATOR),
            str(out),
            str(out) + ".early",
            str(out) + ".late",
        ],
        capture_output=True,
        text=True,
        env={"PATH": os.environ["PATH"], "FLANNELNODE_ROOT": str(root)},
        timeout=30,
    )


# --- golden renders -------------------------------------------------------------------------


def _golden_listing(files: list[units.NodeFile]) -> str:
    return "".join(f"{f.mode:04o} {f.path}\n" for f in files)


def test_golden_default_node_toml(default_config: config.Config) -> None:
    files = units.render(default_config) + units.scripts(default_config)
    rendered = [f for f in files if f.path != units.GENERATOR_PATH and "/bin/" not in f.path]
    if os.environ.get("FLANNELNODE_UPDATE_GOLDEN"):
        shutil.rmtree(GOLDEN, ignore_errors=True)
        for f in rendered:
            _write(GOLDEN, f.path, f.content)
        (GOLDEN / "MODES").write_text(_golden_listing(files))
    expected = {
        "/" + str(p.relative_to(GOLDEN)): p.read_bytes()
        for p in GOLDEN.rglob("*")
        if p.is_file() and p.name != "MODES"
    }
    assert {f.path: f.content for f in rendered} == expected, (
        "rendered files differ from tests/golden; if intended, regenerate (see module docstring)"
    )
    assert (GOLDEN / "MODES").read_text() == _golden_listing(files)


def test_render_is_deterministic(default_config: config.Config) -> None:
    assert units.render(default_config) == units.render(default_config)


def test_scripts_ship_verbatim(default_config: config.Config) -> None:
    by_path = {f.path: f for f in units.scripts(default_config)}
    mk = by_path["/opt/kubernetes/bin/mk-docker-opts.sh"]
    assert mk.mode == 0o755
    assert mk.content == (REPO / "scripts" / "mk-docker-opts.sh").read_bytes()
    assert by_path[units.GENERATOR_PATH].mode == 0o755


# --- content rules ----------------------------------------------------------------------------


def _content(files: list[units.NodeFile], path: str) -> str:
    return next(f.content.decode() for f in files if f.path == path)


def test_prefix_and_interface_options() -> None:
    cfg = load(
        {
            "install.prefix": "/opt/flannel",
            "flanneld.iface": ["eth1", "10.0.0.5"],
            "flanneld.public_ip": "192.0.2.7",
        }
    )
    files = units.render(cfg)
    service = _content(files, "/usr/lib/systemd/system/flanneld.service")
    assert "EnvironmentFile=/opt/flannel/cfg/flanneld\n" in service
    assert "ExecStart=/opt/flannel/bin/flanneld --ip-masq $FLANNEL_OPTIONS\n" in service
    options = _content(files, "/opt/flannel/cfg/flanneld")
    assert options.endswith(' --iface=eth1 --iface=10.0.0.5 --public-ip=192.0.2.7"\n')


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        ({"flanneld.iface": ["eth0 --x"]}, "flanneld.iface"),
        ({"flanneld.iface": ["eth0", "$(id)"]}, "flanneld.iface"),
        ({"flanneld.public_ip": "not-an-ip"}, "flanneld.public_ip"),
        ({"flanneld.ifcae": "eth0"}, "flanneld.ifcae: unknown key"),
    ],
)
def test_bad_flanneld_options(raw: dict, field: str) -> None:
    with pytest.raises(ConfigError, match=field):
        load(raw)


@pytest.mark.parametrize(
    ("section", "value", "field"),
    [
        ("install", {"prefix": "/opt/my kube"}, "install.prefix"),
        ("install", {"prefix": "/opt/%n"}, "install.prefix"),
        ("etcd", {"ca_file": "/opt/etcd/ssl/c a.pem"}, "etcd.ca_file"),
        ("etcd", {"prefix": "/coreos.com/$net"}, "etcd.prefix"),
    ],
)
def test_unsafe_values_refused(section: str, value: dict, field: str) -> None:
    cfg = load({f"{section}.{key}": v for key, v in value.items()})
    with pytest.raises(ConfigError, match=field):
        units.render(cfg)


def test_strict_undefined(default_config: config.Config, tmp_path: Path) -> None:
    broken = tmp_path / "units"
    shutil.copytree(units.UNITS_DIR, broken)
    template = broken / "flanneld.service.j2"
    template.write_text(template.read_text() + "{{ not_provided_by_render }}\n")
    with pytest.raises(jinja2.UndefinedError, match="not_provided_by_render"):
        units.render(default_config, units_dir=broken)


def test_every_template_is_rendered(default_config: config.Config) -> None:
    templates = {p.relative_to(units.UNITS_DIR).as_posix() for p in units.UNITS_DIR.rglob("*.j2")}
    used = {
        "flanneld.service.j2",
        "flannel-seed-etcd.service.j2",
        "flanneld.cfg.j2",
        "tmpfiles-flannel.conf.j2",
        "modules-load-flannel.conf.j2",
        "sysctl-flannel.conf.j2",
        "docker/_dropin.conf.j2",
    }
    used |= {f"docker/{flavour}.conf.j2" for flavour in units.DOCKER_FLAVOURS}
    assert templates == used


def test_generator_and_units_agree_on_paths() -> None:
    text = GENERATOR.read_text()
    assert f"share={units.DOCKER_DROPIN_DIR}\n" in text
    for flavour in units.DOCKER_FLAVOURS:
        assert flavour in text


# --- systemd-analyze verify -------------------------------------------------------------------


def test_flanneld_service_verifies(default_config: config.Config, tmp_path: Path) -> None:
    assert_clean(verify(node_root(tmp_path, default_config), "flanneld.service"))


def test_seed_service_verifies_and_runs_before_flanneld(
    default_config: config.Config, tmp_path: Path
) -> None:
    root = node_root(tmp_path, default_config)
    assert_clean(verify(root, "flannel-seed-etcd.service", "flanneld.service"))
    seed = _content(units.render(default_config), f"{units.UNIT_DIR}/flannel-seed-etcd.service")
    assert "Before=flanneld.service\n" in seed and "After=network-online.target cloud-init" in seed
    assert "ConditionPathExists=/opt/kubernetes/cfg/flannel-seed\n" in seed
    assert f"ConditionPathExists=!{units.SEED_MARKER}\n" in seed
    flanneld = _content(units.render(default_config), f"{units.UNIT_DIR}/flanneld.service")
    after = next(ln for ln in flanneld.splitlines() if ln.startswith("After="))
    assert "flannel-seed-etcd.service" in after.split()


def test_verify_catches_a_missing_binary(default_config: config.Config, tmp_path: Path) -> None:
    root = node_root(tmp_path, default_config)
    (root / "opt/kubernetes/bin/mk-docker-opts.sh").unlink()
    result = verify(root, "flanneld.service")
    assert result.returncode != 0
    assert "/opt/kubernetes/bin/mk-docker-opts.sh" in result.stderr


@pytest.mark.parametrize("flavour", units.DOCKER_FLAVOURS)
def test_docker_dropin_verifies(
    default_config: config.Config, tmp_path: Path, flavour: str
) -> None:
    root = node_root(tmp_path, default_config, flavour)
    dropin = (root / units.DOCKER_DROPIN_DIR.lstrip("/") / f"{flavour}.conf").read_bytes()
    _write(root, "/etc/systemd/system/docker.service.d/flannel.conf", dropin)
    assert_clean(verify(root, "docker.service", "flanneld.service"))

    # The drop-in's ExecStart is the one in effect: without its binary, verify names it.
    (root / DOCKERD[flavour].lstrip("/")).unlink()
    result = verify(root, "docker.service")
    assert result.returncode != 0 and DOCKERD[flavour] in result.stderr


@pytest.mark.parametrize("flavour", units.DOCKER_FLAVOURS)
def test_dropin_replaces_execstart(default_config: config.Config, flavour: str) -> None:
    files = units.render(default_config)
    text = _content(files, f"{units.DOCKER_DROPIN_DIR}/{flavour}.conf")
    lines = text.splitlines()
    exec_lines = [ln for ln in lines if ln.startswith("ExecStart=")]
    assert exec_lines[0] == "ExecStart="
    assert len(exec_lines) == 2
    assert exec_lines[1].startswith(f"ExecStart={DOCKERD[flavour]} ")
    assert exec_lines[1].endswith(" $DOCKER_NETWORK_OPTIONS")
    assert "EnvironmentFile=-/run/flannel/docker" in lines
    assert "Wants=flanneld.service" in lines and "After=flanneld.service" in lines


# Every dependency through which a restart or stop of flanneld reaches docker (systemd.unit(5)).
BINDING = ("Requires=", "Requisite=", "BindsTo=", "PartOf=", "Upholds=", "PropagatesStopTo=")


@pytest.mark.parametrize("flavour", units.DOCKER_FLAVOURS)
def test_docker_is_ordered_after_flanneld_but_not_bound_to_it(
    default_config: config.Config, flavour: str
) -> None:
    files = units.render(default_config)
    dropin = _content(files, f"{units.DOCKER_DROPIN_DIR}/{flavour}.conf").splitlines()
    assert not [ln for ln in dropin if ln.startswith(BINDING)], dropin
    flanneld = _content(files, f"{units.UNIT_DIR}/flanneld.service").splitlines()
    assert not [
        ln
        for ln in flanneld
        if ln.startswith(
            (
                "PropagatesReloadTo=",
                "ReloadPropagatedFrom=",
                "PropagatesStopTo=",
                "StopPropagatedFrom=",
            )
        )
    ]
    # a late etcd: flanneld waits without a start timeout, so docker's start job waits with it
    assert "TimeoutStartSec=infinity" in flanneld
    # and docker never runs on its default bridge: without flannel's options it refuses to start
    [guard] = [ln for ln in dropin if ln.startswith("ExecStartPre=")]
    assert f"test -s {units.DOCKER_ENV_FILE} ||" in guard and "exit 1" in guard


def test_docker_guard_refuses_to_start_without_flannel_options(
    default_config: config.Config, tmp_path: Path
) -> None:
    """The drop-in's ExecStartPre, run through sh as systemd runs it."""
    dropin = _content(units.render(default_config), f"{units.DOCKER_DROPIN_DIR}/docker.io.conf")
    [guard] = [ln for ln in dropin.splitlines() if ln.startswith("ExecStartPre=")]
    script = guard.split("-c '", 1)[1].rsplit("'", 1)[0]
    script = script.replace(units.DOCKER_ENV_FILE, str(tmp_path / "docker"))
    missing = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10)
    assert missing.returncode == 1 and "flanneld is not running" in missing.stderr
    (tmp_path / "docker").write_text("DOCKER_NETWORK_OPTIONS=--bip=10.1.2.1/24\n")
    present = subprocess.run(["sh", "-c", script], capture_output=True, text=True, timeout=10)
    assert present.returncode == 0 and not present.stderr


def test_kernel_prerequisites(default_config: config.Config) -> None:
    files = units.render(default_config)
    modules = _content(files, units.MODULES_LOAD).splitlines()
    assert [m for m in modules if m and not m.startswith("#")] == ["br_netfilter", "overlay"]
    sysctl = _content(files, units.SYSCTL_CONF).splitlines()
    settings = dict(
        (k.strip(), v.strip())
        for k, v in (ln.split("=", 1) for ln in sysctl if "=" in ln and not ln.startswith("#"))
    )
    assert settings == {
        "net.bridge.bridge-nf-call-iptables": "1",
        "net.bridge.bridge-nf-call-ip6tables": "1",
        "net.ipv4.ip_forward": "1",
    }
    flanneld = _content(files, f"{units.UNIT_DIR}/flanneld.service").splitlines()
    assert "ExecStartPre=-/sbin/modprobe br_netfilter" in flanneld
    assert "systemd-modules-load.service" in next(ln for ln in flanneld if ln.startswith("After="))


def test_tmpfiles_entry(default_config: config.Config, tmp_path: Path) -> None:
    tmpfiles = require("systemd-tmpfiles", "systemd")
    root = node_root(tmp_path, default_config)
    result = subprocess.run(
        [tmpfiles, "--create", f"--root={root}", "flannel.conf"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    created = root / "run" / "flannel"
    assert created.is_dir() and created.stat().st_mode & 0o7777 == 0o755


def test_the_seed_marker_directory_comes_from_tmpfiles_not_state_directory(
    default_config: config.Config, tmp_path: Path
) -> None:
    """StateDirectory= needs systemd >= 235 (EL7 has 219): no unit may rely on it, and the
    marker's directory must exist on any systemd, so the seeder runs once, not at every boot."""
    rendered = units.render(default_config)
    for f in rendered:
        if f.path.endswith(".service") or f.path.endswith(".conf"):
            directives = [ln.strip() for ln in f.content.decode().splitlines()]
            assert not [d for d in directives if d.startswith("StateDirectory")], f.path
    root = node_root(tmp_path, default_config)
    tmpfiles = require("systemd-tmpfiles", "systemd")
    result = subprocess.run(
        [tmpfiles, "--create", f"--root={root}", "flannel.conf"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert result.returncode == 0 and not result.stderr, result.stderr
    state = root / units.STATE_DIR.lstrip("/")
    assert state.is_dir() and state.stat().st_mode & 0o7777 == 0o755
    assert str(Path(units.SEED_MARKER).parent) == units.STATE_DIR
    # the unit's own marker command then works, and its condition then skips the unit
    seed = _content(rendered, f"{units.UNIT_DIR}/flannel-seed-etcd.service")
    post = next(ln for ln in seed.splitlines() if ln.startswith("ExecStartPost="))
    assert post == f"ExecStartPost=/bin/touch {units.SEED_MARKER}"
    subprocess.run(["touch", str(root / units.SEED_MARKER.lstrip("/"))], check=True)
    assert (root / units.SEED_MARKER.lstrip("/")).is_file()


def test_every_unit_verifies(default_config: config.Config, tmp_path: Path) -> None:
    """systemd-analyze verify of every unit the payload ships, together."""
    root = node_root(tmp_path, default_config)
    names = [
        Path(f.path).name
        for f in units.render(default_config)
        if f.path.startswith(units.UNIT_DIR + "/")
    ]
    assert {"flanneld.service", "flannel-seed-etcd.service"} <= set(names)
    assert_clean(verify(root, *names))


# --- the docker flavour generator -------------------------------------------------------------


@pytest.mark.parametrize("flavour", units.DOCKER_FLAVOURS)
def test_generator_picks_flavour(
    default_config: config.Config, tmp_path: Path, flavour: str
) -> None:
    root = node_root(tmp_path, default_config, flavour)
    out = root / "etc" / "systemd" / "system"  # where verify --root looks; systemd passes /run/...
    result = run_generator(root, out)
    assert result.returncode == 0 and not result.stderr, result.stderr
    generated = out / "docker.service.d" / "flannel.conf"
    assert (
        generated.read_bytes()
        == _content(
            units.render(default_config), f"{units.DOCKER_DROPIN_DIR}/{flavour}.conf"
        ).encode()
    )
    assert_clean(verify(root, "docker.service"))


def test_generator_flavour_file_wins(default_config: config.Config, tmp_path: Path) -> None:
    root = node_root(tmp_path, default_config, "docker-ce")
    _write(root, "/etc/flannelnode/docker-flavour", "moby-engine\n")
    out = tmp_path / "gen"
    assert run_generator(root, out).returncode == 0
    assert "native.cgroupdriver=systemd" in (out / "docker.service.d/flannel.conf").read_text()


def test_generator_without_docker_does_nothing(
    default_config: config.Config, tmp_path: Path
) -> None:
    root = node_root(tmp_path, default_config)
    out = tmp_path / "gen"
    result = run_generator(root, out)
    assert result.returncode == 0 and not result.stderr
    assert not out.exists()


def test_generator_unknown_flavour_blocks_docker(
    default_config: config.Config, tmp_path: Path
) -> None:
    root = node_root(tmp_path, default_config, "docker-ce")
    _write(root, f"{units.UNIT_DIR}/docker.service", "[Service]\nExecStart=/opt/other/dockerd\n")
    _stub(root, "/opt/other/dockerd")
    out = root / "etc" / "systemd" / "system"
    result = run_generator(root, out)
    assert result.returncode == 0
    assert "cannot tell the docker flavour" in result.stderr
    dropin = (out / "docker.service.d/flannel.conf").read_text()
    assert "ExecStartPre=/bin/sh -c" in dropin and "/etc/flannelnode/docker-flavour" in dropin
    _stub(root, "/bin/false")
    assert_clean(verify(root, "docker.service"))


@pytest.mark.parametrize("content", ["moby-engine\r\n", "  moby-engine \t\n", "moby-engine"])
def test_generator_reads_a_flavour_file_with_crlf_or_spaces(
    default_config: config.Config, tmp_path: Path, content: str
) -> None:
    root = node_root(tmp_path, default_config, "docker-ce")
    _write(root, "/etc/flannelnode/docker-flavour", content)
    out = tmp_path / "gen"
    result = run_generator(root, out)
    assert result.returncode == 0 and not result.stderr, result.stderr
    expected = _content(units.render(default_config), f"{units.DOCKER_DROPIN_DIR}/moby-engine.conf")
    assert (out / "docker.service.d/flannel.conf").read_text() == expected


@pytest.mark.parametrize("content", ["bogus\r\n", "docker-ce\rExecStart=\n", "\x1b[1mx\n", ""])
def test_generator_fails_closed_on_a_malformed_flavour_file(
    default_config: config.Config, tmp_path: Path, content: str
) -> None:
    """Whatever the file holds, docker gets a drop-in that systemd reads in full and that keeps
    docker from running without flannel's options (not even its vendor ExecStart)."""
    root = node_root(tmp_path, default_config, "docker-ce")
    _write(root, "/etc/flannelnode/docker-flavour", content)
    out = root / "etc" / "systemd" / "system"
    result = run_generator(root, out)
    assert result.returncode == 0
    dropin = (out / "docker.service.d/flannel.conf").read_text()
    assert all(c == "\n" or c.isprintable() for c in dropin), repr(dropin)
    lines = dropin.splitlines()
    assert lines[lines.index("ExecStart=") + 1] == "ExecStart=/bin/false", dropin
    assert "ExecStartPre=/bin/sh -c" in dropin and "flannelnode" in dropin
    _stub(root, "/bin/false")
    assert_clean(verify(root, "docker.service"))


def test_flannels_licence_ships_beside_its_binary():
    # flanneld is Apache-2.0: the licence goes where Fedora puts %license files
    (licence,) = units.licenses()
    assert licence.path == "/usr/share/licenses/flannel-node/flannel-LICENSE"
    assert licence.mode == 0o644
    text = licence.content.decode()
    assert "Apache License" in text and "Version 2.0, January 2004" in text
