"""The node seeder's pure parts, without etcd: endpoints, the one rendering, placeholders, the
flannel-version switch, TLS failure classes, converge() over an in-memory store, the command
line. tests/test_seed.py runs the whole seeder against a real 3-member TLS etcd."""

from __future__ import annotations

import calendar
import contextlib
import http.server
import importlib.machinery
import importlib.util
import json
import ssl
import threading
import time
from collections.abc import Iterator
from types import SimpleNamespace

import pytest

from .conftest import REPO
from .etcd_cluster import Certs, make_certs

SCRIPT = REPO / "scripts" / "flannel-seed-etcd"
_loader = importlib.machinery.SourceFileLoader("flannel_seed_etcd", str(SCRIPT))
seeder = importlib.util.module_from_spec(importlib.util.spec_from_loader(_loader.name, _loader))
_loader.exec_module(seeder)

PLACEHOLDER = "<secret: delivered only by the cloud-init user-data (build.py userdata)>"


def test_endpoints_keep_their_order_and_default_to_etcds_port() -> None:
    assert seeder.parse_endpoints(" https://a:2380/, ,http://[::1]:4001,https://b") == [
        ("https://a:2380", "https", "a", 2380),
        ("http://[::1]:4001", "http", "::1", 4001),
        ("https://b", "https", "b", 2379),
    ]


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("https://a:0", "endpoint 'https://a:0': port 0 is not a port; use 1 to 65535"),
        ("https://a:70000", "endpoint 'https://a:70000' is not a valid URL"),
        ("https://a:23\t79", "endpoint 'https://a:23\\t79' contains whitespace or a control"),
        ("https://a:23\x0079", "contains whitespace or a control character"),
        ("unix:///run/etcd.sock", "'unix:///run/etcd.sock' is not an http:// or https:// URL"),
        ("https://:2379", "endpoint 'https://:2379' is not an http:// or https:// URL with a host"),
        (" , ", "no etcd endpoints given (--endpoints https://HOST:2379,...)"),
    ],
)
def test_an_endpoint_that_is_not_an_etcd_url_is_bad_input(text: str, complaint: str) -> None:
    with pytest.raises(seeder.BadInput) as exc:
        seeder.parse_endpoints(text)
    assert complaint in str(exc.value)
    assert exc.value.exit_code == 2


def test_the_rendering_sorts_keys_as_flannel_folds_them_and_keeps_numbers_as_written() -> None:
    text = '{"network": "10.0.0.0/8", "Backend": {"VNI": 1.50, "Type": "vxlan", "X": []}, "E": {}}'
    assert seeder.canonical(text) == (
        "{\n"
        '  "Backend": {\n'
        '    "Type": "vxlan",\n'
        '    "VNI": 1.50,\n'
        '    "X": []\n'
        "  },\n"
        '  "E": {},\n'
        '  "network": "10.0.0.0/8"\n'
        "}\n"
    )


def test_the_rendering_of_lists_and_escapes() -> None:
    text = '{"L": [1, "é", {"b": null, "a": true}], "n": 12345678901234567890}'
    assert seeder.canonical(text) == (
        "{\n"
        '  "L": [\n'
        "    1,\n"
        '    "\\u00e9",\n'
        "    {\n"
        '      "a": true,\n'
        '      "b": null\n'
        "    }\n"
        "  ],\n"
        '  "n": 12345678901234567890\n'
        "}\n"
    )


@pytest.mark.parametrize(
    ("key", "folded"),
    [
        ("Network", "NETWORK"),
        ("\u212aind", "KIND"),
        ("\u017fubnet", "SUBNET"),
        ("é", "É"),
        # ß upper-cases to "SS" (two runes): Go's SimpleFold orbit is ß and ẞ, whose least is ß
        ("ß", "ß"),
        ("\u1e9e", "ß"),
        # Go's caseOrbit keeps the Turkic dotless i and dotted I apart from i and I
        ("enable\u0131pv4", "ENABLE\u0131PV4"),
        ("\u0130", "\u0130"),
    ],
)
def test_keys_fold_as_gos_encoding_json(key: str, folded: str) -> None:
    # the Kelvin sign and the long s fold with k and s in Go's unicode.SimpleFold orbits
    assert seeder.go_fold(key) == folded


@pytest.mark.parametrize("constant", ["NaN", "Infinity", "-Infinity"])
def test_json_constants_go_does_not_know_are_refused(constant: str) -> None:
    with pytest.raises(seeder.BadInput) as exc:
        seeder.parse_config('{"Network": ' + constant + "}", "net-conf.json")
    assert str(exc.value) == (
        f"net-conf.json is not valid JSON: {constant} is not JSON (Go's decoder, and so flannel, "
        "refuses it)"
    )


