"""images/validate.sh, the last step of every image build, against a prepared root (--root).

The root is a real staged payload (fetched like a release, `build.py payload`) with what
provision.sh adds around it: units enabled by the host's real systemctl (--root), a docker.io
unit for the drop-in generator, an empty machine-id. Each check is then shown to fail on its own
bug, and only that check: a check that cannot fail would pass here too. The builder side (the
check list, reading the result lines out of Packer's output) is flannelnode/validation.py.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from flannelnode import validation

from .elf_headers import REAL_HEADERS
from .validation_checks import FLANNELD, check_names

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "images" / "validate.sh"
DOCKER_IO_UNIT = """[Unit]
Description=Docker Application Container Engine

[Service]
ExecStart=/usr/sbin/dockerd -H fd:// --containerd=/run/containerd/containerd.sock

[Install]
WantedBy=multi-user.target
"""
NOT_A_KEY = """How to write a key file:
    -----BEGIN PRIVATE KEY-----
    (your key here)
-----BEGIN RSA PRIVATE KEY-----
...
-----END RSA PRIVATE KEY-----
"""


def _manifest(build: Path, arch: str) -> dict:
    return json.loads((build / "payload" / arch / "manifest.json").read_text())


@pytest.fixture
def staged(project, fetched) -> Path:
    """build/ with the amd64 and arm64 payloads staged."""
    result = project.run("payload")
    assert result.rc == 0, result.err
    return project.build


def _image_root(build: Path, arch: str, root: Path) -> Path:
    """The payload of arch installed into root as provision.sh leaves an image."""
    shutil.copytree(build / "payload" / arch / "root", root, symlinks=True)
    (root / "etc/ssh").mkdir(parents=True)
    (root / "etc/passwd").write_text(
        "root:x:0:0:root:/root:/bin/sh\nadmin:x:1000:1000::/home/admin:/bin/sh\n"
    )
    (root / "etc/machine-id").write_text("")
    (root / "root").mkdir()
    (root / "home/admin/.ssh").mkdir(parents=True)
    unit = root / "usr/lib/systemd/system/docker.service"
    unit.write_text(DOCKER_IO_UNIT)
    subprocess.run(
        ["systemctl", f"--root={root}", "enable", "flanneld.service", "docker.service"],
        check=True,
        capture_output=True,
        timeout=60,
    )
    return root


@pytest.fixture
def image(staged, tmp_path) -> tuple[Path, Path]:
    """(root, check list) of a good amd64 image."""
    checks = tmp_path / "validate.list"
    checks.write_text(validation.check_list(_manifest(staged, "amd64")))
    return _image_root(staged, "amd64", tmp_path / "root"), checks


def _validate(
    root: Path, checks: Path, *args: str, shell: str = "dash", env: dict | None = None
) -> tuple[int, list[str], dict[str, str]]:
    """(exit code, stdout lines, {failed check: why})."""
    res = subprocess.run(
        [shell, str(SCRIPT), "--root", str(root), "--checks", str(checks), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    lines = res.stdout.splitlines()
    failed = {}
    for line in lines:
        if line.startswith("validate: FAIL "):
            name, why = line.removeprefix("validate: FAIL ").split(": ", 1)
            failed[name] = why
    return res.returncode, lines + res.stderr.splitlines(), failed


@pytest.mark.parametrize("shell", ["dash", "bash"])
def test_a_good_image_passes_every_check(image, shell) -> None:
    root, checks = image
    rc, lines, failed = _validate(root, checks, "--arch", "amd64", shell=shell)
    assert rc == 0 and not failed, "\n".join(lines)
    names = [line.split()[2] for line in lines if line.startswith("validate: ok ")]
    manifest_files = [ln.split()[1] for ln in checks.read_text().splitlines() if ln[:5] == "file "]
    assert names == check_names(manifest_files, FLANNELD)
    assert len(manifest_files) >= 13
    assert lines[len(names)] == f"validate: {len(names)} passed, 0 failed"


def _pem_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["openssl", "genpkey", "-algorithm", "ed25519", "-out", str(path)],
        check=True,
        capture_output=True,
        timeout=30,
    )


def _ssh_key(path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "flannelnode-build", "-f", str(path)],
        check=True,
        timeout=30,
    )


def _authorize_a_new_key(root: Path) -> None:
    """The public half of a fresh key in admin's authorized_keys (its private half elsewhere)."""
    key = root.parent / "build-key" / "id_ed25519"
    _ssh_key(key)
    (root / "home/admin/.ssh/authorized_keys").write_text(key.with_suffix(".pub").read_text())


