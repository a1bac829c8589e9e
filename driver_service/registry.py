"""Drivers by name. An unknown name is a clear NOT_FOUND listing what this host offers.

Built-in drivers are registered at start; remote plugins may be added later
(`add`), and a plugin found but not usable is kept as an error
(`set_unusable`): it shows in the capabilities with its reason, and asking
for it is FAILED_PRECONDITION naming that reason.
"""

from __future__ import annotations

import threading
from collections.abc import Iterable

from driver_service.drivers.base import Driver
from driver_service.models import Capability
from services.errors import FailedPrecondition, InvalidArgument, NotFound


class Registry:
    def __init__(self, drivers: Iterable[Driver]) -> None:
        self._drivers: dict[str, Driver] = {}
        self._unusable: dict[str, str] = {}
        self._lock = threading.Lock()
        for driver in drivers:
            self.add(driver)

    def add(self, driver: Driver) -> None:
        with self._lock:
            if driver.name in self._drivers:
                raise InvalidArgument(f"driver {driver.name!r} registered twice")
            self._drivers[driver.name] = driver
            self._unusable.pop(driver.name, None)

    def set_unusable(self, name: str, error: str) -> None:
        with self._lock:
            if name not in self._drivers:
                self._unusable[name] = error

    def forget_unusable(self, name: str) -> bool:
        with self._lock:
            return self._unusable.pop(name, None) is not None

    def names(self) -> list[str]:
        return sorted(self._drivers)

    def get(self, name: str) -> Driver:
        driver = self._drivers.get(name)
        if driver is None:
            error = self._unusable.get(name)
            if error is not None:
                raise FailedPrecondition(
                    f"driver {name!r} is not usable on this host: {error}",
                    reason="DRIVER_UNUSABLE",
                    metadata={"driver": name},
                )
            raise NotFound(
                f"no such driver {name!r} on this host (available: {', '.join(self.names())})",
                reason="DRIVER_NOT_FOUND",
                metadata={"driver": name},
            )
        return driver

    def all(self) -> list[Driver]:
        return [self._drivers[n] for n in self.names()]

    def capabilities(self, name: str = "") -> list[Capability]:
        """Registered drivers (all, or `name`), plus unusable ones with their error."""
        with self._lock:
            unusable = dict(self._unusable)
        if name and name in unusable:
            return [Capability(name=name, scope="", error=unusable[name])]
        drivers = [self.get(name)] if name else self.all()
        # A registered driver may say why it cannot work here (overlay without a VTEP).
        caps = [
            Capability(name=d.name, scope=d.scope, error=getattr(d, "error", "")) for d in drivers
        ]
        if not name:
            caps += [Capability(name=n, scope="", error=e) for n, e in sorted(unusable.items())]
            caps.sort(key=lambda c: c.name)
        return caps
