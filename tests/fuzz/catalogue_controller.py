"""Bad inputs to cnm.controller.v1.Controller, each with its exact status code.

The world (world.py) has network n1 (10.91.0.0/24) with sandbox s1 connected,
an idle sandbox s2 and a free endpoint `free` on n1, all on host h1.
"""

from __future__ import annotations

from catalogue import C, case

from cnm.controller.v1 import controller_pb2 as pb
from cnm.types.v1 import types_pb2 as tpb

INVALID, NOT_FOUND, EXISTS, PRECONDITION = (
    C.INVALID_ARGUMENT,
    C.NOT_FOUND,
    C.ALREADY_EXISTS,
    C.FAILED_PRECONDITION,
)
GHOST_ID = "0" * 64


def net(**kw) -> pb.CreateNetworkRequest:
    return pb.CreateNetworkRequest(**{"name": "fz", **kw})


def subnet(*configs: dict) -> pb.IpamSpec:
    return pb.IpamSpec(configs=[tpb.IpamConfig(**c) for c in configs])


def ep(**spec) -> pb.CreateEndpointRequest:
    return pb.CreateEndpointRequest(network="n1", spec=pb.EndpointSpec(**spec))


def bind(**kw) -> tpb.PortBinding:
    return tpb.PortBinding(**{"protocol": tpb.PROTOCOL_TCP, "container_port": 80, **kw})


def sbx(**kw) -> pb.CreateSandboxRequest:
    return pb.CreateSandboxRequest(**{"name": "fz", **kw})


def dns(**kw) -> pb.CreateSandboxRequest:
    return sbx(dns=tpb.DnsConfig(**kw))


def N(id_, request, code, text=None, reason=None):  # noqa: N802 - reads as a table
    return case(id_, "Controller", "CreateNetwork", request, code, text, reason)


def E(id_, request, code, text=None, reason=None):  # noqa: N802
    return case(id_, "Controller", "CreateEndpoint", request, code, text, reason)


def S(id_, request, code, text=None, reason=None):  # noqa: N802
    return case(id_, "Controller", "CreateSandbox", request, code, text, reason)


