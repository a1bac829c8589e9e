"""Sockets opened inside another network namespace.

A socket belongs to the namespace its creator was in when it was made, and
keeps it for life. So each socket is made on a fresh thread that first
enters the sandbox's namespace with setns(2) (which moves only the calling
thread) and then ends: no thread of this process ever returns to work in a
foreign namespace, and the process itself never leaves its own.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import os
import socket
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

CLONE_NEWNET = 0x40000000
# Bind before the address is configured (lo of an adopted namespace may still be down).
IP_FREEBIND = 15

_libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, os.strerror(err))


def namespace_id(path: str) -> tuple[int, int]:
    """(device, inode) of a namespace file: equal ids mean the same namespace."""
    st = os.stat(path)
    return st.st_dev, st.st_ino


def own_namespace_id() -> tuple[int, int]:
    return namespace_id(f"/proc/self/task/{threading.get_native_id()}/ns/net")


def in_namespace(path: str, make: Callable[[], T]) -> T:
    """`make()` run on a fresh thread inside the namespace at `path`; its result,
    or its exception raised here. The sockets it makes stay in that namespace."""
    result: dict[str, Any] = {}

    def work() -> None:
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                _setns(fd)
            finally:
                os.close(fd)
            result["value"] = make()
        except BaseException as e:  # handed to the caller's thread
            result["error"] = e

    t = threading.Thread(target=work, name="cnm-dns-setns", daemon=True)
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["value"]


def bound_sockets(path: str, address: str, port: int) -> tuple[socket.socket, socket.socket]:
    """(UDP, listening TCP) sockets bound to address:port inside the namespace at `path`."""

    def make() -> tuple[socket.socket, socket.socket]:
        family = socket.AF_INET6 if ":" in address else socket.AF_INET
        udp = socket.socket(family, socket.SOCK_DGRAM)
        tcp = socket.socket(family, socket.SOCK_STREAM)
        try:
            for s in (udp, tcp):
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.setsockopt(socket.SOL_IP, IP_FREEBIND, 1)
                s.bind((address, port))
                s.setblocking(False)
            tcp.listen(64)
        except BaseException:
            udp.close()
            tcp.close()
            raise
        return udp, tcp

    return in_namespace(path, make)
