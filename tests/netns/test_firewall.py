"""cnm's nftables firewall with real namespaces and real packets.

Each test builds its own world, all inside namespaces it creates:

    outside (10.99.0.2, fd99::2) --- up0 [ host: 10.99.0.1, fd99::1 ] --- bridges --- sandboxes

The outside namespace has no route to the sandbox subnets, so a sandbox only
gets answers from it when its traffic is masqueraded. The firewall works on
the host namespace through `Firewall(netns=...)`; servers and clients are
sockets created inside the namespaces (`osl.nsenter.run_in_netns`) and served
by threads of this process, so nothing outlives the test.
"""

from __future__ import annotations

import json
import socket
import subprocess
import threading
import uuid
from collections.abc import Iterator

import pytest

from driver_service.firewall import BridgeNetwork, Firewall, ruleset
from driver_service.osl.nsenter import run_in_netns
from harness import kernel_snapshot, netns
from harness.wait import eventually
from services.values.ports import PortBinding

UPLINK4, OUTSIDE4 = "10.99.0.1", "10.99.0.2"
UPLINK6, OUTSIDE6 = "fd99::1", "fd99::2"
FAIL_FAST = 0.7  # seconds to wait for traffic that must NOT get through


def published(
    protocol: str, host_ip: str, host_port: int, container_ip: str, port: int
) -> PortBinding:
    """A published binding as the driver hands it to the firewall (already validated)."""
    return PortBinding(protocol, host_ip, host_port, container_port=port, container_ip=container_ip)


# --- world ---------------------------------------------------------------------------------


class Sandbox:
    def __init__(self, ns: str, port: str, ip4: str, ip6: str | None) -> None:
        self.ns, self.port, self.ip4, self.ip6 = ns, port, ip4, ip6


class World:
    """A host namespace with an uplink to an outside namespace, bridges and sandboxes."""

    def __init__(self) -> None:
        self.uid = uuid.uuid4().hex[:6]
        self.namespaces: list[str] = []
        self.count = 0
        self.host = self._ns("h")
        self.outside = self._ns("o")
        self.ip("link", "add", "up0", "type", "veth", "peer", "name", "eth0", "netns", self.outside)
        self.ip("addr", "add", f"{UPLINK4}/24", "dev", "up0")
        self.ip("addr", "add", f"{UPLINK6}/64", "dev", "up0", "nodad")
        self.ip("link", "set", "up0", "up")
        self.ip("addr", "add", f"{OUTSIDE4}/24", "dev", "eth0", "nodad", ns=self.outside)
        self.ip("addr", "add", f"{OUTSIDE6}/64", "dev", "eth0", "nodad", ns=self.outside)
        self.ip("link", "set", "eth0", "up", ns=self.outside)
        self.sysctl("net/ipv4/ip_forward", "1")
        self.sysctl("net/ipv6/conf/all/forwarding", "1")

    def _ns(self, role: str) -> str:
        name = f"cnmtest-{kernel_snapshot.TEST_TAG}-{self.uid}{role}"
        netns.create(name)
        self.namespaces.append(name)
        return name

    def ip(self, *args: str, ns: str | None = None) -> None:
        netns.run("ip", "-n", ns or self.host, *args)

    def sysctl(self, key: str, value: str, ns: str | None = None) -> None:
        def write() -> None:
            with open(f"/proc/sys/{key}", "w") as f:
                f.write(value)

        run_in_netns(ns or self.host, write)

    def bridge(self, name: str, gw4: str, gw6: str | None = None) -> None:
        self.ip("link", "add", name, "type", "bridge")
        self.ip("addr", "add", gw4, "dev", name)
        if gw6:
            self.ip("addr", "add", gw6, "dev", name, "nodad")
        self.ip("link", "set", name, "up")

    def sandbox(
        self, bridge: str, cidr4: str, gw4: str, cidr6: str | None = None, gw6: str | None = None
    ) -> Sandbox:
        self.count += 1
        ns = self._ns(f"s{self.count}")
        port = f"v{self.uid}{self.count}"
        self.ip("link", "add", port, "type", "veth", "peer", "name", "eth0", "netns", ns)
        self.ip("link", "set", port, "master", bridge, "up")
        # What the bridge driver does (as Docker does without its userland proxy): with
        # br_netfilter a sandbox's DNATed packet to itself is re-bridged out of its own port.
        self.ip("link", "set", port, "type", "bridge_slave", "hairpin", "on")
        self.ip("addr", "add", cidr4, "dev", "eth0", ns=ns)
        self.ip("link", "set", "eth0", "up", ns=ns)
        self.ip("route", "add", "default", "via", gw4, ns=ns)
        if cidr6:
            self.ip("addr", "add", cidr6, "dev", "eth0", "nodad", ns=ns)
            self.ip("-6", "route", "add", "default", "via", gw6, ns=ns)
        return Sandbox(ns, port, cidr4.split("/")[0], cidr6.split("/")[0] if cidr6 else None)

    def br_netfilter(self, on: bool) -> None:
        """Whether bridged IP traffic also traverses the inet hooks in the host."""
        for key in ("bridge-nf-call-iptables", "bridge-nf-call-ip6tables"):
            try:
                self.sysctl(f"net/bridge/{key}", "1" if on else "0")
            except FileNotFoundError:
                if on:
                    pytest.skip("br_netfilter is not available in this kernel")

    def nft(self, *args: str, check: bool = True) -> str:
        return netns.exec_in(self.host, "nft", *args, check=check).stdout

    def host_tables(self) -> list[str]:
        return [line for line in self.nft("list", "tables").splitlines() if line.strip()]

    def close(self) -> None:
        for name in reversed(self.namespaces):
            netns.delete(name)


