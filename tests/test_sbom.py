"""The manifest step's SBOM and provenance: build/sbom.cdx.json is valid CycloneDX 1.6 (the
schema cyclonedx-python-lib ships, strict validator) and lists flanneld per arch, our node files,
the RPMs and images; build/provenance/*.intoto.json are in-toto Statements with a SLSA v1
predicate, read strictly by the in-toto project's own bindings, naming the build's inputs.

The image records are written here as `images` writes them (building images takes minutes and
is tested in test_images.py); everything before them is built for real.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from pathlib import Path

import pytest
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from google.protobuf import json_format
from in_toto_attestation.predicates.provenance.v1 import provenance_pb2
from in_toto_attestation.v1 import statement_pb2
from in_toto_attestation.v1.statement import Statement

from .assets import elf, sha

EPOCH = "1700000000"
REPO = Path(__file__).resolve().parent.parent
SECRET = "s3cr3t-t0ken-4-sbom"
IMAGE_ID = "sha256:" + "ab" * 32
QCOW2_SHA = "cd" * 32


def _sha_file(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def made(project, fetched, monkeypatch) -> Path:
    """fetch, payload, rpm, an unsigned repo, image records; then `build.py manifest`."""
    monkeypatch.setenv("SOURCE_DATE_EPOCH", EPOCH)
    for step in (["payload"], ["rpm"], ["repo", "--unsigned"]):
        res = project.run(*step)
        assert res.rc == 0, res.err
    images = project.build / "images"
    images.mkdir()
    payload = json.loads((project.build / "payload/amd64/manifest.json").read_text())
    parts = {"payload": payload["input_digest"], "template": "11" * 32, "provision": "22" * 32,
             "variant": "debian-bookworm", "tag": "v0.27.4-amd64"}  # fmt: skip
    qcow2 = images / "qemu" / "flannelnode-node-v0.27.4-amd64.qcow2"
    (images / "docker-amd64.json").write_text(json.dumps({
        "target": "docker", "inputs": "33" * 32, "arch": "amd64",
        "built_at": "2026-01-02T03:04:05Z", "seconds": 60.0,
        "parts": {**parts, "target": "docker", "base": "sha256:" + "44" * 32},
        "image": "flannelnode/node:v0.27.4-amd64", "image_id": IMAGE_ID}))  # fmt: skip
    (images / "qemu-amd64.json").write_text(json.dumps({
        "target": "qemu", "inputs": "55" * 32, "arch": "amd64",
        "built_at": "2026-01-02T03:14:05Z", "seconds": 600.0,
        "parts": {**parts, "target": "qemu", "base": "sha256:" + "66" * 32},
        "path": str(qcow2), "sha256": QCOW2_SHA, "size": 1 << 30}))  # fmt: skip
    res = project.run("manifest")
    assert res.rc == 0, res.err
    return project.build


def _components(sbom: dict) -> dict[str, dict]:
    return {c["bom-ref"]: c for c in sbom["components"]}


def _hash(component: dict) -> str:
    [h] = component["hashes"]
    assert h["alg"] == "SHA-256"
    return h["content"]


def _props(component: dict) -> dict[str, str]:
    return {p["name"]: p["value"] for p in component.get("properties", [])}


def test_the_sbom_is_valid_cyclonedx_and_lists_flanneld_files_rpms_and_images(made, fetched):
    text = (made / "sbom.cdx.json").read_text()
    assert JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    sbom = json.loads(text)
    assert sbom["specVersion"] == "1.6" and sbom["metadata"]["component"]["version"] == "0.27.4-1"
    tools = {t["name"]: t["version"] for t in sbom["metadata"]["tools"]["components"]}
    assert tools["flannelnode"] and tools["rpmbuild"].startswith("RPM version")
    components = _components(sbom)

    for arch, body in fetched.items():
        flanneld = components[f"flanneld@{arch}"]
        record = json.loads((made / f"fetch/v0.27.4/{arch}/release.json").read_text())
        assert flanneld["version"] == "v0.27.4" and _hash(flanneld) == sha(body)
        assert flanneld["purl"] == f"pkg:golang/github.com/flannel-io/flannel@v0.27.4?arch={arch}"
        [ref] = flanneld["externalReferences"]
        assert ref == {"type": "distribution", "url": record["source"]}
        assert record["source"].endswith(f"/v0.27.4/flanneld-{arch}")
        assert _props(flanneld)["flannelnode:pinned_sha256"] == sha(body)

        manifest = json.loads((made / f"payload/{arch}/manifest.json").read_text())
        ours = [f for f in manifest["files"] if not f["path"].endswith("/bin/flanneld")]
        assert len(ours) > 5
        for f in ours:
            node_file = components[f"file@{arch}:{f['path']}"]
            assert node_file["type"] == "file" and _hash(node_file) == f["sha256"]
            assert _props(node_file)["flannelnode:mode"] == f["mode"]

    rpms = json.loads((made / "rpm/rpm.json").read_text())
    for arch, rpm_arch in (("amd64", "x86_64"), ("arm64", "aarch64")):
        rpm = components[f"rpm@{arch}"]
        assert _hash(rpm) == rpms[arch]["sha256"]
        assert rpm["purl"] == f"pkg:rpm/flannelnode/flannel-node@0.27.4-1?arch={rpm_arch}"
        published = made / "repo/Packages" / rpms[arch]["file"]
        assert _props(rpm)["flannelnode:signed_sha256"] == _sha_file(published)
        depends = next(d for d in sbom["dependencies"] if d["ref"] == f"rpm@{arch}")
        assert f"flanneld@{arch}" in depends["dependsOn"]
        assert f"file@{arch}:/usr/lib/systemd/system/flanneld.service" in depends["dependsOn"]

    docker, qemu = components["image@docker-amd64"], components["image@qemu-amd64"]
    assert docker["type"] == "container" and _hash(docker) == IMAGE_ID.removeprefix("sha256:")
    assert docker["name"] == "flannelnode/node" and docker["version"] == "v0.27.4-amd64"
    assert qemu["name"] == "flannelnode-node-v0.27.4-amd64.qcow2" and _hash(qemu) == QCOW2_SHA

    manifest = json.loads((made / "manifest.json").read_text())
    assert manifest["sbom"]["sha256"] == sha(text.encode())
    assert manifest["repo"]["releases"] == ["0.27.4-1"]


def test_sbom_and_provenance_are_reproducible(made, project):
    first = {p: p.read_bytes() for p in [made / "sbom.cdx.json", *(made / "provenance").iterdir()]}
    assert project.run("manifest").rc == 0
    again = {p: p.read_bytes() for p in [made / "sbom.cdx.json", *(made / "provenance").iterdir()]}
    assert again == first


def _statement(path: Path) -> dict:
    """Parsed strictly by the in-toto project's bindings: unknown fields are errors."""
    text = path.read_text()
    pb = json_format.Parse(text, statement_pb2.Statement())
    Statement.copy_from_pb(pb).validate()
    statement = json.loads(text)
    json_format.ParseDict(statement["predicate"], provenance_pb2.Provenance())
    return statement


