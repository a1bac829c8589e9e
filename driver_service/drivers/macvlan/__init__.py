"""The macvlan driver: containers as macvlan children of a host interface."""

from driver_service.drivers.macvlan.driver import MacvlanDriver, cleanup

__all__ = ["MacvlanDriver", "cleanup"]
