"""The network config checker's core (flannelnode.netlint): how values are shown, the messages
about keys (unknown, spelled in another case, given twice, read only by some releases) and the
explanations added to a JSON syntax error."""

from __future__ import annotations

import pytest

from flannelnode import gojson, netconf
from flannelnode.netlint import show

REFUSED = "(flanneld refuses the whole config and retries every second, forever)"
KNOWN = (
    "Known keys: Network, SubnetMin, SubnetMax, SubnetLen, Backend, EnableIPv4, EnableIPv6, "
    "IPv6Network, IPv6SubnetMin, IPv6SubnetMax, IPv6SubnetLen, EnableNFTables"
)


def shown(text: str, toml: bool | None = None) -> str:
    value = gojson.parse(text)
    return show(value) if toml is None else show(value, toml)


def about(findings: list[netconf.Finding], field: str) -> list[tuple[str, str, int | None]]:
    return [(f.level, f.message, f.line) for f in findings if f.field == field]


# -- show(): a value as the user wrote it


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('"10.1.0.0/16"', '"10.1.0.0/16"'),
        ('"café \\u00e9"', '"café é"'),  # not \u00e9: the user sees the characters
        ('"a\\"b"', '"a\\"b"'),
        ("true", "true"),
        ("false", "false"),
        ("null", "null"),
        ("24", "24"),
        ("2.4e1", "2.4e1"),  # as written, not as a float
        ("-0", "-0"),
    ],
)
def test_show_plain_values_as_written(text: str, expected: str) -> None:
    assert shown(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("{}", "an object"),
        ('{"Name": "x"}', "an object"),
        ('{"PSK": "secret", "Port": "8472"}', "an object"),  # never a value inside
        ('{"Type": "vxlan"}', 'an object with Type "vxlan"'),
        ('{"type": "host-gw"}', 'an object with Type "host-gw"'),  # Go folds the key
        ('{"Type": "vxlan", "Zone": "z", "VNI": "1"}', 'an object with Type "vxlan"'),
        ('{"Port": "1", "Type": "vxlan"}', 'an object with Type "vxlan"'),
        ('{"Type": 3}', "an object"),  # no type name to show
        ('{"Type": true}', "an object"),
        ('{"Type": null}', "an object"),
        ('{"Type": {"Type": "vxlan"}}', "an object"),
        ('{"Type": "udp", "type": "vxlan"}', 'an object with Type "vxlan"'),  # the last one wins
        ('{"Type": 1, "TYPE": "vxlan"}', 'an object with Type "vxlan"'),
        ('{"Type": "vxlan", "TYPE": 1}', "an object"),  # flannel reads 1 as the type
    ],
)
def test_show_an_object_by_kind_and_type_only(text: str, expected: str) -> None:
    assert shown(text) == expected
    assert shown(text, toml=False) == expected
    assert shown(text, toml=True) == expected.replace("an object", "a table")


def test_show_short_lists_of_plain_values_in_full() -> None:
    assert shown("[]") == "[]"
    assert shown('[1,2,  "x",true ,null]') == '[1, 2, "x", true, null]'
    assert shown('["10.1.0.0/16"]', toml=True) == '["10.1.0.0/16"]'


def test_show_a_list_of_60_characters_in_full_and_of_61_by_kind() -> None:
    sixty = '["10.1.0.0/16", "10.2.0.0/16", "10.3.0.0/16", "10.4.0.0/16"]'
    assert len(sixty) == 60
    assert shown(sixty) == sixty
    assert shown(sixty.replace(" ", "")) == sixty
    sixty_one = sixty.replace("10.4.", "10.40.")
    assert len(sixty_one) == 61
    assert shown(sixty_one) == "an array"
    assert shown(sixty_one, toml=True) == "a list"
    fifty_nine = sixty.replace("10.1.0.0/16", "10.0.0.0/8")
    assert len(fifty_nine) == 59
    assert shown(fifty_nine) == fifty_nine


