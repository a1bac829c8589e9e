"""gRPC server bootstrap shared by the three services.

Serves the given servicers plus grpc.health.v1 (per service name, and "" for
the whole process) and server reflection; listens on a unix socket (mode
0600: root only) or TCP (mutual TLS when certificates are configured); maps
domain errors to status codes through ErrorInterceptor; stops gracefully on
SIGTERM/SIGINT.
"""

from __future__ import annotations

import errno
import logging
import os
import signal
import socket
import threading
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc

from services import reflection
from services.address import parse_address
from services.config import ConfigError
from services.interceptors import ErrorInterceptor

log = logging.getLogger(__name__)

SERVING = health_pb2.HealthCheckResponse.SERVING
NOT_SERVING = health_pb2.HealthCheckResponse.NOT_SERVING


@dataclass(frozen=True)
class ServiceSpec:
    """One gRPC service to serve: its full name and how to add it."""

    full_name: str  # e.g. "cnm.ipam.v1.Ipam"
    add_to_server: Callable[[Any, grpc.Server], None]
    servicer: Any


@dataclass(frozen=True)
class TlsFiles:
    cert: str
    key: str
    ca: str


class Server:
    def __init__(
        self,
        specs: Sequence[ServiceSpec],
        listen: str,
        *,
        tls: TlsFiles | None = None,
        max_workers: int = 32,
    ) -> None:
        self.specs = list(specs)
        self.address = parse_address(listen)
        self.health = health.HealthServicer()
        self.grpc = grpc.server(
            futures.ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="rpc"),
            interceptors=[ErrorInterceptor()],
            options=[("grpc.so_reuseport", 0)],
        )
        for spec in self.specs:
            spec.add_to_server(spec.servicer, self.grpc)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.grpc)
        names = [
            *(s.full_name for s in self.specs),
            health_pb2.DESCRIPTOR.services_by_name["Health"].full_name,
            *reflection.SERVICE_NAMES,
        ]
        reflection.enable(names, self.grpc)
        self._bind(tls)
        self.set_serving(False)
        self._stopped = threading.Event()

    def _bind(self, tls: TlsFiles | None) -> None:
        addr = self.address
        if addr.kind == "unix":
            path = Path(addr.target)
            if not path.parent.is_dir():
                raise ConfigError(
                    f"cannot listen on {addr}: directory {path.parent} does not exist"
                )
            if path.exists():
                if _socket_in_use(path):
                    raise ConfigError(f"cannot listen on {addr}: another process is serving there")
                path.unlink()
            old_umask = os.umask(0o177)  # socket created 0600: root-only by default
            try:
                bound = self.grpc.add_insecure_port(str(addr))
            finally:
                os.umask(old_umask)
        else:
            _check_port_free(addr.target)
            try:
                if tls:
                    creds = grpc.ssl_server_credentials(
                        [(Path(tls.key).read_bytes(), Path(tls.cert).read_bytes())],
                        root_certificates=Path(tls.ca).read_bytes(),
                        require_client_auth=True,
                    )
                    bound = self.grpc.add_secure_port(addr.target, creds)
                else:
                    bound = self.grpc.add_insecure_port(addr.target)
            except RuntimeError:
                bound = 0
        if not bound and addr.kind == "tcp":
            raise ConfigError(f"cannot listen on {addr}: address in use or not available")
        if not bound:
            raise ConfigError(f"cannot listen on {addr}")

    def set_serving(self, serving: bool) -> None:
        status = SERVING if serving else NOT_SERVING
        for spec in self.specs:
            self.health.set(spec.full_name, status)
        self.health.set("", status)

    def start(self) -> None:
        self.grpc.start()
        log.info("listening on %s", self.address)

    def stop(self, grace: float = 3.0) -> None:
        if self._stopped.is_set():
            return
        self._stopped.set()
        self.health.enter_graceful_shutdown()
        self.grpc.stop(grace).wait(grace + 1)
        if self.address.kind == "unix":
            Path(self.address.target).unlink(missing_ok=True)
        log.info("stopped")

    def wait(self) -> None:
        self._stopped.wait()

    def run_until_signal(
        self,
        readiness: Callable[[], bool] | None = None,
        interval: float = 2.0,
        on_stop: Callable[[], None] | None = None,
    ) -> None:
        """Serve until SIGTERM/SIGINT. `readiness` (e.g. Redis ping) drives health."""
        stop = threading.Event()

        def handle(signum: int, _frame: Any) -> None:
            log.info("signal %d: stopping", signum)
            stop.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        self.start()
        last: bool | None = None
        while not stop.is_set():
            try:
                ok = readiness() if readiness else True
            except Exception:  # noqa: BLE001 - a failing check means not ready, not a dead server
                log.exception("readiness check failed")
                ok = False
            if ok != last:
                self.set_serving(ok)
                if not ok:
                    log.warning("not ready: dependency check failed; health is NOT_SERVING")
                last = ok
            stop.wait(interval if ok else min(interval, 0.5))
        if on_stop:
            on_stop()
        self.stop()


def _check_port_free(target: str) -> None:
    """ConfigError when HOST:PORT is taken: caught here, before gRPC core would
    log its own multi-part error line next to ours."""
    host, _, port = target.rpartition(":")
    if not port.isdigit() or int(port) == 0:
        return
    try:
        infos = socket.getaddrinfo(host.strip("[]"), int(port), type=socket.SOCK_STREAM)
    except OSError:
        return  # unresolvable: gRPC reports it
    for family, kind, proto, _name, sockaddr in infos:
        with socket.socket(family, kind, proto) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind(sockaddr)
            except OSError as e:
                if e.errno == errno.EADDRINUSE:
                    raise ConfigError(f"cannot listen on {target}: address in use") from None


def _socket_in_use(path: Path) -> bool:
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(str(path))
        return True
    except OSError:
        return False
    finally:
        s.close()
