"""The `bridge` driver (see `driver.py`), its options and its view of the firewall."""

from .driver import BridgeDriver

__all__ = ["BridgeDriver"]
