"""Go's encoding/json, as flanneld decodes its network config with it (json.Unmarshal).

Where it differs from Python's json module, and why that decides whether flanneld starts:
- syntax: no NaN/Infinity, no byte order mark, no comments or trailing commas; errors name the
  character and what was expected ("invalid character '}' looking for beginning of object key
  string"). We add the line and column, which Go only gives as a byte offset.
- object keys fill struct fields by exact name, else case-insensitively (foldName: ASCII case,
  and the two runes that fold onto ASCII letters: U+017F to S, U+212A to K; not U+0131); keys that
  match no field are ignored.
- a field given twice (in any spelling) is decoded twice, in document order, and the later one
  wins; but null is a no-op for plain values (bool, numbers, strings), resets pointers and slices,
  and is handed to a type's own UnmarshalJSON, where flannel's IP types fail on it.
- a number fills an int/uint field only as an integer literal in range ("24", not "24.0", "2e1"
  or, for uint, "-0"); a type mismatch fails the whole decode.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Literal

JsonKind = Literal["object", "array", "string", "number", "true", "false", "null"]


@dataclass
class Value:
    kind: JsonKind
    raw: str  # the token as written; for objects and arrays, their whole text
    line: int
    column: int
    text: str = ""  # a string's decoded content
    members: list[Member] = field(default_factory=list)  # an object's keys, in document order
    items: list[Value] = field(default_factory=list)  # an array's elements


@dataclass
class Member:
    key: str  # decoded
    line: int
    column: int
    value: Value


class JSONSyntaxError(ValueError):
    """Go's SyntaxError text, with where it happened."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.message, self.line, self.column = message, line, column


_WS = " \t\n\r"  # Go's isSpace: nothing else
MAX_DEPTH = 200  # Go allows 10000; no network config nests past this (and Python recurses)
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}
_HEX = frozenset("0123456789abcdefABCDEF")


def parse(text: str) -> Value:
    """One JSON document, as Go's decoder reads it. Raises JSONSyntaxError.

    Read files as UTF-8 with errors="surrogateescape": Go turns invalid bytes inside strings
    into U+FFFD and names them outside strings, as we do.
    """
    return _Parser(text).document()


_INSIDE_A_TOKEN = (
    "in literal",
    "in numeric literal",
    "after decimal point",
    "in exponent",
    "in string escape",
    "in \\u",
)


