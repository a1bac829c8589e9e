"""Every driver method with bad input: the right status code, a message naming the
problem, and neither the kernel (links, addresses, routes, namespaces, nftables) nor
the store nor the sandbox files changed."""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from dataclasses import dataclass

import grpc
import pytest
import redis
from driver_world import T, network_request, shared_host

from cnm.driver.v1 import driver_pb2 as pb
from cnm.types.v1 import types_pb2 as tpb
from harness import netns
from services.ids import new_id

BAD = "0" * 63 + "g"  # 64 characters, not hex


@dataclass
class Ctx:
    """What exists before each case: a network, a sandbox with a joined endpoint,
    a second sandbox, an unjoined endpoint."""

    nid: str
    sid: str
    other_sid: str
    eid: str
    free_eid: str
    regular_file: str


@pytest.fixture(scope="module")
def world(redis_server, netns_prefix):
    with shared_host(redis_server, netns_prefix) as h:
        nid = h.network("10.30.0.0/24", options={"com.docker.network.bridge.name": "cnmerr0"})
        sb, eid = h.attach(nid, "10.30.0.2/24", "base")
        other = h.sandbox("other")
        free_eid = h.endpoint(nid, "10.30.0.3/24")
        fd, path = tempfile.mkstemp(prefix="cnm-not-a-netns-")
        os.close(fd)
        try:
            yield h, Ctx(nid, sb.sandbox_id, other.sandbox_id, eid, free_eid, path)
        finally:
            os.unlink(path)
            h.reset()


def snapshot(host) -> dict:
    """Everything a bad call must not change."""

    def sh(*argv: str) -> str:
        return host.host_exec(*argv).stdout

    client = redis.Redis.from_url(host.redis_url, decode_responses=True)
    try:
        store = {}
        for key in client.scan_iter("cnm:*"):
            if key.startswith(("cnm:host:", "cnm:store:last_beat")):
                continue  # the heartbeat and the store's liveness clock tick on their own
            # Any type: keys other modules of the session left behind are compared too.
            store[key] = client.dump(key)
    finally:
        client.close()
    files = sorted(str(p.relative_to(host.state_dir)) for p in host.state_dir.rglob("*"))
    return {
        "links": sh("ip", "-o", "link", "show"),
        # Link-local IPv6 addresses come and go (DAD) on their own: not ours to compare.
        "addresses": "".join(
            line
            for line in sh("ip", "-o", "address", "show").splitlines(True)
            if "fe80:" not in line
        ),
        "routes": sh("ip", "route", "show") + sh("ip", "-6", "route", "show"),
        "nft": sh("nft", "list", "ruleset"),
        "netns": sorted(
            line.split()[0]
            for line in netns.run("ip", "netns", "list").stdout.splitlines()
            if line.startswith(host.netns_prefix)
        ),
        "store": store,
        "files": files,
    }


def _net(**kw) -> Callable[[Ctx], tuple[str, object]]:
    def build(c: Ctx) -> tuple[str, object]:
        args = {"nid": new_id(), "subnet": "10.31.0.0/24", **kw}
        req = network_request(args.pop("nid"), args.pop("subnet"), **args)
        return "CreateNetwork", req

    return build


def _net_raw(**fields) -> Callable[[Ctx], tuple[str, object]]:
    def build(c: Ctx) -> tuple[str, object]:
        base = {"network_id": new_id(), "name": "n", "driver": "bridge"}
        return "CreateNetwork", pb.CreateNetworkRequest(**{**base, **fields})

    return build


def _ep(address: str = "10.30.0.9/24", nid: str | None = None, **kw):
    def build(c: Ctx) -> tuple[str, object]:
        iface = {
            "address": address,
            **{k: v for k, v in kw.items() if k in ("mac_address", "address_ipv6")},
        }
        rest = {k: v for k, v in kw.items() if k not in iface}
        return "CreateEndpoint", pb.CreateEndpointRequest(
            network_id=nid or c.nid,
            endpoint_id=new_id(),
            interface=pb.EndpointInterface(**iface),
            **rest,
        )

    return build


def _sb(**kw):
    def build(c: Ctx) -> tuple[str, object]:
        fields = {"sandbox_id": new_id(), "name": "s", **kw}
        if fields.get("external_key") == "REGULAR_FILE":
            fields["external_key"] = c.regular_file
        return "CreateSandbox", pb.CreateSandboxRequest(**fields)

    return build


