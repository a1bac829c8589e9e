"""Names operators and the controller rely on: driver names and libnetwork option keys."""

from __future__ import annotations

DRIVER_BRIDGE = "bridge"
DRIVER_NULL = "null"
DRIVER_HOST = "host"
DRIVER_OVERLAY = "overlay"
DRIVER_MACVLAN = "macvlan"

# libnetwork's bridge driver options, under their usual keys.
BRIDGE_NAME = "com.docker.network.bridge.name"
BRIDGE_ENABLE_ICC = "com.docker.network.bridge.enable_icc"
BRIDGE_ENABLE_IP_MASQUERADE = "com.docker.network.bridge.enable_ip_masquerade"
BRIDGE_HOST_BINDING_IPV4 = "com.docker.network.bridge.host_binding_ipv4"
DRIVER_MTU = "com.docker.network.driver.mtu"
BRIDGE_OPTION_PREFIX = "com.docker.network.bridge."

# libnetwork's macvlan driver options (`-o parent=eth0 -o macvlan_mode=bridge`).
MACVLAN_PARENT = "parent"
MACVLAN_MODE = "macvlan_mode"

# Keys of EndpointOperInfo's `value` map (libnetwork's netlabel names).
OPER_MAC_ADDRESS = "com.docker.network.endpoint.macaddress"
OPER_HOST_IFNAME = "com.cnm.endpoint.host_ifname"
OPER_SANDBOX_IFNAME = "com.cnm.endpoint.ifname"
OPER_BRIDGE = "com.cnm.endpoint.bridge"
OPER_PARENT = "com.cnm.endpoint.parent"

# The mark on every link cnm makes: IFLA_IFALIAS = "<ALIAS_PREFIX><kind>:<id>".
# Reconciliation and `cnm-driver --cleanup` find cnm's links by it, never by
# name (a bridge name is the user's choice and may look like anyone's).
ALIAS_PREFIX = "cnm:"
ALIAS_NETWORK = "net"
ALIAS_ENDPOINT = "ep"

# Interfaces inside a sandbox are named <SANDBOX_IFNAME_PREFIX><n>: eth0, eth1, ...
SANDBOX_IFNAME_PREFIX = "eth"
# libnetwork's network option: the prefix of its interfaces' names in sandboxes.
CONTAINER_IFACE_PREFIX = "com.docker.network.container_iface_prefix"
# Endpoint option asking for a given interface name inside the sandbox instead
# (a CNI runtime's CNI_IFNAME); the same key reports the name in oper info.
ENDPOINT_IFNAME_OPTION = OPER_SANDBOX_IFNAME
# Endpoint option "false": the endpoint never takes the sandbox's default route
# (a secondary network; CNI's second network on one namespace).
ENDPOINT_DEFAULT_ROUTE_OPTION = "com.cnm.endpoint.default_route"
# Host ends of veths: "veth" + 11 hex characters of the endpoint id (15 chars).
HOST_VETH_PREFIX = "veth"
# Container ends of veths left in the host namespace for a runtime that moves
# interfaces itself (Docker): "vcnm" + 11 hex characters of the endpoint id.
HANDOFF_VETH_PREFIX = "vcnm"