@pytest.mark.parametrize(
    ("text", "complaint"),
    [
        ("{not json", "net-conf.json is not valid JSON"),
        ("[]", "net-conf.json must be a non-empty JSON object"),
        ("{}", "must be a non-empty JSON object"),
        ('"Network"', "must be a non-empty JSON object"),
        ("[" * 100_000 + "]" * 100_000, "net-conf.json is nested too deep"),
    ],
)
def test_a_network_config_that_is_no_object_is_bad_input(text: str, complaint: str) -> None:
    with pytest.raises(seeder.BadInput) as exc:
        seeder.parse_config(text, "net-conf.json")
    assert complaint in str(exc.value)


def test_every_placeholder_is_named_by_its_path() -> None:
    config = {
        "PSK": PLACEHOLDER,
        "Network": "10.0.0.0/8",
        "Backend": {"Type": "ipsec", "PSK": PLACEHOLDER, "L": [0, [PLACEHOLDER]]},
    }
    with pytest.raises(seeder.BadInput) as exc:
        seeder.parse_config(json.dumps(config), "net-conf.json")
    assert str(exc.value).startswith(
        "net-conf.json: PSK, Backend.PSK, Backend.L[1][0] holds a placeholder, not the secret"
    )


def test_the_placeholder_is_flannelnodes() -> None:
    from flannelnode.netfields import SECRET_PLACEHOLDER

    assert seeder.SECRET_PLACEHOLDER == PLACEHOLDER == SECRET_PLACEHOLDER


@pytest.mark.parametrize(
    ("version", "api"),
    [
        ("v0.17.0", "v2"),
        ("v0.17.9", "v2"),
        ("0.9", "v2"),
        ("v0.18.0", "v3"),
        ("v0.18", "v3"),
        (" v0.27.4 ", "v3"),
        ("v1.0.0-rc1", "v3"),
        ("v0.26.0+build", "v3"),
    ],
)
def test_flannel_v0_18_moved_to_etcds_v3_api(version: str, api: str) -> None:
    assert seeder.api_for_version(version) == api


@pytest.mark.parametrize("version", ["latest", "v0", "v0.x.1", "0.18 beta", ""])
def test_a_version_that_is_not_one_is_bad_input(version: str) -> None:
    with pytest.raises(seeder.BadInput, match=r"flannel version .* is not like v0\.17\.0"):
        seeder.api_for_version(version)


def test_the_key_is_config_under_the_prefix() -> None:
    assert seeder.config_key("/coreos.com/network") == "/coreos.com/network/config"
    assert seeder.config_key("/k8s/network//") == "/k8s/network/config"
    assert seeder.config_key("/") == "/config"
    with pytest.raises(seeder.BadInput, match="prefix 'k8s/network' must start with /"):
        seeder.config_key("k8s/network")


def test_certificate_times_read_as_the_ssl_module_prints_them() -> None:
    assert seeder._cert_time("Jan  1 00:00:00 2001 GMT") == (2001, 1, 1, 0, 0, 0)
    assert seeder._cert_time("Dec 31 23:59:58 2990 GMT") == (2990, 12, 31, 23, 59, 58)


def test_cert_and_key_go_together() -> None:
    with pytest.raises(seeder.BadInput, match="--cert and --key go together"):
        seeder.tls_context(None, "client.pem", None)
    with pytest.raises(seeder.BadInput, match="--cert and --key go together"):
        seeder.tls_context(None, None, "client-key.pem")


def test_an_unreadable_ca_is_bad_input(tmp_path) -> None:
    with pytest.raises(seeder.BadInput, match=f"cannot load the CA certificate {tmp_path}/no.pem"):
        seeder.tls_context(str(tmp_path / "no.pem"), None, None)


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return make_certs(tmp_path_factory.mktemp("pki"))


def test_a_key_that_does_not_load_is_named_for_what_went_wrong(certs: Certs, tmp_path) -> None:
    def refusal(key) -> str:
        with pytest.raises(seeder.BadInput) as exc:
            seeder.tls_context(str(certs.ca), str(certs.cert), str(key))
        return str(exc.value)

    said = f"cannot load the client certificate {certs.cert} with key"
    assert refusal(certs.other_key) == (
        f"{said} {certs.other_key}: the key does not belong to the certificate"
    )
    assert (
        refusal(tmp_path / "none.pem") == f"{said} {tmp_path}/none.pem: No such file or directory"
    )
    (tmp_path / "junk.pem").write_text("not a key\n")
    junk = refusal(tmp_path / "junk.pem")
    assert junk.startswith(f"{said} {tmp_path}/junk.pem: ") and "does not belong" not in junk