@pytest.fixture
def world() -> Iterator[World]:
    w = World()
    try:
        yield w
    finally:
        w.close()


@pytest.fixture
def fw(world: World) -> Iterator[Firewall]:
    firewall = Firewall(netns=world.host)
    try:
        yield firewall
    finally:
        firewall.cleanup()
        firewall.close()


def two_bridges(world: World) -> tuple[BridgeNetwork, BridgeNetwork]:
    world.bridge("cnm-a", "172.31.1.1/24", "fd31:1::1/64")
    world.bridge("cnm-b", "172.31.2.1/24")
    return (
        BridgeNetwork("net-a", "cnm-a", ("172.31.1.0/24", "fd31:1::/64")),
        BridgeNetwork("net-b", "cnm-b", ("172.31.2.0/24",)),
    )


def on_a(world: World) -> Sandbox:
    n = world.count + 2
    return world.sandbox("cnm-a", f"172.31.1.{n}/24", "172.31.1.1", f"fd31:1::{n}/64", "fd31:1::1")


# --- traffic -------------------------------------------------------------------------------


def _family(ip: str) -> int:
    return socket.AF_INET6 if ":" in ip else socket.AF_INET


class PeerServer:
    """A TCP or UDP server in `ns` that answers every client with the address it sees."""

    def __init__(self, ns: str, proto: str, port: int, ip: str = "::") -> None:
        kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
        self.sock = run_in_netns(ns, lambda: socket.socket(_family(ip), kind))
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if ip == "::":
            self.sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
        self.sock.bind((ip, port))
        if proto == "tcp":
            self.sock.listen(16)
        self.sock.settimeout(0.1)
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._serve, args=(proto,), daemon=True)
        self.thread.start()

    def _serve(self, proto: str) -> None:
        while not self.stopped.is_set():
            try:
                if proto == "tcp":
                    conn, addr = self.sock.accept()
                    with conn:
                        conn.sendall(_unmap(addr[0]).encode())
                else:
                    _, addr = self.sock.recvfrom(2048)
                    self.sock.sendto(_unmap(addr[0]).encode(), addr)
            except (TimeoutError, OSError):
                continue

    def close(self) -> None:
        self.stopped.set()
        self.thread.join(5)
        self.sock.close()

    def __enter__(self) -> PeerServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _unmap(ip: str) -> str:
    return ip.removeprefix("::ffff:")


