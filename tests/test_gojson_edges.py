"""gojson at its edges, each behaviour as Go's encoding/json has it (scanner.go, decode.go,
strconv.Quote for how a character is named, utf16.DecodeRune for surrogate pairs), unless a test
says the limit is flannelnode's own. Fast: first in gojson's mutation target."""

from __future__ import annotations

import pytest

from flannelnode import gojson, netfields
from flannelnode.gojson import BOOL, DURATION, INT, RAW, STRING, UINT

VALUE = "looking for beginning of value"


def syntax_error(text: str) -> tuple[str, int, int]:
    with pytest.raises(gojson.JSONSyntaxError) as exc:
        gojson.parse(text)
    return exc.value.message, exc.value.line, exc.value.column


def decoded(text: str, go_type: gojson.GoType) -> gojson.Slot:
    slots, _ = gojson.decode_struct(gojson.parse('{"f": ' + text + "}"), {"f": go_type})
    return slots["f"]


def refused(text: str, go_type: gojson.GoType) -> str:
    slot = decoded(text, go_type)
    assert slot.failed and slot.state == "unset"
    return slot.errors[0][1].text


# --- whitespace -------------------------------------------------------------------------------


def test_space_tab_cr_and_lf_are_whitespace_anywhere_between_tokens():
    doc = gojson.parse(' \t\r\n{ "a" : [ 1 , { } , [ ] ] ,\r\n\t"b" :\ttrue } \n\r\t ')
    assert [m.key for m in doc.members] == ["a", "b"]
    assert [v.kind for v in doc.members[0].value.items] == ["number", "object", "array"]
    assert gojson.parse("{ }").members == [] and gojson.parse("[ ]").items == []


@pytest.mark.parametrize(("text", "shown"), [("\v{}", "\\v"), ("\f{}", "\\f")])
def test_vertical_tab_and_form_feed_are_not_whitespace(text, shown):
    assert syntax_error(text) == (f"invalid character '{shown}' {VALUE}", 1, 1)


# --- how an unexpected character is named (Go's quoteChar) -------------------------------------


@pytest.mark.parametrize(
    ("text", "shown"),
    [
        ("\a", "\\a"),
        ("\b", "\\b"),
        ("\x00", "\\x00"),
        ("\x01", "\\x01"),
        ("\x1b", "\\x1b"),
        ("\x7f", "\\x7f"),
        ("\\", "\\\\"),
        ("!", "!"),
        ("x", "x"),
        ("é", "Ã"),  # Go sees bytes: é is C3 A9, and names the first byte as U+00C3
        ("\u00a0", "Â"),  # C2 A0
        ("\udc80", "\\u0080"),  # a stray byte 0x80 (read with surrogateescape)
        ("\udcad", "\\u00ad"),  # byte 0xAD: U+00AD is a format character, not printable
        ("\udcff", "ÿ"),
    ],
)
def test_an_unexpected_character_is_named_as_go_quotes_its_first_byte(text, shown):
    assert syntax_error("[" + text + "]") == (f"invalid character '{shown}' {VALUE}", 1, 2)


@pytest.mark.parametrize(("char", "shown"), [("\n", "\\n"), ("\r", "\\r"), ("\x1f", "\\x1f")])
def test_a_control_character_in_a_string_is_named(char, shown):
    message = f"invalid character '{shown}' in string literal"
    assert syntax_error('["ab' + char + '"]') == (message, 1, 5)


def test_a_double_quote_where_a_colon_belongs_is_named_plainly():
    assert syntax_error('{"a" "b"}') == ("invalid character '\"' after object key", 1, 6)


# --- literals -----------------------------------------------------------------------------------


def test_true_false_and_null_are_read():
    doc = gojson.parse("[true,false,null]")
    assert [(v.kind, v.raw) for v in doc.items] == [
        ("true", "true"),
        ("false", "false"),
        ("null", "null"),
    ]


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("nulL", "invalid character 'L' in literal null (expecting 'l')", 4),
        ("trUe", "invalid character 'U' in literal true (expecting 'u')", 3),
        ("fals e", "invalid character ' ' in literal false (expecting 'e')", 5),
    ],
)
def test_a_misspelt_literal_names_the_letter_it_expected(text, message, column):
    assert syntax_error(text) == (message, 1, column)


# --- numbers ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text", ["0", "-0", "9", "-9", "10", "90", "1.5", "0.0", "-0.09e-09", "1E+9", "9e9", "2e0"]
)
def test_numbers_are_read_whole(text):
    doc = gojson.parse(text)
    assert (doc.kind, doc.raw) == ("number", text)
    assert gojson.parse(f"[{text}]").items[0].raw == text


