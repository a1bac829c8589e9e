"""Link deletions as the kernel announces them (RTNLGRP_LINK), for self-repair.

`LinkDeletions` listens on a netlink socket of this process's namespace (the
driver's host) and calls `on_delete(name)` for every link deleted there, or
`on_delete(None)` when the kernel dropped events (the socket overflowed): the
caller must then look at everything. Only RTM_DELLINK is decoded, by hand
with struct (a few microseconds a message), because every Join and Leave
makes link events and parsing them all with pyroute2 would cost the hot path
CPU (and the GIL) for nothing.
"""

from __future__ import annotations

import ctypes
import errno
import logging
import socket
import struct
import threading
from collections.abc import Callable

log = logging.getLogger(__name__)

RTMGRP_LINK = 1
RTM_DELLINK = 17
IFLA_IFNAME = 3
_NLMSG = struct.Struct("=IHHII")  # len, type, flags, seq, pid
_IFINFO_LEN = 16
_RTA = struct.Struct("=HH")  # len, type
SO_ATTACH_FILTER = 26
_SOCK_FILTER = struct.Struct("=HBBI")  # code, jt, jf, k
_BPF_LDH_ABS = 0x28
_BPF_JEQ_K = 0x15
_BPF_RET_K = 0x06


def deleted_link_names(data: bytes) -> list[str]:
    """The names of the links a netlink datagram says were deleted."""
    names = []
    off = 0
    while off + _NLMSG.size <= len(data):
        length, kind, _, _, _ = _NLMSG.unpack_from(data, off)
        if length < _NLMSG.size + _IFINFO_LEN or off + length > len(data):
            break
        # A bridge port leaving its bridge is also an RTM_DELLINK, of family
        # AF_BRIDGE, while the link lives on: only AF_UNSPEC ones are deletions.
        if kind == RTM_DELLINK and data[off + _NLMSG.size] == socket.AF_UNSPEC:
            attr = off + _NLMSG.size + _IFINFO_LEN
            end = off + length
            while attr + _RTA.size <= end:
                alen, atype = _RTA.unpack_from(data, attr)
                if alen < _RTA.size:
                    break
                if atype == IFLA_IFNAME:
                    raw = data[attr + _RTA.size : attr + alen]
                    names.append(raw.split(b"\0", 1)[0].decode(errors="replace"))
                    break
                attr += (alen + 3) & ~3
        off += (length + 3) & ~3
    return names


def attach_dellink_filter(sock: socket.socket) -> None:
    """Drop every message but RTM_DELLINK in the kernel, before it is queued.

    A broadcast netlink datagram holds one message; the filter reads its
    nlmsg_type (offset 4, host byte order, while BPF loads big endian).
    """
    kind = int.from_bytes(struct.pack("=H", RTM_DELLINK), "big")
    program = b"".join(
        _SOCK_FILTER.pack(*insn)
        for insn in (
            (_BPF_LDH_ABS, 0, 0, 4),
            (_BPF_JEQ_K, 0, 1, kind),
            (_BPF_RET_K, 0, 0, 0xFFFFFFFF),
            (_BPF_RET_K, 0, 0, 0),
        )
    )
    buf = ctypes.create_string_buffer(program, len(program))
    # struct sock_fprog: the instruction count, then a pointer to them (the kernel copies).
    sock.setsockopt(
        socket.SOL_SOCKET, SO_ATTACH_FILTER, struct.pack("@HP", 4, ctypes.addressof(buf))
    )


class LinkDeletions:
    def __init__(self, on_delete: Callable[[str | None], None]) -> None:
        self.on_delete = on_delete
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None

    def start(self) -> None:
        """Subscribes now (in the calling thread's namespace), then listens on a thread."""
        sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_CLOEXEC, 0)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
        attach_dellink_filter(sock)
        sock.bind((0, RTMGRP_LINK))
        sock.settimeout(0.5)
        self._sock = sock
        self._thread = threading.Thread(target=self._run, name="cnm-link-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(2.0)
        if self._sock is not None:
            self._sock.close()

    def _run(self) -> None:
        assert self._sock is not None
        while not self._stop.is_set():
            try:
                data = self._sock.recv(1 << 16)
            except TimeoutError:
                continue
            except OSError as e:
                if e.errno == errno.ENOBUFS:
                    self._notify(None)
                    continue
                if self._stop.is_set():
                    return
                log.error("link events: %s; listening again", e)
                continue
            for name in deleted_link_names(data):
                self._notify(name)

    def _notify(self, name: str | None) -> None:
        try:
            self.on_delete(name)
        except Exception:  # noqa: BLE001 - the listener must outlive any callback bug
            log.exception("link events: callback failed for %s", name)
