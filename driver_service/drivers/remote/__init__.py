"""Remote network drivers: plugins speaking libnetwork's remote driver protocol.

- `api`: the JSON shapes of libnetwork's remote API (pure);
- `driver`: `RemoteDriver`, the Driver protocol over a plugin;
- `loader`: discovery, handshake, scope negotiation and registration.
"""

from driver_service.drivers.remote.driver import RemoteDriver
from driver_service.drivers.remote.loader import PluginLoader

__all__ = ["PluginLoader", "RemoteDriver"]