def test_a_certificate_is_valid_from_its_first_second_to_its_last(certs: Certs, monkeypatch):
    decoded = ssl._ssl._test_decode_cert(str(certs.cert))  # what the ssl module reads
    first, last = (
        calendar.timegm(time.strptime(decoded[k], "%b %d %H:%M:%S %Y %Z"))
        for k in ("notBefore", "notAfter")
    )

    def at(seconds: int) -> None:
        monkeypatch.setattr(seeder, "time", SimpleNamespace(gmtime=lambda: time.gmtime(seconds)))
        seeder.check_validity(str(certs.cert))

    at(first)
    at(last)
    with pytest.raises(seeder.BadInput, match="is not valid before"):
        at(first - 1)
    with pytest.raises(seeder.BadInput, match="expired on"):
        at(last + 1)


def _ssl_error(reason: str, text: str) -> ssl.SSLError:
    exc = ssl.SSLError(1, text)
    exc.reason = reason
    return exc


URL = "https://127.0.0.1:2379"


@pytest.mark.parametrize(
    ("exc", "cert", "kind", "said"),
    [
        (
            _ssl_error(
                "CERTIFICATE_VERIFY_FAILED", "certificate verify failed: certificate has expired"
            ),
            None,
            seeder.SeedError,
            f"the server certificate of {URL} has expired",
        ),
        (
            ssl.CertificateError("hostname '127.0.0.1' doesn't match 'etcd-0'"),
            None,
            seeder.SeedError,
            f"the server certificate of {URL} is not valid for that address: ",
        ),
        (
            _ssl_error(
                "CERTIFICATE_VERIFY_FAILED", "certificate verify failed: IP address mismatch"
            ),
            None,
            seeder.SeedError,
            f"the server certificate of {URL} is not valid for that address",
        ),
        (
            _ssl_error(
                "CERTIFICATE_VERIFY_FAILED", "certificate verify failed: unable to get local"
            ),
            None,
            seeder.SeedError,
            f"the CA at ca.pem does not sign the server certificate of {URL}",
        ),
        (  # the reason alone, or the message alone, says the verification failed
            _ssl_error("CERTIFICATE_VERIFY_FAILED", "[SSL] unknown error (_ssl.c:1006)"),
            None,
            seeder.SeedError,
            f"the CA at ca.pem does not sign the server certificate of {URL}",
        ),
        (
            _ssl_error("", "certificate verify failed: unable to get local issuer certificate"),
            None,
            seeder.SeedError,
            f"the CA at ca.pem does not sign the server certificate of {URL}",
        ),
        (
            _ssl_error("TLSV13_ALERT_CERTIFICATE_REQUIRED", "alert certificate required"),
            None,
            seeder.SeedError,
            f"{URL} requires a client certificate: pass --cert and --key",
        ),
        (
            _ssl_error("SSLV3_ALERT_CERTIFICATE_EXPIRED", "alert certificate expired"),
            "c.pem",
            seeder.SeedError,
            f"{URL} rejected the client certificate c.pem: it has expired",
        ),
        (
            _ssl_error("TLSV1_ALERT_UNKNOWN_CA", "alert unknown ca"),
            "c.pem",
            seeder.SeedError,
            "rejected the client certificate c.pem: not signed by a CA the server trusts",
        ),
        (
            _ssl_error("SSLV3_ALERT_HANDSHAKE_FAILURE", "alert handshake failure"),
            "c.pem",
            seeder.SeedError,
            f"the TLS handshake with {URL} failed: SSLV3_ALERT_HANDSHAKE_FAILURE",
        ),
        (
            _ssl_error("UNEXPECTED_EOF_WHILE_READING", "EOF occurred in violation of protocol"),
            "c.pem",
            seeder.Transient,
            "EOF occurred in violation of protocol",
        ),
    ],
    ids=[
        "server-expired",
        "hostname",
        "ip-mismatch",
        "unknown-ca",
        "verify-reason-only",
        "verify-message-only",
        "client-cert-required",
        "client-expired",
        "client-untrusted",
        "no-common-cipher",
        "eof-is-transient",
    ],
)
def test_tls_failures_say_what_to_fix_or_are_tried_again(exc, cert, kind, said) -> None:
    failure = seeder.tls_failure(exc, URL, "ca.pem" if kind is seeder.SeedError else None, cert)
    assert type(failure) is kind
    assert said in str(failure)


def test_without_a_ca_the_system_default_is_named() -> None:
    exc = _ssl_error("CERTIFICATE_VERIFY_FAILED", "certificate verify failed: self-signed")
    assert "the CA at (system default) does not sign" in str(
        seeder.tls_failure(exc, URL, None, None)
    )


