"""allocator.py: pool ids, geometry, request validation, range helpers, page tokens."""

from __future__ import annotations

import ipaddress

import pytest

from ipam_service.allocator import (
    GATEWAY_OWNER,
    GATEWAY_REQUEST_TYPE,
    REQUEST_ADDRESS_TYPE,
    PoolId,
    address_request,
    parse_pool_id,
    pool_request,
)
from services.errors import InvalidArgument

ip = ipaddress.ip_address
net = ipaddress.ip_network


# --- pool ids ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("LocalDefault/172.17.0.0/16", "LocalDefault/172.17.0.0/16"),
        ("LocalDefault/10.1.0.0/24/10.1.0.128/25", "LocalDefault/10.1.0.0/24/10.1.0.128/25"),
        ("GlobalDefault/FD00:0::/64", "GlobalDefault/fd00::/64"),
        ("blue/2001:db8::/48/2001:db8::/64", "blue/2001:db8::/48/2001:db8::/64"),
    ],
    ids=["v4", "v4-sub-pool", "v6-normalised", "v6-sub-pool"],
)
def test_pool_ids_parse_to_canonical_form(text: str, canonical: str) -> None:
    assert str(parse_pool_id(text)) == canonical


@pytest.mark.parametrize(
    "text",
    [
        "",
        "LocalDefault",
        "LocalDefault/10.0.0.0",
        "LocalDefault/10.0.0.1/24",
        "Local Default/10.0.0.0/24",
        "/10.0.0.0/24",
        "LocalDefault/10.0.0.0/24/10.1.0.0/25",
        "LocalDefault/10.0.0.0/24/10.0.0.0",
        "LocalDefault/10.0.0.0/24/fd00::/64",
        "LocalDefault/10.0.0.0/32",
        "LocalDefault/not-an-ip/24",
        "LocalDefault/10.0.0.0/24/10.0.0.255/32",
        "blue/2001:db8::/48/2001:db8:0:1::/64",
    ],
    ids=[
        "empty",
        "space-only",
        "no-prefix",
        "host-bits",
        "bad-space",
        "empty-space",
        "sub-pool-outside",
        "sub-pool-four-parts",
        "sub-pool-other-family",
        "too-small",
        "garbage-address",
        "sub-pool-only-broadcast",
        "v6-sub-pool-beyond-first-2-to-the-64",
    ],
)
def test_malformed_pool_ids_are_invalid_and_name_the_id(text: str) -> None:
    with pytest.raises(InvalidArgument) as e:
        parse_pool_id(text)
    assert repr(text) in str(e.value)
    assert e.value.reason == "INVALID_POOL_ID"


def test_ipv4_geometry_reserves_network_and_broadcast() -> None:
    pid = parse_pool_id("LocalDefault/172.17.0.0/16")
    assert pid.size == 65536
    assert pid.reserved == (0, 65535)
    assert pid.dynamic_range == (0, 65535)
    assert pid.dynamic_capacity == 65534
    assert pid.cidr_of(2) == "172.17.0.2/16"
    assert pid.ordinal_of(ip("172.17.1.0")) == 256


def test_sub_pool_limits_the_dynamic_range_only() -> None:
    pid = parse_pool_id("LocalDefault/10.1.0.0/24/10.1.0.128/25")
    assert pid.dynamic_range == (128, 255)
    assert pid.dynamic_capacity == 127  # .255 is the broadcast address
    assert pid.ordinal_of(ip("10.1.0.1")) == 1  # a preferred address may lie outside it


def test_ipv6_slash_64_is_exactly_two_to_the_64_bits() -> None:
    pid = parse_pool_id("LocalDefault/fd00::/64")
    assert pid.size == 2**64
    assert pid.reserved == (0,)
    assert pid.ordinal_of(ip("fd00::ffff:ffff:ffff:ffff")) == 2**64 - 1
    assert pid.cidr_of(1) == "fd00::1/64"


def test_ipv6_larger_than_slash_64_allocates_from_its_first_two_to_the_64() -> None:
    pid = parse_pool_id("blue/2001:db8::/48")
    assert pid.size == 2**64
    assert pid.ordinal_of(ip("2001:db8::ffff:ffff:ffff:ffff")) == 2**64 - 1
    with pytest.raises(InvalidArgument, match="beyond the first 2\\*\\*64"):
        pid.ordinal_of(ip("2001:db8:0:1::1"))


