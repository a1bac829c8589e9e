"""Probe the health of a cnm component: a gRPC service or a Redis server.

Used by `cnmd status`, by cnmd while it waits for its children, and by the
compose health checks:

    python -m services.healthcheck unix:///run/cnm/ipam.sock     # exit 0 when SERVING
    python -m services.healthcheck --redis unix:///run/cnm/redis.sock
    python -m services.healthcheck --tls-ca ca.pem --tls-cert client.pem --tls-key client-key.pem \
        10.0.0.5:7001                                                  # TCP: mutual TLS
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.address import parse_address
from services.channel import channel_credentials

SERVING = "SERVING"
# No answer at all: nothing listens there, or it did not reply in time.
UNREACHABLE = "UNREACHABLE"


def probe_grpc(
    address: str,
    service: str = "",
    timeout: float = 2.0,
    *,
    tls_ca: str = "",
    tls_cert: str = "",
    tls_key: str = "",
) -> str:
    """The grpc.health.v1 status name of `service` at `address` ("" = whole process),
    or UNREACHABLE when nothing answers within `timeout` (a TLS handshake the
    server refuses is UNREACHABLE too)."""
    try:
        addr = parse_address(address)
    except ValueError as e:
        raise ValueError(f"address {address!r}: {e}") from None
    # No retries or reconnect back-off: a probe is one attempt with one deadline.
    options = [("grpc.enable_retries", 0)]
    if addr.kind == "tcp" and tls_ca:
        creds = channel_credentials(tls_ca, tls_cert, tls_key)
        channel = grpc.secure_channel(addr.grpc_target, creds, options=options)
    else:
        channel = grpc.insecure_channel(addr.grpc_target, options=options)
    with channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            resp = stub.Check(health_pb2.HealthCheckRequest(service=service), timeout=timeout)
        except grpc.RpcError as e:
            code = e.code()  # type: ignore[attr-defined]
            if code in (grpc.StatusCode.UNAVAILABLE, grpc.StatusCode.DEADLINE_EXCEEDED):
                return UNREACHABLE
            # NOT_FOUND: the server runs but does not know `service`.
            return code.name
    return health_pb2.HealthCheckResponse.ServingStatus.Name(resp.status)


def probe_redis(url: str, timeout: float = 2.0) -> str:
    """SERVING when the Redis server at `url` answers PING, else UNREACHABLE."""
    import redis.exceptions

    from services.redis_url import make_client

    try:
        client = make_client(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    except ValueError:
        return UNREACHABLE
    try:
        return SERVING if client.ping() else UNREACHABLE
    except (redis.exceptions.RedisError, OSError):
        return UNREACHABLE
    finally:
        client.close()


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(
        prog="python -m services.healthcheck",
        description="Exit 0 when the component at ADDR is SERVING, 1 otherwise.",
    )
    p.add_argument("address", metavar="ADDR", help="unix:///path.sock, HOST:PORT or a redis URL")
    p.add_argument("--service", default="", help="gRPC service name ('' = whole process)")
    p.add_argument("--redis", action="store_true", help="ADDR is a Redis URL: PING it")
    p.add_argument("--timeout", type=float, default=2.0)
    for name in ("ca", "cert", "key"):
        env = f"CNM_TLS_{name.upper()}"
        p.add_argument(f"--tls-{name}", default=os.environ.get(env, ""), metavar="FILE",
                       help=f"mutual TLS on TCP (env {env})")  # fmt: skip
    args = p.parse_args(argv)
    try:
        if args.redis:
            status = probe_redis(args.address, args.timeout)
        else:
            status = probe_grpc(
                args.address,
                args.service,
                args.timeout,
                tls_ca=args.tls_ca,
                tls_cert=args.tls_cert,
                tls_key=args.tls_key,
            )
    except ValueError as e:
        print(f"healthcheck: error: {e}", file=sys.stderr)
        return 2
    print(status)
    return 0 if status == SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
