"""The `host` driver: the sandbox shares the host's network namespace.

Nothing is created. A sandbox joined to a host network gets the host's own
/etc/hosts and an unfiltered copy of its resolv.conf (the manager does that),
as `docker run --network host` does.
"""

from __future__ import annotations

from driver_service.constants import DRIVER_HOST
from driver_service.drivers.null import NoInterfaceDriver


class HostDriver(NoInterfaceDriver):
    name = DRIVER_HOST