@pytest.mark.parametrize(
    ("exc", "reason"),
    [
        (TimeoutError(), "no answer within the request timeout"),
        (ConnectionRefusedError(111, "Connection refused"), "connection refused"),
        (
            FileNotFoundError(2, "No such file or directory", "/x.pem"),
            "No such file or directory (/x.pem)",
        ),
        (OSError(13, "Permission denied"), "Permission denied"),
        (ValueError("bad"), "bad"),
        (ValueError(), "ValueError"),
    ],
)
def test_a_reason_is_one_short_phrase(exc: Exception, reason: str) -> None:
    assert seeder._reason(exc) == reason


# -- converge(): put-if-absent, read back, compare-and-swap under --force


WANTED = seeder.canonical('{"Network": "10.1.0.0/16"}')
OTHER = '{"Network": "10.2.0.0/16"}'


class Store:
    """etcd's answers to put-if-absent / compare-and-swap and get, in order."""

    key = "/coreos.com/network/config"

    def __init__(self, puts: list[tuple[bool, str | None, int]], read: str | None = None) -> None:
        self.puts, self.read = puts, read
        self.asked: list[int | None] = []  # the revision each put compared with

    def put(self, value: str, revision: int | None) -> tuple[bool, str | None, int]:
        self.asked.append(revision)
        written, current, rev = self.puts.pop(0)
        if written:
            self.read = value
        return written, current, rev

    def get(self) -> tuple[str | None, int]:
        return self.read, 9


def test_a_fresh_key_is_written_and_read_back() -> None:
    store = Store([(True, None, 4)])
    assert seeder.converge(store, WANTED.rstrip("\n"), WANTED, force=False) == ("written", 4)
    assert store.asked == [None]


def test_the_same_config_in_other_words_is_unchanged() -> None:
    same = '{ "Network" :\n "10.1.0.0/16" }'  # other spacing: the same rendering
    store = Store([(False, same, 7)])
    assert seeder.converge(store, WANTED.rstrip("\n"), WANTED, force=False) == ("unchanged", 7)


def test_another_config_is_a_conflict_with_a_diff() -> None:
    store = Store([(False, OTHER, 7)])
    with pytest.raises(seeder.Conflict) as exc:
        seeder.converge(store, WANTED.rstrip("\n"), WANTED, force=False)
    text = str(exc.value)
    assert text.startswith(f"{Store.key} already holds a different network config; pass --force")
    assert f"--- {Store.key} (in etcd)" in text and f"+++ {Store.key} (wanted)" in text
    assert '-  "Network": "10.2.0.0/16"' in text and '+  "Network": "10.1.0.0/16"' in text
    assert exc.value.exit_code == 3


def test_force_swaps_at_the_revision_it_saw_and_retries_when_raced() -> None:
    store = Store([(False, OTHER, 7), (False, '{"Network": "10.3.0.0/16"}', 8), (True, None, 9)])
    assert seeder.converge(store, WANTED.rstrip("\n"), WANTED, force=True) == ("replaced", 9)
    assert store.asked == [None, 7, 8]


def test_a_key_deleted_meanwhile_is_put_if_absent_again() -> None:
    store = Store([(False, OTHER, 7), (False, None, 0), (True, None, 10)])
    assert seeder.converge(store, WANTED.rstrip("\n"), WANTED, force=True) == ("replaced", 10)
    assert store.asked == [None, 7, None]


def test_racing_writers_end_after_five_attempts() -> None:
    store = Store([(False, OTHER, n) for n in range(10)])
    with pytest.raises(seeder.SeedError, match="kept changing under 5 compare-and-swap attempts"):
        seeder.converge(store, WANTED.rstrip("\n"), WANTED, force=True)
    assert len(store.asked) == 5


def test_a_value_etcd_does_not_keep_is_a_failure() -> None:
    store = Store([(True, None, 4)])
    store.put = lambda value, revision: (True, None, 4)  # acknowledged, not kept
    with pytest.raises(seeder.SeedError, match=r"wrote .*/config but read back None"):
        seeder.converge(store, WANTED.rstrip("\n"), WANTED, force=False)


@pytest.mark.parametrize("text", ["not json", "[1, 2]", '{"Network": "10.2.0.0/16"}'])
def test_text_that_is_not_this_config_is_not_the_same(text: str) -> None:
    assert not seeder.same(text, WANTED)
    assert seeder.pretty("not json") == "not json"


# -- the command line


def test_the_defaults_are_the_documented_ones() -> None:
    args = seeder.parser().parse_args(["--endpoints", URL, "--config-json", "{}"])
    assert (args.prefix, args.deadline, args.timeout) == ("/coreos.com/network", 300.0, 5.0)
    assert (args.api, args.force, args.quiet, args.stats) == (None, False, False, False)


