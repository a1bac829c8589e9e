"""Events: one Redis stream whose entry ids are the revisions.

A Lua script increments the revision counter and appends the entry with id
`<revision>-0` in one step, so revisions are strictly increasing across every
controller replica, and the stream order is the revision order. The script is
queued inside the same MULTI as the state change it reports, so an event
exists exactly when its change was committed. Readers resume with XREAD after
`<revision>-0`: nothing retained is skipped.
"""

from __future__ import annotations

import enum
import json
import logging
import time
from collections.abc import Iterator, Mapping
from typing import Any

from controller_service.models import Event
from services.errors import OutOfRange
from services.store import Store

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


_APPEND = """
local rev = redis.call('INCR', KEYS[2])
redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], rev .. '-0',
  'type', ARGV[2], 'id', ARGV[3], 'name', ARGV[4], 'time', ARGV[5], 'attrs', ARGV[6])
return rev
"""

# How long one XREAD blocks; bounds how late a Watch notices its caller left.
_BLOCK_MS = 500


class EventLog:
    def __init__(self, store: Store, retained: int = 100_000) -> None:
        self.store = store
        self.stream = store.key("events")
        self.counter = store.key("events", "rev")
        self.retained = retained
        self._append = store.script(_APPEND)

    def append(
        self,
        pipe: Any,
        type_: EventType,
        obj_id: str,
        name: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        """Queues the event on `pipe` (a pipeline in MULTI, or a plain client)."""
        self._append(
            keys=[self.stream, self.counter],
            args=[
                self.retained,
                type_.value,
                obj_id,
                name,
                repr(time.time()),
                json.dumps(dict(attributes or {}), sort_keys=True),
            ],
            client=pipe,
        )

    def emit(
        self,
        type_: EventType,
        obj_id: str,
        name: str = "",
        attributes: Mapping[str, str] | None = None,
    ) -> None:
        """Appends an event on its own (for facts not tied to a record change)."""
        self.append(self.store.client, type_, obj_id, name, attributes)

    def last_revision(self) -> int:
        return int(self.store.client.get(self.counter) or 0)

    def read(self, after: int, count: int = 256, block_ms: int | None = None) -> list[Event]:
        """Events with revision > `after`, oldest first (waiting up to `block_ms`)."""
        kw: dict[str, Any] = {"count": count}
        if block_ms is not None:
            kw["block"] = block_ms
        reply = self.store.client.xread({self.stream: f"{after}-0"}, **kw)
        events: list[Event] = []
        for _stream, entries in reply or []:
            for entry_id, fields in entries:
                events.append(_event(entry_id, fields))
        return events

    def oldest_revision(self, head: int) -> int:
        """The oldest retained revision (head + 1 when none is retained)."""
        first = self.store.client.xrange(self.stream, count=1)
        return int(first[0][0].split("-", 1)[0]) if first else head + 1

    def _first_after_time(self, since_time: float, head: int) -> int:
        """The revision after which events are at or later than `since_time`."""
        start = "-"
        while True:
            batch = self.store.client.xrange(self.stream, min=start, count=512)
            for entry_id, fields in batch:
                if float(fields.get("time", "0") or 0) >= since_time:
                    return int(entry_id.split("-", 1)[0]) - 1
            if len(batch) < 512:
                return head
            start = "(" + batch[-1][0]

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


def _event(entry_id: str, fields: Mapping[str, str]) -> Event:
    try:
        attrs = json.loads(fields.get("attrs", "{}"))
    except ValueError:
        attrs = {}
    return Event(
        revision=int(entry_id.split("-", 1)[0]),
        type=fields.get("type", ""),
        time=float(fields.get("time", "0") or 0),
        id=fields.get("id", ""),
        name=fields.get("name", ""),
        attributes={str(k): str(v) for k, v in attrs.items()},
    )
