"""payload: the staged node tree per arch, its tarball and manifest."""

from __future__ import annotations

import hashlib
import json
import stat
import tarfile

from .assets import elf, sha
from .tamper import (
    FLANNELD,
    UNIT,
    flip_byte,
    rewrite_manifest,
    snapshot,
    stage_root,
    tampers,
)


def _manifest(project, arch):
    return json.loads((project.build / "payload" / arch / "manifest.json").read_text())


def test_payload_tree_modes_and_manifest(project, fetched):
    res = project.run("payload")
    assert res.rc == 0, res.err
    for arch, body in fetched.items():
        out = project.build / "payload" / arch
        root = out / "root"
        manifest = _manifest(project, arch)
        paths = {e["path"]: e for e in manifest["files"]}
        assert set(paths) == {
            "/opt/kubernetes/bin/flanneld",
            "/opt/kubernetes/bin/mk-docker-opts.sh",
            "/opt/kubernetes/bin/flannel-seed-etcd",
            "/opt/kubernetes/cfg/flanneld",
            "/opt/kubernetes/cfg/net-conf.json",
            "/usr/lib/systemd/system/flanneld.service",
            "/usr/lib/systemd/system/flannel-seed-etcd.service",
            "/usr/lib/systemd/system-generators/flannelnode-docker-generator",
            "/usr/lib/tmpfiles.d/flannel.conf",
            "/usr/lib/modules-load.d/flannel.conf",
            "/usr/lib/sysctl.d/90-flannel.conf",
            "/usr/share/flannelnode/docker/docker-ce.conf",
            "/usr/share/flannelnode/docker/docker.io.conf",
            "/usr/share/flannelnode/docker/moby-engine.conf",
            "/usr/share/licenses/flannel-node/flannel-LICENSE",
        }
        assert (root / "opt/kubernetes/bin/flanneld").read_bytes() == body
        for path, entry in paths.items():
            on_disk = root / path.lstrip("/")
            assert f"{stat.S_IMODE(on_disk.stat().st_mode):04o}" == entry["mode"], path
            assert hashlib.sha256(on_disk.read_bytes()).hexdigest() == entry["sha256"], path
        assert paths["/opt/kubernetes/bin/flanneld"]["mode"] == "0755"
        assert paths["/opt/kubernetes/cfg/flanneld"]["mode"] == "0644"
        assert paths["/usr/lib/systemd/system/flanneld.service"]["mode"] == "0644"
        net_conf = json.loads((root / "opt/kubernetes/cfg/net-conf.json").read_text())
        assert net_conf == {"Network": "172.17.0.0/16", "Backend": {"Type": "vxlan"}}
        # nothing secret: TLS material reaches nodes only through user-data
        assert not any("key" in p.name or p.suffix == ".pem" for p in root.rglob("*"))
        with tarfile.open(out / "flannelnode-payload.tar") as tar:
            members = tar.getmembers()
        assert sorted(m.name for m in members) == sorted(p.lstrip("/") for p in paths)
        assert all(m.uid == 0 and m.gid == 0 and m.uname == "root" for m in members)
        assert {m.name: f"{m.mode:04o}" for m in members} == {
            p.lstrip("/"): e["mode"] for p, e in paths.items()
        }


def test_payload_is_incremental_and_reproducible(project, fetched, monkeypatch):
    monkeypatch.setenv("SOURCE_DATE_EPOCH", "1700000000")
    assert project.run("payload").rc == 0
    tar = project.build / "payload" / "amd64" / "flannelnode-payload.tar"
    first, mtime = tar.read_bytes(), tar.stat().st_mtime_ns
    res = project.run("payload")
    assert res.rc == 0 and "up to date" in res.err
    assert tar.stat().st_mtime_ns == mtime  # untouched
    (project.root / "node.toml").write_text(
        (project.root / "node.toml").read_text() + '\n[install]\nprefix = "/opt/k8s"\n'
    )
    assert project.run("payload").rc == 0
    with tarfile.open(tar) as moved:
        assert "opt/k8s/bin/flanneld" in moved.getnames()
    (project.root / "node.toml").write_text(
        (project.root / "node.toml").read_text().replace("/opt/k8s", "/opt/kubernetes")
    )
    assert project.run("payload").rc == 0
    assert tar.read_bytes() == first  # same inputs, byte-identical tarball


def test_payload_refuses_a_flanneld_changed_after_fetch(project, fetched):
    (project.build / "fetch" / "v0.27.4" / "arm64" / "flanneld").write_bytes(elf("arm64"))
    res = project.run("payload")
    assert res.rc == 4
    assert "fetch verified" in res.err
    assert not (project.build / "payload" / "arm64").exists()


def test_payload_needs_fetch_first(project):
    project.config()
    res = project.run("payload")
    assert res.rc == 1 and "Run `build.py fetch`" in res.err


def test_payload_refuses_a_bad_network_config(project, fetched):
    (project.root / "node.toml").write_text(
        (project.root / "node.toml").read_text()
        + '\n[network]\nNetwork = "10.0.0.0/16"\nSubnetLen = 31\nBackend = {Type = "vxlan"}\n'
    )
    res = project.run("payload")
    assert res.rc == 2 and "SubnetLen: 31" in res.err
    assert not (project.build / "payload").exists()


