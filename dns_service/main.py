"""`cnm-dns`: the per-host embedded resolver.

    cnm-dns --listen ADDR --redis-url URL --host-id ID [--address 127.0.0.11] [--port 53]
            [--ttl S] [--host-resolv-conf FILE] [--upstream-timeout S]

Answers on ADDRESS:PORT (UDP and TCP) inside the network namespace of every
sandbox of host ID, from a table loaded from Redis and kept current by the
controller's event stream. ADDR serves gRPC health only (what cnmd and
`cnmd status` probe): SERVING once the first load is done and while Redis
answers; the resolver keeps answering from its table when Redis does not.
Run it in the host's network namespace: names it does not own are forwarded
from there.
"""

from __future__ import annotations

import argparse
import logging
import resource
import sys
from collections.abc import Callable, Sequence

from dns_service.config import ResolverConfig, finish
from dns_service.feed import Feed
from dns_service.records import Records
from dns_service.responder import Responder, ResponderSettings
from dns_service.table import NameTable
from dns_service.upstream import HostServers
from services.server import ServiceSpec
from services.service_main import common_parser, run
from services.store import Store

log = logging.getLogger(__name__)

PROG = "cnm-dns"


def parser() -> argparse.ArgumentParser:
    p = common_parser(PROG, "The per-host resolver: sandbox names, aliases, name.network.")
    p.add_argument("--host-id", metavar="ID", help="the host whose sandboxes it serves")
    p.add_argument("--address", metavar="IP", help="where it answers in each sandbox (127.0.0.11)")
    p.add_argument("--port", metavar="N", type=int, help="DNS port (53)")
    p.add_argument("--ttl", metavar="S", type=int, help="TTL of its own records (600)")
    p.add_argument("--host-resolv-conf", metavar="FILE", help="upstreams (/etc/resolv.conf)")
    p.add_argument("--upstream-timeout", metavar="S", type=float, help="forwarding deadline (2)")
    p.add_argument("--workers", metavar="N", type=int, help="forwarding/TCP threads (8)")
    return p


def raise_fd_limit() -> int:
    """Two sockets per sandbox of the host: lift the soft open-files limit to the hard
    one (a service's soft default, 1024, would cap a host at ~500 sandboxes)."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = 1 << 20 if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as e:
            log.warning("cannot raise the open-files limit from %d: %s", soft, e)
    return soft


class App:
    def __init__(self) -> None:
        self.feed: Feed | None = None
        self.responder: Responder | None = None

    def build(self, cfg: ResolverConfig, store: Store) -> list[ServiceSpec]:
        cfg = finish(cfg)
        limit = raise_fd_limit()
        table = NameTable()
        settings = ResponderSettings(
            host_id=cfg.host_id,
            address=cfg.address,
            port=cfg.port,
            ttl=cfg.ttl,
            upstream_timeout=cfg.upstream_timeout,
            workers=cfg.workers,
        )
        self.responder = Responder(table, settings, HostServers(cfg.host_resolv_conf))
        self.feed = Feed(Records(store), table, on_sandboxes=self.responder.request_sync)
        self.responder.start()
        self.feed.start()
        log.info(
            "resolver of host %s on %s:%d (up to %d sandboxes: open-files limit %d)",
            cfg.host_id, cfg.address, cfg.port, (limit - 64) // 2, limit,
        )  # fmt: skip
        return []

    def readiness(self, cfg: ResolverConfig, store: Store) -> Callable[[], bool]:
        def ready() -> bool:
            return self.feed is not None and self.feed.loaded.is_set() and store.ping()

        return ready

    def stop(self) -> None:
        if self.feed is not None:
            self.feed.stop()
        if self.responder is not None:
            self.responder.stop()


def main(argv: Sequence[str] | None = None) -> int:
    app = App()
    # A ConfigError from finish() inside build is one line and exit 2 (service_main.run).
    return run(
        prog=PROG,
        section="dns",
        schema=ResolverConfig,
        parser=parser(),
        build=app.build,
        argv=argv,
        on_stop=app.stop,
        readiness=app.readiness,
    )


if __name__ == "__main__":
    sys.exit(main())
