"""The host port allocator against a real redis-server: conflicts, ranges, the dynamic
range, all-or-nothing requests, release, reconciliation, races between writers, and
ports a process of this machine really listens on (loopback sockets of the test).
"""

from __future__ import annotations

import socket
import threading

import pytest
import redis
from controller_env import snapshot

from driver_service.models import PortBinding
from driver_service.ports import PortAllocator, PortRequest, Target
from services.errors import AlreadyExists, Exhausted
from services.ids import new_id
from services.store import Store

A, B, C = new_id(), new_id(), new_id()
CIP = "10.7.0.2"


def fixed(port: int, ip: str = "0.0.0.0", proto: str = "tcp", cport: int = 80) -> PortRequest:
    cip = "fd00::2" if ":" in ip else CIP
    return PortRequest(proto, cport, (Target(ip, cip),), port, port, spec=f"{ip}:{port}")


def ranged(low: int, high: int, *targets: Target, cport: int = 80) -> PortRequest:
    return PortRequest("tcp", cport, targets or (Target("0.0.0.0", CIP),), low, high)


def dynamic(cport: int = 80) -> PortRequest:
    return PortRequest("tcp", cport, (Target("0.0.0.0", CIP),), dynamic=True)


@pytest.fixture
def store(redis_url):
    s = Store(redis_url)
    yield s
    s.close()


@pytest.fixture
def ports(store):
    # The conflict rules use documentation addresses that are on no interface here.
    return PortAllocator(
        store, "h1", dynamic_range=lambda: (40000, 40004), is_local=lambda ip: True
    )


def held(ports: PortAllocator, owner: str) -> list[tuple[str, int]]:
    return sorted((b.host_ip, b.host_port) for b in ports.owned(owner))


def test_a_given_port_is_allocated_once_and_the_refusal_changes_nothing(ports, redis_url):
    [b] = ports.allocate(A, [fixed(8080)])
    assert b == PortBinding("tcp", "0.0.0.0", 8080, 0, 80, 0, CIP)
    before = snapshot(redis_url)
    with pytest.raises(AlreadyExists) as err:
        ports.allocate(B, [fixed(8080)])
    assert err.value.message == "Bind for 0.0.0.0:8080 failed: port is already allocated"
    assert err.value.reason == "PORT_ALREADY_ALLOCATED"
    assert snapshot(redis_url) == before


@pytest.mark.parametrize(
    "first, second, conflict",
    [
        pytest.param(fixed(8080), fixed(8080, "127.0.0.1"), True, id="wildcard-then-specific"),
        pytest.param(fixed(8080, "127.0.0.1"), fixed(8080), True, id="specific-then-wildcard"),
        pytest.param(fixed(8080, "127.0.0.1"), fixed(8080, "192.0.2.1"), False, id="two-specific"),
        pytest.param(fixed(8080), fixed(8080, proto="udp"), False, id="tcp-and-udp"),
        pytest.param(fixed(8080), fixed(8080, "::"), False, id="ipv4-and-ipv6-wildcards"),
        pytest.param(fixed(8080, "::"), fixed(8080, "fd00::9"), True, id="ipv6-wildcard-then-specific"),
    ],
)  # fmt: skip
def test_conflicts_follow_dockers_rule(ports, first, second, conflict):
    ports.allocate(A, [first])
    if conflict:
        with pytest.raises(AlreadyExists, match="port is already allocated"):
            ports.allocate(B, [second])
        assert ports.owned(B) == ()
    else:
        assert [b.host_port for b in ports.allocate(B, [second])] == [8080]


def test_a_range_gives_the_first_free_port_and_refuses_when_full(ports, redis_url):
    assert ports.allocate(A, [ranged(8000, 8001)])[0].host_port == 8000
    assert ports.allocate(B, [ranged(8000, 8001)])[0].host_port == 8001
    before = snapshot(redis_url)
    with pytest.raises(Exhausted, match=r"0\.0\.0\.0:8000-8001 failed: every port of 8000-8001"):
        ports.allocate(C, [ranged(8000, 8001)])
    assert snapshot(redis_url) == before


def test_both_families_share_one_port_chosen_free_on_each(ports):
    ports.allocate(A, [fixed(8000, "::")])
    both = ranged(8000, 8005, Target("0.0.0.0", CIP), Target("::", "fd00::2"))
    got = ports.allocate(B, [both])
    assert sorted((b.host_ip, b.host_port, b.container_ip) for b in got) == [
        ("0.0.0.0", 8001, CIP),
        ("::", 8001, "fd00::2"),
    ]


def test_dynamic_ports_move_on_so_a_released_port_is_not_reused_at_once(ports):
    first = ports.allocate(A, [dynamic()])[0].host_port
    ports.release(A)
    second = ports.allocate(B, [dynamic()])[0].host_port
    assert (first, second) == (40000, 40001)
    # The cursor wraps around the range and skips what is held.
    got = [ports.allocate(new_id(), [dynamic()])[0].host_port for _ in range(4)]
    assert got == [40002, 40003, 40004, 40000]
    with pytest.raises(Exhausted, match="dynamic range 40000-40004"):
        ports.allocate(C, [dynamic()])