def _disable(root: Path, unit: str) -> None:
    subprocess.run(
        ["systemctl", f"--root={root}", "disable", unit], check=True, capture_output=True
    )


def _write(path: str, text: str) -> Callable[[Path], None]:
    def plant(root: Path) -> None:
        target = root / path.lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)

    return plant


# (the bug, what it does to a good root, the one check that must fail, words its reason holds)
BUGS: list[tuple[str, Callable[[Path], None], str, str]] = [
    (
        "wrong mode",
        lambda r: os.chmod(r / FLANNELD.lstrip("/"), 0o644),
        f"file:{FLANNELD}",
        "mode 644, expected 0755",
    ),
    (
        "wrong owner",
        lambda r: os.chown(r / "opt/kubernetes/cfg/flanneld", 1000, 1000),
        "file:/opt/kubernetes/cfg/flanneld",
        "expected root:root",
    ),
    (
        "missing file",
        lambda r: (r / "opt/kubernetes/bin/mk-docker-opts.sh").unlink(),
        "file:/opt/kubernetes/bin/mk-docker-opts.sh",
        "missing",
    ),
    (
        "changed content",
        _write("/opt/kubernetes/cfg/net-conf.json", '{"Network": "10.0.0.0/8"}\n'),
        "file:/opt/kubernetes/cfg/net-conf.json",
        "the payload manifest's",
    ),
    (
        "a planted private key",
        lambda r: _pem_key(r / "etc/ssl/private/stray.key"),
        "no-private-key",
        "/etc/ssl/private/stray.key",
    ),
    (
        "a private key with no file name ending in .key",
        lambda r: _pem_key(r / "opt/kubernetes/cfg/flanneld.bak"),
        "no-private-key",
        "/opt/kubernetes/cfg/flanneld.bak",
    ),
    (
        "a machine-id",
        _write("/etc/machine-id", "0123456789abcdef0123456789abcdef\n"),
        "machine-id",
        "0123456789abcdef0123456789abcdef",
    ),
    (
        "a dbus machine-id",
        _write("/var/lib/dbus/machine-id", "0123456789abcdef0123456789abcdef\n"),
        "machine-id",
        "/var/lib/dbus/machine-id",
    ),
    (
        "an ssh host key",
        lambda r: _ssh_key(r / "etc/ssh/ssh_host_ed25519_key"),
        "ssh-host-keys",
        "/etc/ssh/ssh_host_ed25519_key",
    ),
    (
        "cloud-init instance state",
        lambda r: (r / "var/lib/cloud/instances/i-0123").mkdir(parents=True),
        "cloud-init-state",
        "/var/lib/cloud/instances/i-0123",
    ),
    (
        "a cloud-init log",
        _write("/var/log/cloud-init.log", "Cloud-init v. 22.4.2 running 'init-local'\n"),
        "cloud-init-state",
        "/var/log/cloud-init.log",
    ),
    (
        "the build key in authorized_keys",
        _authorize_a_new_key,
        "authorized-keys",
        "/home/admin/.ssh/authorized_keys",
    ),
    (
        "root's authorized_keys",
        _write("/root/.ssh/authorized_keys", "ssh-ed25519 AAAAC3Nza flannelnode-build\n"),
        "authorized-keys",
        "/root/.ssh/authorized_keys",
    ),
    (
        "flanneld not enabled",
        lambda r: _disable(r, "flanneld.service"),
        "unit:flanneld.service",
        "disabled",
    ),
    (
        "a docker the generator cannot serve",
        _write("/etc/flannelnode/docker-flavour", "podman\n"),
        "docker-dropin",
        "unknown docker flavour",
    ),
    (
        "no drop-in generator",
        lambda r: os.chmod(
            r / "usr/lib/systemd/system-generators/flannelnode-docker-generator", 0o644
        ),
        "docker-dropin",
        "not executable",
    ),
]