def test_a_number_of_any_length_is_read():
    assert gojson.parse("9" * 300).raw == "9" * 300


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ("-a", "invalid character 'a' in numeric literal", 2),
        ("-.5", "invalid character '.' in numeric literal", 2),
        (".5", "invalid character '.' looking for beginning of value", 1),
        ("+1", "invalid character '+' looking for beginning of value", 1),
        ("01", "invalid character '1' after top-level value", 2),
        ("-01", "invalid character '1' after top-level value", 3),
        ("1.e1", "invalid character 'e' after decimal point in numeric literal", 3),
        ("1ea", "invalid character 'a' in exponent of numeric literal", 3),
        ("1e-x", "invalid character 'x' in exponent of numeric literal", 4),
        ("2e1e1", "invalid character 'e' after top-level value", 4),
        ("1.5.", "invalid character '.' after top-level value", 4),
    ],
)
def test_a_malformed_number_is_refused_where_go_stops(text, message, column):
    assert syntax_error(text) == (message, 1, column)


# --- strings ------------------------------------------------------------------------------------


def test_every_short_escape_is_decoded():
    doc = gojson.parse(r'"\"x\\x\/x\bx\fx\nx\rx\tx"')
    assert doc.text == '"x\\x/x\bx\fx\nx\rx\tx'


def test_space_and_del_are_allowed_in_a_string():
    assert gojson.parse('" \x7f"').text == " \x7f"


def test_a_unicode_escape_takes_either_case_of_hex_digits():
    assert gojson.parse(r'"\u0041\u00e9\uABCD\uabcd"').text == "Aé\uabcd\uabcd"


@pytest.mark.parametrize(
    ("escaped", "text"),
    [
        (r"\ud800\udc00", "\U00010000"),  # the first and the last pair
        (r"\udbff\udfff", "\U0010ffff"),
        (r"\ud7ff\udc00", "\ud7ff\ufffd"),  # U+D7FF is no surrogate: no pair
        (r"\ue000\udc00", "\ue000\ufffd"),
        (r"\udc00\udc00", "\ufffd\ufffd"),  # a low surrogate cannot start a pair
        (r"\udfff\udc00", "\ufffd\ufffd"),
        (r"\ud800\udbff", "\ufffd\ufffd"),  # nor a high one end it
        (r"\ud800\ue000", "\ufffd\ue000"),
        (r"\ud800\ue001", "\ufffd\ue001"),
        (r"\ud800\n", "\ufffd\n"),
        (r"\ud800x", "\ufffdx"),
        (r"\udfff", "\ufffd"),
        (r"\ue000", "\ue000"),
        (r"\ue001\uffff", "\ue001\uffff"),
        (r"\ud7ff", "\ud7ff"),
    ],
)
def test_surrogates_pair_as_utf16_decodes_them_else_become_u_fffd(escaped, text):
    assert gojson.parse(f'"{escaped}"').text == text


def test_each_invalid_utf8_byte_in_a_string_becomes_u_fffd():
    doc = gojson.parse('"a\udc80b\udcc3\udcffc\ue000😀"')  # bytes 80, C3 (cut short), FF
    # compared as ascii(): a failure report would write a kept surrogate out as an invalid byte,
    # which cosmic-ray cannot decode (it then counts the mutant as incompetent, not killed)
    assert ascii(doc.text) == ascii("a\ufffdb\ufffd\ufffdc\ue000😀")


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ('"abc', "unexpected end of JSON input", 5),
        ('"a\\"', "unexpected end of JSON input", 5),  # the quote is escaped
        ('["\\u12G4"]', "invalid character 'G' in \\u hexadecimal character escape", 7),
        ('"\\u12G4"', "invalid character 'G' in \\u hexadecimal character escape", 6),
        ('"\\u123G"', "invalid character 'G' in \\u hexadecimal character escape", 7),
        ('"\\ud800\\uZ"', "invalid character 'Z' in \\u hexadecimal character escape", 10),
        ('"\\U0041"', "invalid character 'U' in string escape code", 3),
    ],
)
def test_a_broken_string_is_refused_where_go_stops(text, message, column):
    assert syntax_error(text) == (message, 1, column)