def test_an_endpoints_requests_are_all_or_nothing_and_cannot_collide_with_each_other(
    ports, redis_url
):
    ports.allocate(A, [fixed(9001)])
    before = snapshot(redis_url)
    with pytest.raises(AlreadyExists, match="0.0.0.0:9001"):
        ports.allocate(B, [fixed(9000), fixed(9001)])
    with pytest.raises(AlreadyExists, match="0.0.0.0:9002"):
        ports.allocate(B, [fixed(9002, cport=80), fixed(9002, cport=81)])
    assert snapshot(redis_url) == before


def test_allocating_again_replaces_what_the_owner_held(ports):
    ports.allocate(A, [fixed(8080), fixed(8081)])
    assert held(ports, A) == [("0.0.0.0", 8080), ("0.0.0.0", 8081)]
    ports.allocate(A, [fixed(8081), fixed(8082)])
    assert held(ports, A) == [("0.0.0.0", 8081), ("0.0.0.0", 8082)]
    assert ports.allocate(B, [fixed(8080)])[0].host_port == 8080


def test_release_is_idempotent_and_frees_every_port(ports, redis_url):
    ports.allocate(A, [fixed(8080), fixed(8080, "::"), ranged(7000, 7001)])
    assert len(ports.release(A)) == 3
    assert ports.release(A) == ()
    assert snapshot(redis_url) == {}
    assert len(ports.allocate(B, [fixed(8080), fixed(8080, "::"), ranged(7000, 7000)])) == 3


def test_reconcile_releases_strangers_and_reclaims_lost_allocations(ports, store):
    mine = ports.allocate(A, [fixed(8080)])
    ports.allocate(B, [fixed(8081)])
    ports.allocate(C, [fixed(8082)])
    # C's allocation vanished (e.g. a Redis restored from an older snapshot).
    ports.release(C)
    problems = ports.reconcile({A: mine, C: (PortBinding("tcp", "0.0.0.0", 8082, 0, 80, 0, CIP),)})
    assert problems == []
    assert ports.owners() == sorted([A, C])
    assert held(ports, C) == [("0.0.0.0", 8082)]
    assert held(ports, A) == [("0.0.0.0", 8080)]


def test_racing_writers_never_hand_out_a_port_twice(redis_url):
    stores = [Store(redis_url) for _ in range(8)]
    got: list[int] = []
    lock = threading.Lock()
    errors: list[Exception] = []

    def work(store: Store) -> None:
        alloc = PortAllocator(store, "h1", dynamic_range=lambda: (41000, 41199))
        try:
            for _ in range(25):
                port = alloc.allocate(new_id(), [dynamic()])[0].host_port
                with lock:
                    got.append(port)
        except Exception as e:  # noqa: BLE001 - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(s,)) for s in stores]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    for s in stores:
        s.close()
    assert not errors
    assert sorted(got) == list(range(41000, 41200))
    client = redis.Redis.from_url(redis_url)
    assert client.hlen("cnm:ports:h1:alloc") == 200 and client.hlen("cnm:ports:h1:owners") == 200
    client.close()


@pytest.fixture
def listening():
    """A TCP and a UDP socket of this process bound to 127.0.0.1, and a TCP one on ::1
    (loopback only): their ports."""
    tcp = socket.socket()
    tcp.bind(("127.0.0.1", 0))
    tcp.listen(1)
    udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    udp.bind(("127.0.0.1", 0))
    tcp6 = socket.socket(socket.AF_INET6)
    tcp6.bind(("::1", 0))
    tcp6.listen(1)
    yield tcp.getsockname()[1], udp.getsockname()[1], tcp6.getsockname()[1]
    for s in (tcp, udp, tcp6):
        s.close()


def test_ports_a_host_process_listens_on_are_refused_or_skipped(ports, listening):
    tcp_port, udp_port, tcp6_port = listening
    with pytest.raises(AlreadyExists) as err:
        ports.allocate(A, [fixed(tcp_port)])
    assert err.value.reason == "PORT_IN_USE"
    assert err.value.message == (
        f"Bind for 0.0.0.0:{tcp_port} failed: port is already allocated "
        f"(a process on the host listens on 127.0.0.1:{tcp_port}/tcp)"
    )
    with pytest.raises(AlreadyExists, match=f"127.0.0.1:{udp_port}/udp"):
        ports.allocate(A, [fixed(udp_port, proto="udp")])
    with pytest.raises(AlreadyExists, match=rf"\[::1\]:{tcp6_port}/tcp"):
        ports.allocate(A, [fixed(tcp6_port, "::")])
    assert ports.owned(A) == ()
    # Another address than the listener's does not overlap; another protocol neither.
    assert ports.allocate(A, [fixed(tcp_port, "192.0.2.1")])[0].host_port == tcp_port
    assert ports.allocate(B, [fixed(tcp_port, proto="udp")])[0].host_port == tcp_port
    # A range skips the listened port.
    if tcp_port < 65535:
        got = ports.allocate(C, [ranged(tcp_port, tcp_port + 1)])[0].host_port
        assert got == tcp_port + 1
