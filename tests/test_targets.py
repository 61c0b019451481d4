"""The target registry (flannelnode/targets.py) and the template it drives (images/node.pkr.hcl):
`packer fmt -check` and `packer validate -only=<source>` of every target on every variant, with
the variables the build gives it; the registry and the template agree on sources and variables.

Honest targets: a target named with --target that cannot be built is an error (exit 1, one
line, even with -q); only the default list skips one, with an alarm. Packer is a shim that records
its arguments and fails, so nothing is built; the base image step is stopped the same way."""

from __future__ import annotations

import dataclasses
import os
import re
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from flannelnode import base, emulation, images, packer, targets, validation
from flannelnode.progress import Reporter
from flannelnode.targets import TARGETS, VARIANTS

from .conftest import REPO, packer_shim

pytestmark = pytest.mark.usefixtures("no_aws")


@pytest.fixture
def packer_calls(project, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    calls = packer_shim(project.root, monkeypatch)

    def no_base(*args, **kwargs):
        raise images.ImagesError("the test stops images at the base image")

    monkeypatch.setattr(base, "build", no_base)
    yield calls


def _no_qemu_img(target: str, arch: str | None = None) -> str | None:
    return "qemu-img not found (test)" if target == "qemu" and arch is None else None


@pytest.mark.parametrize("quiet", [[], ["-q"]], ids=["verbose", "quiet"])
def test_a_named_target_without_credentials_is_an_error(
    project, fetched, packer_calls, quiet
) -> None:
    res = project.run("images", *quiet, "--target", "amazon-ebs")
    assert res.rc == 1, res.err
    lines = res.err.strip().splitlines()
    assert len(lines) == 1, res.err
    assert "amazon-ebs" in lines[0] and "no AWS credentials" in lines[0]
    assert "Traceback" not in res.err
    assert not packer_calls.exists()
    assert not (project.build / "images").exists()


def test_a_named_target_in_a_list_fails_the_whole_step(project, fetched, packer_calls) -> None:
    res = project.run("images", "--target", "docker,amazon-ebs")
    assert res.rc == 1, res.err
    assert "images amazon-ebs: cannot be built here" in res.err
    assert not packer_calls.exists()  # nothing built when part of the request cannot be


def test_with_credentials_the_named_target_reaches_packer(
    project, fetched, packer_calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIATEST")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret")
    res = project.run(
        "images", "--target", "amazon-ebs", "--packer-var", "amazon-ebs.region=eu-central-1"
    )
    assert res.rc == 1  # the shim fails the build
    [call] = packer_calls.read_text().splitlines()
    args = call.split()
    assert args[:2] == ["build", "-machine-readable"] and args[-1] == str(targets.TEMPLATE)
    assert "-only=amazon-ebs.node" in args and "-var=region=eu-central-1" in args
    assert "-var=ami_arch=x86_64" in args
    assert f"-var-file={VARIANTS['debian-bookworm'].var_file(targets.AMAZON_EBS)}" in args


def test_the_default_list_skips_loudly(
    project, fetched, packer_calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "unavailable", _no_qemu_img)
    monkeypatch.setattr(targets.Docker, "require", lambda self: None)
    res = project.run("images", "-q")
    assert "*** images qemu: SKIPPED" in res.err and "qemu-img not found (test)" in res.err
    # docker went on (to the stopped base image step)
    assert "the test stops images at the base image" in res.err


def test_the_same_target_named_is_an_error(
    project, fetched, packer_calls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(images, "unavailable", _no_qemu_img)
    res = project.run("images", "-q", "--target", "qemu")
    assert res.rc == 1
    assert res.err.strip().splitlines() == [
        "error: images qemu: cannot be built here: qemu-img not found (test)"
    ]


def test_an_empty_target_list_is_bad_input(project, fetched, packer_calls) -> None:
    res = project.run("images", "--target", ",")
    assert res.rc == 2 and "--target" in res.err


def test_an_el_base_gets_the_built_rpm(project, fetched, monkeypatch: pytest.MonkeyPatch) -> None:
    """`images --base rocky-9` hands Packer the RPM `rpm` built for the image's arch."""
    shim = project.root / "packer-shim"
    shim.mkdir()
    seen = project.root / "uploaded"
    (shim / "packer").write_text(
        '#!/bin/sh\nfor a in "$@"; do case $a in -var=upload_dir=*)\n'
        f'  ls "${{a#-var=upload_dir=}}/rpms" >>{seen};; esac; done\nexit 1\n'
    )
    (shim / "packer").chmod(0o755)
    monkeypatch.setenv("PATH", f"{shim}:{os.environ['PATH']}")
    monkeypatch.setattr(targets.Docker, "require", lambda self: None)
    res = project.run("images", "--target", "docker", "--base", "rocky-9")
    assert res.rc == 1 and "build.py rpm" in res.err and "Traceback" not in res.err
    assert not seen.exists()  # no RPM yet: Packer not started
    assert project.run("payload").rc == 0 and project.run("rpm").rc == 0
    project.run("images", "--target", "docker", "--base", "rocky-9")
    assert seen.read_text().split() == ["flannel-node-0.27.4-1.x86_64.rpm"]
    # the Debian base gets none: it unpacks the payload tarball
    assert images.el_rpms(project.build, "debian-bookworm") == []


# -- arches: docker for amd64 and arm64, qemu and amazon-ebs for amd64 only


def test_each_target_is_built_for_its_arches(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(images, "unavailable", lambda target, arch=None: None)
    reporter = Reporter(quiet=True)
    pairs = images.runnable(None, reporter, ["amd64", "arm64"])
    assert pairs == [("docker", "amd64"), ("qemu", "amd64"), ("docker", "arm64")]
    named = images.runnable(["qemu", "docker"], reporter, ["amd64", "arm64"])
    assert named == [("qemu", "amd64"), ("docker", "amd64"), ("docker", "arm64")]


def test_a_named_target_made_for_none_of_the_arches_is_an_error(
    project, fetched, packer_calls
) -> None:
    project.config('[flannel]\narches = ["arm64"]\n', mirror="http://127.0.0.1:9")
    res = project.run("images", "-q", "--target", "qemu")
    assert res.rc == 1, res.err
    [line] = res.err.strip().splitlines()
    assert line.startswith("error: images qemu: cannot be built here: it is made for amd64 only")
    assert "arm64" in line and "Traceback" not in res.err
    assert not packer_calls.exists()


def test_arm64_without_emulation_is_an_error_when_named(
    project, fetched, packer_calls, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """No binfmt_misc entry for qemu-aarch64: docker arm64 cannot run provision.sh."""
    monkeypatch.setattr(emulation, "BINFMT_DIR", tmp_path / "binfmt_misc")
    monkeypatch.setattr(targets.Docker, "require", lambda self: None)
    res = project.run("images", "-q", "--target", "docker")
    assert res.rc == 1, res.err
    [line] = res.err.strip().splitlines()
    assert "images docker arm64: cannot be built here" in line and "make binfmt" in line
    assert not packer_calls.exists()
    # the default list goes on with amd64, loudly
    res = project.run("images", "-q")
    assert "*** images docker arm64: SKIPPED" in res.err
    assert "the test stops images at the base image" in res.err


@pytest.mark.parametrize(
    ("entry", "why"),
    [
        (None, "no binfmt_misc entry"),
        ("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: OP\n", "F"),
        ("disabled\ninterpreter /x\nflags: OCF\n", "disabled"),
        ("enabled\ninterpreter /usr/libexec/qemu-binfmt/aarch64-binfmt-P\nflags: POF\n", None),
    ],
    ids=["missing", "no-F-flag", "disabled", "ok"],
)
def test_emulation_reads_the_binfmt_entry(tmp_path: Path, entry: str | None, why) -> None:
    if entry is not None:
        (tmp_path / "qemu-aarch64").write_text(entry)
    found = emulation.problem("arm64", tmp_path)
    assert (found is None) == (why is None), found
    if why is not None:
        assert why in found and "make binfmt" in found
    assert emulation.problem(emulation.host_arch(), tmp_path) is None


def test_this_host_runs_arm64_binaries() -> None:
    """make deps registered qemu-aarch64 with the F flag (images/binfmt.sh); the image tests
    need it, so a host without it fails here first, by name."""
    assert emulation.problem("arm64") is None


# -- the registry and the template: packer fmt and validate of every target on every variant

IMAGES = REPO / "images"
PAIRS = [(t, v) for t in TARGETS for v in VARIANTS]


def _template_variables(text: str) -> dict[str, str]:
    """variable name -> its default, as the template spells it (quotes removed)."""
    found = {}
    for name, body in re.findall(r'^variable "([^"]+)" \{\n(.*?)^\}', text, re.M | re.S):
        default = re.search(r"^\s*default\s*=\s*(.+?)\s*(?:#.*)?$", body, re.M)
        found[name] = default.group(1).strip('"') if default else ""
    return found


def _fmt_problems(directory: Path) -> str:
    """What `packer fmt -check` finds in a directory's .pkr.hcl and .pkrvars.hcl files."""
    res = subprocess.run(
        [packer.executable(), "fmt", "-check", "-diff", str(directory)],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "CHECKPOINT_DISABLE": "1"},
    )
    return "" if res.returncode == 0 else f"{directory}:\n{res.stdout}{res.stderr}"


def test_the_templates_and_var_files_are_packer_fmt_clean() -> None:
    dirs = [IMAGES, *sorted(p for p in (IMAGES / "variants").iterdir() if p.is_dir())]
    assert {v.name for v in VARIANTS.values()} <= {d.name for d in dirs}
    problems = [p for d in dirs if (p := _fmt_problems(d))]
    assert not problems, "run `packer fmt` on:\n" + "\n".join(problems)


def test_fmt_check_catches_a_malformatted_template(tmp_path: Path) -> None:
    (tmp_path / "node.pkr.hcl").write_text(
        targets.TEMPLATE.read_text().replace("  commit = true", "  commit     =     true")
    )
    assert "node.pkr.hcl" in _fmt_problems(tmp_path)


def _job(target: targets.Target, variant: targets.Variant, tmp_path: Path) -> targets.Job:
    """The job images.build makes, with a stand-in for our base (not built here)."""
    qcow2 = tmp_path / "base.qcow2"
    qcow2.write_bytes(b"")
    our_base = base.Base(
        image=base.IMAGE,
        image_id="sha256:" + "1" * 64,
        qcow2=qcow2,
        qcow2_sha256="2" * 64,
        recipe="",
        rebuilt=(),
    )
    return targets.Job(
        target=target,
        variant=variant,
        arch=target.arches()[0],
        version="v0.27.4",
        repository=images.REPOSITORY,
        base=our_base if variant.ours and target.base else None,
        accelerator="tcg",
        settings={},
    )


def _build_variables(job: targets.Job, tmp_path: Path) -> dict[str, str]:
    work = tmp_path / "work"
    work.mkdir()
    upload = work / "upload"
    (upload / "rpms").mkdir(parents=True)
    (upload / images.UPLOAD_PAYLOAD).write_bytes(b"")
    (upload / validation.LIST).write_text("")  # the template reads it (images/validate.sh's list)
    return images.packer_vars(job, work, upload)


@pytest.mark.parametrize(("target", "variant"), PAIRS, ids=[f"{t}-{v}" for t, v in PAIRS])
def test_every_target_validates_on_every_variant(target: str, variant: str, tmp_path) -> None:
    """What the build hands Packer, from the registry: -only=<source>, the variant's var file,
    the variables the target sets. A variable the template lacks fails (`Undefined -var
    variable`), and so does a var file setting one (a warning in Packer 1.6.6)."""
    t, v = TARGETS[target], VARIANTS[variant]
    files = v.var_files(t)  # raises when a variant that needs one has none
    assert files or not v.needs_var_file(t)
    job = _job(t, v, tmp_path)
    variables = _build_variables(job, tmp_path)
    assert set(variables) == {*targets.COMMON_BUILD_VARS, *t.build_vars} | (
        set(t.base_vars) if job.base else set()
    )
    if job.base is None and "base_checksum" in t.settable:
        # Packer downloads a file: checksum (Rocky's CHECKSUM) while validating; no internet here
        variables["base_checksum"] = "sha256:" + "0" * 64
    out = packer.validate(targets.TEMPLATE, variables, var_files=files, only=[t.source])
    assert "Undefined variable" not in out, out


@pytest.mark.parametrize("target", TARGETS)
def test_every_variable_an_operator_may_set_validates(target: str, tmp_path: Path) -> None:
    """Each settable variable, set to the template's own default, passes -var and validate."""
    t, v = TARGETS[target], VARIANTS[targets.DEFAULT_VARIANT]
    defaults = _template_variables(targets.TEMPLATE.read_text())
    settings = {k: defaults[k] for k in t.settable if not (v.ours and k in t.base_vars)}
    job = dataclasses.replace(_job(t, v, tmp_path), settings=settings)
    variables = _build_variables(job, tmp_path)
    assert settings.items() <= variables.items()
    packer.validate(targets.TEMPLATE, variables, var_files=v.var_files(t), only=[t.source])


def test_validate_catches_a_variable_the_template_lacks(tmp_path: Path) -> None:
    t, v = targets.DOCKER, VARIANTS[targets.DEFAULT_VARIANT]
    broken = tmp_path / "node.pkr.hcl"
    text = targets.TEMPLATE.read_text()
    broken.write_text(re.sub(r'^variable "tag" \{\n.*?^\}\n', "", text, flags=re.M | re.S))
    assert broken.read_text() != text
    with pytest.raises(packer.PackerError) as exc:
        packer.validate(broken, _build_variables(_job(t, v, tmp_path), tmp_path), only=[t.source])
    assert "tag" in str(exc.value)


def test_the_registry_and_the_template_agree() -> None:
    """Every target's source is in the template and in its one build block; every variable the
    registry names is declared, and every declared variable belongs to some target."""
    text = targets.TEMPLATE.read_text()
    sources = {f"{a}.{b}" for a, b in re.findall(r'^source "([^"]+)" "([^"]+)"', text, re.M)}
    assert sources == {t.source for t in TARGETS.values()}
    [listed] = re.findall(r"^build \{\n\s*sources\s*=\s*\[([^]]*)\]", text, re.M)
    assert {s.strip().strip('"').removeprefix("source.") for s in listed.split(",")} == sources
    declared = set(_template_variables(text))
    claimed = set(targets.COMMON_BUILD_VARS)
    for t in TARGETS.values():
        named = {*t.settable, *t.build_vars}
        assert named <= declared, f"{t.name}: not in the template: {named - declared}"
        assert set(t.base_vars) <= set(t.settable), t.name
        assert not set(t.settable) & set(t.build_vars), t.name
        claimed |= named
    assert declared == claimed, f"variables no target uses: {declared - claimed}"
    assert targets.default_targets() and set(targets.default_targets()) <= set(TARGETS)


def test_the_ami_has_an_encrypted_root_volume(tmp_path: Path) -> None:
    """Asserted on the text beside `packer validate`, which proves Packer accepts it."""
    text = targets.TEMPLATE.read_text()
    settings = [ln.split("#")[0].split() for ln in text.splitlines()]
    assert ["encrypt_boot", "=", "true"] in settings
    t, v = targets.AMAZON_EBS, VARIANTS[targets.DEFAULT_VARIANT]
    variables = _build_variables(_job(t, v, tmp_path), tmp_path)
    off = tmp_path / "off.pkr.hcl"
    off.write_text(text.replace("encrypt_boot = true", "encrypt_boot = 3x"))
    with pytest.raises(packer.PackerError) as exc:
        packer.validate(off, variables, var_files=v.var_files(t), only=[t.source])
    assert "off.pkr.hcl" in str(exc.value) and exc.value.lines


# -- the registry drives the CLI, make help and the build's -only


def test_the_cli_offers_what_the_registry_holds(project) -> None:
    res = project.run("targets", "--names")
    assert res.rc == 0 and res.out.strip() == ",".join(TARGETS)
    listing = project.run("targets").out
    for t in TARGETS.values():
        assert f"{t.name}  (-only={t.source}" in listing
        assert ", ".join(t.settable) in listing
    for name in VARIANTS:
        assert name in listing
    with pytest.raises(SystemExit):
        project.run("images", "--base", "no-such-base")
    assert "rocky-9" in project.capsys.readouterr().err


def test_make_help_lists_the_registrys_targets() -> None:
    res = subprocess.run(
        ["make", "-s", "help"], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert res.returncode == 0, res.stderr
    assert f"IMAGES={','.join(TARGETS)}" in res.stdout
    assert f"BASE={'|'.join(VARIANTS)}" in res.stdout and "PACKER_VARS=" in res.stdout


def test_make_passes_base_and_packer_vars_as_flags() -> None:
    res = subprocess.run(
        ["make", "-n", "images", "BASE=rocky-9",
         "PACKER_VARS=amazon-ebs.region=eu-central-1 qemu.disk_size=8G"],
        cwd=REPO, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    joined = re.sub(r"\\\n\s*", " ", res.stdout)  # make -n keeps the recipe's continuations
    [line] = [ln for ln in joined.splitlines() if " build.py " in ln and " all " in ln]
    assert "--base rocky-9" in line
    assert "--packer-var amazon-ebs.region=eu-central-1 --packer-var qemu.disk_size=8G" in line


def test_packer_reporting_no_artifact_for_the_source_is_an_error() -> None:
    """Packer 1.6.6 builds nothing, with exit 0, for an -only= name it does not know."""
    other = packer.Artifact("null.other", "packer.null", "x")
    with pytest.raises(images.ImagesError, match="built nothing"):
        images._of_source(targets.DOCKER, [other])


def test_the_operators_packer_variables_are_inputs(tmp_path: Path) -> None:
    """Changing [images.packer.<target>] rebuilds that target: its digest changes."""
    job = _job(targets.QEMU, VARIANTS[targets.DEFAULT_VARIANT], tmp_path)
    plain = images.inputs(job, "payload-digest")
    bigger = images.inputs(dataclasses.replace(job, settings={"disk_size": "8G"}), "payload-digest")
    assert bigger["packer disk_size"] == "8G" and "packer disk_size" not in plain
    assert images._digest(plain) != images._digest(bigger)
    assert plain["source"] == "qemu.node" and plain["base"] == "sha256:" + "2" * 64