def test_one_rendering_of_the_network_config(tmp_path):
    """payload, user-data, `build.py seed` and the node seeder agree on the bytes."""
    from flannelnode import config, netconf, seed, userdata
    from flannelnode.payload import net_conf

    (tmp_path / "node.toml").write_text(
        '[network]\nNetwork = "10.8.0.0/16"\n[network.Backend]\nVNI = 4\nType = "vxlan"\n'
    )
    cfg = config.load(tmp_path / "node.toml", env={})
    text = net_conf(cfg, public=True).content.decode()
    assert text == (
        '{\n  "Backend": {\n    "Type": "vxlan",\n    "VNI": 4\n  },\n'
        '  "Network": "10.8.0.0/16"\n}\n'
    )
    assert text == net_conf(cfg, public=False).content.decode() == netconf.render(cfg.network)
    assert text == seed.network_json(cfg) == seed.seeder().canonical(text)
    (delivered,) = [f for f in userdata.config_files(cfg) if f.path.endswith("net-conf.json")]
    assert delivered.content.decode() == text


# -- a stage changed after `payload` made it is an alarm, never "up to date" and never healed


@tampers
def test_payload_alarms_on_a_stage_changed_since_it_was_made(project, fetched, tamper):
    assert project.run("payload").rc == 0
    out = project.build / "payload" / "amd64"
    named = tamper(out / "root")
    before = snapshot(out)
    res = project.run("payload")
    assert res.rc == 4, res.err
    assert "Traceback" not in res.err
    assert named in res.err
    assert f"remove {out}" in res.err and "`build.py payload` again" in res.err
    assert snapshot(out) == before  # left as found, for whoever looks into it


def test_the_alarm_names_the_expected_and_the_actual_digest(project, fetched):
    assert project.run("payload").rc == 0
    flanneld = stage_root(project.build) / FLANNELD.lstrip("/")
    flip_byte(flanneld)
    res = project.run("payload")
    assert res.rc == 4
    assert sha(fetched["amd64"]) in res.err  # what the manifest, fetch and release.lock say
    assert sha(flanneld.read_bytes()) in res.err  # what is there


def test_payload_alarms_on_a_changed_tarball(project, fetched):
    assert project.run("payload").rc == 0
    tar = project.build / "payload" / "arm64" / "flannelnode-payload.tar"
    flip_byte(tar, offset=2000)
    res = project.run("payload")
    assert res.rc == 4, res.err
    assert str(tar) in res.err


def test_a_manifest_rewritten_to_match_a_changed_flanneld_is_caught_by_the_pin(project, fetched):
    assert project.run("payload").rc == 0
    out = project.build / "payload" / "amd64"
    flanneld = out / "root" / FLANNELD.lstrip("/")
    flip_byte(flanneld)
    manifest = _manifest(project, "amd64")
    for entry in manifest["files"]:
        if entry["path"] == FLANNELD:
            entry["sha256"] = sha(flanneld.read_bytes())
    (out / "manifest.json").write_text(json.dumps(manifest, indent=2) + "\n")
    res = project.run("payload")
    assert res.rc == 4, res.err
    assert FLANNELD in res.err and "release.lock" in res.err
    assert sha(fetched["amd64"]) in res.err


def test_a_fetch_record_rewritten_to_match_a_changed_flanneld_is_refused(project, fetched):
    fetch = project.build / "fetch" / "v0.27.4" / "arm64"
    other = elf("arm64")
    (fetch / "flanneld").write_bytes(other)
    record = json.loads((fetch / "release.json").read_text())
    record["flanneld_sha256"] = sha(other)
    (fetch / "release.json").write_text(json.dumps(record, indent=2) + "\n")
    res = project.run("payload")
    assert res.rc == 4, res.err
    assert str(fetch / "release.json") in res.err and "release.lock" in res.err
    assert sha(fetched["arm64"]) in res.err and sha(other) in res.err
    assert not (project.build / "payload" / "arm64").exists()


def test_a_stage_from_before_tarball_digests_is_staged_again_not_an_alarm(project, fetched):
    assert project.run("payload").rc == 0
    path = project.build / "payload" / "amd64" / "manifest.json"
    manifest = _manifest(project, "amd64")
    del manifest["tarball_sha256"]
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    res = project.run("payload")
    assert res.rc == 0, res.err
    assert "payload amd64: staged" in res.err and "payload arm64: up to date" in res.err
    assert "tarball_sha256" in _manifest(project, "amd64")


def test_a_manifest_rewritten_to_match_a_changed_unit_is_caught_by_the_config(project, fetched):
    assert project.run("payload").rc == 0
    flip_byte(stage_root(project.build) / UNIT.lstrip("/"), offset=10)
    rewrite_manifest(project.build)
    res = project.run("payload")
    assert res.rc == 4, res.err
    assert UNIT in res.err and "the config renders" in res.err
