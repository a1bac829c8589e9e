"""Redis URLs cnm accepts, and the redis-py client each one makes.

- `unix:///path/redis.sock`, `redis://host:port/db`, `rediss://...`: one server.
- `redis+sentinel://[user:pass@]host:port,host:port/SERVICE[/db][?options]`:
  the primary of the Sentinel-monitored set SERVICE. The client asks the
  sentinels for the primary on every new connection, so after a failover the
  next call reaches the new primary by itself (the failed call raises a
  connection error, which the store turns into UNAVAILABLE: callers retry).

Sentinel options (query string):
- `wait=N` (default 0): after every write that allocates or records state
  (Lua scripts, MULTI/EXEC), wait until N replicas acknowledged it (Redis
  `WAIT`); a write that fewer replicas took within `wait_timeout_ms` is
  reported UNAVAILABLE, so an acknowledged allocation is never lost by a
  failover to a replica that had not received it.
- `wait_timeout_ms=M` (default 1000).
- `sentinel_password=...`: password of the sentinels themselves.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, unquote

import redis
import redis.sentinel

SCHEMES = ("unix", "redis", "rediss", "redis+sentinel")
# One URL stays readable: bounded like any other input.
MAX_URL_LENGTH = 2048
MAX_SENTINELS = 16


@dataclass(frozen=True)
class SentinelTarget:
    sentinels: tuple[tuple[str, int], ...]
    service: str
    db: int = 0
    username: str | None = None
    password: str | None = None
    sentinel_password: str | None = None
    wait_replicas: int = 0
    wait_timeout_ms: int = 1000
    extra: dict[str, str] = field(default_factory=dict)


def check(url: str) -> str:
    """`url` if cnm can use it, else ValueError naming what is wrong."""
    if not url:
        raise ValueError("empty redis url")
    if len(url) > MAX_URL_LENGTH:
        raise ValueError(f"redis url longer than {MAX_URL_LENGTH} characters")
    scheme = url.split("://", 1)[0] if "://" in url else ""
    if scheme not in SCHEMES:
        raise ValueError(
            f"redis url {url[:64]!r}: expected unix:///path, redis://, rediss:// "
            "or redis+sentinel://host:port,.../service"
        )
    if scheme == "redis+sentinel":
        parse_sentinel(url)
    return url


def parse_sentinel(url: str) -> SentinelTarget:
    """The parts of a `redis+sentinel://` URL; ValueError when malformed."""
    # Not urlsplit: a list of hosts with [v6] literals is no valid netloc for it.
    rest = url.split("://", 1)[1]
    rest, _, query_string = rest.partition("?")
    netloc, _, path_string = rest.partition("/")
    username = password = None
    if "@" in netloc:
        cred, netloc = netloc.rsplit("@", 1)
        user, _, pw = cred.partition(":")
        username, password = unquote(user) or None, unquote(pw) or None
    sentinels: list[tuple[str, int]] = []
    for item in netloc.split(","):
        host, sep, port = item.strip().rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"redis sentinel url: {item[:64]!r} is not host:port")
        sentinels.append((host.strip("[]"), int(port)))
    if len(sentinels) > MAX_SENTINELS:
        raise ValueError(f"redis sentinel url: more than {MAX_SENTINELS} sentinels")
    path = [p for p in path_string.split("/") if p]
    if not path or len(path) > 2:
        raise ValueError("redis sentinel url: expected /SERVICE or /SERVICE/DB after the sentinels")
    db = 0
    if len(path) == 2:
        if not path[1].isdigit():
            raise ValueError(f"redis sentinel url: database {path[1][:16]!r} is not a number")
        db = int(path[1])
    query = {k: v[-1] for k, v in parse_qs(query_string).items()}
    unknown = set(query) - {"wait", "wait_timeout_ms", "sentinel_password"}
    if unknown:
        raise ValueError(f"redis sentinel url: unknown option {sorted(unknown)[0][:64]!r}")
    try:
        wait = int(query.get("wait", "0"))
        wait_timeout = int(query.get("wait_timeout_ms", "1000"))
    except ValueError:
        raise ValueError("redis sentinel url: wait and wait_timeout_ms are numbers") from None
    if not 0 <= wait <= 16 or not 1 <= wait_timeout <= 60_000:
        raise ValueError("redis sentinel url: wait is 0..16, wait_timeout_ms 1..60000")
    return SentinelTarget(
        sentinels=tuple(sentinels),
        service=unquote(path[0]),
        db=db,
        username=username,
        password=password,
        sentinel_password=query.get("sentinel_password"),
        wait_replicas=wait,
        wait_timeout_ms=wait_timeout,
    )


def redacted(url: str) -> str:
    """`url` without its password, for messages and logs."""
    if "@" not in url or "://" not in url:
        return url
    scheme, rest = url.split("://", 1)
    cred, _, tail = rest.rpartition("@")
    user = cred.split(":", 1)[0]
    return f"{scheme}://{user + ':' if user else ''}***@{tail}"


def make_client(url: str, redis_class: type[redis.Redis] = redis.Redis, **kw: Any) -> redis.Redis:
    """A client of `redis_class` for any URL cnm accepts; `kw` are redis-py
    connection options (timeouts, decode_responses)."""
    check(url)
    if not url.startswith("redis+sentinel://"):
        return redis_class.from_url(url, **kw)
    target = parse_sentinel(url)
    timeouts: dict[str, Any] = {
        k: kw[k] for k in ("socket_timeout", "socket_connect_timeout") if k in kw
    }
    sentinel = redis.sentinel.Sentinel(
        list(target.sentinels),
        sentinel_kwargs={**timeouts, "password": target.sentinel_password},
        **timeouts,
    )
    client = sentinel.master_for(
        target.service,
        redis_class=redis_class,
        db=target.db,
        username=target.username,
        password=target.password,
        **kw,
    )
    client.cnm_wait = (target.wait_replicas, target.wait_timeout_ms)  # type: ignore[attr-defined]
    return client