def _deps(statement: dict) -> dict[str, dict]:
    deps = statement["predicate"]["buildDefinition"]["resolvedDependencies"]
    return {d["name"]: d for d in deps}


def test_provenance_for_each_rpm_qcow2_and_image_names_the_inputs(made, fetched, project):
    out = made / "provenance"
    assert sorted(p.name for p in out.iterdir()) == [
        "flannel-node-0.27.4-1.aarch64.rpm.intoto.json",
        "flannel-node-0.27.4-1.x86_64.rpm.intoto.json",
        "flannelnode-node-v0.27.4-amd64.intoto.json",
        "flannelnode-node-v0.27.4-amd64.qcow2.intoto.json",
    ]
    commit = subprocess.run(
        ["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True
    ).stdout.strip()
    rpms = json.loads((made / "rpm/rpm.json").read_text())

    for arch in ("amd64", "arm64"):
        name = rpms[arch]["file"]
        statement = _statement(out / f"{name}.intoto.json")
        assert statement["_type"] == "https://in-toto.io/Statement/v1"
        assert statement["predicateType"] == "https://slsa.dev/provenance/v1"
        assert statement["subject"] == [
            {"name": f"rpm/{name}", "digest": {"sha256": rpms[arch]["sha256"]}},
            {"name": f"repo/Packages/{name}",
             "digest": {"sha256": _sha_file(made / "repo/Packages" / name)}},
        ]  # fmt: skip
        definition = statement["predicate"]["buildDefinition"]
        assert definition["externalParameters"]["arch"] == arch
        assert definition["externalParameters"]["sourceDateEpoch"] == EPOCH
        deps = _deps(statement)
        assert deps["flannelnode"]["digest"] == {"gitCommit": commit}
        assert deps["release.lock"]["digest"] == {"sha256": _sha_file(project.lock)}
        asset = deps[f"flanneld-{arch}"]
        assert asset["digest"] == {"sha256": sha(fetched[arch])}
        assert asset["annotations"]["pinnedSha256"] == sha(fetched[arch])
        assert asset["uri"].endswith(f"/v0.27.4/flanneld-{arch}")
        payload = json.loads((made / f"payload/{arch}/manifest.json").read_text())
        tar = deps[f"payload/{arch}/flannelnode-payload.tar"]
        assert tar["digest"] == {"sha256": payload["tarball_sha256"]}
        assert tar["annotations"] == {"payloadDigest": payload["input_digest"]}
        builder = statement["predicate"]["runDetails"]["builder"]
        assert builder["id"] == "urn:flannelnode:builder:build.py"
        assert builder["version"]["rpmbuild"].startswith("RPM version")

    image = _statement(out / "flannelnode-node-v0.27.4-amd64.intoto.json")
    assert image["subject"] == [
        {"name": "flannelnode/node:v0.27.4-amd64", "digest": {"sha256": "ab" * 32}}
    ]
    assert _deps(image)["base image (debian-bookworm)"]["digest"] == {"sha256": "44" * 32}
    assert image["predicate"]["runDetails"]["metadata"] == {"finishedOn": "2026-01-02T03:04:05Z"}
    qcow2 = _statement(out / "flannelnode-node-v0.27.4-amd64.qcow2.intoto.json")
    assert qcow2["subject"] == [
        {
            "name": "images/qemu/flannelnode-node-v0.27.4-amd64.qcow2",
            "digest": {"sha256": QCOW2_SHA},
        }
    ]
    assert "flanneld-amd64" in _deps(qcow2) and "base qcow2 (debian-bookworm)" in _deps(qcow2)

    # an artifact that is gone takes its statement with it
    (made / "images" / "qemu-amd64.json").unlink()
    assert project.run("manifest").rc == 0
    assert not (out / "flannelnode-node-v0.27.4-amd64.qcow2.intoto.json").exists()


def test_the_sbom_shows_a_mirror_url_without_its_credentials(server, project):
    body = elf("amd64")
    server.add("v0.27.4", "flanneld-amd64", body)
    project.pin({"v0.27.4": {"flanneld-amd64": sha(body)}})
    host = server.url.split("://", 1)[1]
    project.config('[flannel]\narches = ["amd64"]\n', mirror=f"http://ci:{SECRET}@{host}")
    assert project.run("fetch").rc == 0
    res = project.run("manifest")
    assert res.rc == 0, res.err
    text = (project.build / "sbom.cdx.json").read_text()
    assert SECRET not in text and JsonStrictValidator(SchemaVersion.V1_6).validate_str(text) is None
    [ref] = _components(json.loads(text))["flanneld@amd64"]["externalReferences"]
    assert (
        ref["url"]
        == f"http://***@{host}/flannel-io/flannel/releases/download/v0.27.4/flanneld-amd64"
    )
    assert not list((project.build / "provenance").iterdir())  # no RPM or image yet


@pytest.mark.parametrize(
    ("record", "body"),
    [("rpm/rpm.json", '{"amd64": {"sha256": "x"}}'), ("images/docker-amd64.json", "{not json")],
)
def test_a_malformed_record_stops_the_manifest_without_a_traceback(made, project, record, body):
    (made / record).write_text(body)
    res = project.run("manifest")
    assert res.rc == 1, res.err
    assert str(made / record) in res.err and "Traceback" not in res.err
    assert "`build.py manifest`" in res.err