@pytest.mark.parametrize(
    ("text", "context"),
    [
        ("t", "in literal true (expecting 'r')"),
        ("nul", "in literal null (expecting 'l')"),
        ('{"a": fals', "in literal false (expecting 'e')"),
        ("-", "in numeric literal"),
        ("1.", "after decimal point in numeric literal"),
        ("1e", "in exponent of numeric literal"),
        ("1e+", "in exponent of numeric literal"),
        ('"\\', "in string escape code"),
        ('"ab\\', "in string escape code"),
        ('"\\u12', "in \\u hexadecimal character escape"),
        ('"\\ud800\\u12', "in \\u hexadecimal character escape"),
    ],
)
def test_input_cut_inside_a_token_is_refused_at_its_end(text, context):
    # Go's eof() feeds the scanner a space, which no token takes: its error names that space, at
    # the input's length
    assert syntax_error(text) == (f"invalid character ' ' {context}", 1, len(text) + 1)


def test_a_long_document_cut_short_is_still_an_unexpected_end():
    text = '{"a": "' + "x" * 300
    assert syntax_error(text) == ("unexpected end of JSON input", 1, len(text) + 1)
    assert syntax_error(text + '"')[0] == "unexpected end of JSON input"
    for cut, context in (("\\", "in string escape code"), ("\\u12", "in \\u hexadecimal")):
        said = syntax_error(text + cut)  # cut inside an escape: the space is named, as above
        assert said[0].startswith(f"invalid character ' ' {context}")
        assert said[1:] == (1, len(text + cut) + 1)
    for whole in ("12", '"a"', "true", " 1.5e3 "):  # a top-level token ending the input is whole
        gojson.parse(whole)
    assert syntax_error('{"a": 12') == ("unexpected end of JSON input", 1, 9)


# --- objects and arrays -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message", "column"),
    [
        ('{"a" 1}', "invalid character '1' after object key", 6),
        ('{"a"}', "invalid character '}' after object key", 5),
        ('{"a"', "unexpected end of JSON input", 5),
        ("{1: 2}", "invalid character '1' looking for beginning of object key string", 2),
        ("{!}", "invalid character '!' looking for beginning of object key string", 2),
        ("{~}", "invalid character '~' looking for beginning of object key string", 2),
        ('{"a":}', "invalid character '}' looking for beginning of value", 6),
        ('{"a":1]', "invalid character ']' after object key:value pair", 7),
        ('{"a":1~}', "invalid character '~' after object key:value pair", 7),
        ("[1,]", "invalid character ']' looking for beginning of value", 4),
        ("[,1]", "invalid character ',' looking for beginning of value", 2),
        ("[1}", "invalid character '}' after array element", 3),
        ('[1"a"]', "invalid character '\"' after array element", 3),
        ("{", "unexpected end of JSON input", 2),
        ("[", "unexpected end of JSON input", 2),
        ("{} {}", "invalid character '{' after top-level value", 4),
    ],
)
def test_a_malformed_object_or_array_is_refused_where_go_stops(text, message, column):
    assert syntax_error(text) == (message, 1, column)


def test_objects_and_arrays_keep_their_whole_text():
    doc = gojson.parse('{"a": [1, {"b": 2}]}')
    inner = doc.members[0].value
    assert (doc.raw, inner.raw, inner.items[1].raw) == (
        '{"a": [1, {"b": 2}]}',
        '[1, {"b": 2}]',
        '{"b": 2}',
    )


# --- line and column ----------------------------------------------------------------------------


def test_keys_and_values_know_their_line_and_column():
    doc = gojson.parse('{\n "a": 1,\n\n    "b": 2,\n  "c": [\n    true]}')
    assert [(m.key, m.line, m.column) for m in doc.members] == [
        ("a", 2, 2),
        ("b", 4, 5),
        ("c", 5, 3),
    ]
    assert [(v.line, v.column) for v in (doc.members[1].value, doc.members[2].value.items[0])] == [
        (4, 10),
        (6, 5),
    ]


def test_a_newline_in_a_string_is_placed_at_the_end_of_its_own_line():
    text = '{\n\n\n"a": "x\n"}'
    assert syntax_error(text) == ("invalid character '\\n' in string literal", 4, 8)


def test_a_tab_does_not_start_a_line():
    assert syntax_error('\t{"a" 1}') == ("invalid character '1' after object key", 1, 7)


def test_the_end_of_input_is_placed_after_the_last_character():
    assert syntax_error('{\n  "a": [1,\n  2') == ("unexpected end of JSON input", 3, 4)


# --- nesting: flannelnode's own limit (Go's is 10000), which no network config comes near -------

DEPTH = 200