# bugs that two checks see: the generator's mode is in the payload manifest too, and an ssh host
# key is a private key
ALSO = {
    "no drop-in generator": {
        "file:/usr/lib/systemd/system-generators/flannelnode-docker-generator"
    },
    "an ssh host key": {"no-private-key"},
}


@pytest.mark.parametrize(("bug", "plant", "check", "why"), BUGS, ids=[b[0] for b in BUGS])
def test_each_check_fails_on_its_bug_and_only_that_check(image, bug, plant, check, why) -> None:
    root, checks = image
    plant(root)
    rc, lines, failed = _validate(root, checks, "--arch", "amd64")
    out = "\n".join(lines)
    expected = {check} | ALSO.get(bug, set())
    assert rc == 1, out
    assert set(failed) == expected, out
    assert why in failed[check], out
    assert any(line.startswith("validate: ") and " failed" in line for line in lines), out


def test_an_arm64_flanneld_in_an_amd64_image_fails_the_elf_check(staged, tmp_path) -> None:
    """The arm64 payload, consistent with its own manifest, in an image whose arch is amd64."""
    assert _manifest(staged, "arm64")["arch"] == "arm64"
    root = _image_root(staged, "arm64", tmp_path / "root")
    assert (root / FLANNELD.lstrip("/")).read_bytes()[:64] == REAL_HEADERS["arm64"]
    checks = tmp_path / "validate.list"
    checks.write_text(validation.check_list(_manifest(staged, "arm64")))
    rc, lines, failed = _validate(root, checks, "--arch", "amd64")
    assert rc == 1 and set(failed) == {f"elf:{FLANNELD}"}, "\n".join(lines)
    assert failed[f"elf:{FLANNELD}"] == "e_machine 183, expected 62: the image is amd64"
    # the same tree passes as what it is, an arm64 image (dpkg's name for it works too)
    assert _validate(root, checks, "--arch", "arm64")[0] == 0
    assert _validate(root, checks, "--arch", "aarch64")[0] == 0


def test_a_big_endian_header_is_read_in_its_byte_order(staged, tmp_path) -> None:
    root = _image_root(staged, "amd64", tmp_path / "root")
    flanneld = root / FLANNELD.lstrip("/")
    flanneld.write_bytes(REAL_HEADERS["s390x"] + b"\0" * 64)
    checks = tmp_path / "validate.list"
    checks.write_text(f"file {FLANNELD} 0755 root:root {'0' * 64}\nelf {FLANNELD}\n")
    rc, lines, failed = _validate(root, checks, "--arch", "s390x")
    assert rc == 1 and set(failed) == {f"file:{FLANNELD}"}, "\n".join(lines)  # sha256 only
    rc, lines, failed = _validate(root, checks, "--arch", "amd64")
    assert rc == 1
    assert failed[f"elf:{FLANNELD}"] == "e_machine 22, expected 62: the image is amd64"


def test_key_markers_that_are_no_key_pass(image) -> None:
    """Docs and code that name the PEM markers are not keys: only a block with a body counts."""
    root, checks = image
    (root / "usr/share/doc/howto").mkdir(parents=True)
    (root / "usr/share/doc/howto/keys.txt").write_text(NOT_A_KEY)
    rc, lines, failed = _validate(root, checks, "--arch", "amd64")
    assert rc == 0 and not failed, "\n".join(lines)


