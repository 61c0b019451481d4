"""Go's encoding/json as flanneld decodes net-conf.json: syntax errors in Go's words with line
and column, key matching, the later key winning, null per field type, numbers per Go type."""

from __future__ import annotations

import pytest

from flannelnode import gojson, netfields
from flannelnode.gojson import BOOL, INT, STRING, UINT
from flannelnode.seed import seeder

OBJECT_KEY = "looking for beginning of object key string"
SYNTAX = [
    ('{"Network": "10.0.0.0/8",}', 1, 26, f"invalid character '}}' {OBJECT_KEY}"),
    (
        '{\n  "Network": "10.0.0.0/8"\n  "SubnetLen": 24\n}',
        3,
        3,
        "invalid character '\"' after object key:value pair",
    ),
    ("{'Network': 1}", 1, 2, f"invalid character '\\'' {OBJECT_KEY}"),
    ('{"a": 1} // note', 1, 10, "invalid character '/' after top-level value"),
    ('{"a": 01}', 1, 8, "invalid character '1' after object key:value pair"),
    ('{"a": NaN}', 1, 7, "invalid character 'N' looking for beginning of value"),
    ('{"a": tru}', 1, 10, "invalid character '}' in literal true (expecting 'e')"),
    ('{"a": "x\ty"}', 1, 9, "invalid character '\\t' in string literal"),
    ('{"a": "\\x"}', 1, 9, "invalid character 'x' in string escape code"),
    ('{"a": 1.}', 1, 9, "invalid character '}' after decimal point in numeric literal"),
    ("\ufeff{}", 1, 1, "invalid character '\u00ef' looking for beginning of value"),
    ('{"a": [1 2]}', 1, 10, "invalid character '2' after array element"),
    ('{"a": 1', 1, 8, "unexpected end of JSON input"),
    ("", 1, 1, "unexpected end of JSON input"),
]


@pytest.mark.parametrize(("text", "line", "column", "message"), SYNTAX)
def test_syntax_errors_are_gos_with_line_and_column(text, line, column, message):
    with pytest.raises(gojson.JSONSyntaxError) as exc:
        gojson.parse(text)
    assert (exc.value.line, exc.value.column, exc.value.message) == (line, column, message)


def test_values_keep_their_spelling_and_position():
    doc = gojson.parse(
        '{\n  "n": -0.5e+3,\n  "s": "a\\u00e9\\ud83d\\ude00\\ud800",\n  "l": [null]}'
    )
    n, s, items = doc.members
    assert (n.key, n.line, n.column, n.value.kind, n.value.raw) == ("n", 2, 3, "number", "-0.5e+3")
    assert s.value.text == "aé😀\ufffd"  # a lone surrogate becomes U+FFFD, as in Go
    assert [v.kind for v in items.value.items] == ["null"]


@pytest.mark.parametrize(
    ("key", "field"),
    [("network", "NETWORK"), ("NETWORK", "NETWORK"), ("\u017fubnetLen", "SUBNETLEN"),
     ("enable\u0131pv4", "ENABLE\u0131PV4"), ("\u212aey", "KEY"), ("\u0130", "\u0130")],
)  # fmt: skip
def test_fold_is_gos_fold_name(key, field):
    # Go's unicode tables (caseOrbit) fold the Turkic dotless i and dotted I only to themselves
    assert gojson.fold(key) == field


def test_fold_of_flannelnode_and_of_the_node_seeder_agree():
    keys = ["Network", "\u017f", "\u212a", "\u0131", "\u0130", "é", "ß", "ς", "µ", "Σ"]
    assert [gojson.fold(k) for k in keys] == [seeder().go_fold(k) for k in keys]


FIELDS = {"EnableIPv4": BOOL, "SubnetLen": UINT, "Name": STRING, "VNI": INT}


def decode(text: str):
    return gojson.decode_struct(gojson.parse(text), FIELDS)