@pytest.mark.parametrize("value", ["soon", "0", "-1", "nan"])
def test_a_duration_must_be_a_positive_number(value: str) -> None:
    import argparse

    with pytest.raises(argparse.ArgumentTypeError, match="is not a positive number of seconds"):
        seeder._positive(value)
    assert seeder._positive("0.5") == 0.5


def test_seed_refuses_what_it_cannot_use_before_any_request() -> None:
    with pytest.raises(seeder.BadInput, match="api must be v2 or v3, not 'v4'"):
        seeder.seed(URL, "{}", api="v4")
    for deadline, timeout in ((0, 5), (5, 0), (-1, 5), (5, -1)):
        with pytest.raises(seeder.BadInput, match="deadline and timeout must be positive"):
            seeder.seed(URL, "{}", deadline=deadline, timeout=timeout)
    with pytest.raises(seeder.BadInput, match="is not valid JSON"):  # a fraction is positive
        seeder.seed(URL, "{not json", deadline=0.5, timeout=0.5)


def test_main_without_endpoints_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as exc:
        seeder.main(["--config-json", "{}"])
    assert exc.value.code == 2
    assert "the following arguments are required: --endpoints" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        seeder.main(["--endpoints", URL])
    assert exc.value.code == 2
    assert "one of the arguments --config-json --config-file is required" in (
        capsys.readouterr().err
    )


def test_main_reports_an_unreadable_config_file_in_one_line(tmp_path, capsys) -> None:
    argv = ["--endpoints", URL, "--config-file", str(tmp_path / "none.json")]
    assert seeder.main(argv) == 2
    err = capsys.readouterr().err
    path = tmp_path / "none.json"
    assert err == f"flannel-seed-etcd: cannot read {path}: No such file or directory ({path})\n"


def test_main_picks_the_api_from_the_flannel_version(tmp_path, capsys, monkeypatch) -> None:
    seen = {}
    monkeypatch.setattr(
        seeder, "run", lambda endpoints, value, **options: seen.update(options) or 0
    )
    assert (
        seeder.main(["--endpoints", URL, "--config-json", "{}", "--flannel-version", "v0.17.0"])
        == 0
    )
    assert seen["api"] == "v2"
    assert seeder.main(["--endpoints", URL, "--config-json", "{}"]) == 0
    assert seen["api"] == "v3"
    assert seeder.main(["--endpoints", URL, "--config-json", "{}", "--api", "v2"]) == 0
    assert seen["api"] == "v2"
    assert seeder.main(["--endpoints", URL, "--config-json", "{}", "--flannel-version", "x"]) == 2


# -- the two etcd APIs over a scripted client, and the client's rounds


class ScriptedClient:
    """Client.request's answers in order; what was asked is kept."""

    endpoint = "https://10.0.0.1:2379"

    def __init__(self, *answers: tuple[int, dict]) -> None:
        self.answers = list(answers)
        self.asked: list[tuple] = []

    def request(self, method, path, body=None, headers=None):
        self.asked.append((method, path, body, headers))
        return self.answers.pop(0)


def _b64(text: str) -> str:
    import base64

    return base64.b64encode(text.encode()).decode()


KEY = "/coreos.com/network/config"


def test_v3_put_if_absent_is_one_txn_on_create_revision_zero() -> None:
    client = ScriptedClient((200, {"succeeded": True, "header": {"revision": "12"}}))
    assert seeder.V3(client, KEY).put("{}") == (True, "{}", 12)
    method, path, body, headers = client.asked[0]
    assert (method, path, headers) == ("POST", "/v3/kv/txn", {"Content-Type": "application/json"})
    assert json.loads(body) == {
        "compare": [
            {"key": _b64(KEY), "target": "CREATE", "result": "EQUAL", "create_revision": "0"}
        ],
        "success": [{"request_put": {"key": _b64(KEY), "value": _b64("{}")}}],
        "failure": [{"request_range": {"key": _b64(KEY)}}],
    }


def test_v3_compare_and_swap_names_the_revision_and_returns_what_is_there() -> None:
    there = {"kvs": [{"value": _b64('{"Network": "10.2.0.0/16"}'), "mod_revision": "8"}]}
    client = ScriptedClient((200, {"succeeded": False, "responses": [{"response_range": there}]}))
    assert seeder.V3(client, KEY).put("{}", revision=7) == (False, '{"Network": "10.2.0.0/16"}', 8)
    compare = json.loads(client.asked[0][2])["compare"][0]
    assert compare == {"key": _b64(KEY), "target": "MOD", "result": "EQUAL", "mod_revision": "7"}


