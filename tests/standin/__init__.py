"""The flanneld stand-in (tests only): build its ELF `flanneld` from flanneld.py + launcher.c.

See flanneld.py for what it implements and what it does not. `build(arch, out)` compiles the
launcher with gcc, the script embedded as a C string, so the one file the payload installs is
a real executable for the architecture that passes fetch's ELF check.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPT = HERE / "flanneld.py"
LAUNCHER = HERE / "launcher.c"
INSTALL_HINT = "apt-get install -y gcc libc6-dev (or run make deps)"


def c_string(text: bytes) -> str:
    """text as a C array initialiser: byte exact, no escaping rules to get wrong."""
    rows = [", ".join(str(b) for b in text[i : i + 32]) for i in range(0, len(text), 32)]
    return "{\n" + ",\n".join(rows) + ", 0\n}"


def build(out: Path, arch: str = "amd64", script: Path = SCRIPT) -> Path:
    """Compile the stand-in's flanneld for arch (only the host's own arch: amd64 here)."""
    if arch != "amd64":
        raise ValueError(f"the stand-in is built for amd64 only (the build host), not {arch}")
    gcc = shutil.which("gcc")
    if gcc is None:
        raise RuntimeError(f"gcc is not installed; {INSTALL_HINT}")
    with tempfile.TemporaryDirectory(prefix="standin-") as tmp:
        header = Path(tmp) / "script.h"
        header.write_text(
            f"static const char STANDIN_SCRIPT[] = {c_string(script.read_bytes())};\n"
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