@pytest.mark.parametrize(
    ("address", "message"),
    [
        ("10.0.0.0", "network address"),
        ("10.0.0.255", "broadcast address"),
        ("10.0.1.1", "outside pool"),
        ("fd00::1", "outside pool"),
    ],
    ids=["network", "broadcast", "outside", "other-family"],
)
def test_unallocatable_addresses_are_invalid(address: str, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_pool_id("s/10.0.0.0/24").ordinal_of(ip(address))


@pytest.mark.parametrize(
    ("text", "ordinal"),
    [("10.0.0.7", 7), ("10.0.0.7/24", 7)],
    ids=["bare", "cidr-same-prefix"],
)
def test_address_arguments_accept_bare_or_pool_prefix(text: str, ordinal: int) -> None:
    assert parse_pool_id("s/10.0.0.0/24").check_address_arg("address", text) == ordinal


@pytest.mark.parametrize(
    "text",
    ["10.0.0.7/16", "10.0.0.300", "", "fe80::1%eth0", "10.0.0.x"],
    ids=["other-prefix", "octet-too-big", "empty", "zone", "garbage"],
)
def test_bad_address_arguments_are_invalid(text: str) -> None:
    pid = parse_pool_id("s/10.0.0.0/24") if "fe80" not in text else parse_pool_id("s/fe80::/64")
    with pytest.raises(InvalidArgument, match="invalid address"):
        pid.check_address_arg("address", text)


# --- request validation ------------------------------------------------------------------------


def preq(**kw):
    args = dict(
        space="LocalDefault", pool="", sub_pool="", options={}, v6=False, owner="", request_id=""
    )
    args.update(kw)
    return pool_request(**args)


def test_pool_request_with_aux_addresses_sorted_by_name() -> None:
    req = preq(
        pool="10.0.0.0/24",
        options={"cnm.ipam.aux_address.b": "10.0.0.9", "cnm.ipam.aux_address.a": "10.0.0.8"},
    )
    assert req.aux == (("a", ip("10.0.0.8")), ("b", ip("10.0.0.9")))


def test_pool_request_ignores_foreign_options() -> None:
    assert preq(options={"com.docker.network.ipam.serial": "true"}).aux == ()


def test_v6_pool_given_without_v6_flag_is_v6() -> None:
    assert preq(pool="fd00::/64").v6 is True


def test_fingerprint_covers_every_field() -> None:
    base = preq(pool="10.0.0.0/24", owner="n1")
    assert base.fingerprint == preq(pool="10.0.0.0/24", owner="n1").fingerprint
    assert base.fingerprint != preq(pool="10.0.0.0/24", owner="n2").fingerprint
    assert base.fingerprint != preq(pool="10.0.1.0/24", owner="n1").fingerprint


@pytest.mark.parametrize(
    ("kw", "message"),
    [
        ({"space": ""}, "address_space is empty"),
        ({"pool": "10.0.0.1/24"}, "host bits"),
        ({"sub_pool": "10.0.0.0/25"}, "needs a pool"),
        ({"pool": "10.0.0.0/24", "sub_pool": "10.0.1.0/25"}, "not inside"),
        ({"pool": "10.0.0.0/24", "v6": True}, "is IPv4"),
        ({"options": {"cnm.ipam.nope": "1"}}, "unknown option"),
        ({"options": {"": "1"}}, "empty key"),
        ({"options": {"cnm.ipam.aux_address.r": "10.0.0.5"}}, "explicit pool"),
        ({"pool": "10.0.0.0/24", "options": {"cnm.ipam.aux_address.r": "10.0.1.5"}}, "outside"),
        ({"pool": "10.0.0.0/24", "options": {"cnm.ipam.aux_address.r": "10.0.0.0"}}, "network"),
        ({"pool": "10.0.0.0/24", "options": {"cnm.ipam.aux_address.r": "10.0.0.5/24"}}, "prefix"),
        ({"pool": "10.0.0.0/24", "options": {"cnm.ipam.aux_address.": "10.0.0.5"}}, "name"),
        (
            {
                "pool": "10.0.0.0/24",
                "options": {
                    "cnm.ipam.aux_address.a": "10.0.0.5",
                    "cnm.ipam.aux_address.b": "10.0.0.5",
                },
            },
            "given twice",
        ),
        ({"owner": "x" * 300}, "owner is longer"),
        ({"request_id": "has space"}, "invalid request_id"),
    ],
    ids=[
        "empty-space",
        "host-bits",
        "sub-pool-without-pool",
        "sub-pool-outside",
        "v6-flag-v4-pool",
        "unknown-own-option",
        "empty-option-key",
        "aux-without-pool",
        "aux-outside",
        "aux-network-address",
        "aux-with-prefix",
        "aux-empty-name",
        "aux-duplicate",
        "owner-too-long",
        "bad-request-id",
    ],
)
def test_invalid_pool_requests(kw: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        preq(**kw)


def test_gateway_request_defaults_owner_to_gateway() -> None:
    req = address_request(
        pool_id="s/10.0.0.0/24",
        address="",
        options={REQUEST_ADDRESS_TYPE: GATEWAY_REQUEST_TYPE},
        owner="",
    )
    assert req.owner == GATEWAY_OWNER and req.ordinal is None


def test_unknown_request_address_type_is_invalid() -> None:
    with pytest.raises(InvalidArgument, match="RequestAddressType"):
        address_request(
            pool_id="s/10.0.0.0/24", address="", options={REQUEST_ADDRESS_TYPE: "x"}, owner=""
        )


def test_pool_id_is_a_value() -> None:
    a = PoolId("s", net("10.0.0.0/24"))
    assert a == parse_pool_id("s/10.0.0.0/24")
    assert not a.v6
