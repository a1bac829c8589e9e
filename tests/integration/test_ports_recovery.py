"""Published ports across driver restarts and crashes: mappings keep working, a join
killed half-way leaves no map element and no allocated port once the driver is back,
and leftovers nobody owns (an allocation, a map element) are removed at start-up.
"""

from __future__ import annotations

import grpc
import pytest
import redis
from driver_world import T, netns_name
from ports_world import HOST, OUTSIDE, allocations, ask, map_elements, ports_world, serve

from cnm.driver.v1 import driver_pb2 as pb
from cnm.types.v1 import types_pb2 as tpb
from driver_service.ports import PortAllocator, PortRequest, Target
from services.ids import new_id
from services.store import Store


@pytest.fixture
def world(redis_url, netns_prefix):
    # A host of its own per test: tests restart its driver (a new process each time).
    with ports_world(redis_url, netns_prefix) as w:
        yield w


@pytest.fixture
def host(world):
    h, _ = world
    yield h
    if h.proc.poll() is not None:
        h.start()
    h.reset_or_recover()
    assert allocations(h) == {"alloc": {}, "owners": {}}, "a port allocation outlived its test"


@pytest.fixture
def ext(world):
    return world[1]


def binding(host_port: int, container_port: int = 80) -> tpb.PortBinding:
    return tpb.PortBinding(
        protocol=tpb.PROTOCOL_TCP, host_port=host_port, container_port=container_port
    )


def restart(host, env: dict[str, str] | None = None, *, kill: bool = False) -> None:
    if kill:
        host.kill9()
    else:
        host.stop()
    host.start(env=env)


def test_mappings_keep_working_across_a_restart_and_a_kill9(host, ext):
    nid = host.network("10.90.0.0/24")
    sb = host.sandbox("web")
    eid = host.endpoint(
        nid, "10.90.0.2/24", name="web", port_bindings=[binding(8080), binding(0, 81)]
    )
    res = host.join(nid, eid, sb.sandbox_id)
    dynamic = next(p.host_port for p in res.port_bindings if p.container_port == 81)
    held = allocations(host)
    with serve(netns_name(sb), "tcp", 80, 81):
        want = [f"{OUTSIDE} 80", f"{OUTSIDE} 81"]
        assert ask(ext, (HOST, 8080), (HOST, dynamic)) == want
        host.stop()
        # The kernel keeps forwarding while the service is down.
        assert ask(ext, (HOST, 8080), (HOST, dynamic)) == want
        host.start()
        assert ask(ext, (HOST, 8080), (HOST, dynamic)) == want
        assert allocations(host) == held
        restart(host, kill=True)
        assert ask(ext, (HOST, 8080), (HOST, dynamic)) == want
        # Allocations lost from Redis (e.g. restored from an old snapshot) are re-claimed.
        client = redis.Redis.from_url(host.redis_url)
        host.kill9()
        client.delete("cnm:ports:h1:alloc", "cnm:ports:h1:owners")
        client.close()
        host.start()
        assert allocations(host)["alloc"] == held["alloc"]
        assert ask(ext, (HOST, 8080), (HOST, dynamic)) == want
    # Still this endpoint's: another one cannot take the port.
    other = host.sandbox("other")
    oid = host.endpoint(nid, "10.90.0.3/24", name="other", port_bindings=[binding(8080)])
    with pytest.raises(grpc.RpcError) as err:
        host.join(nid, oid, other.sandbox_id)
    assert err.value.code() == grpc.StatusCode.ALREADY_EXISTS


@pytest.mark.parametrize("point", ["after_ports", "after_publish"])
def test_kill9_mid_join_then_restart_leaves_no_map_element_and_no_port(host, ext, point):
    restart(host, {"CNM_TEST_CRASH_AT": point})
    nid = host.network("10.91.0.0/24")
    sb = host.sandbox("victim")
    eid = host.endpoint(nid, "10.91.0.2/24", name="victim", port_bindings=[binding(8686)])
    with pytest.raises(grpc.RpcError) as err:
        host.join(nid, eid, sb.sandbox_id)
    assert err.value.code() == grpc.StatusCode.UNAVAILABLE
    assert host.proc.wait(10) == 137
    # The crash happened where it should: the port allocated, the element in the kernel.
    assert list(allocations(host)["owners"]) == [eid]
    assert ("tcp . 8686" in map_elements(host)) is (point == "after_publish")

    host.start()

    assert "8686" not in map_elements(host)
    assert allocations(host) == {"alloc": {}, "owners": {}}
    info = host.stub.EndpointOperInfo(
        pb.EndpointOperInfoRequest(network_id=nid, endpoint_id=eid), timeout=T
    )
    assert list(info.port_bindings) == []
    assert ask(ext, (HOST, 8686)) == ["refused"]
    # The port is free: another endpoint publishes it, and it works.
    other = host.sandbox("other")
    oid = host.endpoint(nid, "10.91.0.3/24", name="other", port_bindings=[binding(8686)])
    assert [p.host_port for p in host.join(nid, oid, other.sandbox_id).port_bindings] == [8686]
    with serve(netns_name(other), "tcp", 80):
        assert ask(ext, (HOST, 8686)) == [f"{OUTSIDE} 80"]


def test_a_restart_removes_allocations_and_map_elements_nobody_owns(host, ext):
    nid = host.network("10.92.0.0/24")
    host.attach(nid, "10.92.0.2/24", "keeps-the-tables")
    host.stop()
    # Leftovers of some earlier life: an allocation whose endpoint does not exist, and
    # a map element no allocation accounts for.
    store = Store(host.redis_url)
    PortAllocator(store, "h1").allocate(
        new_id(), [PortRequest("tcp", 80, (Target("0.0.0.0", "10.92.0.9"),), 8787, 8787)]
    )
    store.close()
    host.host_exec("nft", "add element inet cnm ports_v4_any { tcp . 8788 : 10.92.0.9 . 80 }")
    assert "8788" in map_elements(host) and allocations(host)["owners"]

    host.start()

    assert "8788" not in map_elements(host)
    assert allocations(host) == {"alloc": {}, "owners": {}}
    sb = host.sandbox("web")
    eid = host.endpoint(nid, "10.92.0.3/24", name="web", port_bindings=[binding(8787)])
    assert [p.host_port for p in host.join(nid, eid, sb.sandbox_id).port_bindings] == [8787]


def test_cleanup_drops_the_hosts_port_allocations_and_maps(host):
    nid = host.network("10.93.0.0/24")
    sb = host.sandbox("web")
    eid = host.endpoint(nid, "10.93.0.2/24", name="web", port_bindings=[binding(8989)])
    host.join(nid, eid, sb.sandbox_id)
    assert allocations(host)["owners"] and "8989" in map_elements(host)
    host.stop()
    res = host.cleanup()
    assert res.returncode == 0, res.stderr
    assert allocations(host) == {"alloc": {}, "owners": {}}
    assert map_elements(host).strip() == ""
