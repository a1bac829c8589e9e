"""Remote IPAM plugins by name: found, handshaken and asked for their default
address spaces on first use (libnetwork loads IPAM drivers the same way,
lazily), forgotten when one stops answering so that the next use activates
it again (a restarted plugin, or one that moved)."""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Any

from services.errors import FailedPrecondition, NotFound, Unavailable
from services.plugins import IPAM_DRIVER, Discovery, PluginClient, PluginError

log = logging.getLogger(__name__)

# An IPAM call is on the controller's path: a plugin still starting is waited
# for this long on its first use.
ACTIVATE_BUDGET = 2.0


@dataclass(frozen=True)
class _Handle:
    client: PluginClient
    local_space: str
    global_space: str


def bad_response(plugin: str, method: str, why: str) -> FailedPrecondition:
    return FailedPrecondition(
        f"IPAM plugin {plugin!r}: {method}: invalid response: {why}",
        reason="PLUGIN_BAD_RESPONSE",
        metadata={"plugin": plugin, "method": method},
    )


class IpamPlugins:
    """Activated IPAM plugins by name: found and handshaken on first use,
    forgotten when one stops answering (the next use activates it again)."""

    def __init__(self, discovery: Discovery, budget: float = ACTIVATE_BUDGET) -> None:
        self.discovery = discovery
        self.budget = budget
        self._handles: dict[str, _Handle] = {}
        self._lock = threading.Lock()

    def _activate(self, name: str) -> _Handle:
        try:
            spec = self.discovery.find(name)
        except NotFound as e:
            raise NotFound(
                f"no such IPAM driver {name!r}: {e}",
                reason="IPAM_DRIVER_NOT_FOUND",
                metadata={"driver": name},
            ) from e
        client = PluginClient(spec)
        client.activate(IPAM_DRIVER, budget=self.budget)
        try:
            client.call("IpamDriver.GetCapabilities")
        except PluginError as e:
            # Optional in libnetwork too: older plugins lack it.
            log.info("IPAM plugin %s: no capabilities (%s)", name, e)
        spaces = client.call("IpamDriver.GetDefaultAddressSpaces")
        local = spaces.get("LocalDefaultAddressSpace")
        global_ = spaces.get("GlobalDefaultAddressSpace")
        if not isinstance(local, str) or not isinstance(global_, str) or not local or not global_:
            raise bad_response(name, "GetDefaultAddressSpaces", f"{spaces!r}")
        log.info("IPAM plugin %s activated (%s; spaces %s, %s)", name, spec.addr, local, global_)
        return _Handle(client, local, global_)

    def get(self, name: str) -> _Handle:
        with self._lock:
            handle = self._handles.get(name)
        if handle is None:
            handle = self._activate(name)
            with self._lock:
                self._handles[name] = handle
        return handle

    def call(self, name: str, method: str, body: Any) -> dict[str, Any]:
        handle = self.get(name)
        try:
            return handle.client.call(f"IpamDriver.{method}", body)
        except Unavailable:
            with self._lock:
                self._handles.pop(name, None)
            raise

    def call_for_pool(self, name: str, method: str, body: Any) -> dict[str, Any]:
        """A call about an existing pool: a plugin that vanished is UNAVAILABLE
        (the pool exists; it may come back), not NOT_FOUND."""
        try:
            return self.call(name, method, body)
        except NotFound as e:
            raise Unavailable(
                f"IPAM plugin {name!r} is not available: {e}", reason="PLUGIN_UNAVAILABLE"
            ) from e
