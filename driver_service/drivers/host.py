"""The `host` driver: the sandbox shares the host's network namespace.

Nothing is created. Only a host-networked sandbox (SandboxSpec.host_network,
whose key is the namespace this driver serves) may join a host network, and
it joins nothing else (manager.py refuses both): its files are copies of the
host's /etc/hosts and resolv.conf (sandbox.py), as `docker run --network
host` has them.
"""

from __future__ import annotations

from driver_service.constants import DRIVER_HOST
from driver_service.drivers.null import NoInterfaceDriver


class HostDriver(NoInterfaceDriver):
    name = DRIVER_HOST
