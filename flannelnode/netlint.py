"""The network config checker's core: findings, how values are shown, and the keys themselves
(ignored, spelled in another case, given twice) as Go's decoder treats them.

The rules live beside it: netfamily.py (pkg/subnet/config.go), netbackend.py (pkg/backend).
"""

from __future__ import annotations

import difflib
import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Literal

from . import gojson
from .gojson import Member, Slot, Value
from .netfields import KEY_HISTORY, Version, named_like_secret

Level = Literal["error", "warning", "info"]
Dialect = Literal["toml", "json"]

REFUSED = "flanneld refuses the whole config and retries every second, forever"
CRASHES = "flanneld crashes decoding it and systemd restarts it, again and again"
VXLAN = '"vxlan"'


@dataclass(frozen=True)
class Finding:
    level: Level
    field: str  # path in the net-conf, e.g. "SubnetLen" or "Backend.VNI", as spelled
    message: str  # starts with the field, names the value, says what to do
    line: int | None = None  # where the key is, in a JSON input
    column: int | None = None

    def __str__(self) -> str:
        return f"{self.level}: {self.message}"

    def at(self, source: str) -> str:
        """The finding as printed: `net-conf.json:3:5: error: SubnetLen: ...`."""
        where = f"{source}:{self.line}:{self.column}" if self.line else source
        return f"{where}: {self}"


@dataclass(frozen=True)
class Range:
    """A range the flannel Network must not overlap, and what goes wrong when it does."""

    label: str  # "Kubernetes service CIDR"
    cidr: str
    why: str = "an address in both is ambiguous, and traffic for one reaches the other"
    origin: str = ""  # " ([cluster] service_cidrs in node.toml)"


@dataclass(frozen=True)
class Context:
    """What the node config adds: checks that depend on it run only when it is given."""

    etcd_endpoints: tuple[str, ...] = ()
    ranges: tuple[Range, ...] = ()
    arches: tuple[str, ...] = ()
    flannel_version: Version | None = None
    public_ip: str | None = None  # [flanneld].public_ip, rendered as --public-ip
    iface: tuple[str, ...] | None = None  # [flanneld].iface (--iface); None: not known


def show(value: Value, toml: bool = False) -> str:
    """A value as the user wrote it: strings quoted, numbers and literals as written; tables by
    kind only (they may hold a secret), short lists of plain values in full."""
    if value.kind == "string":
        return json.dumps(value.text, ensure_ascii=False)
    if value.kind == "object":
        kind = "a table" if toml else "an object"
        types = [m.value for m in value.members if gojson.fold(m.key) == "TYPE"]
        if types and types[-1].kind == "string":
            return f'{kind} with Type "{types[-1].text}"'
        return kind
    if value.kind == "array":
        plain = all(item.kind not in ("object", "array") for item in value.items)
        shown = "[" + ", ".join(show(item) for item in value.items) + "]"
        if plain and len(shown) <= 60:
            return shown
        return "a list" if toml else "an array"
    return value.raw


def quoted(value: Any) -> str:
    return f'"{value}"'


def kept(slot: Slot | None) -> Member | None:
    return slot.kept if slot is not None else None


def version_text(version: Version) -> str:
    return "v" + ".".join(map(str, version))


