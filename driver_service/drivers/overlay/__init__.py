"""The overlay (VXLAN) driver: global scope, one L2 network across hosts."""

from driver_service.drivers.overlay.driver import OverlayDriver, cleanup

__all__ = ["OverlayDriver", "cleanup"]