def test_bad_usage_exits_2_with_a_reason(image, tmp_path) -> None:
    root, checks = image
    res = subprocess.run(["dash", str(SCRIPT), "--root", str(root)], capture_output=True, text=True)
    assert res.returncode == 2 and "no check list" in res.stderr
    res = subprocess.run(
        ["dash", str(SCRIPT), "--root", str(root), "--checks", str(checks), "--arch", "vax"],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "unknown arch vax" in res.stderr
    empty = tmp_path / "empty.list"
    empty.write_text("")
    res = subprocess.run(
        ["dash", str(SCRIPT), "--root", str(root), "--checks", str(empty)],
        capture_output=True,
        text=True,
    )
    assert res.returncode == 2 and "names no payload file" in res.stderr


def test_the_template_way_base64_in_the_environment_and_no_trace_left(image, tmp_path) -> None:
    """As Packer runs it: the list base64 in FLANNELNODE_CHECKS, the script uploaded as
    /tmp/script_<n>.sh, which it removes, with its scratch dir, when done."""
    root, checks = image
    uploaded = Path(f"/tmp/script_{os.getpid()}.sh")
    shutil.copyfile(SCRIPT, uploaded)
    scratch = tmp_path / "tmpdir"
    scratch.mkdir()
    env = {
        "PATH": os.environ["PATH"],
        "TMPDIR": str(scratch),
        "FLANNELNODE_CHECKS": subprocess.run(
            ["base64", "-w0", str(checks)], capture_output=True, text=True, check=True
        ).stdout,
    }
    try:
        res = subprocess.run(
            ["dash", str(uploaded), "--root", str(root), "--arch", "amd64"],
            capture_output=True,
            text=True,
            env=env,
            timeout=120,
        )
        assert res.returncode == 0, res.stdout + res.stderr
        assert not uploaded.exists()
        assert list(scratch.iterdir()) == []
    finally:
        uploaded.unlink(missing_ok=True)


# -- the builder side: the check list and the result lines in Packer's output


def test_check_list_from_the_payload_manifest(staged) -> None:
    manifest = _manifest(staged, "amd64")
    lines = validation.check_list(manifest).splitlines()
    files = manifest["files"]
    assert lines[: len(files)] == [
        f"file {e['path']} {e['mode']} {e['owner']} {e['sha256']}" for e in files
    ]
    units = ["unit flanneld.service", "unit docker.service"]
    assert lines[len(files) :] == [f"elf {FLANNELD}", *units]
    bad = {**manifest, "files": [{**files[0], "path": "/opt/a b"}]}
    with pytest.raises(validation.ValidationError, match="whitespace"):
        validation.check_list(bad)


def test_collector_reads_the_result_out_of_packers_output() -> None:
    seen: list[str] = []
    c = validation.Collector(seen.append)
    lines = [
        "==> docker.node: Provisioning with shell script: /x/images/validate.sh",
        "    docker.node: validate: ok file:/opt/kubernetes/bin/flanneld",
        "    docker.node: validate: ok no-private-key",
        "    docker.node: validate: 2 passed, 0 failed",
    ]
    for line in lines:
        c.feed(line)
    assert seen == lines  # passed on unchanged
    assert c.result() == {
        "passed": 2,
        "failed": [],
        "checks": [
            {"check": "file:/opt/kubernetes/bin/flanneld", "ok": True},
            {"check": "no-private-key", "ok": True},
        ],
    }


def test_collector_names_failed_checks_and_refuses_a_build_without_validation() -> None:
    c = validation.Collector(lambda line: None)
    for line in (
        "    qemu.node: validate: ok machine-id",
        "    qemu.node: validate: FAIL file:/opt/kubernetes/bin/flanneld: mode 644, expected 0755",
        "    qemu.node: validate: 1 passed, 1 failed",
    ):
        c.feed(line)
    assert c.failed == ["file:/opt/kubernetes/bin/flanneld"]
    with pytest.raises(validation.ValidationError) as exc:
        c.result()
    assert str(exc.value) == (
        "image validation failed (1 of 2 checks): file:/opt/kubernetes/bin/flanneld: mode 644, "
        "expected 0755"
    )
    assert exc.value.exit_code == 1
    none = validation.Collector(lambda line: None)
    none.feed("    docker.node: provision: done")
    with pytest.raises(validation.ValidationError, match="ran no complete validation"):
        none.result()
    cut = validation.Collector(lambda line: None)
    cut.feed("    docker.node: validate: ok machine-id")  # no summary: output lost, or killed
    with pytest.raises(validation.ValidationError, match="ran no complete validation"):
        cut.result()
