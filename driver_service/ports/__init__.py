"""Port publishing's bookkeeping: which host port each published container port gets.

- `plan`: a requested binding (docker's `-p`) validated, and turned into the
  host ports to pick (pure);
- `allocator`: `PortAllocator`, atomic per-host allocation in Redis, owned by
  endpoint ids, reconciled after a restart;
- `listeners`: ports host processes already listen on (/proc/net).

The bridge driver allocates at Join, before touching the kernel, and the
firewall (`driver_service.firewall`) turns each allocated binding into one
element of its port maps.
"""

from services.values.ports import describe, validate_binding

from .allocator import PortAllocator, exact_requests, read_dynamic_range
from .plan import DEFAULT_DYNAMIC_RANGE, PortRequest, Target, plan_requests

__all__ = [
    "DEFAULT_DYNAMIC_RANGE",
    "PortAllocator",
    "PortRequest",
    "Target",
    "describe",
    "exact_requests",
    "plan_requests",
    "read_dynamic_range",
    "validate_binding",
]
