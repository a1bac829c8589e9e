"""Address spaces: predefined pool order, the first-free walk, overlap rules."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ipam_service.spaces import (
    GLOBAL_DEFAULT,
    LOCAL_DEFAULT,
    PredefinedBase,
    find_overlap,
    first_free_subnet,
    overlaps,
    predefined_bases,
    validate_space,
)
from services.errors import InvalidArgument

net = ipaddress.ip_network


def take_all(space: str, v6: bool, limit: int) -> list[str]:
    """Ask for the next predefined pool `limit` times, as RequestPool does."""
    taken: list = []
    while len(taken) < limit:
        found = first_free_subnet(predefined_bases(space, v6), taken)
        if found is None:
            break
        taken.append(found)
    return [str(n) for n in taken]


def test_local_default_ipv4_is_172_17_to_31_then_192_168_slash_20s_then_nothing() -> None:
    pools = take_all(LOCAL_DEFAULT, False, 100)
    assert pools[:2] == ["172.17.0.0/16", "172.18.0.0/16"]
    assert pools[14] == "172.31.0.0/16"
    assert pools[15:18] == ["192.168.0.0/20", "192.168.16.0/20", "192.168.32.0/20"]
    assert pools[-1] == "192.168.240.0/20"
    assert len(pools) == 15 + 16


def test_global_default_ipv4_is_10_0_x_0_slash_24_in_order() -> None:
    assert take_all(GLOBAL_DEFAULT, False, 3) == ["10.0.0.0/24", "10.0.1.0/24", "10.0.2.0/24"]


def test_global_default_ipv4_holds_65536_pools() -> None:
    # The walk is O(taken): skipping 65,535 taken /24s in one step must find the last one.
    taken = [net("10.0.0.0/9"), net("10.128.0.0/10"), net("10.192.0.0/11"), net("10.224.0.0/12")]
    taken += [net("10.240.0.0/13"), net("10.248.0.0/14"), net("10.252.0.0/15")]
    taken += [net("10.254.0.0/16"), net("10.255.0.0/17"), net("10.255.128.0/18")]
    taken += [net("10.255.192.0/19"), net("10.255.224.0/20"), net("10.255.240.0/21")]
    taken += [net("10.255.248.0/22"), net("10.255.252.0/23"), net("10.255.254.0/24")]
    bases = predefined_bases(GLOBAL_DEFAULT, False)
    assert first_free_subnet(bases, taken) == net("10.255.255.0/24")
    assert first_free_subnet(bases, [*taken, net("10.255.255.0/24")]) is None


def test_ipv6_predefined_pools_are_slash_64s_of_a_ula_prefix() -> None:
    assert take_all(LOCAL_DEFAULT, True, 2) == ["fd00::/64", "fd00:0:0:1::/64"]
    assert take_all(GLOBAL_DEFAULT, True, 2) == ["fd01::/64", "fd01:0:0:1::/64"]


def test_custom_space_has_no_predefined_pools() -> None:
    assert predefined_bases("blue", False) == ()


@pytest.mark.parametrize(
    ("taken", "expected"),
    [
        (["172.17.5.0/24"], "172.18.0.0/16"),
        (["172.16.0.0/12"], "192.168.0.0/20"),
        (["172.17.0.0/16", "172.19.255.255/32"], "172.18.0.0/16"),
        (["172.0.0.0/8", "192.168.0.0/19"], "192.168.32.0/20"),
        (["172.17.0.0/16", "fd00::/8"], "172.18.0.0/16"),
        (["0.0.0.0/0"], None),
    ],
    ids=[
        "smaller-pool-inside-candidate",
        "larger-pool-covers-all-172s",
        "host-route-blocks-its-candidate",
        "skip-into-second-base",
        "other-family-ignored",
        "everything-taken",
    ],
)
def test_first_free_skips_every_overlapping_candidate(taken: list[str], expected: str) -> None:
    found = first_free_subnet(predefined_bases(LOCAL_DEFAULT, False), [net(t) for t in taken])
    assert (str(found) if found else None) == expected


@given(st.lists(st.tuples(st.integers(0, 4095), st.integers(20, 30)), max_size=12))
@settings(max_examples=300, deadline=None)
def test_first_free_matches_brute_force(taken_spec: list[tuple[int, int]]) -> None:
    """Against the obvious O(candidates x taken) search, on a base small enough to enumerate."""
    base = PredefinedBase(net("10.0.0.0/20"), 24)
    taken = [net((0x0A000000 + (offset << 4), plen), strict=False) for offset, plen in taken_spec]
    expected = next(
        (c for c in base.base.subnets(new_prefix=24) if not any(c.overlaps(t) for t in taken)),
        None,
    )
    assert first_free_subnet([base], taken) == expected


def test_overlap_is_per_family_and_symmetric() -> None:
    assert overlaps(net("10.0.0.0/8"), net("10.1.2.0/24"))
    assert overlaps(net("10.1.2.0/24"), net("10.0.0.0/8"))
    assert not overlaps(net("10.0.0.0/24"), net("10.0.1.0/24"))
    assert not overlaps(net("10.0.0.0/8"), net("::/0"))
    assert find_overlap(net("10.0.0.128/25"), [net("10.1.0.0/16"), net("10.0.0.0/24")]) == net(
        "10.0.0.0/24"
    )


@pytest.mark.parametrize(
    "space",
    ["", "a/b", "{tag}", "-lead", "x" * 65, "sp ace", "é"],
    ids=["empty", "slash", "braces", "leading-dash", "too-long", "space", "non-ascii"],
)
def test_invalid_space_names_are_rejected(space: str) -> None:
    with pytest.raises(InvalidArgument, match="address"):
        validate_space(space)


@pytest.mark.parametrize("space", ["LocalDefault", "GlobalDefault", "tenant-1.blue_x"])
def test_valid_space_names_pass(space: str) -> None:
    assert validate_space(space) == space


def test_only_declared_address_spaces_take_pools() -> None:
    from ipam_service.spaces import check_declared

    assert check_declared("LocalDefault", ()) == "LocalDefault"
    assert check_declared("GlobalDefault", ()) == "GlobalDefault"
    assert check_declared("blue", {"blue"}) == "blue"
    with pytest.raises(InvalidArgument) as exc:
        check_declared("x" * 60, {"blue"})
    assert exc.value.reason == "UNKNOWN_ADDRESS_SPACE"
    assert "cannot find address space" in exc.value.message


def test_a_bad_declared_address_space_is_a_config_error() -> None:
    from ipam_service.config import IpamConfig
    from services.config import ConfigError

    assert IpamConfig(address_spaces=("blue", "green")).address_spaces == ("blue", "green")
    with pytest.raises(ConfigError, match="address_spaces"):
        IpamConfig(address_spaces=("a/b",))
