"""Per-object locks for a multi-threaded gRPC server.

One driver service runs per host, so in-process locks are enough to order
the calls on one sandbox, endpoint or network. Order, to avoid deadlocks:
sandbox → endpoint → network. Locks are re-entrant (DeleteSandbox leaves its
endpoints while holding the sandbox's lock) and dropped when no one holds
or waits for them.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class KeyedLocks:
    def __init__(self) -> None:
        self._guard = threading.Lock()
        self._locks: dict[str, tuple[threading.RLock, int]] = {}

    @contextmanager
    def hold(self, key: str) -> Iterator[None]:
        with self._guard:
            lock, users = self._locks.get(key, (threading.RLock(), 0))
            self._locks[key] = (lock, users + 1)
        try:
            with lock:
                yield
        finally:
            with self._guard:
                lock, users = self._locks[key]
                if users == 1:
                    del self._locks[key]
                else:
                    self._locks[key] = (lock, users - 1)


class Locks:
    def __init__(self) -> None:
        self._keyed = KeyedLocks()

    def sandbox(self, sandbox_id: str):  # noqa: ANN201 - a context manager
        return self._keyed.hold(f"sb:{sandbox_id}")

    def endpoint(self, endpoint_id: str):  # noqa: ANN201
        return self._keyed.hold(f"ep:{endpoint_id}")

    def network(self, network_id: str):  # noqa: ANN201
        return self._keyed.hold(f"net:{network_id}")
