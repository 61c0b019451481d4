"""`build.py lint [FILE|-]`: a network config, checked as flannel will read it.

FILE (or - for stdin) is a net-conf.json or a node.toml, told apart by content. A net-conf.json is
checked as written, in the context of the node config (--config, else ./node.toml, else the
built-in defaults): flannel version, arches, etcd endpoints, [flanneld].public_ip and [cluster].
A node.toml is both: its [network] is checked in its own context. Without FILE, the node config's
[network]. Every line names the file it is about.
"""

from __future__ import annotations

import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TextIO

from . import gojson
from .errors import EXIT_BAD_INPUT, ConfigError
from .netlint import Finding

STDIN = "-"


@dataclass(frozen=True)
class Given:
    """A FILE argument, read."""

    kind: Literal["json", "toml"]
    text: str
    name: str  # for messages: the path as given, or <stdin>
    path: Path | None  # None for stdin


def read(arg: str) -> Given:
    """FILE or - as a net-conf.json or a node.toml; ConfigError (exit 2) when it is neither."""
    if arg == STDIN:
        name, path = "<stdin>", None
        data = sys.stdin.buffer.read()
    else:
        name, path = arg, Path(arg)
        if path.is_dir():
            raise ConfigError(f"{arg}: is a directory; name a net-conf.json or a node.toml")
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            raise ConfigError(
                f"{arg}: no such file; name a net-conf.json or a node.toml, or - for stdin"
            ) from None
    # as Go reads bytes: invalid UTF-8 is named where it is (gojson), not a decoding crash here
    text = data.decode("utf-8", "surrogateescape")
    return Given(detect(text, name), text, name, path)


def detect(text: str, name: str) -> Literal["json", "toml"]:
    """JSON if it parses as JSON (an object starts with {, which TOML cannot), else TOML."""
    head = text.lstrip(" \t\r\n\ufeff")
    if not head:
        raise ConfigError(f"{name}: empty; give a net-conf.json or a node.toml")
    if head.startswith("{"):
        return "json"
    try:
        gojson.parse(text)
        return "json"  # JSON, but no object (["x"] is TOML too): lint says what flannel does
    except gojson.JSONSyntaxError as json_error:
        try:
            tomllib.loads(text)
            return "toml"
        except (tomllib.TOMLDecodeError, RecursionError) as toml_error:
            raise ConfigError(
                f"{name}: neither a net-conf.json (JSON: {json_error.message} at line "
                f"{json_error.line}, column {json_error.column}) nor a node.toml (TOML: "
                f"{toml_error})"
            ) from None


def report(
    findings: list[Finding],
    source: str,
    *,
    quiet: bool,
    strict: bool,
    weak: str | None = None,
    out: TextIO | None = None,
    err: TextIO | None = None,
) -> int:
    """Print the findings (errors to stderr, the rest to stdout; -q: errors only) and return
    the exit code: 2 on an error, and with --strict on a warning too. weak: why this lint
    checked less than it should (no node config), a warning for --strict."""
    out, err = out or sys.stdout, err or sys.stderr
    warnings = [f for f in findings if f.level == "warning"]
    for finding in findings:
        failing = finding.level == "error" or (strict and finding.level == "warning")
        if failing or not quiet:
            print(finding.at(source), file=err if failing else out)
    errors = sum(f.level == "error" for f in findings)
    if errors:
        return EXIT_BAD_INPUT
    if strict and (warnings or weak):
        count = len(warnings) + bool(weak)
        what = f"{count} warning{'s' if count != 1 else ''}"
        print(f"{source}: --strict: {what} fail{'s' if count == 1 else ''} the lint", file=err)
        return EXIT_BAD_INPUT
    return 0
