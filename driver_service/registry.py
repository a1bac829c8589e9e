"""Drivers by name. An unknown name is a clear NOT_FOUND listing what this host offers."""

from __future__ import annotations

from collections.abc import Iterable

from driver_service.drivers.base import Driver
from driver_service.models import Capability
from services.errors import InvalidArgument, NotFound


class Registry:
    def __init__(self, drivers: Iterable[Driver]) -> None:
        self._drivers: dict[str, Driver] = {}
        for driver in drivers:
            if driver.name in self._drivers:
                raise InvalidArgument(f"driver {driver.name!r} registered twice")
            self._drivers[driver.name] = driver

    def names(self) -> list[str]:
        return sorted(self._drivers)

    def get(self, name: str) -> Driver:
        driver = self._drivers.get(name)
        if driver is None:
            raise NotFound(
                f"no such driver {name!r} on this host (available: {', '.join(self.names())})",
                reason="DRIVER_NOT_FOUND",
                metadata={"driver": name},
            )
        return driver

    def all(self) -> list[Driver]:
        return [self._drivers[n] for n in self.names()]

    def capabilities(self, name: str = "") -> list[Capability]:
        drivers = [self.get(name)] if name else self.all()
        return [Capability(name=d.name, scope=d.scope) for d in drivers]
