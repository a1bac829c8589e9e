"""Answering queries: a UDP and a TCP socket on 127.0.0.11:53 inside each sandbox.

One loop thread owns the selector and every listening socket: it opens the
sockets of this host's sandboxes (`netns_socket`), closes those of sandboxes
that went, and answers UDP queries from the name table inline (no lock held
longer than a dictionary lookup, no Redis). The socket a query arrived on
says which sandbox asked: that sandbox's networks are the query's scope.
Forwarded queries and TCP connections run on a small thread pool, so a slow
upstream never delays the names cnm answers itself.
"""

from __future__ import annotations

import contextlib
import logging
import selectors
import socket
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from dns_service import upstream, wire
from dns_service.netns_socket import bound_sockets, namespace_id, own_namespace_id
from dns_service.table import Kind, NameTable, Sb

log = logging.getLogger(__name__)

# Sandboxes whose sockets could not be opened are retried this often.
RETRY_INTERVAL = 2.0
TCP_IDLE = 5.0


@dataclass
class _Listener:
    sandbox_id: str
    key: str
    udp: socket.socket
    tcp: socket.socket


@dataclass(frozen=True)
class ResponderSettings:
    host_id: str
    address: str = "127.0.0.11"
    port: int = 53
    ttl: int = 600
    upstream_timeout: float = 2.0
    workers: int = 8


