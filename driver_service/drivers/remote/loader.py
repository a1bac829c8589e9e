"""Finding remote network drivers, the handshake and scope negotiation, registration.

Which plugins are loaded:

- every plugin in cnm's own `plugin_dirs` (config; env CNM_PLUGIN_DIRS): an
  operator who points cnm at a directory means "these are cnm's plugins";
  one that does not implement NetworkDriver (an IPAM-only plugin, say) is
  skipped silently;
- the names in `remote_drivers` (config; env CNM_REMOTE_DRIVERS), looked up
  in cnm's dirs and then in Docker's places (services.plugins.Discovery).
  Docker's directories are never loaded wholesale: they hold other kinds of
  plugins (volume, authz) that have no business with cnm. A configured name
  that cannot be found or used is reported like any other failure.

For each: `Plugin.Activate` (retried with bounded backoff while the plugin
starts) must list NetworkDriver, then `NetworkDriver.GetCapabilities` must
answer a "Scope" of "local" or "global", which becomes the scope of the
driver's networks. A failure leaves the driver unregistered, with the reason
(libnetwork's "invalid capability: expecting 'local' or 'global', got X" for
a bad scope) in the host record's driver list, where `ListDrivers` and
`cnmctl driver ls` show it.

Rescans (every `interval`, from a background thread) pick up plugins that
appeared since, and retry failed ones whose socket or spec file was replaced
(a fixed plugin restarted) or that were merely unreachable. A registered
plugin is not re-negotiated: its networks keep their scope; a restarted
plugin process is reached by the next call (one connection per call).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from driver_service.drivers.remote import api
from driver_service.drivers.remote.driver import RemoteDriver
from driver_service.registry import Registry
from services.errors import CnmError, NotFound, Unavailable
from services.periodic import Periodic
from services.plugins import (
    ACTIVATE_BUDGET,
    NETWORK_DRIVER,
    Discovery,
    PluginClient,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Failure:
    error: str
    # What the failure was seen with: retried when it changes.
    fingerprint: tuple[object, ...]
    # Unreachable or missing: worth retrying at every rescan.
    transient: bool


class PluginLoader:
    def __init__(
        self,
        discovery: Discovery,
        registry: Registry,
        *,
        names: Sequence[str] = (),
        on_change: Callable[[], None] = lambda: None,
        budget: float = ACTIVATE_BUDGET,
    ) -> None:
        self.discovery = discovery
        self.registry = registry
        self.configured = tuple(dict.fromkeys(names))
        self.on_change = on_change
        self.budget = budget
        self._failures: dict[str, _Failure] = {}
        self._builtin = set(registry.names())
        self._lock = threading.Lock()
        self._scanner: Periodic | None = None

    # --- one plugin ------------------------------------------------------------------------

    def _negotiate(self, name: str, budget: float) -> RemoteDriver:
        spec = self.discovery.find(name)
        client = PluginClient(spec)
        client.activate(NETWORK_DRIVER, budget=budget)
        caps = client.call("NetworkDriver.GetCapabilities")
        return RemoteDriver(client, api.negotiate_scope(name, caps))

    def _fingerprint(self, name: str) -> tuple[object, ...]:
        try:
            return self.discovery.find(name).fingerprint
        except CnmError:
            return ()

    def _try(self, name: str, budget: float) -> bool:
        """Negotiate with `name` and register it, or record why not. True when
        the host's driver list changed."""
        if name in self._builtin:
            return self._fail(
                name, f"plugin {name!r} has the name of a built-in driver", transient=False
            )
        try:
            driver = self._negotiate(name, budget)
        except (NotFound, Unavailable) as e:
            return self._fail(name, str(e), transient=True)
        except CnmError as e:
            if e.reason == "PLUGIN_NOT_IMPLEMENTED" and name not in self.configured:
                log.debug("skipping plugin %s: %s", name, e)
                return self._fail(name, "", transient=False)
            return self._fail(name, str(e), transient=False)
        with self._lock:
            self._failures.pop(name, None)
        self.registry.add(driver)
        log.info(
            "remote driver %s registered (scope %s, %s)",
            name,
            driver.scope,
            driver.client.spec.addr,
        )
        return True

    def _fail(self, name: str, error: str, *, transient: bool) -> bool:
        failure = _Failure(error, self._fingerprint(name), transient)
        with self._lock:
            before = self._failures.get(name)
            self._failures[name] = failure
        changed = before is None or before.error != error
        if error:
            if changed:
                log.warning("remote driver %s not registered: %s", name, error)
            self.registry.set_unusable(name, error)
        return changed and bool(error)

    # --- all of them -----------------------------------------------------------------------

    def candidates(self) -> list[str]:
        return list(dict.fromkeys([*self.configured, *self.discovery.names()]))

    def load(self) -> None:
        """Start-up: every candidate, in parallel, each waited for up to the budget."""
        names = [n for n in self.candidates() if n not in self.registry.names()]
        if not names:
            return
        with ThreadPoolExecutor(max_workers=min(8, len(names))) as pool:
            list(pool.map(lambda n: self._try(n, self.budget), names))

    def rescan(self) -> bool:
        """One pass: new plugins, and failed ones worth another try. True on change."""
        changed = False
        registered = set(self.registry.names())
        candidates = self.candidates()
        with self._lock:
            gone = [n for n in self._failures if n not in candidates]
            for name in gone:
                del self._failures[name]
        for name in gone:
            # A plugin removed from cnm's dirs is no longer reported as broken.
            changed |= self.registry.forget_unusable(name)
        for name in candidates:
            if name in registered:
                continue
            with self._lock:
                failure = self._failures.get(name)
            if (
                failure is not None
                and not failure.transient
                and failure.fingerprint == self._fingerprint(name)
            ):
                continue
            # One attempt: a rescan never waits out a plugin's start-up.
            changed |= self._try(name, 0.0)
        return changed

    def start(self, interval: float) -> None:
        """Rescans every `interval` s on a daemon thread (a failed pass is
        logged and retried next time) until stop()."""
        if self._scanner is not None:
            return
        self._scanner = Periodic("cnm-plugin-scan", self._scan, interval)
        self._scanner.start()

    def _scan(self) -> None:
        if self.rescan():
            self.on_change()

    def stop(self) -> None:
        scanner, self._scanner = self._scanner, None
        if scanner is not None:
            scanner.stop()
