"""Keeps the name table current: one full load, then the controller's event stream.

The revision is read BEFORE the full load, and the stream is followed from
it, so a change committed during the load is applied again afterwards (every
apply is idempotent: it re-reads the object's record). Each event names one
object; its record is read once and put into, or dropped from, the table.
Only this thread talks to Redis; queries never do.

When Redis fails, or the stream was trimmed past our revision (a gap), the
feed starts over with a full load once Redis answers again; the table keeps
answering from what it had meanwhile (losing Redis must not stop resolution).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from dns_service.records import Records
from dns_service.table import NameTable
from services.errors import CnmError

log = logging.getLogger(__name__)

_BLOCK_MS = 1000
_RETRY = (0.1, 0.2, 0.5, 1.0, 2.0)


class Feed:
    def __init__(
        self,
        records: Records,
        table: NameTable,
        *,
        on_sandboxes: Callable[[], None] = lambda: None,
    ) -> None:
        self.records = records
        self.table = table
        # Called after a load or an event batch that touched sandboxes.
        self.on_sandboxes = on_sandboxes
        self.loaded = threading.Event()
        self.revision = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="cnm-dns-feed", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=_BLOCK_MS / 1000 + 2)

    def _run(self) -> None:
        failures = 0
        while not self._stop.is_set():
            try:
                self.load()
                failures = 0
                self._follow()
            except (CnmError, OSError, ValueError) as e:
                delay = _RETRY[min(failures, len(_RETRY) - 1)]
                failures += 1
                if failures == 1 or failures % 30 == 0:
                    log.warning("name feed interrupted (%s); reloading in %.1fs", e, delay)
                self._stop.wait(delay)
            except Exception:  # a bug must not end name updates for good
                log.exception("name feed: unexpected error; reloading")
                self._stop.wait(1.0)

    def load(self) -> None:
        revision = self.records.revision()
        nets, sbs, eps = self.records.load()
        self.table.replace(nets, sbs, eps)
        self.revision = revision
        log.info(
            "names loaded at revision %d: %d networks, %d sandboxes, %d joined endpoints",
            revision,
            len(nets),
            len(sbs),
            len(eps),
        )
        self.loaded.set()
        self.on_sandboxes()

    def _follow(self) -> None:
        while not self._stop.is_set():
            events = self.records.events(self.revision, _BLOCK_MS)
            if events and events[0][0] > self.revision + 1 and self.revision:
                log.warning("event stream skipped past revision %d; reloading", self.revision)
                return  # the caller reloads
            sandboxes = False
            for revision, type_, obj_id in events:
                sandboxes |= self.apply(type_, obj_id)
                self.revision = revision
            if sandboxes:
                self.on_sandboxes()
            if not events and self.records.revision() < self.revision:
                log.warning("event revision went back (Redis emptied?); reloading")
                return

    def apply(self, type_: str, obj_id: str) -> bool:
        """Re-read the object an event names; True when it was a sandbox."""
        kind = type_.split("_", 1)[0]
        if kind == "network":
            net = self.records.network(obj_id)
            if net is None:
                self.table.drop_network(obj_id)
            else:
                self.table.put_network(net)
        elif kind == "endpoint":
            ep = self.records.endpoint(obj_id)
            if ep is None:
                self.table.drop_endpoint(obj_id)
            else:
                self.table.put_endpoint(ep)
        elif kind == "sandbox":
            sb = self.records.sandbox(obj_id)
            if sb is None:
                self.table.drop_sandbox(obj_id)
            else:
                self.table.put_sandbox(sb)
            return True
        return False