def ask(ns: str, ip: str, port: int, proto: str = "tcp", timeout: float = 3.0) -> str | None:
    """What the server at ip:port says our address is, from inside `ns`; None if unreachable."""
    kind = socket.SOCK_STREAM if proto == "tcp" else socket.SOCK_DGRAM
    sock = run_in_netns(ns, lambda: socket.socket(_family(ip), kind))
    sock.settimeout(timeout)
    try:
        if proto == "tcp":
            sock.connect((ip, port))
            return sock.recv(100).decode()
        sock.sendto(b"?", (ip, port))
        return sock.recv(100).decode()
    except OSError:
        return None
    finally:
        sock.close()


def ping(ns: str, ip: str) -> bool:
    return netns.ping(ns, ip, wait=1)


# --- masquerade, isolation, ICC, internal ---------------------------------------------------

BR_NETFILTER = pytest.mark.parametrize(
    "br_netfilter", [True, False], ids=["br_netfilter-on", "br_netfilter-off"]
)


def test_masquerade_gives_outside_the_host_address(world: World, fw: Firewall) -> None:
    net_a, _ = two_bridges(world)
    sbx = on_a(world)
    with PeerServer(world.outside, "tcp", 7000):
        assert ask(sbx.ns, OUTSIDE4, 7000, timeout=FAIL_FAST) is None, "outside must not route back"
        fw.add_network(net_a)
        assert ask(sbx.ns, OUTSIDE4, 7000) == UPLINK4
        assert ask(sbx.ns, OUTSIDE6, 7000) == UPLINK6


def test_without_masquerade_the_source_stays_and_inbound_is_refused(
    world: World, fw: Firewall
) -> None:
    world.bridge("cnm-a", "172.31.1.1/24")
    sbx = world.sandbox("cnm-a", "172.31.1.2/24", "172.31.1.1")
    world.ip("route", "add", "172.31.1.0/24", "via", UPLINK4, ns=world.outside)
    fw.add_network(BridgeNetwork("net-a", "cnm-a", ("172.31.1.0/24",), masquerade=False))
    with PeerServer(world.outside, "tcp", 7000), PeerServer(sbx.ns, "tcp", 80):
        assert ask(sbx.ns, OUTSIDE4, 7000) == sbx.ip4
        # Routed access to a sandbox from outside needs a published port.
        assert ask(world.outside, sbx.ip4, 80, timeout=FAIL_FAST) is None


def test_bridges_are_isolated_from_each_other(world: World, fw: Firewall) -> None:
    net_a, net_b = two_bridges(world)
    a = on_a(world)
    b = world.sandbox("cnm-b", "172.31.2.2/24", "172.31.2.1")
    assert ping(a.ns, b.ip4), "without cnm's rules the host routes between its bridges"
    fw.add_network(net_a)
    fw.add_network(net_b)
    assert not ping(a.ns, b.ip4)
    assert not ping(b.ns, a.ip4)
    assert ping(a.ns, "172.31.1.1") and ping(b.ns, "172.31.2.1")
    assert ping(a.ns, OUTSIDE4) and ping(b.ns, OUTSIDE4)


@BR_NETFILTER
def test_icc_off_drops_traffic_between_sandboxes_of_one_bridge(
    world: World, fw: Firewall, br_netfilter: bool
) -> None:
    world.br_netfilter(br_netfilter)
    world.bridge("cnm-a", "172.31.1.1/24", "fd31:1::1/64")
    s1, s2 = on_a(world), on_a(world)
    fw.add_network(BridgeNetwork("net-a", "cnm-a", ("172.31.1.0/24", "fd31:1::/64"), icc=False))
    assert ping(s1.ns, s2.ip4), "ICC off needs the ports: until attached they talk"
    fw.attach_port("net-a", s1.port)
    fw.attach_port("net-a", s2.port)
    assert not ping(s1.ns, s2.ip4)
    assert not ping(s2.ns, s1.ip6)
    assert ping(s1.ns, "172.31.1.1") and ping(s2.ns, "fd31:1::1")
    fw.detach_port(s2.port)
    fw.detach_port(s2.port)
    fw.detach_port(s1.port)
    assert ping(s1.ns, s2.ip4)


