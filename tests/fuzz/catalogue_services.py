"""Bad inputs to the IPAM service (Ipam, IdAllocator) and a host's driver service.

The world's IPAM holds network n1's pool (id in ids["pool"]), the pool
"blue/10.92.0.0/24" and the id range "vni" [256, 300]; the driver on h1 knows
n1, its two endpoints and the sandboxes s1, s2 (ids in `ids`).
"""

from __future__ import annotations

from catalogue import C, case

from cnm.driver.v1 import driver_pb2 as dpb
from cnm.ipam.v1 import ipam_pb2 as ipb
from cnm.types.v1 import types_pb2 as tpb

INVALID, NOT_FOUND, EXISTS = C.INVALID_ARGUMENT, C.NOT_FOUND, C.ALREADY_EXISTS
BLUE = "blue/10.92.0.0/24"
NEW_ID = "f" * 64
BAD_ID = "0" * 63 + "g"


def RP(id_, code, text=None, reason=None, **kw):  # noqa: N802 - reads as a table
    return case(id_, "Ipam", "RequestPool", ipb.RequestPoolRequest(**kw), code, text, reason)


def RA(id_, code, text=None, reason=None, **kw):  # noqa: N802
    return case(id_, "Ipam", "RequestAddress", ipb.RequestAddressRequest(**kw), code, text, reason)


def D(id_, method, request, code, text=None, reason=None):  # noqa: N802
    return case(id_, "Driver", method, request, code, text, reason)


def dnet(**kw) -> dpb.CreateNetworkRequest:
    return dpb.CreateNetworkRequest(
        **{"network_id": NEW_ID, "name": "fz", "driver": "bridge", **kw}
    )


def dep(ids, **kw) -> dpb.CreateEndpointRequest:
    return dpb.CreateEndpointRequest(**{"network_id": ids["network"], "endpoint_id": NEW_ID, **kw})


def dsb(**kw) -> dpb.CreateSandboxRequest:
    return dpb.CreateSandboxRequest(**{"sandbox_id": NEW_ID, **kw})


def v4(pool: str, gateway: str = "") -> dpb.IpamData:
    return dpb.IpamData(address_space="LocalDefault", pool=pool, gateway=gateway)


