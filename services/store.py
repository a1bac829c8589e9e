"""The Redis store: one client per process, a key prefix per deployment,
atomic helpers, and UNAVAILABLE (naming the URL) when Redis is down.

Values are strings (decode_responses); `raw` is the same server without
decoding, for binary values such as serialized bit sequences.
"""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import redis
import redis.exceptions
from redis.commands.core import Script

from services import metrics, redis_url
from services.errors import Aborted, Unavailable

log = logging.getLogger(__name__)
T = TypeVar("T")


class NotReplicated(redis.exceptions.RedisError):
    """A write fewer replicas acknowledged than the URL asks for (not retried by
    redis-py, unlike ConnectionError: the write itself happened)."""


# Redis is down, unreachable, still loading its data (BusyLoadingError is a
# ConnectionError), or a read-only replica after a failover: all "try again later".
_CONNECTION_ERRORS = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.ReadOnlyError,
    NotReplicated,
)


def _unavailable(url: str, exc: Exception) -> Unavailable:
    return Unavailable(
        f"redis at {redis_url.redacted(url)} is unavailable: {exc}",
        reason="STORE_UNAVAILABLE",
        metadata={"url": redis_url.redacted(url)},
    )


def _mapped(method: Callable[..., T], *, round_trip: bool = False) -> Callable[..., T]:
    """`method` of a client, pipeline or pub/sub object, its connection errors
    turned into Unavailable naming the object's `cnm_url`; `round_trip`: each call
    is one request to Redis (counted in the metrics)."""

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> T:
        if round_trip:
            metrics.redis_round_trip()
        try:
            return method(self, *args, **kwargs)
        except _CONNECTION_ERRORS as e:
            raise _unavailable(self.cnm_url, e) from e

    return call


# Writes that allocate or record state: each is followed by WAIT when the URL
# asks for replica acknowledgement (redis+sentinel://...?wait=N).
_WAITED_COMMANDS = frozenset({"EVALSHA", "EVAL"})


def _wait_replicas(conn: Any, wait: tuple[int, int], url: str) -> None:
    """WAIT on the connection that wrote (WAIT counts that connection's writes)."""
    replicas, timeout_ms = wait
    metrics.redis_round_trip()
    conn.send_command("WAIT", replicas, timeout_ms)
    acked = int(conn.read_response())
    if acked < replicas:
        raise NotReplicated(f"write reached {acked} of {replicas} replicas within {timeout_ms} ms")


class _Pipeline(redis.client.Pipeline):
    """Pipelines (MULTI/EXEC, WATCH, scripts queued in them) fail like commands."""

    cnm_url = ""
    cnm_wait = (0, 0)
    execute = _mapped(redis.client.Pipeline.execute, round_trip=True)
    immediate_execute_command = _mapped(
        redis.client.Pipeline.immediate_execute_command, round_trip=True
    )
    watch = _mapped(redis.client.Pipeline.watch)
    unwatch = _mapped(redis.client.Pipeline.unwatch)

    def _watch_reads(self, keys: Sequence[str], commands: Sequence[tuple[Any, ...]]) -> list[Any]:
        conn = self.connection
        if conn is None:
            conn = self.connection = self.connection_pool.get_connection()
        self.watching = True
        try:
            conn.send_packed_command(conn.pack_commands([("WATCH", *keys), *commands]))
            conn.read_response()
            return [conn.read_response() for _ in commands]
        except _CONNECTION_ERRORS:
            conn.disconnect()  # its WATCH is gone with it
            raise

    # WATCH `keys` and the reads `commands` (e.g. ("GET", key)) sent together on
    # the watching connection: one round trip, not one per key and per read.
    # Returns the raw replies.
    watch_reads = _mapped(_watch_reads, round_trip=True)

    def watch_read(self, key: str, *command: Any) -> Any:
        """watch_reads of one key and one read."""
        return self.watch_reads([key], [command])[0]

    def load_scripts(self) -> None:
        """Scripts queued on the pipeline go as EVAL with their source, not EVALSHA:
        no SCRIPT EXISTS round trip before every such pipeline, and no NOSCRIPT
        inside a MULTI (which would let the transaction's other writes through)
        when Redis restarted or failed over since the script was loaded."""
        sources = {s.sha: s.script for s in self.scripts}
        for i, (args, options) in enumerate(self.command_stack):
            if args and args[0] == "EVALSHA" and args[1] in sources:
                self.command_stack[i] = (("EVAL", sources[args[1]], *args[2:]), options)

    def _execute_transaction(self, connection: Any, commands: Any, raise_on_error: bool) -> Any:
        result = super()._execute_transaction(connection, commands, raise_on_error)
        if self.cnm_wait[0]:
            _wait_replicas(connection, self.cnm_wait, self.cnm_url)
        return result