CASES = [
    # --- CreateNetwork
    N("net-name-empty", pb.CreateNetworkRequest(), INVALID, "network name"),
    N("net-name-dot", net(name="bad.name"), INVALID, "'bad.name'"),
    N("net-name-leading-dash", net(name="-x"), INVALID, "'-x'"),
    N("net-name-65-chars", net(name="n" * 65), INVALID, "network name"),
    N("net-name-4096-chars-echo-cut", net(name="n" * 4096), INVALID, "n" * 64 + "'..."),
    N("net-name-nul-byte", net(name="a\x00b"), INVALID, "network name"),
    N("net-name-newline", net(name="a\nb"), INVALID, "network name"),
    N("net-name-unicode", net(name="réseau"), INVALID, "network name"),
    N("net-name-space", net(name="a b"), INVALID, "'a b'"),
    N("net-name-taken", net(name="n1"), EXISTS, "n1"),
    N("net-driver-unknown", net(driver="nope"), NOT_FOUND, "nope"),
    N("net-driver-bad-chars", net(driver="bad driver!"), INVALID, "driver name"),
    N("net-ipam-driver-bad-chars", net(ipam=pb.IpamSpec(driver="a b")), INVALID, "IPAM driver"),
    N("net-ipam-null-with-subnet", net(ipam=pb.IpamSpec(driver="null", configs=[tpb.IpamConfig(subnet="10.93.0.0/24")])), INVALID, "null"),
    N("net-subnet-prefix-33", net(ipam=subnet({"subnet": "10.93.0.0/33"})), INVALID, "10.93.0.0/33"),
    N("net-subnet-garbage", net(ipam=subnet({"subnet": "banana"})), INVALID, "banana"),
    N("net-subnet-host-bits", net(ipam=subnet({"subnet": "10.93.0.1/24"})), INVALID, "10.93.0.1/24"),
    N("net-subnet-every-ipv4-address", net(ipam=subnet({"subnet": "0.0.0.0/0"})), INVALID, "0.0.0.0/0"),
    N("net-subnet-every-ipv6-address", net(enable_ipv6=True, ipam=subnet({"subnet": "::/0"})), INVALID, "::/0"),
    N("net-subnet-overlaps-n1", net(ipam=subnet({"subnet": "10.91.0.128/25"})), EXISTS, "10.91.0.0"),
    N("net-subnets-overlap-each-other", net(ipam=subnet({"subnet": "10.93.0.0/24"}, {"subnet": "10.93.0.0/25"})), INVALID, "overlaps"),
    N("net-ipv6-subnet-without-enable-ipv6", net(ipam=subnet({"subnet": "fd99::/64"})), INVALID, "enable_ipv6"),
    N("net-ip-range-outside", net(ipam=subnet({"subnet": "10.93.0.0/24", "ip_range": "10.94.0.0/25"})), INVALID, "ip_range"),
    N("net-ip-range-without-subnet", net(ipam=subnet({"ip_range": "10.93.0.0/25"})), INVALID, "need a subnet"),
    N("net-gateway-outside", net(ipam=subnet({"subnet": "10.93.0.0/24", "gateway": "10.94.0.1"})), INVALID, "gateway"),
    N("net-gateway-network-address", net(ipam=subnet({"subnet": "10.93.0.0/24", "gateway": "10.93.0.0"})), INVALID, "network address"),
    N("net-gateway-broadcast", net(ipam=subnet({"subnet": "10.93.0.0/24", "gateway": "10.93.0.255"})), INVALID, "broadcast"),
    N("net-gateway-with-prefix", net(ipam=subnet({"subnet": "10.93.0.0/24", "gateway": "10.93.0.1/24"})), INVALID, "gateway"),
    N("net-aux-empty-name", net(ipam=subnet({"subnet": "10.93.0.0/24", "aux_addresses": {"": "10.93.0.9"}})), INVALID, "aux address"),
    N("net-aux-outside", net(ipam=subnet({"subnet": "10.93.0.0/24", "aux_addresses": {"r": "10.94.0.9"}})), INVALID, "10.94.0.9"),
    N("net-label-empty-key", net(labels={"": "v"}), INVALID, "label key"),
    N("net-label-key-with-spaces", net(labels={" k ": "v"}), INVALID, "label key"),
    N("net-option-mtu-not-a-number", net(options={"com.docker.network.driver.mtu": "abc"}), INVALID, "mtu"),
    N("net-option-bridge-name-too-long", net(options={"com.docker.network.bridge.name": "b" * 16}), INVALID, "b" * 15),
    N("net-host-unknown", net(host="h9"), NOT_FOUND, "h9"),
    N("net-labels-64k-in-all", net(labels={f"l{i}": "v" * 4000 for i in range(17)}), INVALID, "labels and options", "LIMIT_EXCEEDED"),
    N("net-label-value-1mb", net(labels={"k": "v" * (1 << 20)}), INVALID, "labels", "LIMIT_EXCEEDED"),
    N("net-request-over-grpc-4mib", net(labels={"k": "v" * (5 << 20)}), C.RESOURCE_EXHAUSTED),
    N("net-20000-labels", net(labels={str(i): "" for i in range(20000)}), INVALID, "20000 entries", "LIMIT_EXCEEDED"),
    # --- networks: get, list, delete
    case("get-net-unknown", "Controller", "GetNetwork", pb.GetNetworkRequest(id_or_name="ghost"), NOT_FOUND, "ghost"),
    case("get-net-empty", "Controller", "GetNetwork", pb.GetNetworkRequest(), INVALID),
    case("get-net-long-name-echo-cut", "Controller", "GetNetwork", pb.GetNetworkRequest(id_or_name="g" * 4000), NOT_FOUND, "g" * 64 + "'..."),
    case("list-nets-negative-page", "Controller", "ListNetworks", pb.ListNetworksRequest(page_size=-1), INVALID, "page_size"),
    case("list-nets-garbage-token", "Controller", "ListNetworks", pb.ListNetworksRequest(page_token="@@"), INVALID, "page_token"),
    case("list-nets-label-filter-without-key", "Controller", "ListNetworks", pb.ListNetworksRequest(filter=pb.NetworkFilter(labels=["=x"])), INVALID, "label filter"),
    case("delete-net-with-endpoints", "Controller", "DeleteNetwork", pb.DeleteNetworkRequest(id_or_name="n1"), PRECONDITION, "n1"),
    case("delete-net-unknown", "Controller", "DeleteNetwork", pb.DeleteNetworkRequest(id_or_name="ghost"), NOT_FOUND, "ghost"),
    # --- CreateEndpoint
    E("ep-network-unknown", pb.CreateEndpointRequest(network="ghost"), NOT_FOUND, "ghost"),
    E("ep-network-empty", pb.CreateEndpointRequest(), INVALID),
    E("ep-name-taken", ep(name="free"), EXISTS, "free"),
    E("ep-name-dot", ep(name="a.b"), INVALID, "endpoint name"),
    E("ep-ipv4-outside", ep(ipv4_address="10.9.9.9"), INVALID, "10.9.9.9"),
    E("ep-ipv4-gateway-taken", ep(ipv4_address="10.91.0.1"), EXISTS, "10.91.0.1"),
    E("ep-ipv4-malformed", ep(ipv4_address="10.91.0"), INVALID, "10.91.0"),
    E("ep-ipv4-prefix-33", ep(ipv4_address="10.91.0.9/33"), INVALID, "10.91.0.9/33"),
    E("ep-ipv4-given-ipv6", ep(ipv4_address="fd00::9"), INVALID, "fd00::9"),
    E("ep-ipv6-given-ipv4", ep(ipv6_address="10.91.0.9"), INVALID, "10.91.0.9"),
    E("ep-ipv6-on-ipv4-network", ep(ipv6_address="fd00::9"), INVALID, "fd00::9"),
    E("ep-mac-garbage", ep(mac_address="zz"), INVALID, "mac_address"),
    E("ep-mac-multicast", ep(mac_address="01:00:5e:00:00:01"), INVALID, "multicast"),
    E("ep-alias-leading-dot", ep(aliases=[".x"]), INVALID, "alias"),
    E("ep-alias-space", ep(aliases=["a b"]), INVALID, "alias"),
    E("ep-port-container-0", ep(port_bindings=[bind(container_port=0)]), INVALID, "no container port", "INVALID_PORT_BINDING"),
    E("ep-port-host-70000", ep(port_bindings=[bind(host_port=70000)]), INVALID, "70000"),
    E("ep-port-unknown-protocol", ep(port_bindings=[bind(protocol=99)]), INVALID, "protocol"),
    E("ep-port-end-below-start", ep(port_bindings=[bind(host_port=8010, host_port_end=8000)]), INVALID, "below its start"),
    E("ep-port-range-lengths-differ", ep(port_bindings=[bind(host_port=8000, host_port_end=8001, container_port_end=90)]), INVALID, "same length"),
    E("ep-port-host-ip-garbage", ep(port_bindings=[bind(host_ip="not-an-ip")]), INVALID, "not an IP address"),
    E("ep-exposed-port-0", ep(exposed_ports=[tpb.ExposedPort(protocol=tpb.PROTOCOL_TCP, port=0)]), INVALID, "exposed port"),
    E("ep-option-empty-key", ep(options={"": "v"}), INVALID, "option key"),
    # --- endpoints: get, list, delete
    case("get-ep-unknown", "Controller", "GetEndpoint", pb.GetEndpointRequest(id=GHOST_ID), NOT_FOUND, "0" * 12),
    case("get-ep-empty", "Controller", "GetEndpoint", pb.GetEndpointRequest(), INVALID),
    case("list-eps-network-unknown", "Controller", "ListEndpoints", pb.ListEndpointsRequest(network="ghost"), NOT_FOUND, "ghost"),
    case("list-eps-sandbox-unknown", "Controller", "ListEndpoints", pb.ListEndpointsRequest(sandbox="ghost"), NOT_FOUND, "ghost"),
    case("list-eps-negative-page", "Controller", "ListEndpoints", pb.ListEndpointsRequest(page_size=-5), INVALID, "page_size"),
    case("delete-ep-unknown", "Controller", "DeleteEndpoint", pb.DeleteEndpointRequest(id=GHOST_ID), NOT_FOUND),
    # --- CreateSandbox
    S("sb-name-taken", sbx(name="s1"), EXISTS, "s1"),
    S("sb-name-slash", sbx(name="a/b"), INVALID, "sandbox name"),
    S("sb-host-unknown", sbx(host="h9"), NOT_FOUND, "h9"),
    S("sb-hostname-leading-dash", sbx(hostname="-h"), INVALID, "hostname"),
    S("sb-hostname-254-chars", sbx(hostname="a." * 127), INVALID, "hostname"),
    S("sb-hostname-newline", sbx(hostname="a\nb"), INVALID, "hostname"),
    S("sb-domainname-underscore-bang", sbx(domainname="bad!dom"), INVALID, "domainname"),
    S("sb-dns-server-malformed", dns(servers=["8.8.8"]), INVALID, "8.8.8"),
    S("sb-dns-server-with-prefix", dns(servers=["8.8.8.8/32"]), INVALID, "8.8.8.8/32"),
    S("sb-dns-search-space", dns(search=["a b"]), INVALID, "search"),
    S("sb-dns-option-newline", dns(options=["ndots:2\nnameserver 1.2.3.4"]), INVALID, "DNS option"),
    S("sb-extra-host-bad-name", sbx(extra_hosts=[tpb.ExtraHost(hostname="a b", address="10.0.0.1")]), INVALID, "extra host"),
    S("sb-extra-host-bad-address", sbx(extra_hosts=[tpb.ExtraHost(hostname="db", address="x")]), INVALID, "extra host address"),
    S("sb-external-key-relative", sbx(external_key="proc/1/ns/net"), INVALID, "external_key"),
    S("sb-container-id-space", sbx(container_id="a b"), INVALID, "container_id"),
    S("sb-label-empty-key", sbx(labels={"": "v"}), INVALID, "label key"),
    # --- sandboxes: get, list, delete
    case("get-sb-unknown", "Controller", "GetSandbox", pb.GetSandboxRequest(id_or_name="ghost"), NOT_FOUND, "ghost"),
    case("list-sbs-negative-page", "Controller", "ListSandboxes", pb.ListSandboxesRequest(page_size=-1), INVALID, "page_size"),
    case("list-sbs-garbage-token", "Controller", "ListSandboxes", pb.ListSandboxesRequest(page_token="%%"), INVALID, "page_token"),
    case("delete-sb-unknown", "Controller", "DeleteSandbox", pb.DeleteSandboxRequest(id_or_name="ghost"), NOT_FOUND, "ghost"),
    # --- Join / Leave / Connect / Disconnect
    case("join-endpoint-unknown", "Controller", "Join", pb.JoinRequest(endpoint_id=GHOST_ID, sandbox="s2"), NOT_FOUND),
    case("join-sandbox-unknown", "Controller", "Join", lambda i: pb.JoinRequest(endpoint_id=i["free"], sandbox="ghost"), NOT_FOUND, "ghost"),
    case("join-joined-endpoint-elsewhere", "Controller", "Join", lambda i: pb.JoinRequest(endpoint_id=i["joined"], sandbox="s2"), PRECONDITION, "already joined"),
    case("join-sandbox-already-on-network", "Controller", "Join", lambda i: pb.JoinRequest(endpoint_id=i["free"], sandbox="s1"), PRECONDITION, "already on network"),
    case("leave-endpoint-unknown", "Controller", "Leave", pb.LeaveRequest(endpoint_id=GHOST_ID, sandbox="s1"), NOT_FOUND),
    case("connect-network-unknown", "Controller", "Connect", pb.ConnectRequest(network="ghost", sandbox="s2"), NOT_FOUND, "ghost"),
    case("connect-sandbox-unknown", "Controller", "Connect", pb.ConnectRequest(network="n1", sandbox="ghost"), NOT_FOUND, "ghost"),
    case("connect-already-connected", "Controller", "Connect", pb.ConnectRequest(network="n1", sandbox="s1"), PRECONDITION, "already on network"),
    case("connect-bad-mac", "Controller", "Connect", pb.ConnectRequest(network="n1", sandbox="s2", spec=pb.EndpointSpec(mac_address="zz")), INVALID, "mac_address"),
    case("connect-host-ip-not-on-host", "Controller", "Connect", pb.ConnectRequest(network="n1", sandbox="s2", spec=pb.EndpointSpec(port_bindings=[bind(host_port=8080, host_ip="192.0.2.77")])), PRECONDITION, "cannot assign requested address", "HOST_IP_NOT_LOCAL"),
    case("disconnect-network-unknown", "Controller", "Disconnect", pb.DisconnectRequest(network="ghost", sandbox="s1"), NOT_FOUND, "ghost"),
    case("disconnect-not-connected", "Controller", "Disconnect", pb.DisconnectRequest(network="n1", sandbox="s2"), NOT_FOUND),
    # --- hosts, drivers, pools
    case("get-host-unknown", "Controller", "GetHost", pb.GetHostRequest(id="h9"), NOT_FOUND, "h9"),
    case("list-hosts-negative-page", "Controller", "ListHosts", pb.ListHostsRequest(page_size=-1), INVALID, "page_size"),
    case("list-drivers-negative-page", "Controller", "ListDrivers", pb.ListDriversRequest(page_size=-1), INVALID, "page_size"),
    case("list-pools-negative-page", "Controller", "ListPools", pb.ListPoolsRequest(page_size=-1), INVALID, "page_size"),
]  # fmt: skip