def test_v3_get_reads_the_value_or_none() -> None:
    client = ScriptedClient(
        (200, {"kvs": [{"value": _b64("x"), "mod_revision": "3"}]}), (200, {"header": {}})
    )
    v3 = seeder.V3(client, KEY)
    assert v3.get() == ("x", 3)
    assert v3.get() == (None, 0)
    assert client.asked[0][:2] == ("POST", "/v3/kv/range")
    assert json.loads(client.asked[0][2]) == {"key": _b64(KEY)}


@pytest.mark.parametrize(
    ("status", "hint"), [(404, True), (400, False), (403, False), (405, False), (103, False)]
)
def test_v3_an_unexpected_answer_says_who_and_what(status: int, hint: bool) -> None:
    client = ScriptedClient((status, {"message": "nope"}))
    with pytest.raises(seeder.SeedError) as exc:
        seeder.V3(client, KEY).get()
    text = str(exc.value)
    assert text.startswith(f"https://10.0.0.1:2379 answered HTTP {status}: nope")
    assert ("etcd before 3.4 serves the v3 gateway at /v3beta only" in text) is hint


def test_v2_put_if_absent_and_compare_and_swap() -> None:
    client = ScriptedClient(
        (201, {"node": {"modifiedIndex": 5}}), (200, {"node": {"modifiedIndex": 6}})
    )
    v2 = seeder.V2(client, KEY)
    assert v2.put("{}") == (True, "{}", 5)
    assert v2.put("{}", revision=5) == (True, "{}", 6)
    assert client.asked[0][:2] == ("PUT", "/v2/keys/coreos.com/network/config?prevExist=false")
    assert client.asked[1][:2] == ("PUT", "/v2/keys/coreos.com/network/config?prevIndex=5")
    assert client.asked[0][2] == b"value=%7B%7D"


@pytest.mark.parametrize("code", [100, 101, 105])
def test_v2_a_failed_condition_reads_what_is_there(code: int) -> None:
    client = ScriptedClient(
        (412, {"errorCode": code, "message": "x"}),
        (200, {"node": {"value": "v", "modifiedIndex": 9}}),
    )
    assert seeder.V2(client, KEY).put("{}") == (False, "v", 9)
    assert client.asked[1][:2] == ("GET", "/v2/keys/coreos.com/network/config?quorum=true")


def test_v2_other_answers_are_failures_with_the_v2_hint() -> None:
    client = ScriptedClient((404, {"message": "404 page not found"}))
    with pytest.raises(seeder.SeedError, match=r"answered HTTP 404: 404 page not found \(is etcd"):
        seeder.V2(client, KEY).put("{}")
    assert seeder.V2(ScriptedClient((404, {"errorCode": 100})), KEY).get() == (None, 0)
    for answer in (
        (500, {"node": {}}),
        (200, {"action": "get"}),
        (500, {"errorCode": 100}),
        (200, {"errorCode": 100}),  # only a 404 with code 100 is "key not found"
        (103, {"node": {"value": "{}", "modifiedIndex": 3}}),  # only a 200 is an answer
        (404, {"message": "404 page not found"}),  # no v2 API at all: not "key not found"
    ):
        with pytest.raises(seeder.SeedError, match="--enable-v2=true"):
            seeder.V2(ScriptedClient(answer), KEY).get()