IPAM_CASES = [
    RP("ipam-space-empty", INVALID, "address_space", pool="10.95.0.0/24"),
    RP("ipam-space-slash", INVALID, "'a/b'", address_space="a/b"),
    RP("ipam-space-undeclared", INVALID, "'nowhere'", "UNKNOWN_ADDRESS_SPACE", address_space="nowhere", pool="10.95.0.0/24"),
    RP("ipam-space-undeclared-predefined", INVALID, "'nowhere'", "UNKNOWN_ADDRESS_SPACE", address_space="nowhere"),
    RP("ipam-pool-every-v4-address", INVALID, "0.0.0.0/0", address_space="blue", pool="0.0.0.0/0"),
    RP("ipam-pool-every-v6-address", INVALID, "::/0", address_space="blue", pool="::/0", v6=True),
    RP("ipam-pool-garbage", INVALID, "banana", address_space="blue", pool="banana"),
    RP("ipam-pool-overlaps", EXISTS, BLUE, "POOL_OVERLAP", address_space="blue", pool="10.92.0.128/25"),
    RP("ipam-pool-too-small", INVALID, "10.95.0.0/31", address_space="blue", pool="10.95.0.0/31"),
    RP("ipam-pool-no-predefined-in-custom-space", INVALID, "'blue'", address_space="blue"),
    RP("ipam-sub-pool-outside", INVALID, "10.96.0.0/25", address_space="blue", pool="10.95.0.0/24", sub_pool="10.96.0.0/25"),
    RP("ipam-option-unknown-own-key", INVALID, "cnm.ipam.bogus", address_space="blue", pool="10.95.0.0/24", options={"cnm.ipam.bogus": "1"}),
    RP("ipam-request-id-space", INVALID, "'a b'", address_space="LocalDefault", request_id="a b"),
    RP("ipam-owner-300-chars", INVALID, "owner", address_space="LocalDefault", owner="o" * 300),
    case("ipam-release-pool-unknown", "Ipam", "ReleasePool", ipb.ReleasePoolRequest(pool_id="blue/10.99.0.0/24"), NOT_FOUND, "blue/10.99.0.0/24"),
    case("ipam-release-pool-malformed", "Ipam", "ReleasePool", ipb.ReleasePoolRequest(pool_id="blue/x"), INVALID, "blue/x"),
    case("ipam-get-pool-empty", "Ipam", "GetPool", ipb.GetPoolRequest(), INVALID, "pool id"),
    RA("ipam-address-unknown-pool", NOT_FOUND, "blue/10.99.0.0/24", pool_id="blue/10.99.0.0/24"),
    RA("ipam-address-outside", INVALID, "10.93.0.1", pool_id=BLUE, address="10.93.0.1"),
    RA("ipam-address-network", INVALID, "10.92.0.0", pool_id=BLUE, address="10.92.0.0"),
    RA("ipam-address-broadcast", INVALID, "10.92.0.255", pool_id=BLUE, address="10.92.0.255"),
    RA("ipam-address-garbage", INVALID, "nope", pool_id=BLUE, address="nope"),
    RA("ipam-address-bad-request-type", INVALID, "'x'", pool_id=BLUE, options={"RequestAddressType": "x"}),
    case("ipam-release-address-garbage", "Ipam", "ReleaseAddress", ipb.ReleaseAddressRequest(pool_id=BLUE, address="nope"), INVALID, "nope"),
    case("ipam-list-pools-bad-token", "Ipam", "ListPools", ipb.ListPoolsRequest(page_token="@@"), INVALID, "@@"),
    case("ipam-list-allocations-negative-page", "Ipam", "ListAllocations", ipb.ListAllocationsRequest(pool_id=BLUE, page_size=-1), INVALID, "-1"),
    case("ids-range-every-u64", "IdAllocator", "CreateRange", ipb.CreateRangeRequest(name="huge", start=0, end=2**64 - 1), INVALID, "at most 4294967296", "LIMIT_EXCEEDED"),
    case("ids-range-reversed", "IdAllocator", "CreateRange", ipb.CreateRangeRequest(name="r", start=9, end=2), INVALID, "[9, 2]"),
    case("ids-range-other-bounds", "IdAllocator", "CreateRange", ipb.CreateRangeRequest(name="vni", start=256, end=999), EXISTS, "vni"),
    case("ids-range-name-braces", "IdAllocator", "CreateRange", ipb.CreateRangeRequest(name="{x}", start=1, end=2), INVALID, "{x}"),
    case("ids-get-unknown-range", "IdAllocator", "GetId", ipb.GetIdRequest(name="nope"), NOT_FOUND, "nope"),
    case("ids-get-outside", "IdAllocator", "GetId", ipb.GetIdRequest(name="vni", id=5), INVALID, "5"),
    case("ids-get-half-sub-range", "IdAllocator", "GetId", ipb.GetIdRequest(name="vni", range_start=257), INVALID, "range_end"),
    case("ids-release-outside", "IdAllocator", "ReleaseId", ipb.ReleaseIdRequest(name="vni", id=7), INVALID, "7"),
    case("ids-delete-range-bad-name", "IdAllocator", "DeleteRange", ipb.DeleteRangeRequest(name="a b"), INVALID, "'a b'"),
]  # fmt: skip

