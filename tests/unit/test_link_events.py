"""osl.monitor: decoding the kernel's link-deletion messages (pure bytes, no socket)."""

from __future__ import annotations

import socket
import struct

from driver_service.osl.monitor import IFLA_IFNAME, RTM_DELLINK, deleted_link_names

RTM_NEWLINK = 16
IFLA_MTU = 4


def _attr(kind: int, payload: bytes) -> bytes:
    raw = struct.pack("=HH", 4 + len(payload), kind) + payload
    return raw + b"\0" * (-len(raw) % 4)


def _message(kind: int, *attrs: bytes) -> bytes:
    body = b"\0" * 16 + b"".join(attrs)  # struct ifinfomsg, then attributes
    return struct.pack("=IHHII", 16 + len(body), kind, 0, 0, 0) + body


def test_names_of_deleted_links_only_in_message_order() -> None:
    data = (
        _message(
            RTM_DELLINK, _attr(IFLA_MTU, struct.pack("=I", 1500)), _attr(IFLA_IFNAME, b"br-0123\0")
        )
        + _message(RTM_NEWLINK, _attr(IFLA_IFNAME, b"veth1\0"))
        + _message(RTM_DELLINK, _attr(IFLA_IFNAME, b"vethabcdefghijk\0"))
    )
    assert deleted_link_names(data) == ["br-0123", "vethabcdefghijk"]


def test_a_bridge_port_leaving_its_bridge_is_not_a_deletion() -> None:
    port_left = bytearray(_message(RTM_DELLINK, _attr(IFLA_IFNAME, b"veth1\0")))
    port_left[16] = socket.AF_BRIDGE  # ifinfomsg.ifi_family
    assert deleted_link_names(bytes(port_left)) == []


def test_truncated_or_garbage_data_yields_what_is_complete() -> None:
    whole = _message(RTM_DELLINK, _attr(IFLA_IFNAME, b"eth0\0"))
    assert deleted_link_names(whole + whole[:10]) == ["eth0"]
    assert deleted_link_names(b"\xff" * 7) == []
    assert deleted_link_names(struct.pack("=IHHII", 3, RTM_DELLINK, 0, 0, 0)) == []