def test_internal_network_has_no_way_in_or_out(world: World, fw: Firewall) -> None:
    world.bridge("cnm-i", "172.31.9.1/24")
    s1 = world.sandbox("cnm-i", "172.31.9.2/24", "172.31.9.1")
    s2 = world.sandbox("cnm-i", "172.31.9.3/24", "172.31.9.1")
    world.ip("route", "add", "172.31.9.0/24", "via", UPLINK4, ns=world.outside)
    assert ping(s1.ns, OUTSIDE4), "forwarding works before the network is internal"
    fw.add_network(BridgeNetwork("net-i", "cnm-i", ("172.31.9.0/24",), internal=True))
    assert not ping(s1.ns, OUTSIDE4)
    assert not ping(world.outside, s1.ip4)
    assert ping(s1.ns, s2.ip4), "sandboxes of one internal network still talk"
    assert "172.31.9" not in world.nft("list", "set", "inet", "cnm", ruleset.S_MASQ4)


# --- port mapper -----------------------------------------------------------------------------


@BR_NETFILTER
def test_published_tcp_port_is_reachable_everywhere_a_user_expects(
    world: World, fw: Firewall, br_netfilter: bool
) -> None:
    world.br_netfilter(br_netfilter)
    net_a, net_b = two_bridges(world)
    fw.add_network(net_a)
    fw.add_network(net_b)
    s1, s2 = on_a(world), on_a(world)
    b1 = world.sandbox("cnm-b", "172.31.2.2/24", "172.31.2.1")
    mapping = published("tcp", "0.0.0.0", 8080, s1.ip4, 80)
    fw.add_port_mapping(mapping)
    fw.add_port_mapping(mapping)
    with PeerServer(s1.ns, "tcp", 80):
        assert ask(world.outside, UPLINK4, 8080) == OUTSIDE4, "client address preserved"
        assert ask(world.host, UPLINK4, 8080) == UPLINK4, "from the host on its own address"
        assert ask(world.host, "127.0.0.1", 8080) == "172.31.1.1", "from the host via loopback"
        assert ask(s2.ns, UPLINK4, 8080) == "172.31.1.1", "hairpin from a peer on the bridge"
        assert ask(s1.ns, UPLINK4, 8080) == "172.31.1.1", "hairpin to itself"
        assert ask(b1.ns, UPLINK4, 8080) == b1.ip4, "from a sandbox of another network"
        fw.remove_port_mapping(mapping)
        fw.remove_port_mapping(mapping)
        assert ask(world.outside, UPLINK4, 8080, timeout=FAIL_FAST) is None
    assert fw.list_port_mappings() == []


def test_published_ipv6_and_udp_ports(world: World, fw: Firewall) -> None:
    net_a, _ = two_bridges(world)
    fw.add_network(net_a)
    s1 = on_a(world)
    fw.add_port_mapping(published("tcp", "::", 8080, s1.ip6, 80))
    fw.add_port_mapping(published("udp", "0.0.0.0", 5353, s1.ip4, 53))
    fw.add_port_mapping(published("udp", "::", 5353, s1.ip6, 53))
    with PeerServer(s1.ns, "tcp", 80), PeerServer(s1.ns, "udp", 53):
        assert ask(world.outside, UPLINK6, 8080) == OUTSIDE6
        assert ask(world.host, UPLINK6, 8080) == UPLINK6
        assert ask(world.outside, UPLINK4, 5353, "udp") == OUTSIDE4
        assert ask(world.outside, UPLINK6, 5353, "udp") == OUTSIDE6
        assert ask(world.outside, UPLINK4, 8080, timeout=FAIL_FAST) is None, "v6 mapping only"