DRIVER_CASES = [
    D("drv-caps-unknown-driver", "GetCapabilities", dpb.GetCapabilitiesRequest(driver="nope"), NOT_FOUND, "nope"),
    D("drv-net-id-not-hex", "CreateNetwork", dnet(network_id=BAD_ID), INVALID, "network id"),
    D("drv-net-id-short", "CreateNetwork", dnet(network_id="abc"), INVALID, "network id"),
    D("drv-net-no-driver", "CreateNetwork", dnet(driver=""), INVALID, "driver"),
    D("drv-net-driver-unknown", "CreateNetwork", dnet(driver="nope"), NOT_FOUND, "nope"),
    D("drv-net-name-dot", "CreateNetwork", dnet(name="a.b"), INVALID, "network name"),
    D("drv-net-pool-garbage", "CreateNetwork", dnet(ipv4_data=[v4("banana")]), INVALID, "banana"),
    D("drv-net-pool-wrong-family", "CreateNetwork", dnet(ipv4_data=[v4("fd00::/64")]), INVALID, "fd00::/64"),
    D("drv-net-gateway-outside", "CreateNetwork", dnet(ipv4_data=[v4("10.97.0.0/24", "10.98.0.1/24")]), INVALID, "10.98.0.1/24"),
    D("drv-net-mtu-garbage", "CreateNetwork", dnet(ipv4_data=[v4("10.97.0.0/24")], options={"com.docker.network.driver.mtu": "x"}), INVALID, "mtu"),
    D("drv-net-delete-bad-id", "DeleteNetwork", dpb.DeleteNetworkRequest(network_id="x"), INVALID, "network id"),
    D("drv-ep-id-not-hex", "CreateEndpoint", lambda i: dep(i, endpoint_id=BAD_ID), INVALID, "endpoint id"),
    D("drv-ep-network-unknown", "CreateEndpoint", lambda i: dep(i, network_id=NEW_ID), NOT_FOUND),
    D("drv-ep-address-without-prefix", "CreateEndpoint", lambda i: dep(i, interface=dpb.EndpointInterface(address="10.91.0.50")), INVALID, "prefix"),
    D("drv-ep-address-loopback", "CreateEndpoint", lambda i: dep(i, interface=dpb.EndpointInterface(address="127.0.0.2/8")), INVALID, "127.0.0.2/8"),
    D("drv-ep-address-v6-as-v4", "CreateEndpoint", lambda i: dep(i, interface=dpb.EndpointInterface(address="fd00::5/64")), INVALID, "fd00::5/64"),
    D("drv-ep-mac-multicast", "CreateEndpoint", lambda i: dep(i, interface=dpb.EndpointInterface(address="10.91.0.50/24", mac_address="01:00:5e:00:00:01")), INVALID, "multicast"),
    D("drv-ep-alias-newline", "CreateEndpoint", lambda i: dep(i, aliases=["a\nb"]), INVALID, "alias"),
    D("drv-ep-exposed-port-0", "CreateEndpoint", lambda i: dep(i, exposed_ports=[tpb.ExposedPort(protocol=tpb.PROTOCOL_UDP, port=0)]), INVALID, "exposed port"),
    D("drv-ep-port-ipv6-loopback", "CreateEndpoint", lambda i: dep(i, interface=dpb.EndpointInterface(address="10.91.0.50/24"), port_bindings=[tpb.PortBinding(protocol=tpb.PROTOCOL_TCP, container_port=80, host_ip="::1")]), INVALID, "::1"),
    D("drv-ep-port-container-70000", "CreateEndpoint", lambda i: dep(i, port_bindings=[tpb.PortBinding(protocol=tpb.PROTOCOL_TCP, container_port=70000)]), INVALID, "70000"),
    D("drv-ep-delete-bad-id", "DeleteEndpoint", dpb.DeleteEndpointRequest(network_id="x", endpoint_id=NEW_ID), INVALID, "network id"),
    D("drv-oper-info-unknown", "EndpointOperInfo", lambda i: dpb.EndpointOperInfoRequest(network_id=i["network"], endpoint_id=NEW_ID), NOT_FOUND),
    D("drv-join-bad-sandbox-id", "Join", lambda i: dpb.JoinRequest(network_id=i["network"], endpoint_id=i["free"], sandbox_id="s2"), INVALID, "sandbox id"),
    D("drv-join-sandbox-unknown", "Join", lambda i: dpb.JoinRequest(network_id=i["network"], endpoint_id=i["free"], sandbox_id=NEW_ID), NOT_FOUND),
    D("drv-join-endpoint-unknown", "Join", lambda i: dpb.JoinRequest(network_id=i["network"], endpoint_id=NEW_ID, sandbox_id=i["s2"]), NOT_FOUND),
    D("drv-leave-bad-id", "Leave", dpb.LeaveRequest(network_id="x", endpoint_id=NEW_ID, sandbox_id=NEW_ID), INVALID, "network id"),
    D("drv-sb-id-not-hex", "CreateSandbox", dsb(sandbox_id=BAD_ID), INVALID, "sandbox id"),
    D("drv-sb-hostname-space", "CreateSandbox", dsb(hostname="a b"), INVALID, "hostname"),
    D("drv-sb-domain-hash", "CreateSandbox", dsb(domainname="a#b"), INVALID, "domainname"),
    D("drv-sb-dns-server-garbage", "CreateSandbox", dsb(dns=tpb.DnsConfig(servers=["x"])), INVALID, "DNS server"),
    D("drv-sb-dns-option-newline", "CreateSandbox", dsb(dns=tpb.DnsConfig(options=["a\nb"])), INVALID, "DNS option"),
    D("drv-sb-extra-host-address", "CreateSandbox", dsb(extra_hosts=[tpb.ExtraHost(hostname="db", address="nope")]), INVALID, "extra host"),
    D("drv-sb-name-dot", "CreateSandbox", dsb(name="a.b"), INVALID, "sandbox name"),
    D("drv-sb-delete-bad-id", "DeleteSandbox", dpb.DeleteSandboxRequest(sandbox_id="../../etc"), INVALID, "sandbox id"),
    D("drv-sb-get-unknown", "GetSandbox", dpb.GetSandboxRequest(sandbox_id=NEW_ID), NOT_FOUND),
    D("drv-sb-get-bad-id", "GetSandbox", dpb.GetSandboxRequest(sandbox_id="x"), INVALID, "sandbox id"),
]  # fmt: skip
