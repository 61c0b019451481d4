"""The Backend as flanneld reads it (flannelnode.netbackend), through netconf.lint / lint_json.

Expectations come from flannel's source (flannel-io/flannel: pkg/subnet/config.go
parseBackendType, pkg/backend/manager.go, pkg/backend/<type>/*.go), Go's encoding/json and the
Linux limits, cited per test.
"""

from __future__ import annotations

import json
from typing import Any

import pytest

from flannelnode import netconf

NET = {"Network": "10.1.0.0/16"}
V6 = {"EnableIPv6": True, "IPv6Network": "fd00::/48"}
V6_ONLY = {"EnableIPv4": False, **V6}


def found(config: dict[str, Any], field: str, level: str = "error", **kw: Any) -> list[str]:
    return [f.message for f in netconf.lint(config, **kw) if f.field == field and f.level == level]


def loud(config: dict[str, Any], **kw: Any) -> list[str]:
    return [str(f) for f in netconf.lint(config, **kw) if f.level != "info"]


@pytest.mark.parametrize(
    ("backend", "shown"),
    [
        (False, "a boolean false"),
        (3, "an integer 3"),
        ([], "a list"),
        ("vxlan", 'a string "vxlan"'),
    ],
)
def test_a_backend_that_is_no_table_is_refused(backend: Any, shown: str) -> None:
    # parseBackendType: json.Unmarshal into struct { Type string } fails for anything but an
    # object (null aside)
    (message,) = found({**NET, "Backend": backend}, "Backend")
    assert message.startswith(f'Backend: must be a table like {{Type = "vxlan"}}, not {shown}: ')


def test_a_type_that_is_no_string_is_refused_naming_the_first_bad_key() -> None:
    # encoding/json keeps decoding after a type error and returns the first one
    text = '{"Network": "10.1.0.0/16",\n "Backend": {"type": 1,\n  "Type": 2}}'
    errors = [f for f in netconf.lint_json(text) if f.level == "error"]
    assert [(f.field, f.line, f.column) for f in errors] == [("Backend.type", 2, 14)]
    assert errors[0].message.startswith(
        'Backend.type: must be a string like "vxlan", not an integer 1: flanneld refuses'
    )
    assert "cannot unmarshal number into Go struct field .Type of type string" in errors[0].message


def test_a_null_type_is_missing_and_points_at_the_last_null() -> None:
    # null into a Go string changes nothing: the Type stays "" (unknown backend type)
    text = '{"Network": "10.1.0.0/16",\n "Backend": {"type": null,\n  "Type": null}}'
    errors = [f for f in netconf.lint_json(text) if f.level == "error"]
    assert [(f.field, f.line, f.column) for f in errors] == [("Backend.Type", 3, 3)]
    assert "missing" in errors[0].message
    (single,) = [
        f for f in netconf.lint_json(text.replace('"type": null,\n', "")) if f.level == "error"
    ]
    assert (single.line, single.column) == (2, 16)


def test_an_unknown_backend_key_is_said_whatever_its_name() -> None:
    for key in ("Flags", "Zone", "ttl"):
        (warning,) = found(
            {**NET, "Backend": {"Type": "vxlan", key: 1}}, f"Backend.{key}", "warning"
        )
        assert "unknown key" in warning


def test_a_removed_backends_options_are_not_checked() -> None:
    backend = {"Type": "aws-vpc", "RouteTableID": "rtb-1"}
    assert found({**NET, "Backend": backend}, "Backend.RouteTableID", "warning",
                 flannel_version=(0, 19, 2)) == []  # fmt: skip


@pytest.mark.parametrize("release", [(0, 20, 0), (0, 21, 0), (0, 27, 4)])
def test_removed_backends_stay_removed_in_later_releases(release) -> None:
    (error,) = found({**NET, "Backend": {"Type": "gce"}}, "Backend.Type", flannel_version=release)
    assert '"gce" was removed in flannel v0.20.0' in error


def test_one_suggestion_for_a_misspelt_type() -> None:
    # "udpp" is close to udp and ipip (difflib ratio >= 0.5): one suggestion, the closest
    (error,) = found({**NET, "Backend": {"Type": "udpp"}}, "Backend.Type")
    assert error.count("Did you mean") == 1 and 'Did you mean "udp"?' in error


def test_every_bad_option_is_said_not_only_the_first() -> None:
    backend = {"Type": "vxlan", "Port": "x", "VNI": "y", "MTU": 10, "GBP": 1}
    config = {**NET, "Backend": backend}
    errors = {f.field for f in netconf.lint(config) if f.level == "error"}
    assert errors == {"Backend.VNI", "Backend.Port", "Backend.MTU", "Backend.GBP"}
    for field in ("Backend.Port", "Backend.VNI", "Backend.GBP"):
        assert len(found(config, field)) == 1


def test_a_value_refused_by_a_check_does_not_stop_the_other_checks() -> None:
    backend = {"Type": "wireguard", "ListenPort": -1, "ListenPortV6": 70000, "Mode": "bogus"}
    config = {**NET, "Backend": backend}
    for field in ("Backend.ListenPort", "Backend.ListenPortV6", "Backend.Mode"):
        assert len(found(config, field)) == 1, field


