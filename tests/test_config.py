"""node.toml -> model: defaults, overrides, and bad input that exits 2 naming the field."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from flannelnode import config
from flannelnode.errors import ConfigError

from .conftest import REPO


def test_shipped_node_toml_is_the_classic_deployment():
    cfg = config.load(REPO / "node.toml", env={})
    assert cfg.etcd.ca_file == "/opt/etcd/ssl/ca.pem"
    # flanneld's client files, distinct from an etcd member's own server.pem/server-key.pem
    assert cfg.etcd.cert_file == "/opt/etcd/ssl/flannel-client.pem"
    assert cfg.etcd.key_file == "/opt/etcd/ssl/flannel-client-key.pem"
    assert cfg.etcd.prefix == "/coreos.com/network"
    assert cfg.network == {"Network": "172.17.0.0/16", "Backend": {"Type": "vxlan"}}
    assert cfg.install.prefix == "/opt/kubernetes"
    assert cfg.fetch.lock == REPO / "release.lock"  # relative to the file, not the cwd
    # the shipped file spells out exactly the built-in defaults
    defaults = config.Config().to_dict()
    shipped = cfg.to_dict()
    shipped["fetch"]["lock"] = "release.lock"
    assert shipped == defaults


def test_etcd_members_own_server_files_remain_an_explicit_choice(tmp_path):
    """The classic layout (flanneld on etcd's server.pem) is still reachable, only not default."""
    (tmp_path / "node.toml").write_text(
        '[etcd]\ncert_file = "/opt/etcd/ssl/server.pem"\n'
        'key_file = "/opt/etcd/ssl/server-key.pem"\n'
    )
    cfg = config.load(tmp_path / "node.toml", env={})
    assert (cfg.etcd.cert_file, cfg.etcd.key_file) == (
        "/opt/etcd/ssl/server.pem",
        "/opt/etcd/ssl/server-key.pem",
    )


def test_environment_overrides_file_and_flags_override_environment(tmp_path):
    (tmp_path / "node.toml").write_text('[flannel]\nversion = "v0.25.0"\n')
    env = {"FLANNEL_VERSION": "v0.26.3", "ARCH": "arm64, amd64", "FLANNEL_MIRROR": "http://m:8/"}
    cfg = config.load(tmp_path / "node.toml", env=env)
    assert cfg.flannel.version == "v0.26.3"
    assert cfg.flannel.arches == ["arm64", "amd64"]
    assert cfg.fetch.mirror == "http://m:8"
    cfg = config.load(tmp_path / "node.toml", env=env, overrides={"flannel.version": "v0.27.3"})
    assert cfg.flannel.version == "v0.27.3"


BAD = [
    ('[flannel]\nversoin = "v0.27.4"\n', "flannel.versoin: unknown key"),
    ('[flannel]\narches = "amd64"\n', "flannel.arches: must be a list, not a string"),
    ('[flannel]\narches = ["x86_64"]\n', "unknown arch 'x86_64'"),
    ('[flannel]\nversion = "0.27.4"\n', "flannel.version: must look like v0.27.4"),
    ('[flannel]\nversion = "v0.5.5"\n', "older than v0.6.0"),
    ('[flannel]\nversion = "v0.20.0"\narches = ["riscv64"]\n', "v0.20.0 publishes no"),
    ("[fetch]\ntimeout = true\n", "fetch.timeout: must be a number, not a boolean"),
    ('[etcd]\nendpoints = ["https://a:2379", 5]\n', "item 1: must be a string"),
    ("flannel = 1\n", "flannel: must be a table, not int"),
    ('[flannel]\nasset = "zip"\n', "flannel.asset: 'zip' is not one of 'binary', 'tarball'"),
    ('[fetch]\nmirror = "artifactory.local/github"\n', "fetch.mirror: 'artifactory.local/github'"),
    ("[fetch]\nretries = -1\n", "fetch.retries: -1 is out of range; use 0 to 20"),
    ('[fetch]\nlocal = "/nonexistent/flannel"\n', "fetch.local: /nonexistent/flannel does not"),
    ('[etcd]\nendpoints = ["192.168.31.61:2379"]\n', "etcd.endpoints: '192.168.31.61:2379'"),
    ('[etcd]\nca_file = "ca.pem"\n', "etcd.ca_file: 'ca.pem' must be an absolute path"),
    ('[install]\nprefix = "/opt/../etc"\n', "install.prefix"),
    ("network = 3\n", "network: must be a table, not int"),
    ("[flannel\n", "not valid TOML"),
    ('[cluster]\nservice_cidrs = ["10.96.0/12"]\n', "cluster.service_cidrs: '10.96.0/12' is not"),
    ('[cluster]\nnode_networks = "10.0.0.0/8"\n', "cluster.node_networks: must be a list"),
    ('[cluster]\ndocker_bridge = "172.17.0.1"\n', "cluster.docker_bridge: '172.17.0.1' is not"),
    ("source = 'x'\n", "source: unknown key"),
    ('[images]\nbase = "centos-7"\n', "images.base: unknown image base 'centos-7'; known: debian"),
    ('[images]\ntargets = ["vagrant"]\n', "images.targets: unknown image target 'vagrant'"),
    ("[images]\ntargets = []\n", "images.targets: needs at least one target"),
    ('[images]\naccelerator = "hvf"\n', "images.accelerator: 'hvf' is not one of 'tcg', 'kvm'"),
    ('[images]\ndebian_mirror = "ftp://m/debian"\n', "images.debian_mirror: 'ftp://m/debian'"),
    ("[images]\nregion = 'eu-central-1'\n", "images.region: unknown key"),
    ('[images.packer.azure-arm]\nlocation = "westeurope"\n', "images.packer.azure-arm: unknown"),
    ("[images.packer]\nqemu = 8\n", "images.packer.qemu: must be a table of Packer variables"),
    ('[images.packer.qemu]\ndisk = "8G"\n', "images.packer.qemu.disk: not a Packer variable of"),
    ("[images.packer.qemu]\ncpus = [2]\n", "images.packer.qemu.cpus: must be a string, number"),
    ('[images.packer.qemu]\nseed_dir = "/x"\n', "images.packer.qemu.seed_dir: set by the build"),
    ('[images.packer.docker]\ntag = "x"\n', "images.packer.docker.tag: set by the build"),
    ('[images.packer.amazon-ebs]\nupload_dir = "/x"\n', "amazon-ebs.upload_dir: set by the"),
    ('[images.packer.qemu]\naccelerator = "kvm"\n', "set by images.accelerator"),
    # our own base on debian-bookworm: another base is another variant
    ('[images.packer.docker]\nbase_image = "x"\n', "images.packer.docker.base_image: set by the"),
]


@pytest.mark.parametrize(("text", "message"), BAD)
def test_bad_config_names_the_field(tmp_path, text, message):
    path = tmp_path / "node.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as exc:
        config.load(path, env={})
    assert message in str(exc.value)
    assert str(path) in str(exc.value)


def test_bad_environment_value_names_the_variable(tmp_path):
    (tmp_path / "node.toml").write_text("")
    with pytest.raises(ConfigError, match="from environment variable FLANNEL_VERSION"):
        config.load(tmp_path / "node.toml", env={"FLANNEL_VERSION": "latest"})


def test_cli_bad_config_exits_2_without_traceback(tmp_path):
    (tmp_path / "node.toml").write_text('[flannel]\narches = ["sparc"]\n')
    proc = subprocess.run(
        [sys.executable, str(REPO / "build.py"), "--config", str(tmp_path / "node.toml"), "fetch"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2
    assert "flannel.arches: unknown arch 'sparc'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_cli_missing_config_file_exits_2(tmp_path):
    proc = subprocess.run(
        [sys.executable, str(REPO / "build.py"), "config", "--config", str(tmp_path / "x.toml")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 2 and "no such config file" in proc.stderr


def test_the_config_knows_the_file_it_came_from(tmp_path, monkeypatch):
    path = tmp_path / "site.toml"
    path.write_text('[cluster]\nnode_networks = ["192.168.31.7/24"]\n')
    cfg = config.load(path, env={})
    assert cfg.source == str(path)
    assert cfg.cluster.node_networks == ["192.168.31.0/24"]
    assert "source" not in cfg.to_dict() and cfg.to_dict()["cluster"]["docker_bridge"] is None
    monkeypatch.chdir(tmp_path)
    assert config.load(env={}).source == config.BUILTIN  # no ./node.toml here
    assert config.loads("", "<stdin>", tmp_path, env={}).source == "<stdin>"


IMAGES_TOML = """
[images]
base = "rocky-9"
targets = ["docker", "amazon-ebs"]
[images.packer.amazon-ebs]
region = "eu-central-1"
instance_type = "t3.medium"
[images.packer.qemu]
cpus = 4
disk_size = "8G"
[images.packer.docker]
base_image = "registry.example.com/rockylinux:9"   # not ours on rocky-9: the operator's to set
pull = true
"""


def test_images_table_holds_base_targets_and_packer_variables(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(IMAGES_TOML)
    images = config.load(path, env={}).images
    assert images.base == "rocky-9" and images.targets == ["docker", "amazon-ebs"]
    assert images.packer == {
        "amazon-ebs": {"region": "eu-central-1", "instance_type": "t3.medium"},
        "qemu": {"cpus": "4", "disk_size": "8G"},  # as Packer's -var takes them
        "docker": {"base_image": "registry.example.com/rockylinux:9", "pull": "true"},
    }
    defaults = config.Config().images
    assert (defaults.base, defaults.targets, defaults.packer) == ("debian-bookworm", None, {})


def test_images_overrides_name_the_flag_they_came_from(tmp_path):
    path = tmp_path / "node.toml"
    path.write_text(IMAGES_TOML)
    labels = {"images.packer": "--packer-var (make PACKER_VARS=)"}
    cfg = config.load(
        path,
        env={"FLANNELNODE_QEMU_ACCEL": "kvm"},
        overrides={"images.packer.qemu.disk_size": "20G"},
        labels=labels,
    )
    assert cfg.images.packer["qemu"] == {"cpus": "4", "disk_size": "20G"}
    assert cfg.images.accelerator == "kvm"
    with pytest.raises(ConfigError) as exc:
        config.load(path, env={}, overrides={"images.packer.qemu.disc": "8G"}, labels=labels)
    assert "images.packer.qemu.disc: not a Packer variable of qemu" in str(exc.value)
    assert "(from --packer-var (make PACKER_VARS=))" in str(exc.value)
    with pytest.raises(ConfigError, match="from environment variable FLANNELNODE_QEMU_ACCEL"):
        config.load(path, env={"FLANNELNODE_QEMU_ACCEL": "KVM"})
    # on our own Debian base, the docker base image is the build's, not the file's
    with pytest.raises(ConfigError, match=r"images\.packer\.docker\.base_image: set by the build"):
        config.load(path, env={}, overrides={"images.base": "debian-bookworm"})


def test_cli_packer_var_must_name_target_and_variable(project):
    project.config()
    for bad in ("region=eu-central-1", "amazon-ebs.region", "=x"):
        res = project.run("images", "--packer-var", bad)
        assert res.rc == 2, res.err
        assert f"--packer-var {bad!r}: give TARGET.VARIABLE=VALUE" in res.err
        assert "Traceback" not in res.err
    res = project.run("images", "--packer-var", "qemu.output_directory=/tmp/x")
    assert res.rc == 2 and "images.packer.qemu.output_directory: set by the build" in res.err
    assert str(project.root / "node.toml") in res.err


# -- environment variables and the settings only they reach, one by one


def _env(**env: str) -> config.Config:
    return config.loads(None, "env", Path("/"), env=env)


def _refused(text: str, base: Path) -> str:
    """The ConfigError a node.toml text gives."""
    with pytest.raises(ConfigError) as exc:
        config.loads(text, "node.toml", base, env={})
    return str(exc.value)


def test_flannel_asset_from_the_environment_is_one_word_not_a_list():
    assert _env(FLANNEL_ASSET="tarball").flannel.asset == "tarball"
    assert _env(FLANNEL_ASSET="binary").flannel.asset == "binary"


def test_flannel_tarball_alone_selects_the_tarball_kind(tmp_path):
    asset = tmp_path / "flannel-v0.27.4-linux-amd64.tar.gz"
    asset.write_bytes(b"x")
    cfg = _env(FLANNEL_TARBALL=str(asset))
    assert (cfg.flannel.asset, cfg.fetch.local) == ("tarball", asset)
    cfg = _env(FLANNEL_TARBALL=str(asset), FLANNEL_ASSET="tarball", FLANNEL_LOCAL=str(asset))
    assert (cfg.flannel.asset, cfg.fetch.local) == ("tarball", asset)


def test_flannel_tarball_beside_the_binary_kind_names_who_asked_for_it(tmp_path):
    asset = tmp_path / "flannel.tar.gz"
    asset.write_bytes(b"x")
    env = {"FLANNEL_TARBALL": str(asset)}
    with pytest.raises(ConfigError, match="but FLANNEL_ASSET=binary asks for the bare binary"):
        config.loads(None, "env", tmp_path, env={**env, "FLANNEL_ASSET": "binary"})
    with pytest.raises(ConfigError, match="but --asset binary asks for the bare binary"):
        config.loads(None, "env", tmp_path, env=env, overrides={"flannel.asset": "binary"})
    # the flag outranks the variable: --asset tarball settles it
    cfg = config.loads(
        None,
        "env",
        tmp_path,
        env={**env, "FLANNEL_ASSET": "binary"},
        overrides={"flannel.asset": "tarball"},
    )
    assert cfg.flannel.asset == "tarball"


def test_an_existing_local_source_is_taken(tmp_path):
    (tmp_path / "assets").mkdir()
    (tmp_path / "node.toml").write_text('[fetch]\nlocal = "assets"\n')
    assert config.load(tmp_path / "node.toml", env={}).fetch.local == tmp_path / "assets"


@pytest.mark.parametrize("release", ["1-2", "", "1 2", "rc/1"])
def test_an_rpm_release_rpm_cannot_take_is_refused(tmp_path, release):
    with pytest.raises(ConfigError, match=r"rpm\.release: .* letters, digits and \. _ \+ ~ \^"):
        config.loads(f'[rpm]\nrelease = "{release}"\n', "node.toml", tmp_path, env={})


def test_an_rpm_release_with_rpms_own_separators_is_taken(tmp_path):
    cfg = config.loads('[rpm]\nrelease = "2.el9_1+git~rc^1"\n', "node.toml", tmp_path, env={})
    assert cfg.rpm.release == "2.el9_1+git~rc^1"


@pytest.mark.parametrize(
    ("version", "arch", "hint"),
    [
        ("v0.7.0", "arm", True),  # arm tarballs begin at v0.7.1, its binaries at v0.6.0
        ("v0.20.0", "riscv64", False),  # riscv64 begins at v0.24.0, either kind
    ],
)
def test_a_missing_tarball_points_to_the_binaries_only_when_they_exist(
    tmp_path, version, arch, hint
):
    text = f'[flannel]\nversion = "{version}"\nasset = "tarball"\narches = ["{arch}"]\n'
    message = _refused(text, tmp_path)
    assert f"flannel {version} publishes no tarball for {arch}" in message
    assert ('its bare binaries are: asset = "binary"' in message) is hint


def test_flannel_local_and_flannel_tarball_must_name_the_same_file(tmp_path):
    for name in ("a.tar.gz", "b.tar.gz"):
        (tmp_path / name).write_bytes(b"x")
    a, b = str(tmp_path / "a.tar.gz"), str(tmp_path / "b.tar.gz")
    same = _word(a)  # equal, not the same object ("".join of one string hands it back)
    assert _env(FLANNEL_TARBALL=a, FLANNEL_LOCAL=same).fetch.local == Path(a)
    assert _env(FLANNEL_TARBALL=a, FLANNEL_LOCAL="").fetch.local == Path(a)  # empty: unset
    for local, tarball in ((a, b), (b, a)):
        with pytest.raises(ConfigError, match="name different local sources; set one of them"):
            _env(FLANNEL_TARBALL=tarball, FLANNEL_LOCAL=local)


@pytest.mark.parametrize("name", ["eth 0", "eth0'", 'eth"0', "$IFACE", "eth%0", "eth\\d", ""])
def test_an_iface_no_shell_or_flanneld_takes_is_refused(tmp_path, name):
    with pytest.raises(ConfigError, match=r"flanneld\.iface: .* is not an interface name"):
        config.loads(f"[flanneld]\niface = [{json.dumps(name)}]\n", "node.toml", tmp_path, env={})


def test_interface_names_addresses_and_regexes_are_taken(tmp_path):
    text = '[flanneld]\niface = ["eth0", "10.0.0.7", "^en[a-z0-9]+"]\npublic_ip = "10.0.0.7"\n'
    cfg = config.loads(text, "node.toml", tmp_path, env={})
    assert cfg.flanneld.iface == ["eth0", "10.0.0.7", "^en[a-z0-9]+"]
    assert cfg.flanneld.public_ip == "10.0.0.7"


@pytest.mark.parametrize("cidr", ["10.96.0.0/255.240.0.0", "10.96.0.0/", "10.96.0.0/+12"])
def test_a_cidr_takes_a_prefix_length_not_a_netmask(tmp_path, cidr):
    with pytest.raises(ConfigError, match=re.escape(f"'{cidr}' is not a CIDR like 10.96.0.0/12")):
        config.loads(f'[cluster]\nservice_cidrs = ["{cidr}"]\n', "node.toml", tmp_path, env={})


def test_an_empty_optional_setting_is_unset(tmp_path):
    text = '[repo]\nbaseurl = ""\ngpg_key = ""\n[cluster]\ndocker_bridge = ""\n'
    cfg = config.loads(text, "node.toml", tmp_path, env={})
    assert (cfg.repo.baseurl, cfg.repo.gpg_key, cfg.cluster.docker_bridge) == (None, None, None)


def test_the_cache_dir_setting_then_xdg_then_home(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CACHE_HOME", raising=False)
    assert _env().cache_dir == tmp_path / "home" / ".cache" / "flannelnode"
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _env().cache_dir == tmp_path / "xdg" / "flannelnode"
    assert _env(FLANNELNODE_CACHE=str(tmp_path / "mine")).cache_dir == tmp_path / "mine"


def _word(text: str) -> str:
    """text equal to a literal but not the same object, as a parsed config's strings are."""
    return "".join(list(text))


def test_a_flag_or_variable_asking_for_the_binary_is_read_by_value(tmp_path):
    (tmp_path / "f.tar.gz").write_bytes(b"x")
    env = {"FLANNEL_TARBALL": str(tmp_path / "f.tar.gz")}
    with pytest.raises(ConfigError, match="but FLANNEL_ASSET=binary asks"):
        _env(**env, FLANNEL_ASSET=_word("binary"))
    with pytest.raises(ConfigError, match="but --asset binary asks"):
        config.loads(None, "env", tmp_path, env=env, overrides={"flannel.asset": _word("binary")})


def test_a_label_names_the_flag_by_its_key_or_section(tmp_path):
    labels = {_word("fetch.retries"): "--retries", "images": "--image-flag"}
    with pytest.raises(ConfigError, match=r"fetch\.retries: .*\(from --retries\)"):
        config.loads(None, "x", tmp_path, env={}, overrides={"fetch.retries": -1}, labels=labels)
    with pytest.raises(ConfigError, match=r"images\.base: .*\(from --image-flag\)"):
        config.loads(None, "x", tmp_path, env={}, overrides={"images.base": "x"}, labels=labels)
    with pytest.raises(ConfigError, match=r"fetch\.timeout: .*\(from command line\)"):
        config.loads(None, "x", tmp_path, env={}, overrides={"fetch.timeout": -1}, labels=labels)


@pytest.mark.parametrize(
    ("text", "ok"),
    [
        ("[fetch]\nbackoff = 60\n", True),
        ("[fetch]\nbackoff = 60.5\n", False),
        ("[fetch]\nbackoff = 0\n", True),
        ("[repo]\nkeep = 100\n", True),
        ("[repo]\nkeep = 101\n", False),
        ("[repo]\nkeep = 1\n", True),
        ("[repo]\nkeep = 0\n", False),
        ("[fetch]\nbackoff = -0.5\n", False),
        ("[fetch]\ntimeout = 600\n", True),
        ("[fetch]\ntimeout = 600.5\n", False),
        ("[fetch]\ntimeout = 0.1\n", True),
        ("[fetch]\ntimeout = 0\n", False),
    ],
)
def test_documented_ranges_are_inclusive(tmp_path, text, ok):
    # node.toml: backoff 0 to 60 seconds, timeout 0.1 to 600, repo.keep 1 to 100 releases
    if ok:
        config.loads(text, "node.toml", tmp_path, env={})
    else:
        with pytest.raises(ConfigError, match="is out of range; use"):
            config.loads(text, "node.toml", tmp_path, env={})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[fetch]\nretries = true\n", "fetch.retries: must be an integer, not a boolean"),
        ("[repo]\nkeep = false\n", "repo.keep: must be an integer, not a boolean"),
        ("[fetch]\ncache_dir = 5\n", "fetch.cache_dir: must be a path string, not int"),
        ('[flanneld]\npublic_ip = "10.0.0"\n', "flanneld.public_ip: '10.0.0' is not an IP address"),
    ],
)
def test_a_value_of_the_wrong_kind_names_the_field(tmp_path, text, message):
    message = _refused(text, tmp_path)
    assert message in message


def test_a_backoff_from_the_environment_must_be_a_number():
    with pytest.raises(
        ConfigError, match="environment variable FLANNELNODE_BACKOFF: 'soon' is not"
    ):
        _env(FLANNELNODE_BACKOFF="soon")
    assert _env(FLANNELNODE_BACKOFF="2.5").fetch.backoff == 2.5


def test_a_config_path_that_is_a_directory_cannot_be_read(tmp_path):
    with pytest.raises(ConfigError, match=f"{tmp_path}: cannot read: Is a directory"):
        config.load(tmp_path, env={})


@pytest.mark.parametrize(
    ("text", "said", "not_said"),
    [
        # a missing binary has no hint: there is no other kind to point to
        (
            '[flannel]\nversion = "v0.20.0"\narches = ["riscv64"]\n',
            "flannel v0.20.0 publishes no binary for riscv64",
            "bare binaries",
        ),
        # v0.7.0 has no arm64 tarball: the default arches would add an error the user did not make
        (
            '[flannel]\nversion = "v0.7.0"\nasset = "tarball"\narches = ["sparc"]\n',
            "unknown arch 'sparc'",
            "publishes no",
        ),
    ],
    ids=["no-hint-for-binaries", "no-error-from-defaults"],
)
def test_the_message_names_the_problem_and_nothing_else(tmp_path, text, said, not_said):
    message = _refused(text, tmp_path)
    assert said in message
    assert not_said not in message


def test_where_a_config_came_from_is_not_a_setting(tmp_path):
    text = '[flannel]\nversion = "v0.26.3"\n'
    assert config.loads(text, "a.toml", tmp_path, env={}) == config.loads(
        text, "b.toml", tmp_path, env={}
    )


SECTIONS = ["flannel", "fetch", "etcd", "install", "flanneld", "rpm", "repo", "cluster", "images"]


@pytest.mark.parametrize("section", SECTIONS)
def test_a_validated_config_cannot_be_changed_behind_the_checks(section):
    import dataclasses

    cfg = config.Config()
    part = getattr(cfg, section)
    name = dataclasses.fields(part)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(part, name, None)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.source = "elsewhere"  # type: ignore[misc]


def test_rpm_release_from_the_environment_is_one_word():
    assert _env(RPM_RELEASE="2.el9").rpm.release == "2.el9"


def test_repo_paths_are_relative_to_the_file_without_a_fetch_table(tmp_path):
    cfg = config.loads('[repo]\npassphrase_file = "pass.txt"\n', "node.toml", tmp_path, env={})
    assert cfg.repo.passphrase_file == tmp_path / "pass.txt"


def test_list_variables_split_on_commas_and_a_key_id_does_not():
    cfg = _env(FLANNEL_ARCHES="arm64, amd64", FLANNELNODE_GPG_KEY="Ops, Inc <ops@example.com>")
    assert cfg.flannel.arches == ["arm64", "amd64"]
    assert cfg.repo.gpg_key == "Ops, Inc <ops@example.com>"


def test_etcd_endpoints_may_not_carry_credentials(tmp_path):
    text = '[etcd]\nendpoints = ["https://flannel:s3cr3tpw@10.0.0.1:2379"]\n'
    message = _refused(text, tmp_path)
    assert "etcd.endpoints" in message and "s3cr3tpw" not in message


def test_the_oldest_release_flannelnode_can_name_is_taken(tmp_path):
    text = '[flannel]\nversion = "v0.6.0"\narches = ["amd64"]\n'
    assert config.loads(text, "node.toml", tmp_path, env={}).flannel.version == "v0.6.0"


def test_the_tarball_hint_reads_the_kind_by_value(tmp_path):
    # the kind given as a flag: a literal here, the very object config.py compares with
    cfg = {"flannel.asset": "tarball", "flannel.version": "v0.7.0", "flannel.arches": ["arm"]}
    with pytest.raises(ConfigError, match='its bare binaries are: asset = "binary"'):
        config.loads(None, "x", tmp_path, env={}, overrides=cfg)