def test_exact_name_then_case_insensitive_and_the_last_one_wins():
    slots, unknown = decode('{"subnetlen": 20, "SubnetLen": 24, "SUBNETLEN": 26, "other": 1}')
    slot = slots["SubnetLen"]
    assert [m.key for m in slot.members] == ["subnetlen", "SubnetLen", "SUBNETLEN"]
    assert (slot.value, slot.kept.key) == (26, "SUBNETLEN")
    assert [m.key for m in unknown] == ["other"]


def test_null_is_a_no_op_for_plain_values():
    slots, _ = decode('{"SubnetLen": 24, "subnetLen": null, "EnableIPv4": null, "Name": null}')
    assert slots["SubnetLen"].value == 24 and slots["SubnetLen"].kept.key == "SubnetLen"
    assert slots["EnableIPv4"].state == "unset"  # the default stays
    assert [m.key for m in slots["SubnetLen"].ignored_nulls] == ["subnetLen"]


def test_null_resets_a_pointer_and_fails_flannels_ip_types():
    fields = {"IPv6SubnetMin": netfields.IP6_POINTER, "SubnetMin": netfields.IP4}
    doc = gojson.parse('{"IPv6SubnetMin": "fd00::", "ipv6subnetmin": null, "SubnetMin": null}')
    slots, _ = gojson.decode_struct(doc, fields)
    assert slots["IPv6SubnetMin"].state == "unset"
    assert [e.text for _, e in slots["SubnetMin"].errors] == ["Invalid IP address format"]


@pytest.mark.parametrize(
    ("value", "go_type", "error"),
    [
        ('"24"', UINT, "cannot unmarshal string into Go value of type uint"),
        ("24.0", UINT, "cannot unmarshal number 24.0 into Go value of type uint"),
        ("2e1", UINT, "cannot unmarshal number 2e1 into Go value of type uint"),
        ("-0", UINT, "cannot unmarshal number -0 into Go value of type uint"),
        ("18446744073709551616", UINT, "cannot unmarshal number 18446744073709551616"),
        ('"true"', BOOL, "cannot unmarshal string into Go value of type bool"),
        ("1", STRING, "cannot unmarshal number into Go value of type string"),
    ],
)
def test_numbers_and_types_as_go_decodes_them(value, go_type, error):
    doc = gojson.parse('{"f": ' + value + "}")
    slots, _ = gojson.decode_struct(doc, {"f": go_type})
    assert error in slots["f"].errors[0][1].text
    assert gojson.decode_struct(gojson.parse('{"f": -0}'), {"f": INT})[0]["f"].value == 0


@pytest.mark.parametrize(
    ("go_type", "text", "result", "panic"),
    [
        (netfields.IP4NET, '"10.1.2.3/16"', "10.1.0.0/16", False),
        (netfields.IP4NET, '"10.0.0.0/08"', "10.0.0.0/8", False),
        (netfields.IP4NET, '"10.0.0.0\\/8"', "invalid CIDR address: 10.0.0.0\\/8", False),
        (netfields.IP4NET, '"fd00::/48"', "Address is not an IPv4 address", True),
        (netfields.IP4NET, "null", "invalid CIDR address: null", False),
        (netfields.IP4NET, "10", "invalid CIDR address: 10", False),
        (netfields.IP6NET, '"fd00::/129"', "invalid CIDR address: fd00::/129", False),
        (netfields.IP6NET, '"fe80::%eth0/64"', "invalid CIDR address: fe80::%eth0/64", False),
        (netfields.IP4, '"::ffff:10.1.0.0"', "10.1.0.0", False),
        (netfields.IP4, '"fd00::1"', "Address is not an IPv4 address", True),
        (netfields.IP4, '"010.1.0.0"', "Invalid IP address format", False),
    ],
)
def test_flannels_ip_types_parse_the_raw_token(go_type, text, result, panic):
    slots, _ = gojson.decode_struct(gojson.parse('{"f": ' + text + "}"), {"f": go_type})
    slot = slots["f"]
    if slot.errors:
        exc = slot.errors[0][1]
        assert (exc.text, exc.panic) == (result, panic)
    else:
        value = slot.value
        assert str(getattr(value, "network", value)) == result and not panic
