"""Prometheus metrics of a cnm service, served on the opt-in `metrics_listen` address.

Shared by the three services: RPC latency by method and code (observed by the
server interceptor), Redis round trips (counted where redis-py sends bytes),
driver steps (netlink, nft, files). State gauges (pool usage, endpoints per
network, published ports) are read at scrape time by collectors each service
registers with `register_state`, so a scrape never races the code it counts.

Nothing is served unless `metrics_listen` is set. Plaintext HTTP only on a
loopback address; any other address needs the service's TLS files and serves
HTTPS with client certificates (the same rule as the gRPC listener).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from services.config import ConfigError, is_loopback_host

log = logging.getLogger(__name__)

try:  # a venv made before prometheus-client became a dependency still runs (metrics off)
    import prometheus_client as prom
    from prometheus_client.core import GaugeMetricFamily
    from prometheus_client.registry import Collector
except ImportError:  # pragma: no cover - setup.sh installs it
    prom = None  # type: ignore[assignment]  # the optional-import idiom: every use checks `prom is None`

# Sub-millisecond buckets: a cnm RPC or a netlink step takes 0.1-50 ms.
_BUCKETS = (0.00025, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 10.0)

if prom is not None:
    RPC_SECONDS = prom.Histogram(
        "cnm_rpc_duration_seconds",
        "gRPC calls served, by method and status code (the _count is the number of calls)",
        ["method", "code"],
        buckets=_BUCKETS,
    )
    STEP_SECONDS = prom.Histogram(
        "cnm_driver_step_duration_seconds",
        "Driver operation steps: netlink (one rtnl handle's work), netlink_background "
        "(links deleted off the callers' path), nft (one nftables "
        "transaction), files (one sandbox file written)",
        ["step"],
        buckets=_BUCKETS,
    )
    REDIS_ROUND_TRIPS = prom.Counter(
        "cnm_redis_round_trips_total",
        "Requests sent to Redis (a pipeline or a script is one round trip)",
    )


def observe_rpc(method: str, code: str, seconds: float) -> None:
    if prom is not None:
        RPC_SECONDS.labels(method.rsplit("/", 1)[-1], code).observe(seconds)


@contextmanager
def step(name: str) -> Iterator[None]:
    """Times one driver step (netlink, netlink_background, nft or files), failures included."""
    if prom is None:
        yield
        return
    start = time.perf_counter()
    try:
        yield
    finally:
        STEP_SECONDS.labels(name).observe(time.perf_counter() - start)


def redis_round_trip() -> None:
    if prom is not None:
        REDIS_ROUND_TRIPS.inc()


Samples = Callable[[], Iterable[tuple[Sequence[str], float]]]
_GAUGES: dict[str, tuple[str, Sequence[str], Samples]] = {}


def register_state(name: str, doc: str, labels: Sequence[str], samples: Samples) -> None:
    """A gauge computed at scrape time from samples() -> (label values, value)...;
    registering a name again replaces it. A failing samples() (Redis down)
    leaves that gauge out of the scrape."""
    _GAUGES[name] = (doc, tuple(labels), samples)


if prom is not None:

    class _State(Collector):
        def collect(self) -> Iterator[Any]:
            for name, (doc, labels, samples) in list(_GAUGES.items()):
                family = GaugeMetricFamily(name, doc, labels=labels)
                try:
                    for values, value in samples():
                        family.add_metric(list(values), value)
                except Exception as e:  # noqa: BLE001 - a scrape must not fail the service
                    log.warning("metric %s not collected: %s", name, e)
                    continue
                yield family

        def describe(self) -> Iterator[Any]:
            return iter(())  # names vary with what registers: never checked for clashes

    prom.REGISTRY.register(_State())


def serve(listen: str, tls: tuple[str, str, str] | None = None) -> tuple[str, int]:
    """Serves /metrics on HOST:PORT (port 0: any free port); returns where it listens."""
    host, sep, port = listen.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"metrics listen address {listen!r}: expected HOST:PORT")
    if prom is None:
        raise ConfigError("metrics_listen needs the prometheus-client package (scripts/setup.sh)")
    if not is_loopback_host(host) and tls is None:
        raise ConfigError(
            f"refusing plaintext metrics on {listen}: only a loopback address, or give "
            "--tls-cert, --tls-key and --tls-ca (HTTPS with client certificates)"
        )
    cert, key, ca = tls or (None, None, None)
    try:
        server, _thread = prom.start_http_server(
            int(port),
            addr=host,
            certfile=cert,
            keyfile=key,
            client_cafile=ca,
            client_auth_required=tls is not None,
        )
    except OSError as e:
        raise ConfigError(f"cannot serve metrics on {listen}: {e.strerror or e}") from None
    bound = server.server_address[1]
    log.info(
        "metrics on %s://%s:%d/metrics", "https" if tls else "http", listen.rsplit(":", 1)[0], bound
    )
    return host, bound
