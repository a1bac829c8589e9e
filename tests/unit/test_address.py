"""services.address: the ADDR forms of DESIGN.md (unix:///path.sock or HOST:PORT)."""

from __future__ import annotations

import pytest

from services.address import Address, parse_address


@pytest.mark.parametrize(
    ("text", "kind", "target", "grpc_target"),
    [
        ("unix:///run/cnm/ipam.sock", "unix", "/run/cnm/ipam.sock", "unix:///run/cnm/ipam.sock"),
        ("/run/cnm/ipam.sock", "unix", "/run/cnm/ipam.sock", "unix:///run/cnm/ipam.sock"),
        ("127.0.0.1:7001", "tcp", "127.0.0.1:7001", "127.0.0.1:7001"),
        ("localhost:0", "tcp", "localhost:0", "localhost:0"),
        ("[::1]:65535", "tcp", "[::1]:65535", "[::1]:65535"),
        ("ipam:50051", "tcp", "ipam:50051", "ipam:50051"),
    ],
    ids=["unix-url", "bare-absolute-path", "ipv4-port", "port-zero", "ipv6-max-port", "dns-name"],
)
def test_valid_addresses_parse(text: str, kind: str, target: str, grpc_target: str) -> None:
    addr = parse_address(text)
    assert addr == Address(kind, target)
    assert addr.grpc_target == grpc_target
    # str() is the canonical form that parses back to the same address.
    assert parse_address(str(addr)) == addr


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("unix://run/cnm.sock", "must be absolute"),
        ("unix:///" + "x" * 107, "longer than 107 bytes"),
        ("127.0.0.1", "expected unix:///path or HOST:PORT"),
        (":7001", "expected unix:///path or HOST:PORT"),
        ("", "expected unix:///path or HOST:PORT"),
        ("host:port", "bad port 'port'"),
        ("host:65536", "bad port '65536'"),
        ("host:-1", "bad port '-1'"),
    ],
    ids=[
        "unix-relative-path",
        "unix-path-too-long",
        "no-port",
        "no-host",
        "empty",
        "port-not-a-number",
        "port-above-65535",
        "negative-port",
    ],
)
def test_invalid_addresses_name_the_problem(text: str, reason: str) -> None:
    with pytest.raises(ValueError, match=reason):
        parse_address(text)


def test_unix_path_limit_is_in_bytes_not_characters() -> None:
    # sun_path holds 108 bytes including the NUL: 107 bytes of path at most.
    ok = "/" + "a" * 106
    assert parse_address("unix://" + ok).target == ok
    with pytest.raises(ValueError, match="longer than 107 bytes"):
        parse_address("unix:///" + "é" * 54)  # 108 bytes, 55 characters
