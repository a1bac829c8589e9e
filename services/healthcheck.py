"""Probe the health of a cnm component: a gRPC service or a Redis server.

Used by `cnmd status`, by cnmd while it waits for its children, and by the
compose health checks:

    python -m services.healthcheck unix:///run/cnm/ipam.sock     # exit 0 when SERVING
    python -m services.healthcheck --redis unix:///run/cnm/redis.sock
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import grpc
from grpc_health.v1 import health_pb2, health_pb2_grpc

from services.address import parse_address

SERVING = "SERVING"
# No answer at all: nothing listens there, or it did not reply in time.
UNREACHABLE = "UNREACHABLE"


def probe_grpc(address: str, service: str = "", timeout: float = 2.0) -> str:
    """The grpc.health.v1 status name of `service` at `address` ("" = whole process),
    or UNREACHABLE when nothing answers within `timeout`."""
    try:
        target = parse_address(address).grpc_target
    except ValueError as e:
        raise ValueError(f"address {address!r}: {e}") from None
    # No retries or reconnect back-off: a probe is one attempt with one deadline.
    with grpc.insecure_channel(target, options=[("grpc.enable_retries", 0)]) as channel:
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
    args = p.parse_args(argv)
    try:
        if args.redis:
            status = probe_redis(args.address, args.timeout)
        else:
            status = probe_grpc(args.address, args.service, args.timeout)
    except ValueError as e:
        print(f"healthcheck: error: {e}", file=sys.stderr)
        return 2
    print(status)
    return 0 if status == SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
