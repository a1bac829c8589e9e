"""Which of this instance's intents are still being worked on.

A request writes intents (records in a transitional state owned by this
instance) and settles them before it returns. When it returns with an intent
still open, nobody works on it any more: typically Redis failed mid-way, so
neither the next step nor the undo could be written (nor the hand-over to the
reconciler). The reconciler takes such intents over as soon as it can read
them again, instead of waiting for the abandonment limit meant for owners
that look alive but are stuck.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager


class Inflight:
    def __init__(self) -> None:
        self._local = threading.local()
        self._lock = threading.Lock()
        # "kind:id" of intents whose operation ended without settling them.
        self._left: set[str] = set()

    @contextmanager
    def operation(self) -> Iterator[None]:
        """One request (or one take-over): intents it writes and leaves open
        are handed to the reconciler when it ends, however it ends."""
        if getattr(self._local, "held", None) is not None:
            yield  # nested: the outer operation hands over
            return
        self._local.held = set()
        try:
            yield
        finally:
            held, self._local.held = self._local.held, None
            with self._lock:
                self._left |= held

    def note(self, member: str, *, open_: bool) -> None:
        """A record was written: an open intent (held by the running operation),
        or settled."""
        held = getattr(self._local, "held", None)
        with self._lock:
            # Written again: whoever wrote it works on it (or settled it).
            self._left.discard(member)
        if held is not None:
            if open_:
                held.add(member)
            else:
                held.discard(member)

    def left(self, member: str) -> bool:
        with self._lock:
            return member in self._left

    def forget(self, member: str) -> None:
        with self._lock:
            self._left.discard(member)