class FakeTime:
    """time.monotonic and time.sleep for Client: sleeping moves the clock."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_client_goes_round_the_members_and_backs_off_between_rounds(monkeypatch) -> None:
    clock, tried, asked = FakeTime(), [], []
    monkeypatch.setattr(seeder, "time", clock)
    monkeypatch.setattr(seeder.random, "randrange", lambda n: 1)  # start at the second member
    monkeypatch.setattr(seeder.random, "uniform", lambda a, b: asked.append((a, b)) or b)

    def once(self, method, path, body, headers, timeout):
        tried.append((self.endpoint, timeout))
        clock.now += 0.5  # each attempt takes half a second
        raise seeder.Transient("connection refused")

    monkeypatch.setattr(seeder.Client, "_once", once)
    endpoints = seeder.parse_endpoints("https://a:2379,https://b:2379")
    client = seeder.Client(endpoints, None, timeout=5, deadline=30)
    with pytest.raises(seeder.SeedError) as exc:
        client.request("GET", "/health")
    assert [e for e, _ in tried[:4]] == ["https://b:2379", "https://a:2379"] * 2
    assert asked[:6] == [(0.1, 0.2), (0.2, 0.4), (0.4, 0.8), (0.8, 1.6), (1.6, 3.2), (2.5, 5.0)]
    assert clock.slept[:6] == [0.2, 0.4, 0.8, 1.6, 3.2, 5.0]  # what it was given, in full
    assert set(asked[6:]) == {(2.5, 5.0)}  # capped at 5 s
    assert tried[0][1] == 5  # the request timeout while the deadline is far
    assert all(0 < timeout <= 5 for _, timeout in tried)  # none once the deadline is reached
    assert min(timeout for _, timeout in tried) < 5  # the last attempts get what is left
    assert clock.now - 1000.0 == pytest.approx(30, abs=0.6)  # gives up at the deadline
    assert str(exc.value) == (
        "no etcd endpoint answered within the 30s deadline (https://a:2379, https://b:2379); "
        f"last error: {tried[-1][0]}: connection refused"
    )


def test_the_client_tries_every_member_in_turn(monkeypatch) -> None:
    clock, tried = FakeTime(), []
    monkeypatch.setattr(seeder, "time", clock)
    monkeypatch.setattr(seeder.random, "randrange", lambda n: 1)

    def once(self, method, path, body, headers, timeout):
        tried.append(self.endpoint[8])  # https://a:2379 -> "a"
        raise seeder.Transient("connection refused")

    monkeypatch.setattr(seeder.Client, "_once", once)
    endpoints = seeder.parse_endpoints("https://a:2379,https://b:2379,https://c:2379")
    with pytest.raises(seeder.SeedError):
        seeder.Client(endpoints, None, timeout=5, deadline=2).request("GET", "/health")
    assert "".join(tried[:7]) == "bcabcab"


@pytest.mark.parametrize("overrun", [0, 0.5], ids=["to-the-deadline", "past-it"])
def test_an_attempt_that_uses_up_the_deadline_is_the_last(monkeypatch, overrun: float) -> None:
    clock, tried = FakeTime(), []
    monkeypatch.setattr(seeder, "time", clock)
    monkeypatch.setattr(seeder.random, "randrange", lambda n: 0)

    def once(self, method, path, body, headers, timeout):
        tried.append((self.endpoint, timeout))
        clock.now += timeout + overrun  # it timed out after all the time it was given
        raise seeder.Transient("timed out")

    monkeypatch.setattr(seeder.Client, "_once", once)
    endpoints = seeder.parse_endpoints("https://a:2379,https://b:2379")
    client = seeder.Client(endpoints, None, timeout=5, deadline=5)
    with pytest.raises(seeder.SeedError, match="within the 5s deadline"):
        client.request("GET", "/health")
    assert tried == [("https://a:2379", 5)]  # not a second one with 0 s to answer
    assert clock.slept == []  # nor a round of sleeping


def test_the_rounds_end_after_a_thousand_even_if_the_clock_stands_still(monkeypatch) -> None:
    clock, tried = FakeTime(), []
    clock.sleep = lambda seconds: None  # a clock that never moves: only the bound ends the loop
    monkeypatch.setattr(seeder, "time", clock)

    def once(self, method, path, body, headers, timeout):
        tried.append(self.endpoint)
        raise seeder.Transient("connection refused")

    monkeypatch.setattr(seeder.Client, "_once", once)
    endpoints = seeder.parse_endpoints("https://a:2379,https://b:2379")
    with pytest.raises(seeder.SeedError, match="no etcd endpoint answered"):
        seeder.Client(endpoints, None, timeout=5, deadline=30).request("GET", "/health")
    assert len(tried) == 1000 * 2


def test_ctrl_c_is_one_line_and_exit_130(capsys, monkeypatch) -> None:
    def interrupted(endpoints, value, **options):
        raise KeyboardInterrupt

    monkeypatch.setattr(seeder, "run", interrupted)
    assert seeder.main(["--endpoints", URL, "--config-json", "{}"]) == 130
    assert capsys.readouterr().err == "flannel-seed-etcd: interrupted\n"


def _written(monkeypatch) -> None:
    """converge() answers at once: seed() and run() without a member to talk to."""
    monkeypatch.setattr(seeder, "converge", lambda store, value, wanted, force: ("written", 3))


def test_plain_http_endpoints_need_no_tls_files(monkeypatch) -> None:
    _written(monkeypatch)
    config = '{"Network": "10.1.0.0/16"}'
    outcome = seeder.seed("http://127.0.0.1:2379", config, cacert="/no/ca")
    assert (outcome.action, outcome.revision, outcome.api) == ("written", 3, "v3")
    assert 0 <= outcome.seconds < 0.5  # the time it took, not a clock reading
    with pytest.raises(seeder.BadInput, match="cannot load the CA certificate /no/ca"):
        seeder.seed("http://127.0.0.1:2379,https://127.0.0.1:2379", config, cacert="/no/ca")


def test_run_says_what_it_did_and_prints_stats_on_request(monkeypatch, capsys) -> None:
    _written(monkeypatch)
    config = '{"Network": "10.1.0.0/16"}'
    assert seeder.run("http://127.0.0.1:2379", config) == 0
    out = capsys.readouterr()
    assert out.out == ""
    assert out.err == (
        "flannel-seed-etcd: wrote the network config to /coreos.com/network/config "
        "(etcd v3 API, revision 3, via http://127.0.0.1:2379)\n"
    )
    assert seeder.run("http://127.0.0.1:2379", config, quiet=True, stats=True) == 0
    out = capsys.readouterr()
    assert out.err == ""
    assert json.loads(out.out)["action"] == "written"


@pytest.mark.parametrize(
    ("status", "body", "said"),
    [
        (
            403,
            {"message": "permission denied"},
            "refused the request (HTTP 403): permission denied",
        ),
        (
            401,
            {"error": "invalid auth token"},
            "refused the request (HTTP 401): invalid auth token",
        ),
    ],
)
def test_an_authorisation_refusal_is_final(status: int, body: dict, said: str) -> None:
    """etcd with auth on: no other member will answer otherwise, so no retry."""
    with _answering(status, body) as (url, _):
        client = seeder.Client(seeder.parse_endpoints(url), None, timeout=5, deadline=30)
        try:
            with pytest.raises(seeder.SeedError) as exc:
                client.request("POST", "/v3/kv/range", b"{}")
        finally:
            client.close()
    assert type(exc.value) is seeder.SeedError
    assert str(exc.value) == f"{url} {said}"
    assert client.requests == 1


def test_a_member_is_asked_over_one_connection_that_close_ends() -> None:
    with _answering(200, {"header": {}}) as (url, peers):
        client = seeder.Client(seeder.parse_endpoints(url), None, timeout=5, deadline=30)
        for _ in range(3):
            assert client.request("POST", "/v3/kv/range", b"{}") == (200, {"header": {}})
        (connection,) = client.connections.values()
        client.close()
    assert len(peers) == 3 and len(set(peers)) == 1  # one TCP connection for the three
    assert connection.sock is None


def test_a_connection_that_timed_out_is_closed_and_a_new_one_opened(monkeypatch) -> None:
    opened, connection = [], seeder.Client._connection
    monkeypatch.setattr(
        seeder.Client,
        "_connection",
        lambda self, timeout: opened.append(connection(self, timeout)) or opened[-1],
    )
    with _answering(200, {"header": {}}, stall_first=1.0) as (url, peers):
        client = seeder.Client(seeder.parse_endpoints(url), None, timeout=0.2, deadline=20)
        try:
            assert client.request("POST", "/v3/kv/range", b"{}") == (200, {"header": {}})
        finally:
            client.close()
    assert opened[0] is not opened[-1] and len(set(peers)) == 2
    assert opened[0].sock is None  # closed when it timed out, not left to the garbage collector


def test_a_5xx_is_tried_again_and_other_answers_are_returned() -> None:
    with _answering(503, {"message": "etcdserver: no leader"}) as (url, peers):
        client = seeder.Client(seeder.parse_endpoints(url), None, timeout=5, deadline=1)
        try:
            with pytest.raises(seeder.SeedError) as exc:
                client.request("POST", "/v3/kv/range", b"{}")
        finally:
            client.close()
    assert str(exc.value).endswith(f"last error: {url}: HTTP 503: etcdserver: no leader")
    assert len(peers) > 1
    with _answering(499, {"message": "client closed"}) as (url, peers):
        client = seeder.Client(seeder.parse_endpoints(url), None, timeout=5, deadline=2)
        try:
            assert client.request("POST", "/v3/kv/range", b"{}") == (
                499,
                {"message": "client closed"},
            )
        finally:
            client.close()
    assert len(peers) == 1


@contextlib.contextmanager
def _answering(status: int, body: dict, stall_first: float = 0) -> Iterator[tuple[str, list]]:
    """A local HTTP/1.1 server (keep-alive) answering every POST alike, the first one only after
    stall_first seconds: its URL, and the client address of each request."""
    peers: list = []

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_POST(self) -> None:
            peers.append(self.client_address)
            if len(peers) == 1:
                time.sleep(stall_first)
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", peers
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_a_certificate_that_cannot_be_decoded_is_left_to_load_cert_chain(tmp_path) -> None:
    # check_validity only adds a clearer message for an expired one; the loader reports the rest
    assert seeder.check_validity(str(tmp_path / "missing.pem")) is None
    (tmp_path / "junk.pem").write_text("not a certificate\n")
    assert seeder.check_validity(str(tmp_path / "junk.pem")) is None
