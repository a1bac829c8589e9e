"""osl: cnm's operating-system layer, the only code that imports pyroute2.

Like libnetwork's `osl` and CNI's `pkg/ns` + `pkg/ip`: small, typed functions
that drivers and the sandbox manager call to shape the kernel.

Conventions shared by every function:

- `netns` names where the work happens: None (this process's namespace, the
  driver service's host), a name under /run/netns, or an absolute path to a
  namespace file (an external key such as /proc/PID/ns/net). See `nsenter`.
- Inputs are validated (`osl.validate`) before any socket is opened; bad
  input raises `services.errors.InvalidArgument` and changes nothing.
- Kernel errors become domain errors: EEXIST → AlreadyExists, EINVAL →
  InvalidArgument naming the input, EXFULL → Exhausted, ENODEV → NotFound,
  anything else → Internal, always with the action in the message.
- Deletes are idempotent: already gone (link, address, route, namespace) is
  success and returns False.
- The calling thread never changes namespace. Call from threads, not from
  inside a running asyncio loop.
"""

from .addressing import (
    add_addresses,
    add_fdb,
    add_neighbour,
    add_route,
    delete_address,
    delete_fdb,
    delete_neighbour,
    delete_route,
    set_default_route,
)
from .links import (
    BRIDGE_MAX_PORTS,
    create_bridge,
    create_veth,
    create_vxlan,
    delete_link,
    get_link,
    link_exists,
    move_link_into_netns,
    random_mac,
    set_hairpin,
    set_link_state,
    set_master,
)
from .macvlan import (
    MACVLAN_MODES,
    create_macvlan,
    create_vlan,
    parse_vlan_parent,
)
from .monitor import LinkDeletions
from .namespace import (
    NETNS_PREFIX,
    check_netns_path,
    create_namespace,
    delete_namespace,
    is_netns,
    list_namespaces,
    namespace_exists,
    netns_identity,
)
from .nsenter import NETNS_RUN_DIR, NetnsRef, netns_path
from .query import (
    link_names,
    list_addresses,
    list_fdb,
    list_links,
    list_neighbours,
    list_routes,
    snapshot,
)
from .reaper import (
    TOMBSTONE_GROUP,
    delete_link_async,
    reap_tombstones,
    wait_for_background_deletes,
)
from .sockdiag import tcp_listeners
from .sysctl import get_sysctl, set_sysctl
from .types import (
    AddressInfo,
    FdbInfo,
    LinkInfo,
    NeighbourInfo,
    NetnsState,
    Route,
    RouteInfo,
    VethPair,
    VxlanInfo,
)

__all__ = [
    "BRIDGE_MAX_PORTS",
    "MACVLAN_MODES",
    "NETNS_PREFIX",
    "NETNS_RUN_DIR",
    "TOMBSTONE_GROUP",
    "AddressInfo",
    "FdbInfo",
    "LinkDeletions",
    "LinkInfo",
    "NeighbourInfo",
    "NetnsRef",
    "NetnsState",
    "Route",
    "RouteInfo",
    "VethPair",
    "VxlanInfo",
    "add_addresses",
    "add_fdb",
    "add_neighbour",
    "add_route",
    "check_netns_path",
    "create_bridge",
    "create_macvlan",
    "create_namespace",
    "create_veth",
    "create_vlan",
    "create_vxlan",
    "delete_address",
    "delete_fdb",
    "delete_link",
    "delete_link_async",
    "delete_namespace",
    "delete_neighbour",
    "delete_route",
    "get_link",
    "get_sysctl",
    "is_netns",
    "link_exists",
    "link_names",
    "list_addresses",
    "list_fdb",
    "list_links",
    "list_namespaces",
    "list_neighbours",
    "list_routes",
    "move_link_into_netns",
    "namespace_exists",
    "netns_identity",
    "netns_path",
    "parse_vlan_parent",
    "random_mac",
    "reap_tombstones",
    "set_default_route",
    "set_hairpin",
    "set_link_state",
    "set_master",
    "set_sysctl",
    "snapshot",
    "tcp_listeners",
    "wait_for_background_deletes",
]