class _Parser:
    def __init__(self, text: str) -> None:
        self.s = text
        self.i = 0
        self.depth = 0
        self.newlines = [i for i, c in enumerate(text) if c == "\n"]

    def where(self, i: int) -> tuple[int, int]:
        line = bisect.bisect_left(self.newlines, i)
        start = self.newlines[line - 1] + 1 if line else 0
        return line + 1, i - start + 1

    def fail(self, context: str, i: int | None = None) -> JSONSyntaxError:
        i = self.i if i is None else i
        if i >= len(self.s):
            # Go's scanner.eof() feeds a space: inside a token, that space is the error
            if context.startswith(_INSIDE_A_TOKEN):
                return JSONSyntaxError(f"invalid character ' ' {context}", *self.where(len(self.s)))
            return JSONSyntaxError("unexpected end of JSON input", *self.where(len(self.s)))
        return JSONSyntaxError(
            f"invalid character {_quote_char(self.s[i])} {context}", *self.where(i)
        )

    def skip_ws(self) -> None:
        s, i = self.s, self.i
        while i < len(s) and s[i] in _WS:
            i += 1
        self.i = i

    def peek(self) -> str:
        return self.s[self.i] if self.i < len(self.s) else ""

    def document(self) -> Value:
        self.skip_ws()
        value = self.value("looking for beginning of value")
        self.skip_ws()
        if self.i < len(self.s):
            raise self.fail("after top-level value")
        return value

    def value(self, context: str) -> Value:
        c = self.peek()
        start = self.i
        line, column = self.where(start)
        if c in "{[" and c and self.depth >= MAX_DEPTH:
            raise JSONSyntaxError(f"nested more than {MAX_DEPTH} levels deep", line, column)
        if c == "{":
            members = self.object()
            return Value("object", self.s[start : self.i], line, column, members=members)
        if c == "[":
            items = self.array()
            return Value("array", self.s[start : self.i], line, column, items=items)
        if c == '"':
            text = self.string()
            return Value("string", self.s[start : self.i], line, column, text=text)
        if c == "-" or _digit(c):
            self.number()
            return Value("number", self.s[start : self.i], line, column)
        for word in ("true", "false", "null"):
            if c == word[0]:
                self.literal(word)
                return Value(word, word, line, column)  # type: ignore[arg-type]
        raise self.fail(context)

    def object(self) -> list[Member]:
        self.i += 1
        self.depth += 1
        members: list[Member] = []
        self.skip_ws()
        if self.peek() == "}":
            self.i += 1
            self.depth -= 1
            return members
        while True:
            if self.peek() != '"':
                raise self.fail("looking for beginning of object key string")
            line, column = self.where(self.i)
            key = self.string()
            self.skip_ws()
            if self.peek() != ":":
                raise self.fail("after object key")
            self.i += 1
            self.skip_ws()
            members.append(Member(key, line, column, self.value("looking for beginning of value")))
            self.skip_ws()
            c = self.peek()
            self.i += 1
            if c == "}":
                self.depth -= 1
                return members
            if c != ",":
                raise self.fail("after object key:value pair", self.i - 1)
            self.skip_ws()

    def array(self) -> list[Value]:
        self.i += 1
        self.depth += 1
        items: list[Value] = []
        self.skip_ws()
        if self.peek() == "]":
            self.i += 1
            self.depth -= 1
            return items
        while True:
            items.append(self.value("looking for beginning of value"))
            self.skip_ws()
            c = self.peek()
            self.i += 1
            if c == "]":
                self.depth -= 1
                return items
            if c != ",":
                raise self.fail("after array element", self.i - 1)
            self.skip_ws()

    def string(self) -> str:
        s = self.s
        i = self.i + 1
        out: list[str] = []
        while True:
            if i >= len(s):
                self.i = i
                raise self.fail("")
            c = s[i]
            if c == '"':
                self.i = i + 1
                return "".join(out)
            if c == "\\":
                e = s[i + 1] if i + 1 < len(s) else ""
                if e in _ESCAPES:
                    out.append(_ESCAPES[e])
                    i += 2
                    continue
                if e != "u":
                    raise self.fail("in string escape code", i + 1)
                code, i = self.hex4(i + 2), i + 6
                if 0xD800 <= code < 0xDC00 and s[i : i + 2] == "\\u":
                    low = self.hex4(i + 2)
                    if 0xDC00 <= low < 0xE000:
                        out.append(chr(0x10000 + ((code - 0xD800) << 10) + (low - 0xDC00)))
                        i += 6
                        continue
                out.append("\ufffd" if 0xD800 <= code < 0xE000 else chr(code))
                continue
            if c < " ":
                raise self.fail("in string literal", i)
            # invalid UTF-8 (surrogateescape'd bytes): Go substitutes U+FFFD
            out.append("\ufffd" if "\udc80" <= c <= "\udcff" else c)
            i += 1

    def hex4(self, i: int) -> int:
        for j in range(i, i + 4):
            if j >= len(self.s) or self.s[j] not in _HEX:
                raise self.fail("in \\u hexadecimal character escape", j)
        return int(self.s[i : i + 4], 16)

    def number(self) -> None:
        if self.peek() == "-":
            self.i += 1
            if not _digit(self.peek()):
                raise self.fail("in numeric literal")
        if self.peek() == "0":
            self.i += 1
        else:
            self.digits()
        if self.peek() == ".":
            self.i += 1
            if not _digit(self.peek()):
                raise self.fail("after decimal point in numeric literal")
            self.digits()
        if self.peek() and self.peek() in "eE":
            self.i += 1
            if self.peek() and self.peek() in "+-":
                self.i += 1
            if not _digit(self.peek()):
                raise self.fail("in exponent of numeric literal")
            self.digits()

    def digits(self) -> None:
        s, i = self.s, self.i
        while i < len(s) and _digit(s[i]):
            i += 1
        self.i = i

    def literal(self, word: str) -> None:
        for want in word:
            if self.peek() != want:
                raise self.fail(f"in literal {word} (expecting {_quote_char(want)})")
            self.i += 1


def _digit(c: str) -> bool:
    return c != "" and "0" <= c <= "9"


def _quote_char(c: str) -> str:
    """Go's quoteChar, which sees bytes: a non-ASCII rune shows as its first UTF-8 byte."""
    if c == "'":
        return "'\\''"
    if c == '"':
        return "'\"'"
    b = c.encode("utf-8", "surrogateescape")[0]
    ch = chr(b)
    named = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t"}
    if ch in named:
        shown = named[ch]
    elif ch == "\v":
        shown = "\\v"
    elif ch == "\\":
        shown = "\\\\"
    elif ch.isprintable():
        shown = ch
    elif b < 0x80:
        shown = f"\\x{b:02x}"
    else:
        shown = f"\\u{b:04x}"
    return f"'{shown}'"


# --- matching keys to struct fields ------------------------------------------------------------


def fold(name: str) -> str:
    """encoding/json's foldName: two keys fill the same field exactly when their folds are equal."""
    return "".join(c.upper() if c < "\x80" else _fold_rune(c) for c in name)


@cache
def _fold_rune(c: str) -> str:
    # foldRune: the smallest rune of c's case orbit (unicode.SimpleFold). Go's caseOrbit keeps the
    # Turkic dotted I and dotless i in orbits of their own; Python's upper() takes the latter to I
    if c in "\u0130\u0131":
        return c
    orbit, todo = {c}, [c]
    while todo:
        rune = todo.pop()
        for other in (rune.lower(), rune.upper()):
            if len(other) == 1 and other not in orbit:
                orbit.add(other)
                todo.append(other)
    return min(orbit)


# --- decoding into Go types --------------------------------------------------------------------


