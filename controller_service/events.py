"""Events: their types, and the Watch stream over the store's event log.

Each event's revision is strictly increasing across every controller replica
and an event is committed with the change it reports (the store's contract:
repository.Tx.event); readers resume after a revision and skip nothing
retained.
"""

from __future__ import annotations

import enum
import logging
import time
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from controller_service.models import Event
from services.errors import OutOfRange

if TYPE_CHECKING:
    from controller_service.repository import Repository

log = logging.getLogger(__name__)


class EventType(enum.StrEnum):
    NETWORK_CREATED = "network_created"
    NETWORK_DELETED = "network_deleted"
    ENDPOINT_CREATED = "endpoint_created"
    ENDPOINT_DELETED = "endpoint_deleted"
    SANDBOX_CREATED = "sandbox_created"
    SANDBOX_DELETED = "sandbox_deleted"
    ENDPOINT_JOINED = "endpoint_joined"
    ENDPOINT_LEFT = "endpoint_left"
    HOST_UP = "host_up"
    HOST_DOWN = "host_down"
    # The first message of a Watch stream, never stored.
    WATCH_STARTED = "watch_started"


# How long one read blocks; bounds how late a Watch notices its caller left.
_BLOCK_MS = 500


class EventLog:
    """Events as the Watch RPC serves them, over the store's event stream."""

    def __init__(self, repo: Repository) -> None:
        self.repo = repo

    def emit(
        self,
        type_: EventType,
        obj_id: str,
        name: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        """Appends an event on its own (for facts not tied to a record change)."""
        self.repo.emit(type_, obj_id, name, attributes)

    def last_revision(self) -> int:
        return self.repo.last_revision()

    def read(self, after: int, count: int = 256, block_ms: int | None = None) -> list[Event]:
        """Events with revision > `after`, oldest first (waiting up to `block_ms`)."""
        return self.repo.read_events(after, count, block_ms)

    def oldest_revision(self, head: int) -> int:
        """The oldest retained revision (head + 1 when none is retained)."""
        first = self.repo.read_events(0, count=1)
        return first[0].revision if first else head + 1

    def _first_after_time(self, since_time: float, head: int) -> int:
        """The revision after which events are at or later than `since_time`."""
        after = 0
        while True:
            batch = self.repo.read_events(after, count=512)
            for event in batch:
                if event.time >= since_time:
                    return event.revision - 1
            if len(batch) < 512:
                return head
            after = batch[-1].revision

    def follow(self, since: int, active: Any, since_time: float | None = None) -> Iterator[Event]:
        """A WATCH_STARTED marker, then events after `since` (0: only those
        appended from now on; `since_time`: retained ones from that time on),
        until `active()` turns false. Blocks in short slices so a gone caller
        is noticed. OutOfRange when events after `since` are no longer retained.
        """
        head = self.last_revision()
        oldest = self.oldest_revision(head)
        if since and since + 1 < oldest:
            raise OutOfRange(
                f"revision {since} is no longer retained: the oldest event is {oldest}; "
                "list again and watch from the list's revision",
                reason="REVISION_EXPIRED",
                metadata={"oldest_revision": str(oldest)},
                field="since_revision",
            )
        if since:
            last = since
        elif since_time is not None:
            last = self._first_after_time(since_time, head)
        else:
            last = head
        yield Event(
            revision=head,
            type=EventType.WATCH_STARTED.value,
            time=time.time(),
            id="",
            attributes={"oldest_revision": str(oldest), "replay_after": str(last)},
        )
        while active():
            for event in self.read(last, block_ms=_BLOCK_MS):
                last = event.revision
                yield event
