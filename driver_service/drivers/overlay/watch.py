"""The overlay's background thread: peer changes from pub/sub, liveness, periodic resync.

Three triggers, one thread (so the kernel is programmed by one writer besides
Join/Leave, which hold the same per-network lock):

- a message on the peers channel names a network whose peers changed: its
  entries are brought up to date within milliseconds;
- every `tick` seconds (the heartbeat interval) the wanted entries of every
  local network are recomputed from Redis: a peer's host that missed its
  heartbeat ttl drops out (and comes back when it beats again); networks whose
  wanted entries did not change cost one HGETALL and touch no kernel state;
- every `full_every` seconds, and after every (re)subscription, a full resync
  compares the kernel itself with the wanted entries and repairs both ways
  (a lost message, an entry someone deleted by hand).
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

import redis.exceptions

from services.errors import CnmError
from services.store import Store

log = logging.getLogger(__name__)
T = TypeVar("T")

# Longest wait for a message before looking at the clock and the stop flag.
_POLL = 0.2
# Between subscription attempts while Redis is away: short, so that peers
# (and the acks a Join waits for) flow again soon after it is back.
_RETRY = 0.2


class PeerWatcher:
    def __init__(
        self,
        store: Store,
        channel: str,
        *,
        on_change: Callable[[set[str]], None],
        on_tick: Callable[[bool], None],
        tick: float,
        full_every: float,
    ) -> None:
        self.store = store
        self.channel = channel
        self.on_change = on_change
        self.on_tick = on_tick
        self.tick = tick
        self.full_every = full_every
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="cnm-overlay-peers", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            pubsub = None
            try:
                pubsub = self.store.client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self.channel)
                if failures:
                    log.info("overlay peer watcher: subscribed again after %d attempts", failures)
                failures = 0
                self._loop(pubsub)
            except Exception as e:  # noqa: BLE001 - the watcher must outlive any one bug
                failures += 1
                # The first failure of a streak loudly, the retries quietly.
                expected = isinstance(e, (redis.exceptions.RedisError, CnmError, OSError))
                level = logging.WARNING if failures == 1 or not expected else logging.DEBUG
                log.log(level, "overlay peer watcher: %s; retrying every %.1fs", e, _RETRY,
                        exc_info=not expected)  # fmt: skip
                self._stop.wait(_RETRY)
            finally:
                if pubsub is not None:
                    with contextlib.suppress(redis.exceptions.RedisError, CnmError, OSError):
                        pubsub.close()

    def _loop(self, pubsub: redis.client.PubSub) -> None:
        # Whatever was published while we were not subscribed is caught up on now.
        self.on_tick(True)
        now = time.monotonic()
        next_tick, next_full = now + self.tick, now + self.full_every
        while not self._stop.is_set():
            wait = max(0.0, min(_POLL, next_tick - time.monotonic()))
            changed: set[str] = set()
            msg = pubsub.get_message(timeout=wait)
            while msg is not None:
                if msg.get("type") == "message":
                    changed.add(str(msg["data"]))
                # Coalesce a burst (many joins at once) into one pass per network.
                msg = pubsub.get_message(timeout=0)
            if changed:
                self._guard(self.on_change, changed)
            now = time.monotonic()
            if now >= next_tick:
                full = now >= next_full
                self._guard(self.on_tick, full)
                next_tick = now + self.tick
                if full:
                    next_full = now + self.full_every

    @staticmethod
    def _guard(fn: Callable[[T], None], arg: T) -> None:
        # A failure for one network must not end the subscription; the next pass retries.
        try:
            fn(arg)
        except CnmError as e:
            log.warning("overlay peer sync failed: %s", e)
        except Exception:  # noqa: BLE001 - a bug must not silence the overlay for good
            log.exception("overlay peer sync failed")
