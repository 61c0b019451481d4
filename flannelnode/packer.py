"""A thin driver over `packer -machine-readable` (Debian's Packer 1.6.6 and later).

Why not a PyPI wrapper: python-packer 0.1.2 is broken on Python 3.11 and Packer 1.6, packer.py
0.3.0 buffers all output until exit; neither is maintained. Packer's machine-readable output is a
stable CSV-like stream, `timestamp,target,type,data...`, commas in data written as
%!(PACKER_COMMA) and newlines as a literal backslash-n, so a small parser is all it takes.

Every wait is bounded: a build that outlives its timeout gets SIGINT (Packer then cleans up its
containers and output directories), then SIGKILL for the whole process group.
"""

from __future__ import annotations

import os
import selectors
import shutil
import signal
import subprocess
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from .errors import FlannelnodeError

INSTALL_HINT = "apt-get install -y packer"
TAIL = 40  # output lines kept for an error message
CLEANUP_GRACE = 60.0  # seconds Packer gets after SIGINT to remove what it made
# ui lines that start a provisioner: its output, not the whole build, is what a failure shows
_STEP_MARKERS = (": Provisioning with ", ": Running local shell script", ": Uploading ")


class PackerError(FlannelnodeError):
    """packer is missing, or validate/build failed. `lines` holds the last output lines."""

    def __init__(self, message: str, lines: Sequence[str] = ()) -> None:
        self.lines = list(lines)
        if self.lines:
            message += "\n--- last packer output ---\n" + "\n".join(self.lines)
        super().__init__(message)


@dataclass(frozen=True)
class Artifact:
    source: str  # the build's source name, e.g. "docker.node"
    builder_id: str  # e.g. "packer.docker", "transcend.qemu", "mitchellh.amazonebs"
    id: str  # image id, AMI id, ...
    string: str = ""
    files: tuple[str, ...] = ()


@dataclass(frozen=True)
class Line:
    """One machine-readable record."""

    timestamp: str
    target: str
    type: str
    data: tuple[str, ...]


@dataclass
class _Partial:
    builder_id: str = ""
    id: str = ""
    string: str = ""
    files: list[str] = field(default_factory=list)


def executable() -> str:
    path = shutil.which("packer")
    if path is None:
        raise PackerError(f"packer is not installed: run `{INSTALL_HINT}` (Debian ships 1.6.6)")
    return path


def _unescape(value: str) -> str:
    return value.replace("%!(PACKER_COMMA)", ",").replace("\\r", "\r").replace("\\n", "\n")


def parse(raw: str) -> Line | None:
    """A machine-readable line, or None for anything else (Packer prints a few plain lines)."""
    parts = raw.rstrip("\r\n").split(",")
    if len(parts) < 3 or not parts[0].isdigit():
        return None
    return Line(parts[0], parts[1], parts[2], tuple(_unescape(p) for p in parts[3:]))


def _environment(extra: Mapping[str, str] | None) -> dict[str, str]:
    env = dict(os.environ)
    env["CHECKPOINT_DISABLE"] = "1"  # no phoning home to checkpoint.hashicorp.com
    env.pop("PACKER_LOG", None)  # debug logging would interleave with the machine-readable stream
    env.update(extra or {})
    return env


def _args(template: Path, variables: Mapping[str, str], var_files: Iterable[Path]) -> list[str]:
    args = [f"-var-file={f}" for f in var_files]
    args += [f"-var={k}={v}" for k, v in sorted(variables.items())]
    return [*args, str(template)]


def version(timeout: float = 30) -> str:
    try:
        out = subprocess.run(
            [executable(), "version"],
            capture_output=True,
            text=True,
            timeout=timeout,
            env=_environment(None),
            check=True,
        ).stdout
    except (subprocess.SubprocessError, OSError) as exc:
        raise PackerError(f"packer version failed: {exc}") from None
    return out.split()[1] if out.startswith("Packer v") else out.strip()


def validate(
    template: Path,
    variables: Mapping[str, str] | None = None,
    *,
    var_files: Iterable[Path] = (),
    only: Sequence[str] | None = None,
    timeout: float = 60,
    env: Mapping[str, str] | None = None,
) -> str:
    """`packer validate`; raises PackerError with Packer's own message. Returns its output
    (warnings, e.g. a var file setting a variable the template does not declare)."""
    cmd = [executable(), "validate"]
    if only:
        cmd.append("-only=" + ",".join(only))
    cmd += _args(template, variables or {}, var_files)
    try:
        res = subprocess.run(
            cmd, capture_output=True, text=True, timeout=timeout, env=_environment(env)
        )
    except subprocess.TimeoutExpired:
        raise PackerError(f"packer validate {template} did not finish in {timeout:g}s") from None
    if res.returncode != 0:
        lines = (res.stdout + res.stderr).strip().splitlines()
        raise PackerError(f"{template}: packer validate failed", lines[-TAIL:])
    return res.stdout + res.stderr


