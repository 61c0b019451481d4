"""dockerarchive: a root tree loaded into the real docker engine as an image of a given arch.

The tree holds one static program compiled for the arch (gcc, or the aarch64 cross gcc), so
the image not only says arm64: it runs arm64 code, under qemu-user through binfmt_misc.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

from flannelnode import dockerarchive
from flannelnode.tools import require

from .elf_headers import SPEC

GCC = {"amd64": "gcc", "arm64": "aarch64-linux-gnu-gcc"}
HELLO = '#include <stdio.h>\nint main(void) { puts("hello from %s"); return 0; }\n'


def _docker(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["docker", *args], capture_output=True, text=True, timeout=120)


@pytest.mark.parametrize("arch", ["amd64", "arm64"])
def test_a_tree_loads_as_an_image_of_its_arch_and_runs(arch: str, tmp_path: Path) -> None:
    require(GCC[arch], "docker")
    root = tmp_path / "root"
    root.mkdir()
    src = tmp_path / "hello.c"
    src.write_text(HELLO % arch)
    subprocess.run([GCC[arch], "-static", "-Os", "-o", str(root / "hello"), str(src)], check=True)
    head = (root / "hello").read_bytes()[:20]
    assert (head[4], head[5], int.from_bytes(head[18:20], "little")) == SPEC[arch]

    layer = tmp_path / "layer.tar"
    diff_id = dockerarchive.layer_from_tree(root, layer)
    tag = f"flannelnode-test/archive-{os.getpid()}:{arch}"
    config = dockerarchive.image_config(
        arch,
        diff_id,
        entrypoint=["/hello"],
        env=["container=docker"],
        labels={"org.flannelnode.test": "1"},
        created="2026-01-01T00:00:00Z",
        created_by="test",
    )
    try:
        image_id = dockerarchive.load(layer, config, tag)
        [inspect] = json.loads(_docker("image", "inspect", tag).stdout)
        assert inspect["Id"] == image_id
        assert (inspect["Architecture"], inspect["Os"]) == (arch, "linux")
        assert inspect["Config"]["Entrypoint"] == ["/hello"]
        assert inspect["Config"]["Labels"] == {"org.flannelnode.test": "1"}
        assert inspect["RootFS"]["Layers"] == [diff_id]
        run = _docker("run", "--rm", "--pull=never", tag)
        assert run.returncode == 0, run.stderr
        assert run.stdout == f"hello from {arch}\n"
    finally:
        _docker("rmi", "-f", tag)


def test_a_load_docker_refuses_says_why(tmp_path: Path) -> None:
    layer = tmp_path / "layer.tar"
    layer.write_bytes(b"not a tar" * 100)
    config = dockerarchive.image_config(
        "arm64", "sha256:" + "0" * 64, entrypoint=["/x"], env=[], labels={},
        created="2026-01-01T00:00:00Z", created_by="test",
    )  # fmt: skip
    with pytest.raises(dockerarchive.ArchiveError, match=r"docker load of \S+ failed"):
        dockerarchive.load(layer, config, f"flannelnode-test/archive-{os.getpid()}:bad")