class _PubSub(redis.client.PubSub):
    """Pub/sub (subscribe, get_message, listen) fails like commands."""

    cnm_url = ""
    execute_command = _mapped(redis.client.PubSub.execute_command)
    parse_response = _mapped(redis.client.PubSub.parse_response)
    get_message = _mapped(redis.client.PubSub.get_message)
    ping = _mapped(redis.client.PubSub.ping)


class _Redis(redis.Redis):
    """redis.Redis whose every call path (commands, EVALSHA, pipelines,
    WATCH/MULTI, pub/sub) turns connection failures into Unavailable naming the URL."""

    cnm_url = ""
    # (replicas, timeout ms) to WAIT for after each allocating write; (0, 0) = none.
    cnm_wait = (0, 0)
    execute_command = _mapped(redis.Redis.execute_command, round_trip=True)

    def _send_command_parse_response(
        self, conn: Any, command_name: str, *args: Any, **options: Any
    ) -> Any:
        result = super()._send_command_parse_response(conn, command_name, *args, **options)
        if self.cnm_wait[0] and command_name in _WAITED_COMMANDS:
            _wait_replicas(conn, self.cnm_wait, self.cnm_url)
        return result

    def pipeline(self, transaction: bool = True, shard_hint: Any = None) -> _Pipeline:
        pipe = _Pipeline(self.connection_pool, self.response_callbacks, transaction, shard_hint)
        pipe.cnm_url = self.cnm_url
        pipe.cnm_wait = self.cnm_wait
        return pipe

    def pubsub(self, **kwargs: Any) -> _PubSub:
        ps = _PubSub(self.connection_pool, event_dispatcher=self._event_dispatcher, **kwargs)
        ps.cnm_url = self.cnm_url
        return ps


class Store:
    def __init__(self, url: str, prefix: str = "cnm", *, timeout: float = 5.0) -> None:
        self.url = url
        self.prefix = prefix.rstrip(":")
        kw: dict[str, Any] = {
            "socket_timeout": timeout,
            "socket_connect_timeout": timeout,
            "health_check_interval": 30,
            "retry_on_timeout": False,
        }
        self.client: redis.Redis = redis_url.make_client(url, _Redis, decode_responses=True, **kw)
        self.raw: redis.Redis = redis_url.make_client(url, _Redis, decode_responses=False, **kw)
        self.client.cnm_url = self.raw.cnm_url = url  # type: ignore[attr-defined]

    def key(self, *parts: str) -> str:
        """`<prefix>:<part>:<part>...`; every key cnm writes goes through here."""
        return ":".join((self.prefix, *parts))

    def script(self, source: str, *, raw: bool = False) -> Script:
        """A Lua script registered once, run by EVALSHA (reloaded if Redis restarted)."""
        return (self.raw if raw else self.client).register_script(source)

    def ping(self) -> bool:
        try:
            return bool(self.client.ping())
        except (Unavailable, *_CONNECTION_ERRORS):
            return False

    def transaction(
        self,
        fn: Callable[[redis.client.Pipeline], T],
        *watch: str,
        retries: int = 32,
        raw: bool = False,
    ) -> T:
        """WATCH `watch`, run `fn(pipe)` (reads immediate, then pipe.multi() and
        queued writes), EXEC; retried when a watched key changed. Returns what
        `fn` returned. Aborted after `retries` lost races, never a silent overwrite.
        """
        client = self.raw if raw else self.client
        for attempt in range(retries):
            try:
                with client.pipeline() as pipe:
                    if watch:
                        pipe.watch(*watch)
                    result = fn(pipe)
                    pipe.execute()
                    return result
            except redis.exceptions.WatchError:
                time.sleep(min(0.001 * (2**attempt), 0.05))
            except _CONNECTION_ERRORS as e:
                raise _unavailable(self.url, e) from e
        raise Aborted(f"too much contention on {', '.join(watch)}; retry the call")

    def close(self) -> None:
        self.client.close()
        self.raw.close()