@pytest.mark.parametrize("text", ["[{}]", "[[]]", '[1, {"Type": "vxlan"}]', "[[1]]"])
def test_show_a_list_holding_tables_or_lists_by_kind(text: str) -> None:
    assert shown(text) == "an array"
    assert shown(text, toml=False) == "an array"
    assert shown(text, toml=True) == "a list"


# -- keys: unknown, in another case, given twice


def test_an_unknown_key_names_its_value_and_the_known_keys() -> None:
    findings = netconf.lint_json(
        '{"Network": "10.1.0.0/16", "Backend": {"Type": "vxlan"}, "Foo": 1}'
    )
    assert about(findings, "Foo") == [
        ("warning", f"Foo: unknown key (value 1); flannel ignores it silently. {KNOWN}", 1)
    ]


@pytest.mark.parametrize(
    ("key", "hint"),
    [
        ("Bakend", "Backend"),
        ("SubnetLength", "SubnetLen"),
        ("IPv6SubnetMaximum", "IPv6SubnetMax"),
        ("Networks6", "Network"),  # v0.27 reads no Networks: the closest key it does read
    ],
)
def test_an_unknown_key_close_to_a_known_one_gets_a_hint(key: str, hint: str) -> None:
    network = {"Network": "10.1.0.0/16", "Backend": {"Type": "vxlan"}, key: "x"}
    findings = netconf.lint(network)
    assert about(findings, key) == [
        (
            "warning",
            f'{key}: unknown key (value "x"); flannel ignores it silently. Did you mean {hint}? '
            f"{KNOWN}",
            None,
        )
    ]


def test_an_unknown_backend_key_names_the_backend_keys() -> None:
    findings = netconf.lint(
        {"Network": "10.1.0.0/16", "Backend": {"Type": "host-gw", "EnableIPv6": True}}
    )
    # a Config key inside Backend is just unknown there, whatever release reads it at the top
    assert about(findings, "Backend.EnableIPv6") == [
        (
            "warning",
            "Backend.EnableIPv6: unknown key (value true); flannel ignores it silently. "
            "Known keys: Type",
            None,
        )
    ]


def test_a_key_only_another_release_reads() -> None:
    old = netconf.lint_json(
        '{"Network": "10.1.0.0/16",\n "enableipv6": false,\n "Backend": {"Type": "vxlan"}}',
        flannel_version=(0, 14, 1),
    )
    assert about(old, "enableipv6") == [
        (
            "warning",
            "enableipv6: flannel v0.14.1 does not read it (flannel reads EnableIPv6 from v0.15.0 "
            "on) and ignores it silently (value false). Remove it, or set [flannel] version to a "
            "release that reads it",
            2,
        )
    ]
    new = netconf.lint({"Network": "10.1.0.0/16", "Backend": {"Type": "vxlan"}, "Networks": []})
    assert about(new, "Networks") == [
        (
            "warning",
            "Networks: this flannel does not read it (flannel reads Networks from v0.20.0 to "
            "before v0.25.0) and ignores it silently (value []). Remove it, or set [flannel] "
            "version to a release that reads it",
            None,
        )
    ]


@pytest.mark.parametrize("key", ["network", "NETWORK", "NetWork", "networK"])
def test_a_key_in_another_case_is_read_but_named(key: str) -> None:
    findings = netconf.lint_json(f'{{"{key}": "10.1.0.0/16", "Backend": {{"Type": "vxlan"}}}}')
    assert about(findings, key) == [
        (
            "warning",
            f"{key}: flannel reads this as Network (Go's JSON decoder ignores case), but other "
            "tools do not: write it Network",
            1,
        )
    ]


def test_a_key_spelled_exactly_is_not_named() -> None:
    findings = netconf.lint_json('{"Network": "10.1.0.0/16", "Backend": {"Type": "vxlan"}}')
    assert [f.level for f in findings] == ["info"]


JSON_TWICE = """{
  "Network": "10.1.0.0/16",
  "EnableIPv6": true,
  "IPv6Network": "fd00::/48",
  "IPv6SubnetMin": "fd00:0:0:1::",
  "ipv6subnetmin": "fd00:0:0:2::",
  "IPV6SUBNETMIN": "fd00:0:0:3::",
  "Ipv6SubnetMin": null,
  "SubnetLen": 24,
  "subnetLen": null,
  "NETWORK": "10.1.0.0/16",
  "Backend": {"Type": "vxlan"}
}"""


