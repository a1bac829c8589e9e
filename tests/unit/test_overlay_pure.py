"""Pure parts of the overlay: option parsing (driver and controller), namespace
names, and the entries a host must program from the peer table."""

from __future__ import annotations

import pytest

from controller_service import overlay as ctl
from driver_service.drivers.overlay import options as ov
from driver_service.drivers.overlay.peers import Peer, Wanted, wanted
from services.errors import InvalidArgument

NET = "ab" * 32
VNI = ov.VXLANID_LIST


# ---------------------------------------------------------------------- driver options


def test_options_default_port_and_mtu_decided_later():
    assert ov.parse(NET, {VNI: "300"}) == ov.OverlayOptions(vni=300, port=4789, mtu=None)


def test_options_port_mtu_and_foreign_keys():
    opts = ov.parse(
        NET,
        {
            VNI: " 4096 ",
            ov.VXLAN_PORT: "4790",
            "com.docker.network.driver.mtu": "1400",
            "com.docker.network.bridge.name": "ignored",
        },
    )
    assert opts == ov.OverlayOptions(vni=4096, port=4790, mtu=1400)


@pytest.mark.parametrize(
    ("options", "named"),
    [
        ({}, VNI),
        ({VNI: "300,301"}, "exactly one"),
        ({VNI: "x"}, "x"),
        ({VNI: "0"}, VNI),
        ({VNI: str(1 << 24)}, VNI),
        ({VNI: "300", ov.VXLAN_PORT: "0"}, ov.VXLAN_PORT),
        ({VNI: "300", ov.VXLAN_PORT: "udp"}, ov.VXLAN_PORT),
        ({VNI: "300", "com.docker.network.driver.mtu": "20"}, "mtu"),
        ({VNI: "300", "com.docker.network.driver.overlay.encrypted": ""}, "encrypted"),
        ({VNI: "300", "com.cnm.overlay.typo": "1"}, "typo"),
    ],
    ids=[
        "no-vni",
        "two-vnis",
        "vni-not-integer",
        "vni-zero",
        "vni-too-big",
        "port-zero",
        "port-not-integer",
        "mtu-too-small",
        "unknown-docker-overlay-key",
        "unknown-cnm-overlay-key",
    ],
)
def test_bad_options_are_invalid_argument_naming_the_option(options, named):
    with pytest.raises(InvalidArgument) as err:
        ov.parse(NET, options)
    assert named in str(err.value)


def test_recorded_config_round_trips():
    cfg = ov.OverlayConfig(vni=300, port=4789, mtu=1450, vtep="192.0.2.11", netns="cnm-ov-h1-x")
    assert ov.OverlayConfig.from_data(cfg.to_data()) == cfg


def test_namespace_names_carry_the_host_and_stay_within_the_limit():
    name = ov.netns_name("cnm-", "h1", NET)
    assert name == f"cnm-ov-h1-{NET[:12]}"
    assert name.startswith(ov.host_netns_prefix("cnm-", "h1"))
    long_host = "n" * 63
    long_name = ov.netns_name("p" * 64, long_host, NET)
    assert len(long_name) <= 128 and long_host not in long_name
    assert long_name == ov.netns_name("p" * 64, long_host, NET), "deterministic"
    assert long_name != ov.netns_name("p" * 64, "m" * 63, NET)


# ---------------------------------------------------------------------- peers


def peer(ep: str, host: str, vtep: str, n: int, ipv6: str = "") -> Peer:
    return Peer(ep, host, vtep, f"02:42:0a:00:00:{n:02x}", f"10.0.0.{n}", ipv6)


def test_wanted_has_remote_live_peers_only():
    peers = [
        peer("e1", "h1", "192.0.2.11", 2),  # this host
        peer("e2", "h2", "192.0.2.12", 3, ipv6="fd01::3"),
        peer("e3", "h3", "192.0.2.13", 4),  # dead host
        peer("e4", "h4", "192.0.2.11", 5),  # claims this host's VTEP
    ]
    live = {"h2": True, "h3": False, "h4": True}
    assert wanted(peers, live, "h1", "192.0.2.11") == Wanted(
        fdb=frozenset({("02:42:0a:00:00:03", "192.0.2.12")}),
        neighbours=frozenset({("10.0.0.3", "02:42:0a:00:00:03"), ("fd01::3", "02:42:0a:00:00:03")}),
    )


def test_wanted_resolves_conflicts_the_same_way_on_every_host():
    a = Peer("a1", "h2", "192.0.2.12", "02:00:00:00:00:01", "10.0.0.9")
    b = Peer("b1", "h3", "192.0.2.13", "02:00:00:00:00:01", "10.0.0.9")
    live = {"h2": True, "h3": True}
    one = wanted([a, b], live, "h1", "192.0.2.11")
    other = wanted([b, a], live, "h1", "192.0.2.11")
    assert one == other and one.fdb == frozenset({("02:00:00:00:00:01", "192.0.2.12")})


def test_peer_json_round_trip():
    p = peer("e2", "h2", "192.0.2.12", 3, ipv6="fd01::3")
    assert Peer.from_json("e2", p.to_json()) == p


# ---------------------------------------------------------------------- controller side


@pytest.mark.parametrize(
    ("text", "bounds"),
    [("256-16777215", (256, 16777215)), (" 300-301 ", (300, 301)), ("4096-4096", (4096, 4096))],
)
def test_vni_range_parses(text, bounds):
    assert ctl.parse_range(text) == bounds


@pytest.mark.parametrize(
    "text",
    ["", "300", "301-300", "255-300", "300-16777216", "a-b", "-300"],
    ids=["empty", "one-number", "reversed", "below-256", "above-max", "letters", "no-low"],
)
def test_bad_vni_range_is_refused(text):
    with pytest.raises(ValueError, match="VNI range"):
        ctl.parse_range(text)


def test_controller_option_check_returns_the_requested_vni():
    assert ctl.check_options({}) is None
    assert ctl.check_options({ctl.VXLANID_LIST: "4096", ctl.VXLAN_PORT: "4790"}) == 4096
    with pytest.raises(InvalidArgument, match="encrypted"):
        ctl.check_options({"com.docker.network.driver.overlay.encrypted": "true"})


def test_controller_and_driver_agree_on_the_keys():
    assert ctl.VXLANID_LIST == ov.VXLANID_LIST and ctl.VXLAN_PORT == ov.VXLAN_PORT
    assert ctl.KNOWN_KEYS == ov.KNOWN_KEYS