def test_port_on_one_host_address_is_published_there_only(world: World, fw: Firewall) -> None:
    net_a, _ = two_bridges(world)
    fw.add_network(net_a)
    s1 = on_a(world)
    fw.add_port_mapping(published("tcp", UPLINK4, 8081, s1.ip4, 80))
    with PeerServer(s1.ns, "tcp", 80):
        assert ask(world.outside, UPLINK4, 8081) == OUTSIDE4
        assert ask(world.host, "172.31.1.1", 8081, timeout=FAIL_FAST) is None


def test_port_published_on_127_0_0_1_is_not_reachable_from_the_segment(
    world: World, fw: Firewall
) -> None:
    net_a, _ = two_bridges(world)
    fw.add_network(net_a)
    s1 = on_a(world)
    fw.add_port_mapping(published("tcp", "127.0.0.1", 9090, s1.ip4, 80))
    # The outside sends packets for 127.0.0.1 to the host, as a hostile neighbour can.
    out = world.outside
    world.ip("rule", "add", "pref", "100", "lookup", "local", ns=out)
    world.ip("rule", "del", "pref", "0", ns=out)
    world.ip("route", "add", "127.0.0.1/32", "via", UPLINK4, "dev", "eth0", "table", "100", ns=out)
    world.ip("rule", "add", "to", "127.0.0.1", "lookup", "100", "pref", "10", ns=out)
    world.sysctl("net/ipv4/conf/eth0/route_localnet", "1", ns=out)
    with PeerServer(s1.ns, "tcp", 80):
        assert ask(world.host, "127.0.0.1", 9090) == "172.31.1.1"
        assert ask(out, UPLINK4, 9090, timeout=FAIL_FAST) is None
        assert ask(out, "127.0.0.1", 9090, timeout=FAIL_FAST) is None
        # Control: without the guard rule the neighbour's trick works (CVE-2020-8558)...
        world.nft("flush", "chain", "inet", "cnm", ruleset.C_GUARD)
        assert ask(out, "127.0.0.1", 9090) == OUTSIDE4
        # ...and ensure() puts the guard back.
        assert fw.ensure()
        assert ask(out, "127.0.0.1", 9090, timeout=FAIL_FAST) is None


def test_sctp_mapping_is_one_map_element(world: World, fw: Firewall) -> None:
    net_a, _ = two_bridges(world)
    fw.add_network(net_a)
    fw.add_port_mapping(published("sctp", "0.0.0.0", 3868, "172.31.1.2", 3868))
    listing = world.nft("list", "map", "inet", "cnm", ruleset.M_PORTS4_ANY)
    assert "sctp . 3868 : 172.31.1.2 . 3868" in listing
    try:
        socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_SCTP).close()
    except OSError as e:
        pytest.skip(f"SCTP traffic not tested: this kernel has no SCTP sockets ({e})")


# --- self-healing, cleanup, scale ------------------------------------------------------------


HOST_FIREWALL_RELOAD = """flush ruleset
table inet filter {
    chain input { type filter hook input priority 0; policy accept; }
}
"""


def nft_script(world: World, script: str) -> None:
    subprocess.run(
        ["ip", "netns", "exec", world.host, "nft", "-f", "-"],
        input=script,
        text=True,
        check=True,
        capture_output=True,
    )


def test_flushed_ruleset_is_restored_by_the_watcher(world: World, fw: Firewall) -> None:
    net_a, net_b = two_bridges(world)
    fw.add_network(net_a)
    fw.add_network(net_b)
    s1 = on_a(world)
    b1 = world.sandbox("cnm-b", "172.31.2.2/24", "172.31.2.1")
    fw.add_port_mapping(published("tcp", "0.0.0.0", 8080, s1.ip4, 80))
    assert not fw.ensure(), "nothing to repair right after the changes"
    fw.start_watcher(interval=0.5)
    with PeerServer(s1.ns, "tcp", 80):
        for breakage in ("flush ruleset\n", HOST_FIREWALL_RELOAD):
            nft_script(world, breakage)
            # The watcher checks every 0.5 s: restored within a few checks.
            assert eventually(fw.in_sync, timeout=5, interval=0.05), f"not restored: {breakage!r}"
            assert ask(world.outside, UPLINK4, 8080) == OUTSIDE4
            assert not ping(s1.ns, b1.ip4)
    assert "table inet filter" in world.host_tables(), "other tables are left alone"


