"""gRPC core settings a service process makes before it first imports grpc.

gRPC core reads GRPC_EXPERIMENTS once, when grpc is imported, so a service's
command module calls `use_iomgr_io()` before importing anything that imports
grpc. This module imports nothing of cnm's and nothing of grpc.
"""

from __future__ import annotations

import os

# gRPC's EventEngine does a connection's reads and writes on threads of its own
# and hands every completed step to the Python thread serving the call: for a
# unary call of ~0.1 ms of work those hand-offs are most of the server's CPU.
# With these experiments off, gRPC core (1.60 to at least 1.85) does the I/O on
# the thread that polls for calls, its former "iomgr" path. cnm-ipam, 4 bench
# clients, back to back: 419 -> 363 µs CPU per allocation; an echo server that
# does no work: 229 -> 174 µs per call. A gRPC release without one of these
# names logs "Unknown experiment" once at start and ignores it.
IOMGR_EXPERIMENTS = (
    "-event_engine_listener,-event_engine_for_all_other_endpoints,"
    "-event_engine_client,-event_engine_callback_cq"
)


def use_iomgr_io() -> None:
    """Turn the EventEngine I/O experiments off, unless the user set GRPC_EXPERIMENTS."""
    os.environ.setdefault("GRPC_EXPERIMENTS", IOMGR_EXPERIMENTS)
