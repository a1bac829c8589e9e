"""The few rtnetlink link requests of the Leave path, encoded by hand.

A Leave needs three small requests (look the host end up, tombstone both
ends) and the background deleter one (delete a link group). Through pyroute2
each costs ~0.3 ms of Python (0.9 runs an event loop under every synchronous
call) and opening a handle ~0.6 ms more; these are a few struct calls on a
plain netlink socket (`rtnl.netlink_socket`), so the caller's wait is the
kernel's. Errors come back as OSError with the kernel's errno and its
extended-ack message, which `rtnl.kernel_errors` classifies like any other.
"""

from __future__ import annotations

import itertools
import os
import socket
import struct
from dataclasses import dataclass

RTM_NEWLINK = 16
RTM_DELLINK = 17
RTM_GETLINK = 18
RTM_SETLINK = 19
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_ACK_TLVS = 0x200
NLMSGERR_ATTR_MSG = 1
IFF_UP = 0x1
IFLA_IFNAME = 3
IFLA_LINK = 5
IFLA_MASTER = 10
IFLA_GROUP = 27
IFLA_EXT_MASK = 29
IFLA_LINK_NETNSID = 37
IFLA_TARGET_NETNSID = 46
RTEXT_FILTER_SKIP_STATS = 1 << 3

_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFO = struct.Struct("=BxHiII")  # family, type, index, flags, change
_RTA = struct.Struct("=HH")  # len, type
_U32 = struct.Struct("=I")
_S32 = struct.Struct("=i")
_seq = itertools.count(1)


@dataclass(frozen=True)
class LinkRef:
    """A link as a lookup found it: its index, and for a veth its peer's
    index (None when the kernel does not say: it omits it when both ends
    have the same index) and the peer's namespace id as seen from the
    asking namespace (None when the peer lives in the same namespace)."""

    index: int
    peer_index: int | None
    peer_netnsid: int | None


def _attr(kind: int, data: bytes) -> bytes:
    length = _RTA.size + len(data)
    return _RTA.pack(length, kind) + data + b"\0" * (-length & 3)


def _attrs(data: bytes, off: int, end: int) -> dict[int, bytes]:
    out: dict[int, bytes] = {}
    while off + _RTA.size <= end:
        alen, kind = _RTA.unpack_from(data, off)
        if alen < _RTA.size:
            break
        out.setdefault(kind & 0x3FFF, data[off + _RTA.size : off + alen])
        off += (alen + 3) & ~3
    return out


def _error(data: bytes, off: int, flags: int, length: int) -> OSError | None:
    (code,) = _S32.unpack_from(data, off + _NLMSG.size)
    if code == 0:
        return None
    text = os.strerror(-code)
    if flags & NLM_F_ACK_TLVS:
        # After the error code: the request's header (only it: NLM_F_CAPPED), then TLVs.
        (echo_len,) = _U32.unpack_from(data, off + _NLMSG.size + 4)
        start = off + _NLMSG.size + 4 + min(echo_len, _NLMSG.size)
        msg = _attrs(data, start, off + length).get(NLMSGERR_ATTR_MSG)
        if msg:
            text = msg.split(b"\0", 1)[0].decode(errors="replace")
    return OSError(-code, text)


def _request(sock: socket.socket, kind: int, body: bytes, flags: int = NLM_F_ACK) -> bytes | None:
    """Send one request; return the first reply message's payload (None for a
    bare ack). Raises OSError(errno) when the kernel refuses it."""
    seq = next(_seq)
    sock.send(_NLMSG.pack(_NLMSG.size + len(body), kind, NLM_F_REQUEST | flags, seq, 0) + body)
    payload: bytes | None = None
    while True:
        data = sock.recv(65536)
        off = 0
        while off + _NLMSG.size <= len(data):
            length, mtype, mflags, mseq, _ = _NLMSG.unpack_from(data, off)
            if length < _NLMSG.size:
                break
            if mseq == seq:
                if mtype == NLMSG_ERROR:
                    err = _error(data, off, mflags, length)
                    if err is not None:
                        raise err
                    return payload
                if mtype == NLMSG_DONE:
                    return payload
                if payload is None:
                    payload = data[off + _NLMSG.size : off + length]
                    if not flags & NLM_F_ACK:
                        return payload
            off += (length + 3) & ~3


def get_link(sock: socket.socket, name: str) -> LinkRef | None:
    """Look link `name` up; None when there is none."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0)
    body += _attr(IFLA_IFNAME, name.encode() + b"\0")
    body += _attr(IFLA_EXT_MASK, _U32.pack(RTEXT_FILTER_SKIP_STATS))
    try:
        reply = _request(sock, RTM_GETLINK, body, flags=0)
    except OSError as e:
        if e.errno == 19:  # ENODEV
            return None
        raise
    if reply is None:
        return None
    _, _, index, _, _ = _IFINFO.unpack_from(reply, 0)
    attrs = _attrs(reply, _IFINFO.size, len(reply))
    peer = attrs.get(IFLA_LINK)
    nsid = attrs.get(IFLA_LINK_NETNSID)
    return LinkRef(
        index=index,
        peer_index=_U32.unpack(peer)[0] if peer else None,
        peer_netnsid=_S32.unpack(nsid)[0] if nsid else None,
    )


def set_link(
    sock: socket.socket,
    index: int,
    *,
    name: str | None = None,
    down: bool = False,
    group: int | None = None,
    nomaster: bool = False,
    netnsid: int | None = None,
) -> None:
    """One RTM_NEWLINK on link `index` (of namespace id `netnsid`, seen from
    the socket's namespace, when given): rename, set down, put in a group,
    detach from its master, all in one request."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, index, 0, IFF_UP if down else 0)
    if netnsid is not None:
        body += _attr(IFLA_TARGET_NETNSID, _S32.pack(netnsid))
    if name is not None:
        body += _attr(IFLA_IFNAME, name.encode() + b"\0")
    if nomaster:
        body += _attr(IFLA_MASTER, _U32.pack(0))
    if group is not None:
        body += _attr(IFLA_GROUP, _U32.pack(group))
    _request(sock, RTM_SETLINK, body)


def delete_group(sock: socket.socket, group: int) -> None:
    """Delete every link of `group` in the socket's namespace (one request:
    the kernel unregisters them as a batch)."""
    body = _IFINFO.pack(socket.AF_UNSPEC, 0, 0, 0, 0) + _attr(IFLA_GROUP, _U32.pack(group))
    _request(sock, RTM_DELLINK, body)