def test_edited_elements_and_rules_are_repaired(world: World, fw: Firewall) -> None:
    net_a, _ = two_bridges(world)
    fw.add_network(net_a)
    fw.add_port_mapping(published("tcp", "0.0.0.0", 8080, "172.31.1.2", 80))
    world.nft("delete", "element", "inet", "cnm", ruleset.M_PORTS4_ANY, "{ tcp . 8080 }")
    assert not fw.in_sync()
    assert fw.ensure() and fw.in_sync()
    world.nft("add", "rule", "inet", "cnm", ruleset.C_FORWARD, "accept")
    assert fw.ensure() and fw.in_sync()
    assert not fw.ensure()


def test_last_network_removes_the_tables_and_cleanup_removes_all(
    world: World, fw: Firewall
) -> None:
    net_a, net_b = two_bridges(world)
    fw.add_network(net_a)
    fw.add_network(net_b)
    fw.add_port_mapping(published("tcp", "0.0.0.0", 8080, "172.31.1.2", 80))
    assert world.host_tables() == ["table inet cnm", "table bridge cnm"]
    fw.remove_network("net-a")
    assert fw.list_port_mappings() == [], "mappings into a removed network go with it"
    assert world.host_tables() == ["table inet cnm", "table bridge cnm"]
    fw.remove_network("net-b")
    fw.remove_network("net-b")
    assert world.host_tables() == []
    fw.add_network(net_a)
    fw.add_port_mapping(published("udp", "::", 53, "fd31:1::2", 53))
    fw.cleanup()
    assert world.host_tables() == []
    assert fw.state().empty


def _rule_count(world: World) -> int:
    data = json.loads(world.nft("-j", "list", "ruleset"))["nftables"]
    return sum(1 for obj in data if "rule" in obj)


def test_rule_count_does_not_grow_with_networks_or_containers(world: World, fw: Firewall) -> None:
    fw.add_network(BridgeNetwork("n0", "cnm-0", ("10.200.0.0/24",), icc=False))
    fw.attach_port("n0", "p0")
    fw.add_port_mapping(published("tcp", "0.0.0.0", 10000, "10.200.0.2", 80))
    rules = _rule_count(world)
    for i in range(1, 40):
        fw.add_network(BridgeNetwork(f"n{i}", f"cnm-{i}", (f"10.200.{i}.0/24",), icc=i % 2 == 0))
        fw.attach_port(f"n{i}", f"p{i}")
    for i in range(1, 400):
        fw.add_port_mapping(
            published("tcp", "0.0.0.0", 10000 + i, f"10.200.{i % 40}.{2 + i // 40}", 80)
        )
    assert _rule_count(world) == rules
    assert fw.in_sync()


def test_nft_command_backend_builds_the_same_tables(world: World, fw: Firewall) -> None:
    net_a, net_b = two_bridges(world)
    state_changes = [
        lambda f: f.add_network(net_a),
        lambda f: f.add_network(BridgeNetwork("net-b", "cnm-b", ("172.31.2.0/24",), icc=False)),
        lambda f: f.attach_port("net-b", "p1"),
        lambda f: f.add_port_mapping(published("tcp", "0.0.0.0", 8080, "172.31.1.2", 80)),
        lambda f: f.add_port_mapping(published("udp", "fd99::1", 53, "fd31:1::2", 53)),
    ]
    for change in state_changes:
        change(fw)
    expected = world.nft("list", "ruleset")
    fw.cleanup()
    with Firewall(netns=world.host, backend="nft") as by_command:
        for change in state_changes:
            change(by_command)
        assert world.nft("list", "ruleset") == expected
        assert by_command.in_sync()
        by_command.cleanup()
