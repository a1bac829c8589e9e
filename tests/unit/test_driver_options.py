"""The bridge driver's options under libnetwork's keys, and libnetwork's MAC rule."""

from __future__ import annotations

import pytest

from driver_service.drivers.bridge.options import BridgeConfig, parse
from driver_service.drivers.common import mac_from_ipv4
from services.errors import InvalidArgument

NID = "0123456789ab" + "c" * 52


def test_defaults():
    opts = parse(NID, {})
    assert opts.bridge_name == "br-0123456789ab" and len(opts.bridge_name) <= 15
    assert (opts.enable_icc, opts.enable_ip_masquerade, opts.host_binding_ipv4, opts.mtu) == (
        True,
        True,
        "0.0.0.0",
        None,
    )


def test_every_option_parsed_and_recorded_round_trip():
    opts = parse(
        NID,
        {
            "com.docker.network.bridge.name": "docker1",
            "com.docker.network.bridge.enable_icc": "false",
            "com.docker.network.bridge.enable_ip_masquerade": "0",
            "com.docker.network.bridge.host_binding_ipv4": "127.0.0.1",
            "com.docker.network.driver.mtu": "9000",
            "com.example.label": "ignored",
        },
    )
    cfg = BridgeConfig.from_data(opts.to_data(opts.mtu or 1500))
    assert cfg == BridgeConfig("docker1", 9000, False, False, "127.0.0.1")


@pytest.mark.parametrize(
    "options",
    [
        pytest.param({"com.docker.network.driver.mtu": "70000"}, id="mtu-too-big"),
        pytest.param({"com.docker.network.driver.mtu": "67"}, id="mtu-too-small"),
        pytest.param({"com.docker.network.driver.mtu": "1.5k"}, id="mtu-not-int"),
        pytest.param({"com.docker.network.bridge.name": "x" * 16}, id="name-16-chars"),
        pytest.param({"com.docker.network.bridge.name": "br 0"}, id="name-space"),
        pytest.param({"com.docker.network.bridge.name": "../x"}, id="name-slash"),
        pytest.param({"com.docker.network.bridge.enable_icc": "yes please"}, id="icc-not-bool"),
        pytest.param({"com.docker.network.bridge.host_binding_ipv4": "::"}, id="binding-ipv6"),
        pytest.param({"com.docker.network.bridge.enable_ipmasq": "true"}, id="unknown-key"),
    ],
)
def test_bad_options_are_invalid_argument_naming_the_value(options):
    with pytest.raises(InvalidArgument) as err:
        parse(NID, options)
    value = next(iter(options.values()))
    key = next(iter(options))
    assert value in err.value.message or key in err.value.message


@pytest.mark.parametrize(
    "address, mac",
    [("172.17.0.2/16", "02:42:ac:11:00:02"), ("10.0.0.255/8", "02:42:0a:00:00:ff")],
)
def test_mac_derived_from_ipv4_like_libnetwork(address, mac):
    assert mac_from_ipv4(address) == mac