class _Run:
    """State of one build: output tail, the current provisioner's output, artifacts."""

    def __init__(self, on_line: Callable[[str], None] | None) -> None:
        self.on_line = on_line
        self.tail: deque[str] = deque(maxlen=TAIL)
        self.step: deque[str] = deque(maxlen=TAIL)  # output since the last provisioner started
        self.in_step = False
        self.errors: list[str] = []
        self.partial: dict[tuple[str, str], _Partial] = {}
        self.artifacts: list[Artifact] = []

    def feed(self, raw: str) -> None:
        line = parse(raw)
        if line is None:
            self._show(raw.rstrip("\n"))
            return
        if line.type == "ui" and len(line.data) >= 2:
            level, message = line.data[0], line.data[1]
            for text in message.rstrip("\n").splitlines() or [""]:
                self._show(text)
                if level == "error":
                    self.errors.append(text)
        elif line.type == "error" and line.data:
            self.errors.append(line.data[0])
        elif line.type == "artifact" and len(line.data) >= 2:
            self._artifact(line.target, line.data)

    def _show(self, text: str) -> None:
        if text.strip():
            self.tail.append(text)
            if text.startswith("==>") and any(m in text for m in _STEP_MARKERS):
                self.step.clear()
                self.in_step = True
            self.step.append(text)
        if self.on_line is not None:
            self.on_line(text)

    def _artifact(self, source: str, data: tuple[str, ...]) -> None:
        index, key, values = data[0], data[1], data[2:]
        art = self.partial.setdefault((source, index), _Partial())
        if key == "builder-id" and values:
            art.builder_id = values[0]
        elif key == "id" and values:
            art.id = values[0]
        elif key == "string" and values:
            art.string = values[0]
        elif key == "file" and len(values) >= 2:
            art.files.append(values[1])
        elif key == "end":
            del self.partial[(source, index)]
            self.artifacts.append(
                Artifact(source, art.builder_id, art.id, art.string, tuple(art.files))
            )

    def failure_lines(self) -> list[str]:
        """The failing step's output (a provisioner's stdout/stderr), else the general tail."""
        lines = list(self.step if self.in_step else self.tail)
        return lines + [e for e in self.errors if not any(e in line for line in lines)]


def _stop(proc: subprocess.Popen[bytes]) -> None:
    """SIGINT first (Packer removes its container or VM), SIGKILL for the group after a grace."""
    if proc.poll() is not None:
        return
    try:
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=CLEANUP_GRACE)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
    except ProcessLookupError:
        pass


def build(
    template: Path,
    variables: Mapping[str, str] | None = None,
    *,
    var_files: Iterable[Path] = (),
    only: Sequence[str] | None = None,
    on_line: Callable[[str], None] | None = None,
    timeout: float = 3600,
    env: Mapping[str, str] | None = None,
    cwd: Path | None = None,
) -> list[Artifact]:
    """`packer build`, streaming every ui line to on_line as it arrives; returns the artifacts.

    Raises PackerError carrying the failing step's output when Packer exits non-zero or the
    timeout passes (the build is then interrupted and Packer cleans up after itself).
    """
    cmd = [executable(), "build", "-machine-readable", "-color=false", "-on-error=cleanup"]
    if only:
        cmd.append("-only=" + ",".join(only))
    cmd += _args(template, variables or {}, var_files)
    run = _Run(on_line)
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=_environment(env),
        cwd=cwd,
        start_new_session=True,  # its own process group: a timeout can stop all of it
    )
    try:
        finished = _pump(proc, run, time.monotonic() + timeout)
    except BaseException:  # Ctrl-C or a failing on_line: Packer must still clean up
        _stop(proc)
        raise
    if not finished:
        _stop(proc)
        raise PackerError(
            f"packer build {template.name} did not finish in {timeout:g}s; interrupted",
            list(run.tail),
        )
    if proc.returncode != 0:
        raise PackerError(
            f"packer build {template.name} failed (exit {proc.returncode})", run.failure_lines()
        )
    return run.artifacts


def _pump(proc: subprocess.Popen[bytes], run: _Run, deadline: float) -> bool:
    """Feed output lines to run as they arrive; False when the deadline passed first."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    pending = b""
    with selectors.DefaultSelector() as sel:
        sel.register(fd, selectors.EVENT_READ)
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            if not sel.select(timeout=min(left, 1.0)):
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            *lines, pending = (pending + chunk).split(b"\n")
            for line in lines:
                run.feed(line.decode(errors="replace"))
    if pending:
        run.feed(pending.decode(errors="replace"))
    proc.stdout.close()
    try:
        proc.wait(timeout=max(1.0, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        return False
    return True
