"""The flanneld stand-in (tests only): build its ELF `flanneld` from flanneld.py + launcher.c.

See flanneld.py for what it implements and what it does not. `build(out, arch, version=...)`
compiles the launcher with gcc, the script embedded as a C string, so the one file the payload
installs is a real executable for the architecture that passes fetch's ELF check. `version` is
the flannel release the build stands in for (its --version, its etcd API, its checks).
"""

from __future__ import annotations

import re
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "flanneld.py"
LAUNCHER = HERE / "launcher.c"
INSTALL_HINT = "apt-get install -y gcc libc6-dev (or run make deps)"
# flannel arch -> (compiler, its Debian packages). The arm64 build is a real AArch64 program: it
# runs in an arm64 node image, on an amd64 host under qemu-user (binfmt_misc).
COMPILERS = {
    "amd64": ("gcc", "gcc libc6-dev"),
    "arm64": ("aarch64-linux-gnu-gcc", "gcc-aarch64-linux-gnu libc6-dev-arm64-cross"),
}
DEFAULT_VERSION = "v0.27.4"
VERSION_LINE = re.compile(r'^VERSION = "[^"]*"  # standin-build: version$', re.M)


def script_for(version: str, script: Path = SCRIPT) -> bytes:
    """The stand-in's source with its flannel version baked in."""
    if not re.fullmatch(r"v\d+\.\d+\.\d+", version):
        raise ValueError(f"not a flannel release version: {version!r}")
    text, count = VERSION_LINE.subn(
        f'VERSION = "{version}"  # standin-build: version', script.read_text()
    )
    if count != 1:
        raise RuntimeError(f"{script} has no version line to substitute")
    return text.encode()


def c_string(text: bytes) -> str:
    """text as a C array initialiser: byte exact, no escaping rules to get wrong."""
    rows = [", ".join(str(b) for b in text[i : i + 32]) for i in range(0, len(text), 32)]
    return "{\n" + ",\n".join(rows) + ", 0\n}"


def build(
    out: Path, arch: str = "amd64", script: Path = SCRIPT, version: str = DEFAULT_VERSION
) -> Path:
    """Compile the stand-in's flanneld of flannel `version` for arch (amd64 or arm64)."""
    if arch not in COMPILERS:
        raise ValueError(f"the stand-in is built for {', '.join(COMPILERS)}, not {arch}")
    compiler, packages = COMPILERS[arch]
    gcc = shutil.which(compiler)
    if gcc is None:
        raise RuntimeError(
            f"{compiler} is not installed; apt-get install -y {packages} (or run make deps)"
        )
    with tempfile.TemporaryDirectory(prefix="standin-") as tmp:
        header = Path(tmp) / "script.h"
        header.write_text(
            f"static const char STANDIN_SCRIPT[] = {c_string(script_for(version, script))};\n"
        )
        result = subprocess.run(
            [
                gcc,
                "-static",
                "-Os",
                "-s",
                "-Wall",
                "-Werror",
                "-I",
                tmp,
                "-o",
                str(out),
                str(LAUNCHER),
            ],
            capture_output=True,
            text=True,
            check=False,
            timeout=120,
        )
    if result.returncode != 0:
        raise RuntimeError(f"gcc failed to build the stand-in:\n{result.stderr}")
    out.chmod(0o755)
    return out
