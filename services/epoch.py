"""Noticing that the store lost its data (Redis restarted without persistence,
or a failover to an empty replica), so that each process can put back what it
alone knows.

The store holds one marker, `store:epoch`, a random value set by whoever finds
it missing. A process remembers the value it saw last: a different value (or
none) later means everything written before may be gone. Each check is one
EVALSHA; `settling(window)` tells for how long after a change the store's
data may still be incomplete (other processes are still re-announcing theirs).
"""

from __future__ import annotations

import logging
import time
import uuid

from services.store import Store

log = logging.getLogger(__name__)

_GET_OR_SET = """
local v = redis.call('GET', KEYS[1])
if v then return v end
redis.call('SET', KEYS[1], ARGV[1])
return ARGV[1]
"""


class StoreEpoch:
    def __init__(self, store: Store) -> None:
        self.key = store.key("store", "epoch")
        self._get_or_set = store.script(_GET_OR_SET)
        self.seen: str | None = None
        self.changed_at = float("-inf")

    def check(self) -> bool:
        """True when the store lost its data since the last check."""
        value = str(self._get_or_set(keys=[self.key], args=[uuid.uuid4().hex]))
        changed = self.seen is not None and value != self.seen
        self.seen = value
        if changed:
            self.changed_at = time.monotonic()
            log.warning(
                "the store lost its data (epoch changed); putting back what this process knows"
            )
        return changed

    def settling(self, window: float) -> bool:
        """Less than `window` seconds since a loss was noticed."""
        return time.monotonic() - self.changed_at < window