def test_a_json_key_given_twice_points_at_the_one_flannel_keeps() -> None:
    findings = netconf.lint_json(JSON_TWICE)
    assert about(findings, "SubnetLen") == [
        (
            "warning",
            "SubnetLen: given 2 times (SubnetLen at 9:3, subnetLen at 10:3); flannel decodes each "
            "in turn and keeps the one at 9:3, 24. Keep one",
            9,  # the kept one, not the last: a null leaves a number as it is
        )
    ]
    assert about(findings, "subnetLen") == [
        ("warning", "subnetLen: null changes nothing here: flannel keeps 24. Remove it", 10)
    ]
    network = [(lv, msg, line) for lv, msg, line in about(findings, "Network") if lv != "info"]
    assert network == [
        (
            "warning",
            "Network: given 2 times (Network at 2:3, NETWORK at 11:3); flannel decodes each in "
            'turn and keeps the one at 11:3, "10.1.0.0/16". Keep one',
            11,
        )
    ]


def test_a_json_key_given_four_times_the_last_null_points_at_the_last() -> None:
    findings = netconf.lint_json(JSON_TWICE)
    assert about(findings, "IPv6SubnetMin") == [
        (
            "warning",
            "IPv6SubnetMin: given 4 times (IPv6SubnetMin at 5:3, ipv6subnetmin at 6:3, "
            "IPV6SUBNETMIN at 7:3, Ipv6SubnetMin at 8:3); flannel decodes each in turn and keeps "
            "none of them: the last one, null, resets it to the default. Keep one",
            8,
        )
    ]


def test_toml_keys_that_fold_alike_are_an_error_on_the_last() -> None:
    findings = netconf.lint(
        {
            "Network": "10.1.0.0/16",
            "network": "10.2.0.0/16",
            "NETWORK": "10.3.0.0/16",
            "Backend": {"Type": "vxlan"},
        }
    )
    assert [(f.level, f.field, f.message) for f in findings if f.level == "error"] == [
        (
            "error",
            "NETWORK",
            "NETWORK: Network and network and NETWORK are one key to flannel, which matches keys "
            "ignoring case; in the net-conf.json flannelnode writes, flannel would take the last, "
            'NETWORK = "10.3.0.0/16". Keep only one, spelled Network',
        )
    ]


# -- JSON syntax errors, explained


def syntax(text: str) -> tuple[str, int | None, int | None]:
    findings = netconf.lint_json(text)
    assert len(findings) == 1 and findings[0].level == "error" and findings[0].field == ""
    return findings[0].message, findings[0].line, findings[0].column