@pytest.mark.parametrize(("opening", "closing"), [("[", "]"), ('{"a":', "}")])
def test_two_hundred_levels_of_nesting_are_read_and_one_more_is_refused(opening, closing):
    deepest = gojson.parse(opening * DEPTH + "1" + closing * DEPTH)
    for _ in range(DEPTH):
        deepest = (deepest.items or [m.value for m in deepest.members])[0]
    assert deepest.raw == "1"
    message, line, column = syntax_error(opening * (DEPTH + 1) + closing * (DEPTH + 1))
    assert (message, line, column) == (
        "nested more than 200 levels deep",
        1,
        len(opening) * DEPTH + 1,
    )


def test_input_that_ends_at_the_deepest_level_is_an_unexpected_end():
    assert syntax_error("[" * DEPTH) == ("unexpected end of JSON input", 1, DEPTH + 1)


@pytest.mark.parametrize("sibling", ["{}", '{"a": 1}', "[]", "[1]"])
def test_closed_objects_and_arrays_do_not_count_toward_the_nesting(sibling):
    many = "[" + ",".join([sibling] * 300) + "]"
    assert len(gojson.parse(many).items) == 300
    deep = "[" * (DEPTH - 1) + "]" * (DEPTH - 1)
    assert gojson.parse(f"[{sibling}, {deep}]").items[1].raw == deep
    too_deep = "[" * DEPTH + "]" * DEPTH
    assert syntax_error(f"[{sibling}, {too_deep}]")[0] == "nested more than 200 levels deep"


# --- decoding into Go types ---------------------------------------------------------------------

U64_MAX = "18446744073709551615"
I64_MIN, I64_MAX = "-9223372036854775808", "9223372036854775807"


@pytest.mark.parametrize(
    ("go_type", "text", "value"),
    [
        (UINT, "0", 0),
        (UINT, U64_MAX, 2**64 - 1),
        (INT, I64_MIN, -(2**63)),
        (INT, I64_MAX, 2**63 - 1),
        (DURATION, I64_MIN, -(2**63)),
        (DURATION, I64_MAX, 2**63 - 1),
        (DURATION, "-1", -1),
    ],
)
def test_an_integer_at_the_ends_of_its_go_type_is_accepted(go_type, text, value):
    slot = decoded(text, go_type)
    assert (slot.state, slot.value, slot.failed) == ("set", value, False)


@pytest.mark.parametrize(
    ("go_type", "text"),
    [
        (UINT, "-1"),
        (UINT, "18446744073709551616"),
        (INT, "-9223372036854775809"),
        (INT, "9223372036854775808"),
        (INT, "1.0"),
        (INT, "1e2"),
        (DURATION, "-9223372036854775809"),
        (DURATION, "9223372036854775808"),
    ],
)
def test_an_integer_past_its_go_type_or_not_an_integer_literal_is_refused(go_type, text):
    expected = f"cannot unmarshal number {text} into Go value of type {go_type.name}"
    assert refused(text, go_type) == expected


@pytest.mark.parametrize(
    ("text", "what"),
    [("true", "bool"), ("false", "bool"), ('"1"', "string"), ("[1]", "array"), ("{}", "object")],
)
@pytest.mark.parametrize("go_type", [UINT, INT, DURATION])
def test_a_number_type_refuses_other_json_kinds_by_name(go_type, text, what):
    assert refused(text, go_type) == f"cannot unmarshal {what} into Go value of type {go_type.name}"


@pytest.mark.parametrize(("text", "value"), [("true", True), ("false", False)])
def test_a_bool_is_true_or_false(text, value):
    slot = decoded(text, BOOL)
    assert (slot.state, slot.value) == ("set", value)


@pytest.mark.parametrize(
    ("text", "what"), [("1", "number"), ('"x"', "string"), ("[]", "array"), ("{}", "object")]
)
def test_a_bool_refuses_other_json_kinds(text, what):
    assert refused(text, BOOL) == f"cannot unmarshal {what} into Go value of type bool"


@pytest.mark.parametrize(
    ("text", "what"), [("true", "bool"), ("false", "bool"), ("[]", "array"), ("{}", "object")]
)
def test_a_string_refuses_other_json_kinds(text, what):
    assert refused(text, STRING) == f"cannot unmarshal {what} into Go value of type string"


def test_a_string_decodes_its_escapes():
    assert decoded('"a\\tb"', STRING).value == "a\tb"


STRINGS = gojson.slice_of(STRING)


def test_a_slice_takes_an_array_item_by_item():
    slot = decoded('["a", "b"]', STRINGS)
    assert (slot.state, slot.value) == ("set", ["a", "b"])
    assert decoded("[]", STRINGS).value == []