def test_windows_only_options_get_a_note_and_no_other_option_does() -> None:
    # vxlan_windows.go reads MacPrefix and Name; vxlan.go (Linux) does not
    backend = {"Type": "vxlan", "MacPrefix": "0E-2A", "Name": "x", "VNI": 2, "Port": 4789}
    infos = {f.field for f in netconf.lint({**NET, "Backend": backend}) if f.level == "info"}
    assert infos == {"Network", "Backend.MacPrefix", "Backend.Name"}


@pytest.mark.parametrize(("vni", "ok"), [(-1, False), (0, True), (1, True), (4096, True)])
def test_vni_is_from_0(vni: int, ok: bool) -> None:
    # Linux vxlan_validate: IFLA_VXLAN_ID only needs to be below 1 << 24
    errors = found({**NET, "Backend": {"Type": "vxlan", "VNI": vni}}, "Backend.VNI")
    assert (errors == []) is ok, errors


@pytest.mark.parametrize(
    ("family", "vni", "device", "digits"),
    [
        (NET, 12345678, "flannel.12345678", 7),
        ({**NET, **V6}, 12345678, "flannel.12345678", 4),  # the IPv4 device is made first
        (V6_ONLY, 12345, "flannel-v6.12345", 4),
    ],
)
def test_a_vni_too_long_for_the_device_name(family, vni, device, digits) -> None:
    (error,) = found({**family, "Backend": {"Type": "vxlan", "VNI": vni}}, "Backend.VNI")
    assert f"name its device {device}, longer than Linux's 15 characters" in error
    assert error.endswith(f"Use a VNI of at most {digits} digits")


@pytest.mark.parametrize(
    ("family", "mtu", "ok"),
    [
        (NET, 117, False),  # the device gets 67, below IPv4's 68 (RFC 791)
        (NET, 118, True),
        ({**NET, **V6}, 1329, False),  # 1279, below IPv6's 1280 (RFC 8200)
        ({**NET, **V6}, 1330, True),
        (V6_ONLY, 1329, False),
    ],
)
def test_vxlan_mtu_leaves_the_device_what_linux_needs(family, mtu: int, ok: bool) -> None:
    # pkg/backend/vxlan/device.go: the vxlan device gets MTU - 50
    errors = found({**family, "Backend": {"Type": "vxlan", "MTU": mtu}}, "Backend.MTU")
    if ok:
        assert errors == []
    else:
        (error,) = errors
        assert f"{mtu} leaves the vxlan device an MTU of {mtu - 50} " in error


@pytest.mark.parametrize(("arches", "refused"), [(["386"], "386"), (["arm64"], "arm64")])
def test_udp_exists_only_on_amd64(arches: list[str], refused: str) -> None:
    # pkg/backend/udp/udp.go: //go:build !amd64 && !windows, New() always fails
    (error,) = found({**NET, "Backend": {"Type": "udp"}}, "Backend.Type", arches=arches)
    assert f"on {refused} flanneld stops" in error


def test_udp_on_amd64_read_from_a_file_is_fine() -> None:
    arch = json.loads('"amd64"')  # a string read at run time, not the literal
    assert found({**NET, "Backend": {"Type": "udp"}}, "Backend.Type", arches=[arch]) == []


@pytest.mark.parametrize("btype", ["vxlan", "alloc", "wireguard", "ipip"])
def test_the_same_l2_note_is_for_host_gw_only(btype: str) -> None:
    notes = found({**NET, "Backend": {"Type": btype}}, "Backend.Type", "info")
    assert notes == []
    (note,) = found({**NET, "Backend": {"Type": json.loads('"host-gw"')}}, "Backend.Type", "info")
    assert "same L2 segment" in note


def test_an_explicit_udp_is_not_called_what_no_backend_means() -> None:
    (error,) = found({**V6_ONLY, "Backend": {"Type": "udp"}}, "Backend.Type")
    assert error.startswith("Backend.Type: udp with IPv6 only: flanneld panics")
    implicit = [m for m in found(V6_ONLY, "Backend") if "panics" in m]
    assert implicit[0].startswith("Backend: udp (what no Backend means) with IPv6 only")


def test_an_ipv6_public_ip_does_not_give_an_ipv4_lease() -> None:
    (error,) = found({**V6_ONLY, "Backend": {"Type": "ipip"}}, "Backend.Type", public_ip="fd00::1")
    assert "[flanneld] public_ip is fd00::1, not IPv4" in error
    assert (
        found({**V6_ONLY, "Backend": {"Type": "ipip"}}, "Backend.Type", public_ip="192.0.2.1") == []
    )


def test_a_null_option_keeps_flannels_default() -> None:
    # encoding/json: null into an int or a bool is a no-op, the default stays
    config = {**NET, "Backend": {"Type": "vxlan", "VNI": None, "GBP": None}}
    assert netconf.effective(config)["Backend"]["VNI"] == 1
    warnings = found(config, "Backend.VNI", "warning") + found(config, "Backend.GBP", "warning")
    assert len(warnings) == 2 and all("null changes nothing here" in w for w in warnings)