@pytest.mark.parametrize(
    ("text", "error", "where", "hint"),
    [
        ('{"Network": "10.1.0.0/16",}', "invalid character '}' looking for beginning of object "
         "key string", (1, 27), "JSON allows no comma before } or ]: remove it"),
        ('{"Networks": ["10.1.0.0/16",]}', "invalid character ']' looking for beginning of "
         "value", (1, 29), "JSON allows no comma before } or ]: remove it"),
        # the comma is found on the lines before the error, and before it on the same line
        ('{\n  "Network": "10.1.0.0/16",\n}', "invalid character '}' looking for beginning of "
         "object key string", (3, 1), "JSON allows no comma before } or ]: remove it"),
        ('{\n "Network": "10.1.0.0/16", }', "invalid character '}' looking for beginning of "
         "object key string", (2, 28), "JSON allows no comma before } or ]: remove it"),
        ('{\n  # pods\n}', "invalid character '#' looking for beginning of object key string",
         (2, 3), "JSON has no comments: remove them"),
        ("{'Network': '10.1.0.0/16'}", "invalid character '\\'' looking for beginning of object "
         "key string", (1, 2), "JSON strings and keys take double quotes"),
        ('\ufeff{"Network": "10.1.0.0/16"}', "invalid character 'ï' looking for beginning of "
         "value", (1, 1), "The file starts with a byte order mark: save it as UTF-8 without one"),
        ('{Network: "10.1.0.0/16"}', "invalid character 'N' looking for beginning of object key "
         "string", (1, 2), "Keys need double quotes"),
        ('{"Network": "10.1.0.0/16"\n "SubnetLen": 24}', "invalid character '\"' after object "
         "key:value pair", (2, 2), "A comma is missing before this"),
        ('{"Networks": ["10.1.0.0/16" "10.2.0.0/16"]}', "invalid character '\"' after array "
         "element", (1, 29), "A comma is missing before this"),
        ('{"Network": "10.1.0.0/16"', "unexpected end of JSON input", (1, 26),
         "The text is cut short (or empty)"),
        ("", "unexpected end of JSON input", (1, 1), "The text is cut short (or empty)"),
        ('{"EnableIPv4": tru', "invalid character ' ' in literal true (expecting 'e')", (1, 19),
         "The text is cut short (or empty)"),
        ('{"SubnetLen": 2', "unexpected end of JSON input", (1, 16),
         "The text is cut short (or empty)"),
        ('{"Network": "10.1.0.0/16",' + 300 * " " + '"SubnetLen": 2', "unexpected end of JSON "
         "input", (1, 341), "The text is cut short (or empty)"),
        ("\n\n", "unexpected end of JSON input", (3, 1), "The text is cut short (or empty)"),
        # no comma there: a value is missing
        ('{"Network": }', "invalid character '}' looking for beginning of value", (1, 13),
         "A value is missing before this"),
        ('{"Network":\n}', "invalid character '}' looking for beginning of value", (2, 1),
         "A value is missing before this"),
        ('[,\n ]', "invalid character ',' looking for beginning of value", (1, 2), None),
        # a fullwidth brace starts with the byte a byte order mark starts with: it is not one
        ('\uff5b"Network": "10.1.0.0/16"}', "invalid character 'ï' looking for beginning of "
         "value", (1, 1), None),
        # a bracket that closes the wrong one
        ('{"Network": "10.1.0.0/16"]', "invalid character ']' after object key:value pair",
         (1, 26), "This bracket does not close the one opened last ({ closes with }, [ with ])"),
        ('{"Networks": ["10.1.0.0/16"}', "invalid character '}' after array element", (1, 28),
         "This bracket does not close the one opened last ({ closes with }, [ with ])"),
    ],
)  # fmt: skip
def test_a_syntax_error_says_why_in_words(
    text: str, error: str, where: tuple[int, int], hint: str | None
) -> None:
    said = f" {REFUSED}. {hint}" if hint else f" {REFUSED}"
    assert syntax(text) == (f"not JSON as flannel reads it: {error}{said}", *where)


@pytest.mark.parametrize(
    ("text", "error", "where"),
    [
        # a byte order mark not at the start of the file is a stray character, nothing more
        ('\n\ufeff{"Network": "10.1.0.0/16"}', "invalid character 'ï' looking for beginning of "
         "value", (2, 1)),
        ('\n \ufeff{"Network": "10.1.0.0/16"}', "invalid character 'ï' looking for beginning of "
         "value", (2, 2)),
        ('{"Network": \ufeff}', "invalid character 'ï' looking for beginning of value", (1, 13)),
        ("x", "invalid character 'x' looking for beginning of value", (1, 1)),
        ('{"Network": "10.1.0.0/16"} {}', "invalid character '{' after top-level value", (1, 28)),
        ('{"SubnetLen": 2.}', "invalid character '}' after decimal point in numeric literal",
         (1, 17)),
        ('{"EnableIPv6": tru}', "invalid character '}' in literal true (expecting 'e')",
         (1, 19)),
    ],
)  # fmt: skip
def test_a_syntax_error_without_a_usual_reason_gets_no_hint(
    text: str, error: str, where: tuple[int, int]
) -> None:
    assert syntax(text) == (f"not JSON as flannel reads it: {error} {REFUSED}", *where)
