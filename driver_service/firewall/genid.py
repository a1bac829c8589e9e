"""The nftables ruleset generation id: a cheap "has anyone changed anything?" probe.

The kernel bumps one counter per committed nftables transaction, whoever made
it (NFT_MSG_GETGEN answers with NFTA_GEN_ID). Reading it costs ~15 us against
tens of milliseconds for listing a table with a thousand map elements, so the
watcher polls the counter and lists cnm's tables only when someone else has
committed since the firewall last verified them.

The query is a single nfnetlink message on a NETLINK_NETFILTER socket that is
created inside the target namespace (`osl.nsenter.run_in_netns`) and kept.
"""

from __future__ import annotations

import socket
import struct
import threading

from driver_service.osl.nsenter import NetnsRef, run_in_netns
from services.errors import Unavailable

NETLINK_NETFILTER = 12
NFNL_SUBSYS_NFTABLES = 10
NFT_MSG_NEWGEN = 15
NFT_MSG_GETGEN = 16
NFTA_GEN_ID = 1
NLM_F_REQUEST = 0x1
NLMSG_ERROR = 0x2

_NLMSGHDR = struct.Struct("=IHHII")
_NFGENMSG = struct.Struct("=BBH")
_NLATTR = struct.Struct("=HH")


class GenerationReader:
    """Reads the ruleset generation of one network namespace."""

    def __init__(self, netns: NetnsRef = None) -> None:
        def open_socket() -> socket.socket:
            sock = socket.socket(
                socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, NETLINK_NETFILTER
            )
            sock.bind((0, 0))
            sock.settimeout(5)
            return sock

        self._sock = run_in_netns(netns, open_socket)
        self._lock = threading.Lock()
        self._seq = 0

    def read(self) -> int:
        with self._lock:
            self._seq += 1
            seq = self._seq
            msg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETGEN
            size = _NLMSGHDR.size + _NFGENMSG.size
            try:
                self._sock.send(
                    _NLMSGHDR.pack(size, msg_type, NLM_F_REQUEST, seq, 0)
                    + _NFGENMSG.pack(socket.AF_UNSPEC, 0, 0)
                )
                while True:
                    data = self._sock.recv(65536)
                    gen = _parse(data, seq)
                    if gen is not None:
                        return gen
            except OSError as e:
                raise Unavailable(f"nftables generation query failed: {e}") from e

    def close(self) -> None:
        self._sock.close()


def _parse(data: bytes, seq: int) -> int | None:
    """The generation id in a NEWGEN answer to `seq`; None for unrelated messages."""
    offset = 0
    while offset + _NLMSGHDR.size <= len(data):
        length, msg_type, _, msg_seq, _ = _NLMSGHDR.unpack_from(data, offset)
        if length < _NLMSGHDR.size:
            break
        if msg_seq == seq:
            if msg_type == NLMSG_ERROR:
                (err,) = struct.unpack_from("=i", data, offset + _NLMSGHDR.size)
                raise OSError(-err, "NFT_MSG_GETGEN refused")
            if msg_type == (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_NEWGEN:
                attr = offset + _NLMSGHDR.size + _NFGENMSG.size
                end = offset + length
                while attr + _NLATTR.size <= end:
                    alen, atype = _NLATTR.unpack_from(data, attr)
                    if alen < _NLATTR.size:
                        break
                    if atype & 0x3FFF == NFTA_GEN_ID:
                        return struct.unpack_from(">I", data, attr + _NLATTR.size)[0]
                    attr += (alen + 3) & ~3
                raise OSError(0, "NEWGEN answer without NFTA_GEN_ID")
        offset += (length + 3) & ~3
    return None