@pytest.mark.parametrize(
    ("text", "error"),
    [
        ('"a"', "cannot unmarshal string into Go value of type []string"),
        ("true", "cannot unmarshal bool into Go value of type []string"),
        ("{}", "cannot unmarshal object into Go value of type []string"),
        ('["a", 1]', "cannot unmarshal number into Go value of type string"),
    ],
)
def test_a_slice_refuses_anything_but_an_array_of_its_items(text, error):
    assert refused(text, STRINGS) == error


def test_a_raw_message_keeps_null_as_a_value():
    slot = decoded("null", RAW)
    assert (slot.state, slot.value.kind, slot.kept.key) == ("set", "null", "f")
    assert decoded('{"Type": "vxlan"}', RAW).value.raw == '{"Type": "vxlan"}'


def test_a_type_error_is_no_panic_and_names_the_struct_field():
    exc = decoded("24.0", UINT).errors[0][1]
    assert isinstance(exc, gojson.GoTypeError) and not exc.panic
    assert exc.in_field("Config", "SubnetLen") == (
        "json: cannot unmarshal number 24.0 into Go struct field Config.SubnetLen of type uint"
    )


# --- filling a struct ---------------------------------------------------------------------------

FIELDS = {
    "Name": STRING,
    "SubnetLen": UINT,
    "EnableIPv6": BOOL,
    "Networks": STRINGS,
    "IPv6SubnetMin": netfields.IP6_POINTER,
}


def fill(text: str) -> tuple[dict[str, gojson.Slot], list[str]]:
    slots, unknown = gojson.decode_struct(gojson.parse(text), FIELDS)
    return slots, [m.key for m in unknown]


def test_keys_after_an_unknown_one_still_fill_their_fields():
    slots, unknown = fill('{"other": 1, "Name": "x", "more": 2, "subnetlen": 24}')
    assert (slots["Name"].value, slots["SubnetLen"].value) == ("x", 24)
    assert unknown == ["other", "more"]


def test_keys_after_a_refused_value_still_fill_their_fields_and_a_later_good_one_sets_it():
    slots, _ = fill('{"SubnetLen": "24", "Name": "x", "subnetLen": 24}')
    slot = slots["SubnetLen"]
    assert (slot.state, slot.value, slot.kept.key, slot.failed) == ("set", 24, "subnetLen", True)
    assert [m.key for m, _ in slot.errors] == ["SubnetLen"]
    assert slots["Name"].value == "x"


def test_false_sets_a_bool_and_null_is_ignored():
    slots, _ = fill('{"EnableIPv6": false, "enableipv6": null}')
    slot = slots["EnableIPv6"]
    assert (slot.state, slot.value, slot.kept.key) == ("set", False, "EnableIPv6")
    assert [m.key for m in slot.ignored_nulls] == ["enableipv6"]
    assert [m.key for m in slot.members] == ["EnableIPv6", "enableipv6"]


def test_an_array_sets_a_slice_and_null_resets_it_then_keys_after_still_count():
    slots, _ = fill('{"Networks": ["a"], "networks": null, "Name": "x"}')
    slot = slots["Networks"]
    assert (slot.state, slot.value, slot.kept) == ("unset", None, None)
    assert not slot.failed and slot.ignored_nulls == []
    assert slots["Name"].value == "x"
    slots, _ = fill('{"Networks": null, "NETWORKS": ["b"]}')
    assert (slots["Networks"].state, slots["Networks"].value) == ("set", ["b"])


def test_a_string_sets_a_pointer_and_null_resets_it():
    slots, _ = fill('{"IPv6SubnetMin": "fd00::1"}')
    slot = slots["IPv6SubnetMin"]
    assert (slot.state, str(slot.value), slot.kept.key) == ("set", "fd00::1", "IPv6SubnetMin")
    slots, _ = fill('{"IPv6SubnetMin": "fd00::1", "ipv6subnetmin": null}')
    assert (slots["IPv6SubnetMin"].state, slots["IPv6SubnetMin"].value) == ("unset", None)


@pytest.mark.parametrize(
    ("key", "folded"),
    [
        ("name_1", "NAME_1"),
        ("\u017f", "S"),  # long s: its orbit holds S and s
        ("\u212a", "K"),  # Kelvin sign: K and k
        ("ß", "ß"),  # ß's orbit is ß and ẞ (upper() would say "SS")
        ("\u1e9e", "ß"),
        ("µ", "µ"),  # U+00B5, U+039C, U+03BC: the least is µ (upper() would say U+039C)
        ("é", "É"),
        ("\u212b", "Å"),  # Angstrom sign: Å, å
    ],
)
def test_fold_is_the_least_rune_of_each_case_orbit(key, folded):
    assert gojson.fold(key) == folded