CASES = [
    # CreateNetwork
    ("network-id-not-hex", _net(nid=BAD), "INVALID_ARGUMENT", "network id"),
    ("network-bad-name", _net(name="bad name!"), "INVALID_ARGUMENT", "bad name!"),
    (
        "network-cidr-prefix-33",
        _net_raw(ipv4_data=[pb.IpamData(pool="10.31.0.0/33", gateway="10.31.0.1/33")]),
        "INVALID_ARGUMENT",
        "10.31.0.0/33",
    ),
    (
        "network-cidr-host-bits",
        _net_raw(ipv4_data=[pb.IpamData(pool="10.31.0.1/24", gateway="10.31.0.1/24")]),
        "INVALID_ARGUMENT",
        "10.31.0.1/24",
    ),
    (
        "network-gateway-outside-pool",
        _net_raw(ipv4_data=[pb.IpamData(pool="10.31.0.0/24", gateway="10.99.0.1/24")]),
        "INVALID_ARGUMENT",
        "10.99.0.1/24",
    ),
    (
        "network-mtu-70000",
        _net(options={"com.docker.network.driver.mtu": "70000"}),
        "INVALID_ARGUMENT",
        "70000",
    ),
    (
        "network-mtu-not-int",
        _net(options={"com.docker.network.driver.mtu": "big"}),
        "INVALID_ARGUMENT",
        "big",
    ),
    (
        "network-bridge-name-too-long",
        _net(options={"com.docker.network.bridge.name": "br-much-too-long-name"}),
        "INVALID_ARGUMENT",
        "br-much-too-long-name",
    ),
    (
        "network-bridge-name-unsafe",
        _net(options={"com.docker.network.bridge.name": "br;reboot"}),
        "INVALID_ARGUMENT",
        "br;reboot",
    ),
    (
        "network-icc-not-bool",
        _net(options={"com.docker.network.bridge.enable_icc": "maybe"}),
        "INVALID_ARGUMENT",
        "maybe",
    ),
    (
        "network-unknown-bridge-option",
        _net(options={"com.docker.network.bridge.enable_icq": "true"}),
        "INVALID_ARGUMENT",
        "enable_icq",
    ),
    (
        "network-host-binding-not-ipv4",
        _net(options={"com.docker.network.bridge.host_binding_ipv4": "::1"}),
        "INVALID_ARGUMENT",
        "::1",
    ),
    ("network-unknown-driver", _net(driver="nope"), "NOT_FOUND", "nope"),
    ("network-no-pool", _net(subnet=""), "INVALID_ARGUMENT", "pool"),
    (
        "network-bridge-name-taken",
        _net(options={"com.docker.network.bridge.name": "cnmerr0"}),
        "ALREADY_EXISTS",
        "cnmerr0",
    ),
    (
        "delete-network-bad-id",
        lambda c: ("DeleteNetwork", pb.DeleteNetworkRequest(network_id="x")),
        "INVALID_ARGUMENT",
        "'x'",
    ),
    (
        "delete-network-in-use",
        lambda c: ("DeleteNetwork", pb.DeleteNetworkRequest(network_id=c.nid)),
        "FAILED_PRECONDITION",
        "joined",
    ),
    # CreateEndpoint / DeleteEndpoint / EndpointOperInfo
    ("endpoint-unknown-network", _ep(nid="a" * 64), "NOT_FOUND", "no such network"),
    ("endpoint-bad-address", _ep("10.30.0.300/24"), "INVALID_ARGUMENT", "10.30.0.300"),
    ("endpoint-address-without-prefix", _ep("10.30.0.9"), "INVALID_ARGUMENT", "prefix"),
    ("endpoint-address-outside-pool", _ep("10.99.0.9/24"), "INVALID_ARGUMENT", "10.99.0.9/24"),
    ("endpoint-address-is-gateway", _ep("10.30.0.1/24"), "INVALID_ARGUMENT", "gateway"),
    ("endpoint-address-taken", _ep("10.30.0.2/24"), "ALREADY_EXISTS", "10.30.0.2"),
    ("endpoint-ipv6-in-ipv4-field", _ep("fd00::9/64"), "INVALID_ARGUMENT", "fd00::9/64"),
    ("endpoint-bad-mac", _ep(mac_address="zz:00:00:00:00:01"), "INVALID_ARGUMENT", "zz:00"),
    (
        "endpoint-multicast-mac",
        _ep(mac_address="01:00:5e:00:00:01"),
        "INVALID_ARGUMENT",
        "multicast",
    ),
    ("endpoint-bad-name", _ep(name="no spaces"), "INVALID_ARGUMENT", "no spaces"),
    ("endpoint-bad-alias", _ep(aliases=["a b"]), "INVALID_ARGUMENT", "a b"),
    (
        "endpoint-port-without-protocol",
        _ep(port_bindings=[tpb.PortBinding(container_port=80)]),
        "INVALID_ARGUMENT",
        "protocol",
    ),
    (
        "endpoint-port-zero",
        _ep(port_bindings=[tpb.PortBinding(protocol=tpb.PROTOCOL_TCP, container_port=0)]),
        "INVALID_ARGUMENT",
        "container port",
    ),
    (
        "delete-endpoint-bad-id",
        lambda c: ("DeleteEndpoint", pb.DeleteEndpointRequest(network_id=c.nid, endpoint_id="e")),
        "INVALID_ARGUMENT",
        "'e'",
    ),
    (
        "oper-info-unknown-endpoint",
        lambda c: (
            "EndpointOperInfo",
            pb.EndpointOperInfoRequest(network_id=c.nid, endpoint_id="b" * 64),
        ),
        "NOT_FOUND",
        "no such endpoint",
    ),
    # Join / Leave
    (
        "join-missing-sandbox",
        lambda c: (
            "Join",
            pb.JoinRequest(network_id=c.nid, endpoint_id=c.free_eid, sandbox_id="c" * 64),
        ),
        "NOT_FOUND",
        "no such sandbox",
    ),
    (
        "join-unknown-endpoint",
        lambda c: (
            "Join",
            pb.JoinRequest(network_id=c.nid, endpoint_id="d" * 64, sandbox_id=c.other_sid),
        ),
        "NOT_FOUND",
        "no such endpoint",
    ),
    (
        "join-unknown-network",
        lambda c: (
            "Join",
            pb.JoinRequest(network_id="e" * 64, endpoint_id=c.free_eid, sandbox_id=c.other_sid),
        ),
        "NOT_FOUND",
        "no such endpoint",
    ),
    (
        "join-bad-sandbox-id",
        lambda c: (
            "Join",
            pb.JoinRequest(network_id=c.nid, endpoint_id=c.free_eid, sandbox_id="../x"),
        ),
        "INVALID_ARGUMENT",
        "sandbox id",
    ),
    (
        "join-endpoint-joined-elsewhere",
        lambda c: (
            "Join",
            pb.JoinRequest(network_id=c.nid, endpoint_id=c.eid, sandbox_id=c.other_sid),
        ),
        "FAILED_PRECONDITION",
        "already joined",
    ),
    (
        "leave-wrong-sandbox",
        lambda c: (
            "Leave",
            pb.LeaveRequest(network_id=c.nid, endpoint_id=c.eid, sandbox_id=c.other_sid),
        ),
        "FAILED_PRECONDITION",
        "not",
    ),
    (
        "leave-bad-network-id",
        lambda c: ("Leave", pb.LeaveRequest(network_id="n", endpoint_id=c.eid, sandbox_id=c.sid)),
        "INVALID_ARGUMENT",
        "network id",
    ),
    # Sandboxes
    (
        "sandbox-external-key-regular-file",
        _sb(external_key="REGULAR_FILE"),
        "INVALID_ARGUMENT",
        "is not allowed",
    ),
    (
        "sandbox-external-key-relative",
        _sb(external_key="proc/1/ns/net"),
        "INVALID_ARGUMENT",
        "absolute",
    ),
    (
        "sandbox-external-key-missing",
        _sb(external_key="/proc/999999999/ns/net"),
        "NOT_FOUND",
        "999999999",
    ),
    (
        "sandbox-external-key-mount-ns",
        _sb(external_key="/proc/self/ns/mnt"),
        "INVALID_ARGUMENT",
        "is not allowed",
    ),
    ("sandbox-bad-id", _sb(sandbox_id="short"), "INVALID_ARGUMENT", "sandbox id"),
    ("sandbox-bad-hostname", _sb(hostname="bad host"), "INVALID_ARGUMENT", "bad host"),
    (
        "sandbox-bad-dns-server",
        _sb(dns=tpb.DnsConfig(servers=["1.2.3"])),
        "INVALID_ARGUMENT",
        "1.2.3",
    ),
    (
        "sandbox-bad-dns-option",
        _sb(dns=tpb.DnsConfig(options=["ndots:1\nnameserver 6.6.6.6"])),
        "INVALID_ARGUMENT",
        "option",
    ),
    (
        "sandbox-bad-extra-host",
        _sb(extra_hosts=[tpb.ExtraHost(hostname="db", address="999.0.0.1")]),
        "INVALID_ARGUMENT",
        "999.0.0.1",
    ),
    (
        "sandbox-same-id-other-parameters",
        lambda c: (
            "CreateSandbox",
            pb.CreateSandboxRequest(sandbox_id=c.other_sid, name="renamed"),
        ),
        "ALREADY_EXISTS",
        "different parameters",
    ),
    (
        "delete-sandbox-bad-id",
        lambda c: ("DeleteSandbox", pb.DeleteSandboxRequest(sandbox_id="s")),
        "INVALID_ARGUMENT",
        "'s'",
    ),
    (
        "get-sandbox-missing",
        lambda c: ("GetSandbox", pb.GetSandboxRequest(sandbox_id="f" * 64)),
        "NOT_FOUND",
        "f" * 64,
    ),
    (
        "capabilities-unknown-driver",
        lambda c: ("GetCapabilities", pb.GetCapabilitiesRequest(driver="nope")),
        "NOT_FOUND",
        "nope",
    ),
]


@pytest.mark.parametrize("build, code, named", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_bad_input_is_rejected_and_changes_nothing(world, build, code, named):
    host, ctx = world
    method, request = build(ctx)
    before = snapshot(host)
    with pytest.raises(grpc.RpcError) as err:
        getattr(host.stub, method)(request, timeout=T)
    assert err.value.code().name == code, err.value.details()
    assert named in err.value.details()
    assert snapshot(host) == before