class Responder:
    def __init__(
        self, table: NameTable, settings: ResponderSettings, host_servers: upstream.HostServers
    ) -> None:
        self.table = table
        self.s = settings
        self.host_servers = host_servers
        self.selector = selectors.DefaultSelector()
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self.selector.register(self._wake_r, selectors.EVENT_READ, None)
        self._sync_wanted = threading.Event()
        self._stop = threading.Event()
        self._listeners: dict[str, _Listener] = {}
        self._failed: dict[str, str] = {}  # sandbox id -> last error (logged once)
        self._last_retry = 0.0
        self._own_ns = own_namespace_id()
        self.pool = ThreadPoolExecutor(settings.workers, thread_name_prefix="cnm-dns-work")
        self._thread = threading.Thread(target=self._loop, name="cnm-dns-loop", daemon=True)

    # --- control (any thread) --------------------------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._wake()
        self._thread.join(timeout=5)
        self.pool.shutdown(wait=False, cancel_futures=True)

    def request_sync(self) -> None:
        """The sandboxes changed: open and close sockets to match (on the loop thread)."""
        self._sync_wanted.set()
        self._wake()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def serving(self) -> list[str]:
        return sorted(self._listeners)

    # --- loop --------------------------------------------------------------------------------

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._turn()
            except Exception:  # one bad packet or socket must not end answering
                log.exception("resolver loop: unexpected error")
                time.sleep(0.1)
        for lst in list(self._listeners.values()):
            self._close(lst)

    def _turn(self) -> None:
        if self._sync_wanted.is_set() or (
            self._failed and time.monotonic() - self._last_retry > RETRY_INTERVAL
        ):
            self._sync_wanted.clear()
            self._sync()
        for key, _mask in self.selector.select(timeout=RETRY_INTERVAL):
            if key.data is None:
                try:
                    while self._wake_r.recv(4096):
                        pass
                except BlockingIOError:
                    pass
                continue
            kind, lst = key.data
            if kind == "udp":
                self._read_udp(lst)
            else:
                self._accept_tcp(lst)

    def _sync(self) -> None:
        self._last_retry = time.monotonic()
        wanted: dict[str, Sb] = {sb.id: sb for sb in self.table.sandboxes_on(self.s.host_id)}
        for sid, lst in list(self._listeners.items()):
            sb = wanted.get(sid)
            if sb is None or sb.key != lst.key:
                self._close(lst)
        for sid in list(self._failed):
            if sid not in wanted:
                del self._failed[sid]
        for sid, sb in wanted.items():
            if sid not in self._listeners:
                self._open(sb)

    def _open(self, sb: Sb) -> None:
        try:
            if namespace_id(sb.key) == self._own_ns:
                return  # shares the host's namespace (host network): the host's resolver serves it
            udp, tcp = bound_sockets(sb.key, self.s.address, self.s.port)
        except OSError as e:
            if self._failed.get(sb.id) != str(e):
                log.warning(
                    "sandbox %s: cannot listen on %s:%d in %s: %s",
                    sb.name or sb.id[:12], self.s.address, self.s.port, sb.key, e,
                )  # fmt: skip
            self._failed[sb.id] = str(e)
            return
        self._failed.pop(sb.id, None)
        lst = _Listener(sb.id, sb.key, udp, tcp)
        self._listeners[sb.id] = lst
        self.selector.register(udp, selectors.EVENT_READ, ("udp", lst))
        self.selector.register(tcp, selectors.EVENT_READ, ("tcp", lst))
        log.debug("sandbox %s: answering on %s:%d", sb.id[:12], self.s.address, self.s.port)

    def _close(self, lst: _Listener) -> None:
        self._listeners.pop(lst.sandbox_id, None)
        for s in (lst.udp, lst.tcp):
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(s)
            s.close()

    # --- queries -----------------------------------------------------------------------------

    def _read_udp(self, lst: _Listener) -> None:
        for _ in range(64):  # bounded: other sockets get their turn
            try:
                data, addr = lst.udp.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return

            def send(reply: bytes, to: tuple[str, int] = addr) -> int:
                return lst.udp.sendto(reply, to)

            self._handle(data, wire.UDP_LIMIT, lst.sandbox_id, send)

    def _handle(
        self, data: bytes, limit: int, sandbox_id: str, send: Callable[[bytes], object]
    ) -> None:
        q = wire.parse(data)
        if q is None:
            return  # not a query we serve: dropped, as a resolver does with garbage
        if limit == wire.UDP_LIMIT:
            limit = q.udp_limit
        result = self.table.resolve(sandbox_id, q.name, q.type)
        if result.kind is not Kind.FORWARD:
            _send(send, wire.answer(q, result, self.s.ttl, limit))
            return
        servers = result.servers or self.host_servers.get()
        if not servers:
            _send(send, wire.servfail(q))
            return
        self.pool.submit(self._forward, data, q, servers, send)

    def _forward(
        self, data: bytes, q: wire.Question, servers: tuple[str, ...], send: Callable
    ) -> None:
        reply = upstream.forward(data, servers, self.s.upstream_timeout)
        if reply is None:
            log.debug("no upstream of %s answered %s in time", servers, q.name)
            reply = wire.servfail(q)
        _send(send, reply)

    def _accept_tcp(self, lst: _Listener) -> None:
        try:
            conn, _ = lst.tcp.accept()
        except OSError:
            return
        self.pool.submit(self._serve_tcp, conn, lst.sandbox_id)

    def _serve_tcp(self, conn: socket.socket, sandbox_id: str) -> None:
        """Length-prefixed queries (RFC 1035 4.2.2) until the client closes or idles."""
        with conn:
            conn.setblocking(True)
            conn.settimeout(TCP_IDLE)
            lock = threading.Lock()

            def send(reply: bytes) -> None:
                with lock:
                    conn.sendall(len(reply).to_bytes(2, "big") + reply)

            try:
                while True:
                    head = _recv_exact(conn, 2)
                    if head is None:
                        return
                    body = _recv_exact(conn, int.from_bytes(head, "big"))
                    if body is None:
                        return
                    q = wire.parse(body)
                    if q is None:
                        return
                    result = self.table.resolve(sandbox_id, q.name, q.type)
                    if result.kind is not Kind.FORWARD:
                        send(wire.answer(q, result, self.s.ttl, wire.TCP_LIMIT))
                        continue
                    servers = result.servers or self.host_servers.get()
                    reply = upstream.forward(body, servers, self.s.upstream_timeout)
                    send(reply if reply is not None else wire.servfail(q))
            except OSError:
                return


def _send(send: Callable[[bytes], object], reply: bytes) -> None:
    try:
        send(reply)
    except OSError as e:  # the sandbox went, or the client did
        log.debug("reply not sent: %s", e)


def _recv_exact(conn: socket.socket, n: int) -> bytes | None:
    buf = b""
    while len(buf) < n:
        chunk = conn.recv(n - len(buf))
        if not chunk:
            return None
        buf += chunk
    return buf