@dataclass
class Linter:
    ctx: Context
    dialect: Dialect
    findings: list[Finding] = field(default_factory=list)
    effective: dict[str, Any] = field(default_factory=dict)  # the config as flanneld uses it

    # -- findings

    def add(self, level: Level, path: str, text: str, at: Member | None = None) -> None:
        line = column = None
        if at is not None and self.dialect == "json":
            line, column = at.line, at.column
        self.findings.append(Finding(level, path, f"{path}: {text}", line, column))

    def error(self, path: str, text: str, at: Member | None = None) -> None:
        self.add("error", path, text, at)

    def warn(self, path: str, text: str, at: Member | None = None) -> None:
        self.add("warning", path, text, at)

    def info(self, path: str, text: str, at: Member | None = None) -> None:
        self.add("info", path, text, at)

    def syntax(self, exc: gojson.JSONSyntaxError, text: str) -> None:
        self.findings.append(
            Finding(
                "error",
                "",
                f"not JSON as flannel reads it: {exc.message} ({REFUSED}){_syntax_hint(exc, text)}",
                exc.line,
                exc.column,
            )
        )

    # -- wording: advice in the syntax of the input

    @property
    def toml(self) -> bool:
        return self.dialect == "toml"

    def show(self, value: Value, secret: bool = False) -> str:
        return "(hidden)" if secret else show(value, self.toml)

    def kv(self, key: str, value: str) -> str:
        """`Key = value` (TOML) or `"Key": value` (JSON)."""
        return f"{key} = {value}" if self.toml else f'"{key}": {value}'

    def obj(self, key: str, value: str) -> str:
        """`{Type = "vxlan"}` (TOML) or `{"Type": "vxlan"}` (JSON)."""
        return "{" + self.kv(key, value) + "}"

    def a_table(self) -> str:
        return "a table" if self.toml else "an object"

    def describe(self, value: Value, secret: bool = False) -> str:
        """What was given, for "must be X, not Y": 'a string "x"', 'an integer 3', 'a table'."""
        kind = {
            "string": "a string",
            "true": "a boolean",
            "false": "a boolean",
            "null": "null",
            "object": self.a_table(),
            "array": "a list" if self.toml else "an array",
        }.get(value.kind, "")
        if value.kind == "number":
            integer = value.raw.lstrip("-").isdigit()
            kind = "an integer" if integer else ("a float" if self.toml else "a number")
        if secret or value.kind in ("object", "array", "null"):
            return kind
        return f"{kind} {self.show(value)}"

    # -- keys, as encoding/json matches them to fields

    def keys(
        self,
        slots: dict[str, Slot],
        unknown: Iterable[Member],
        known: list[str],
        prefix: str,
        secrets: frozenset[str] = frozenset(),
    ) -> None:
        """Keys flannel ignores, spells differently, or takes more than once."""
        for member in unknown:
            self.unknown_key(member, known, prefix)
        for name, slot in slots.items():
            secret = name in secrets
            if len(slot.members) > 1:
                self.duplicate(prefix, slot, secret)
            elif slot.members[0].key != name:
                self.warn(
                    prefix + slot.members[0].key,
                    f"flannel reads this as {name} (Go's JSON decoder ignores case), but other "
                    f"tools do not: write it {name}",
                    slot.members[0],
                )
            for member in slot.ignored_nulls:
                now = self.show(slot.kept.value, secret) if slot.kept else "its default"
                self.warn(
                    prefix + member.key,
                    f"null changes nothing here: flannel keeps {now}. Remove it",
                    member,
                )

    def unknown_key(self, member: Member, known: list[str], prefix: str) -> None:
        key, path = member.key, prefix + member.key
        shown = "hidden" if named_like_secret(key) else self.show(member.value)
        history = next((k for k in KEY_HISTORY if gojson.fold(k) == gojson.fold(key)), None)
        if history and not prefix:
            first, gone = KEY_HISTORY[history]
            version = self.ctx.flannel_version
            this = f"flannel {version_text(version)}" if version else "this flannel"
            span = version_text(first) + (f" to before {version_text(gone)}" if gone else " on")
            self.warn(
                path,
                f"{this} does not read it (flannel reads {history} from {span}) and ignores it "
                f"silently (value {shown}). Remove it, or set [flannel] version to a release "
                "that reads it",
                member,
            )
            return
        hint = difflib.get_close_matches(key, known, n=1, cutoff=0.6)
        did = f" Did you mean {hint[0]}?" if hint else ""
        self.warn(
            path,
            f"unknown key (value {shown}); flannel ignores it silently.{did} "
            f"Known keys: {', '.join(known) or 'none'}",
            member,
        )

    def duplicate(self, prefix: str, slot: Slot, secret: bool) -> None:
        members, took_member = slot.members, slot.kept
        if took_member is None:
            took = "none of them: the last one, null, resets it to the default"
        elif self.toml:
            took = f"{took_member.key} = {self.show(took_member.value, secret)}"
        else:
            took = (
                f"the one at {took_member.line}:{took_member.column}, "
                f"{self.show(took_member.value, secret)}"
            )
        if self.toml:
            # TOML tools see two keys where flannel sees one: neither lint nor the artifacts guess
            self.error(
                prefix + members[-1].key,
                f"{' and '.join(m.key for m in members)} are one key to flannel, which matches "
                f"keys ignoring case; in the net-conf.json flannelnode writes, flannel would take "
                f"the last, {took}. Keep only one, spelled {slot.name}",
            )
            return
        spellings = ", ".join(f"{m.key} at {m.line}:{m.column}" for m in members)
        self.warn(
            prefix + slot.name,
            f"given {len(members)} times ({spellings}); flannel decodes each in turn and keeps "
            f"{took}. Keep one",
            took_member or members[-1],
        )


def _syntax_hint(exc: gojson.JSONSyntaxError, text: str) -> str:
    """The usual reasons for a syntax error, in words. text: what was parsed, to look at what
    comes before the error (Go's message names only the character it stopped at)."""
    message = exc.message
    lines = text.split("\n")
    at = sum(len(line) + 1 for line in lines[: exc.line - 1]) + exc.column - 1
    closing = message.startswith(("invalid character '}'", "invalid character ']'"))
    if closing and "beginning of" in message:
        if text[:at].rstrip(" \t\n\r").endswith(","):
            return ". JSON allows no comma before } or ]: remove it"
        return ". A value is missing before this"
    if "'/'" in message or "'#'" in message:
        return ". JSON has no comments: remove them"
    if "'\\''" in message:
        return ". JSON strings and keys take double quotes"
    if text.startswith("\ufeff"):
        return ". The file starts with a byte order mark: save it as UTF-8 without one"
    if "looking for beginning of object key string" in message:
        return ". Keys need double quotes"
    if "after object key:value pair" in message or "after array element" in message:
        if closing:
            return ". This bracket does not close the one opened last ({ closes with }, [ with ])"
        return ". A comma is missing before this"
    if at == len(text):  # "unexpected end of JSON input", or Go's space inside a cut token
        return ". The text is cut short (or empty)"
    return ""
