"""The common `main` of cnm-ipam, cnm-controller and cnm-driver.

Parses flags, loads configuration (file, CNM_* environment, flags), sets up
logging, opens the store and serves until SIGTERM. Configuration problems are
one line on stderr and exit code 2; an unreachable Redis is NOT_SERVING
health (and one warning line naming the URL), never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from services import metrics
from services.config import CommonConfig, ConfigError, load
from services.logsetup import setup_logging
from services.server import Server, ServiceSpec, TlsFiles
from services.store import Store

T = TypeVar("T", bound=CommonConfig)
log = logging.getLogger(__name__)


def common_parser(prog: str, description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog, description=description)
    p.add_argument("--config", metavar="FILE", help="TOML configuration file")
    p.add_argument("--listen", metavar="ADDR", help="unix:///path.sock or HOST:PORT")
    p.add_argument("--redis-url", metavar="URL", help="e.g. unix:///run/cnm/redis.sock")
    p.add_argument("--redis-prefix", metavar="PREFIX", help="key prefix of this deployment")
    p.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    p.add_argument("--log-format", choices=["json", "text"])
    p.add_argument("--tls-cert", metavar="FILE")
    p.add_argument("--tls-key", metavar="FILE")
    p.add_argument("--tls-ca", metavar="FILE", help="CA for client certificates (mutual TLS)")
    p.add_argument(
        "--insecure-tcp",
        action="store_const",
        const=True,
        default=None,
        help="allow a plaintext, unauthenticated TCP listener on a loopback address",
    )
    p.add_argument(
        "--metrics-listen",
        metavar="ADDR",
        help="serve Prometheus metrics on HOST:PORT/metrics (loopback, or HTTPS with the TLS files)",
    )
    return p


def flags_of(args: argparse.Namespace) -> dict[str, Any]:
    return {k: v for k, v in vars(args).items() if k != "config" and v is not None}


def run(
    *,
    prog: str,
    section: str,
    schema: type[T],
    parser: argparse.ArgumentParser,
    build: Callable[[T, Store], Sequence[ServiceSpec]],
    argv: Sequence[str] | None = None,
    on_stop: Callable[[], None] | None = None,
    readiness: Callable[[T, Store], Callable[[], bool]] | None = None,
) -> int:
    args = parser.parse_args(argv)
    try:
        cfg = load(schema, section=section, file=args.config, flags=flags_of(args))
        if not cfg.listen:
            raise ConfigError("no listen address: give --listen ADDR")
    except ConfigError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    setup_logging(prog, cfg.log_level, cfg.log_format)
    store = Store(cfg.redis_url, cfg.redis_prefix)
    try:
        specs = build(cfg, store)
        tls = TlsFiles(cfg.tls_cert, cfg.tls_key, cfg.tls_ca) if cfg.tls_cert else None
        if cfg.metrics_listen:
            tls_files = (tls.cert, tls.key, tls.ca) if tls else None
            metrics.serve(cfg.metrics_listen, tls_files)
        server = Server(specs, cfg.listen, tls=tls)
    except ConfigError as e:
        print(f"{prog}: error: {e}", file=sys.stderr)
        return 2
    if server.address.kind == "tcp" and tls is None:
        log.warning(
            "INSECURE: serving plaintext TCP on %s without authentication (--insecure-tcp): "
            "every local user can call this service",
            server.address,
        )
    if not store.ping():
        log.warning("redis at %s is unreachable; serving NOT_SERVING until it answers", store.url)
    check = readiness(cfg, store) if readiness else store.ping
    server.run_until_signal(readiness=check, on_stop=on_stop)
    store.close()
    return 0