class GoError(Exception):
    """Why Go refuses a value, in Go's words; panic: flanneld crashes instead of refusing."""

    def __init__(self, text: str, *, panic: bool = False) -> None:
        super().__init__(text)
        self.text, self.panic = text, panic


class GoTypeError(GoError):
    """json.UnmarshalTypeError: the struct decoder adds which field."""

    def __init__(self, what: str, go_type: str) -> None:
        super().__init__(f"cannot unmarshal {what} into Go value of type {go_type}")
        self.what, self.go_type = what, go_type

    def in_field(self, struct: str, name: str) -> str:
        return (
            f"json: cannot unmarshal {self.what} into Go struct field {struct}.{name} "
            f"of type {self.go_type}"
        )


NullRule = Literal["keep", "reset", "decode"]


@dataclass(frozen=True)
class GoType:
    name: str  # as Go writes it: "uint", "bool", "ip.IP4Net"
    null: NullRule  # keep: a no-op; reset: back to unset (pointers, slices); decode: UnmarshalJSON
    decode: Callable[[Value], Any]  # raises GoError

    def __repr__(self) -> str:
        return f"GoType({self.name})"


def json_type(value: Value) -> str:
    """How UnmarshalTypeError names what it got."""
    return {"true": "bool", "false": "bool"}.get(value.kind, value.kind)


_UINT = re.compile(r"[0-9]+")
_INT = re.compile(r"-?[0-9]+")


def _integer(name: str, pattern: re.Pattern[str], low: int, high: int) -> GoType:
    def decode(value: Value) -> int:
        if value.kind != "number":
            raise GoTypeError(json_type(value), name)
        if not pattern.fullmatch(value.raw) or not low <= int(value.raw) <= high:
            raise GoTypeError(f"number {value.raw}", name)
        return int(value.raw)

    return GoType(name, "keep", decode)


def _bool(value: Value) -> bool:
    if value.kind not in ("true", "false"):
        raise GoTypeError(json_type(value), "bool")
    return value.kind == "true"


def _string(value: Value) -> str:
    if value.kind != "string":
        raise GoTypeError(json_type(value), "string")
    return value.text


BOOL = GoType("bool", "keep", _bool)
STRING = GoType("string", "keep", _string)
UINT = _integer("uint", _UINT, 0, (1 << 64) - 1)
INT = _integer("int", _INT, -(1 << 63), (1 << 63) - 1)  # 64-bit flanneld (int is 32 bits on arm)
DURATION = _integer("time.Duration", _INT, -(1 << 63), (1 << 63) - 1)
RAW = GoType("json.RawMessage", "decode", lambda value: value)  # null is kept as the text null


def unquoted(value: Value) -> str:
    """What flannel's UnmarshalJSON methods parse: the raw token, quotes trimmed (bytes.Trim),
    escapes left as written. So only a plain string can be valid; null, numbers and objects
    reach the parser as their text and fail there."""
    return value.raw.strip('"')


def unmarshaler(name: str, parse: Callable[[str], Any], *, pointer: bool = False) -> GoType:
    """A type with its own UnmarshalJSON (called with null too, unless behind a pointer)."""
    return GoType(name, "reset" if pointer else "decode", lambda value: parse(unquoted(value)))


def slice_of(item: GoType) -> GoType:
    def decode(value: Value) -> list[Any]:
        if value.kind != "array":
            raise GoTypeError(json_type(value), f"[]{item.name}")
        return [item.decode(v) for v in value.items]

    return GoType(f"[]{item.name}", "reset", decode)


# --- structs -----------------------------------------------------------------------------------


@dataclass
class Slot:
    """One struct field after decoding: every key that reached it, and what flannel kept."""

    name: str
    members: list[Member] = field(default_factory=list)
    state: Literal["unset", "set"] = "unset"
    value: Any = None
    kept: Member | None = None  # the key whose value flannel uses (None: unset)
    errors: list[tuple[Member, GoError]] = field(default_factory=list)
    ignored_nulls: list[Member] = field(default_factory=list)

    @property
    def failed(self) -> bool:
        return bool(self.errors)


def decode_struct(obj: Value, fields: Mapping[str, GoType]) -> tuple[dict[str, Slot], list[Member]]:
    """(a Slot per field some key reached, the keys that reached none), as json.Unmarshal fills a
    struct: exact name first, else folded; each key decoded in document order."""
    folded = {fold(name): name for name in fields}
    slots: dict[str, Slot] = {}
    unknown: list[Member] = []
    for member in obj.members:
        name = member.key if member.key in fields else folded.get(fold(member.key))
        if name is None:
            unknown.append(member)
            continue
        slot = slots.setdefault(name, Slot(name))
        slot.members.append(member)
        go_type, value = fields[name], member.value
        if value.kind == "null" and go_type.null == "keep":
            slot.ignored_nulls.append(member)
            continue
        if value.kind == "null" and go_type.null == "reset":
            slot.state, slot.value, slot.kept = "unset", None, None
            continue
        try:
            slot.value = go_type.decode(value)
        except GoError as exc:
            slot.errors.append((member, exc))
            continue
        slot.state, slot.kept = "set", member
    return slots, unknown
